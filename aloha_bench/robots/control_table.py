"""The Feetech STS3215 control table as data, plus its sign-magnitude value encoding.

Addresses and sizes follow Feetech's STS/SMS memory table (the same table LeRobot's
``motors/feetech/tables.py`` carries). Entries below address 40 live in EPROM: the servo keeps them
across power cycles, and only accepts them for storage while ``Lock`` (55) is 0. Entries from 40 up
are RAM. Multi-byte values are little-endian (``scservo_sdk.PacketHandler(0)``).

A few entries are sign-magnitude rather than two's complement: bit 11 of ``Homing_Offset`` (so it
spans -2047..+2047), bit 15 of the velocities and bit 10 of ``Present_Load`` hold the sign.
:func:`encode` and :func:`decode` convert between those raw register values and signed integers.
"""

from __future__ import annotations

import enum

# Model number the STS3215 reports at address 3 (the value PING replies are checked against).
STS3215_MODEL_NUMBER = 777
# Number of distinct encoder positions; Present_Position spans 0..4095.
RESOLUTION = 4096
MAX_POSITION = RESOLUTION - 1
# Operating_Mode value for position control (the only mode the arms use).
POSITION_MODE = 0
# The protocol's broadcast id: every servo executes the instruction, none replies (but PING).
BROADCAST_ID = 0xFE

# Hardware-error bits of a status packet's error byte (Feetech protocol manual, "status packet").
ERROR_BITS: dict[int, str] = {
    0x01: "input voltage out of range",
    0x02: "angle sensor fault",
    0x04: "overheat",
    0x08: "over-current",
    0x20: "overload",
}


class Entry(enum.Enum):
    """One control-table register: ``entry.address`` and ``entry.size`` in bytes."""

    # EPROM
    Model_Number = (3, 2)
    ID = (5, 1)
    Baud_Rate = (6, 1)
    Return_Delay_Time = (7, 1)
    Response_Status_Level = (8, 1)
    Min_Position_Limit = (9, 2)
    Max_Position_Limit = (11, 2)
    Max_Temperature_Limit = (13, 1)
    Max_Torque_Limit = (16, 2)
    P_Coefficient = (21, 1)
    D_Coefficient = (22, 1)
    I_Coefficient = (23, 1)
    Protection_Current = (28, 2)
    Homing_Offset = (31, 2)
    Operating_Mode = (33, 1)
    Overload_Torque = (36, 1)
    # RAM
    Torque_Enable = (40, 1)
    Acceleration = (41, 1)
    Goal_Position = (42, 2)
    Goal_Velocity = (46, 2)
    Torque_Limit = (48, 2)
    Lock = (55, 1)
    Present_Position = (56, 2)
    Present_Velocity = (58, 2)
    Present_Load = (60, 2)
    Present_Voltage = (62, 1)
    Present_Temperature = (63, 1)
    Moving = (66, 1)
    Present_Current = (69, 2)

    @property
    def address(self) -> int:
        """First byte of the register in the servo's memory."""
        return self.value[0]

    @property
    def size(self) -> int:
        """Width of the register in bytes (1 or 2)."""
        return self.value[1]

    @property
    def sign_bit(self) -> int | None:
        """Bit holding the sign for sign-magnitude registers, else ``None``."""
        return _SIGN_BITS.get(self)

    @property
    def is_eprom(self) -> bool:
        """Whether the register is stored in EPROM (needs ``Lock`` = 0 to persist)."""
        return self.address < Entry.Torque_Enable.address


_SIGN_BITS: dict[Entry, int] = {
    Entry.Homing_Offset: 11,
    Entry.Goal_Velocity: 15,
    Entry.Present_Velocity: 15,
    Entry.Present_Load: 10,
}


def encode_sign_magnitude(value: int, sign_bit: int) -> int:
    """Encode a signed integer as sign-magnitude with the sign in ``sign_bit``.

    Raises:
        ValueError: if ``|value|`` does not fit in the ``sign_bit`` magnitude bits.
    """
    magnitude_max = (1 << sign_bit) - 1
    if abs(value) > magnitude_max:
        raise ValueError(
            f"{value} does not fit a sign-magnitude field with the sign in bit {sign_bit} "
            f"(range -{magnitude_max}..{magnitude_max})"
        )
    return (-value) | (1 << sign_bit) if value < 0 else value


def decode_sign_magnitude(raw: int, sign_bit: int) -> int:
    """Decode a sign-magnitude register value whose sign lives in ``sign_bit``."""
    magnitude = raw & ((1 << sign_bit) - 1)
    return -magnitude if raw & (1 << sign_bit) else magnitude


def encode(entry: Entry, value: int) -> int:
    """Raw register value for the signed/unsigned integer ``value`` of ``entry``.

    Raises:
        ValueError: if ``value`` does not fit the register.
    """
    value = int(value)
    if entry.sign_bit is not None:
        return encode_sign_magnitude(value, entry.sign_bit)
    if not 0 <= value < 1 << (8 * entry.size):
        raise ValueError(
            f"{entry.name} is an unsigned {8 * entry.size}-bit register; {value} does not fit"
        )
    return value


def decode(entry: Entry, raw: int) -> int:
    """Integer value of ``entry`` from its raw register value."""
    if entry.sign_bit is not None:
        return decode_sign_magnitude(raw, entry.sign_bit)
    return raw


def to_bytes(entry: Entry, raw: int) -> list[int]:
    """Little-endian bytes of a raw register value, as the servo stores them."""
    return [(raw >> (8 * i)) & 0xFF for i in range(entry.size)]


def from_bytes(data: bytes | list[int]) -> int:
    """Raw register value from its little-endian bytes."""
    return sum(b << (8 * i) for i, b in enumerate(data))


def describe_error_bits(error: int) -> str:
    """Human-readable names of the hardware-error bits set in a status packet's error byte."""
    names = [name for bit, name in ERROR_BITS.items() if error & bit]
    unknown = error & ~sum(ERROR_BITS)
    if unknown:
        names.append(f"unknown bits 0x{unknown:02X}")
    return ", ".join(names) if names else "no error"
