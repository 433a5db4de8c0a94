"""A Feetech STS3215 bus emulator on a pseudo-terminal, so the production driver runs byte for byte.

:class:`ServoEmulator` opens a pty pair (``os.openpty``); the driver opens the slave side
(:attr:`ServoEmulator.port`, e.g. ``/dev/pts/3``) as its serial port exactly as it would open
``/dev/ttyACM0``, and a background thread answers on the master side like a chain of servos:

* Packets are the Feetech SCS protocol (``FF FF id len instr params... chk``,
  ``chk = ~(id + len + instr + sum(params)) & 0xFF``); packets with a bad checksum are dropped, as a
  servo does. Status replies carry the error byte in place of the instruction.
* Instructions: PING, READ, WRITE, REG_WRITE, ACTION, SYNC_READ (servos answer in the listed
  order), SYNC_WRITE (no reply). Broadcast (id 0xFE) executes on every servo and only PING replies.
  With ``Response_Status_Level`` 0 only PING and READ are answered (STS3215 manual).
* Each servo has a full 256-byte memory initialised to STS3215 defaults (model number 777 at
  address 3). ``Present_Position = (raw - Homing_Offset) mod 4096``, where ``raw`` is the
  magnet's angle in ticks and the offset is sign-magnitude (bit 11).
* Motion: with torque on, the position in the offset frame moves toward ``Goal_Position``
  (clamped to ``Min/Max_Position_Limit``) as a first-order lag with ``time_constant_s``; with
  torque off the joint stays wherever :meth:`ServoEmulator.move_by_hand` puts it.

Faults for tests (:meth:`ServoEmulator.inject`): a servo that stops answering, replies with a
corrupt checksum, a hardware error bit in every reply (overload also drops torque, as the
STS3215's default unloading condition does), and a late reply. :meth:`ServoEmulator.unplug`
closes the pty, which the driver sees exactly like a USB adapter pulled out (reads fail with EIO).

pyserial and ``scservo_sdk.PortHandler`` work on a pty unchanged: the baud rate is accepted by
``tcsetattr`` and ignored, and pyserial already tolerates the modem-line ioctls a pty rejects.
The only care needed is putting the pty in raw mode before the driver opens it, so no byte
(0x0D, 0x11, 0x13, ...) is translated by the terminal line discipline.
"""

from __future__ import annotations

import heapq
import math
import os
import select
import threading
import time
import tty
from dataclasses import dataclass

from aloha_bench.robots import control_table as ct
from aloha_bench.robots.control_table import Entry

INST_PING = 0x01
INST_READ = 0x02
INST_WRITE = 0x03
INST_REG_WRITE = 0x04
INST_ACTION = 0x05
INST_SYNC_READ = 0x82
INST_SYNC_WRITE = 0x83

# Registers the servo computes itself; writes to them are ignored, as on the real servo.
_READ_ONLY = range(Entry.Present_Position.address, 256)
_IDENTITY = range(0, Entry.ID.address)


def checksum(body: bytes | list[int]) -> int:
    """Feetech checksum of a packet body (id, length, instruction/error and parameters)."""
    return ~sum(body) & 0xFF


def instruction_packet(servo_id: int, instruction: int, params: bytes | list[int] = b"") -> bytes:
    """Bytes of an instruction packet, e.g. ``instruction_packet(2, 0x03, [40, 1])``."""
    body = bytes([servo_id, len(params) + 2, instruction, *params])
    return b"\xff\xff" + body + bytes([checksum(body)])


def status_packet(servo_id: int, error: int, params: bytes | list[int] = b"") -> bytes:
    """Bytes of a status (reply) packet: the error byte takes the instruction's place."""
    return instruction_packet(servo_id, error, params)


@dataclass
class ServoFaults:
    """Faults one emulated servo shows (all off by default).

    Attributes:
        silent: never answer (a servo with a broken cable or a wrong id); it also ignores
            broadcasts, like a servo that no longer receives.
        corrupt_checksum: answer with the checksum inverted.
        error_bits: hardware-error byte sent in every reply (0x20 overload, ...).
        reply_delay_s: answer this late.
    """

    silent: bool = False
    corrupt_checksum: bool = False
    error_bits: int = 0
    reply_delay_s: float = 0.0


class EmulatedServo:
    """One STS3215: its memory, a first-order position model and its faults."""

    def __init__(self, servo_id: int, raw_position: float, time_constant_s: float) -> None:
        self.memory = bytearray(256)
        self.faults = ServoFaults()
        self.time_constant_s = time_constant_s
        self._raw = raw_position % ct.RESOLUTION
        self._last_update_s = time.monotonic()
        self._pending_write: tuple[int, bytes] | None = None
        defaults = {
            Entry.Model_Number: ct.STS3215_MODEL_NUMBER,
            Entry.ID: servo_id,
            Entry.Return_Delay_Time: 0,
            Entry.Response_Status_Level: 1,
            Entry.Min_Position_Limit: 0,
            Entry.Max_Position_Limit: ct.MAX_POSITION,
            Entry.Max_Temperature_Limit: 70,
            Entry.Max_Torque_Limit: 1000,
            Entry.P_Coefficient: 32,
            Entry.D_Coefficient: 32,
            Entry.Protection_Current: 500,
            Entry.Overload_Torque: 80,
            Entry.Torque_Limit: 1000,
            Entry.Lock: 1,
            Entry.Present_Voltage: 74,
            Entry.Present_Temperature: 30,
        }
        for entry, value in defaults.items():
            self._store(entry, value)
        self._store(Entry.Goal_Position, self.present_position())

    @property
    def servo_id(self) -> int:
        """Current bus id (address 5; writable, as in motor setup)."""
        return self.memory[Entry.ID.address]

    def get(self, entry: Entry) -> int:
        """Decoded value of a register."""
        raw = ct.from_bytes(self.memory[entry.address : entry.address + entry.size])
        return ct.decode(entry, raw)

    def _store(self, entry: Entry, value: int) -> None:
        self.memory[entry.address : entry.address + entry.size] = bytes(
            ct.to_bytes(entry, ct.encode(entry, value))
        )

    @property
    def raw_position(self) -> float:
        """The magnet's angle in ticks, before the homing offset (0 <= raw < 4096)."""
        return self._raw

    def set_raw_position(self, raw: float) -> None:
        """Move the joint by hand (meaningful with torque off)."""
        self._raw = raw % ct.RESOLUTION

    def present_position(self) -> int:
        """``(raw - Homing_Offset) mod 4096``, rounded to a tick."""
        return round(self._offset_frame_position()) % ct.RESOLUTION

    def _offset_frame_position(self) -> float:
        return (self._raw - self.get(Entry.Homing_Offset)) % ct.RESOLUTION

    def advance(self, now_s: float) -> None:
        """Integrate the position model up to ``now_s``."""
        dt_s = max(0.0, now_s - self._last_update_s)
        self._last_update_s = now_s
        if not self.get(Entry.Torque_Enable):
            return
        low = self.get(Entry.Min_Position_Limit)
        high = self.get(Entry.Max_Position_Limit)
        target = min(max(self.get(Entry.Goal_Position), low), high)
        position = self._offset_frame_position()
        # The STS3215's position loop works in the offset frame (0..4095 after the homing
        # offset), so it never takes the short way across the 4095/0 seam.
        if self.time_constant_s <= 0.0:
            position = float(target)
        else:
            position += (target - position) * (1.0 - math.exp(-dt_s / self.time_constant_s))
        self._raw = (position + self.get(Entry.Homing_Offset)) % ct.RESOLUTION

    def refresh_live_registers(self) -> None:
        """Store the measured registers (Present_Position, Moving) from the motion model."""
        self._store(Entry.Present_Position, self.present_position())
        goal_gap = abs(self.get(Entry.Goal_Position) - self.present_position())
        self._store(Entry.Moving, int(bool(self.get(Entry.Torque_Enable)) and goal_gap > 1))

    def read_memory(self, address: int, length: int) -> bytes:
        """Bytes ``address .. address+length-1``, with the live registers refreshed."""
        self.refresh_live_registers()
        return bytes(self.memory[address : address + length])

    def write_memory(self, address: int, data: bytes) -> None:
        """Store ``data`` at ``address``, skipping identity and measured registers."""
        for offset, byte in enumerate(data):
            target = address + offset
            if target < 256 and target not in _READ_ONLY and target not in _IDENTITY:
                self.memory[target] = byte

    def set_error_bits(self, error_bits: int) -> None:
        """Raise a hardware error; overload unloads the motor (STS3215 default condition)."""
        self.faults.error_bits = error_bits
        if error_bits & 0x20:
            self._store(Entry.Torque_Enable, 0)

    def handle(self, instruction: int, params: bytes) -> bytes | None:
        """Execute one instruction; return the status parameters to send, or ``None``."""
        if instruction == INST_PING:
            return b""
        if instruction == INST_READ and len(params) == 2:
            return self.read_memory(params[0], params[1])
        if instruction == INST_WRITE and params:
            self.write_memory(params[0], params[1:])
        elif instruction == INST_REG_WRITE and params:
            self._pending_write = (params[0], params[1:])
        elif instruction == INST_ACTION and self._pending_write is not None:
            self.write_memory(*self._pending_write)
            self._pending_write = None
        else:
            return None
        return b"" if self.memory[Entry.Response_Status_Level.address] else None


class ServoEmulator:
    """A chain of emulated STS3215 servos answering on a pseudo-terminal.

    Example:
        >>> with ServoEmulator(ids=range(1, 7)) as emu:
        ...     with FeetechBus(emu.port, [1, 2, 3, 4, 5, 6]) as bus:
        ...         bus.sync_read(Entry.Present_Position)

    Args:
        ids: servo ids on the bus.
        time_constant_s: first-order lag of the position model (0 = reach the goal at once).
        raw_positions: initial magnet angle per id in ticks (default 2048, mid-turn).
    """

    def __init__(
        self,
        ids: range | list[int] | tuple[int, ...] = range(1, 7),
        time_constant_s: float = 0.05,
        raw_positions: dict[int, float] | None = None,
    ) -> None:
        raw_positions = raw_positions or {}
        self._servos = {
            i: EmulatedServo(i, raw_positions.get(i, 2048.0), time_constant_s) for i in ids
        }
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._master_fd = -1
        self._slave_fd = -1
        self._wake_r = -1
        self._wake_w = -1
        self._stopping = False
        self._port = ""
        # Replies waiting for their send time: (due_s, sequence, bytes). The sequence keeps
        # replies in order, as they share one half-duplex wire.
        self._outbox: list[tuple[float, int, bytes]] = []
        self._sequence = 0
        self._last_due_s = 0.0

    @property
    def port(self) -> str:
        """Path of the pty slave, to be opened by the driver as its serial port."""
        if not self._port:
            raise RuntimeError("the emulator is not running; call start() or use a with block")
        return self._port

    @property
    def running(self) -> bool:
        """Whether the serving thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> ServoEmulator:
        """Open the pty and start answering in a background thread."""
        if self.running:
            return self
        self._master_fd, self._slave_fd = os.openpty()
        tty.setraw(self._slave_fd)
        os.set_blocking(self._master_fd, False)
        self._port = os.ttyname(self._slave_fd)
        self._wake_r, self._wake_w = os.pipe()
        self._stopping = False
        self._outbox.clear()
        self._thread = threading.Thread(target=self._serve, name="servo-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering and close the pty (the driver's next transfer fails with EIO)."""
        if self._thread is None:
            return
        self._stopping = True
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=5.0)
        self._thread = None
        for fd in (self._master_fd, self._slave_fd, self._wake_r, self._wake_w):
            os.close(fd)
        self._master_fd = self._slave_fd = self._wake_r = self._wake_w = -1

    def unplug(self) -> None:
        """Simulate pulling the USB cable: the port disappears under the open driver."""
        self.stop()

    def __enter__(self) -> ServoEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- inspection and manipulation (thread-safe) ---

    def servo(self, servo_id: int) -> EmulatedServo:
        """The emulated servo with bus id ``servo_id`` (after any id change)."""
        for servo in self._servos.values():
            if servo.servo_id == servo_id:
                return servo
        raise KeyError(f"no emulated servo with id {servo_id}")

    def get(self, servo_id: int, entry: Entry) -> int:
        """Decoded register value of one servo, with the motion model brought up to date."""
        with self._lock:
            servo = self.servo(servo_id)
            servo.advance(time.monotonic())
            servo.refresh_live_registers()
            return servo.get(entry)

    def move_by_hand(self, servo_id: int, raw_position: float) -> None:
        """Put a joint's magnet at ``raw_position`` ticks (as a person moving the arm would)."""
        with self._lock:
            servo = self.servo(servo_id)
            servo.advance(time.monotonic())
            servo.set_raw_position(raw_position)

    def raw_position(self, servo_id: int) -> float:
        """A joint's magnet angle in ticks, independent of the homing offset."""
        with self._lock:
            servo = self.servo(servo_id)
            servo.advance(time.monotonic())
            return servo.raw_position

    def inject(
        self,
        servo_id: int,
        *,
        silent: bool | None = None,
        corrupt_checksum: bool | None = None,
        error_bits: int | None = None,
        reply_delay_s: float | None = None,
    ) -> None:
        """Turn faults of one servo on or off; arguments left as ``None`` keep their setting."""
        with self._lock:
            servo = self.servo(servo_id)
            if silent is not None:
                servo.faults.silent = silent
            if corrupt_checksum is not None:
                servo.faults.corrupt_checksum = corrupt_checksum
            if error_bits is not None:
                servo.set_error_bits(error_bits)
            if reply_delay_s is not None:
                servo.faults.reply_delay_s = reply_delay_s

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        with self._lock:
            for servo in self._servos.values():
                servo.faults = ServoFaults()

    # --- serving thread ---

    def _serve(self) -> None:
        buffer = bytearray()
        while not self._stopping:
            timeout_s = None
            if self._outbox:
                timeout_s = max(0.0, self._outbox[0][0] - time.monotonic())
            readable, _, _ = select.select([self._master_fd, self._wake_r], [], [], timeout_s)
            if self._master_fd in readable:
                try:
                    buffer += os.read(self._master_fd, 4096)
                except BlockingIOError:
                    pass
                for packet in _split_packets(buffer):
                    self._dispatch(packet)
            self._send_due_replies()

    def _send_due_replies(self) -> None:
        now_s = time.monotonic()
        while self._outbox and self._outbox[0][0] <= now_s:
            _, _, reply = heapq.heappop(self._outbox)
            try:
                os.write(self._master_fd, reply)
            except BlockingIOError:
                # Nobody is reading the port and its buffer is full: a real bus drops the bytes.
                pass

    def _queue(self, reply: bytes, delay_s: float) -> None:
        due_s = max(time.monotonic() + delay_s, self._last_due_s)
        self._last_due_s = due_s
        self._sequence += 1
        heapq.heappush(self._outbox, (due_s, self._sequence, reply))

    def _dispatch(self, packet: bytes) -> None:
        servo_id, instruction, params = packet[2], packet[4], packet[5:-1]
        with self._lock:
            now_s = time.monotonic()
            for servo in self._servos.values():
                servo.advance(now_s)
            if instruction == INST_SYNC_READ and len(params) >= 2:
                address, length = params[0], params[1]
                for target_id in params[2:]:
                    self._answer(target_id, INST_READ, bytes([address, length]))
            elif instruction == INST_SYNC_WRITE and len(params) >= 2:
                address, length = params[0], params[1]
                chunk = length + 1
                for start in range(2, len(params) - chunk + 1, chunk):
                    data = params[start + 1 : start + chunk]
                    self._answer(params[start], INST_WRITE, bytes([address]) + data, reply=False)
            elif servo_id == ct.BROADCAST_ID:
                reply = instruction == INST_PING
                for servo in sorted(self._servos.values(), key=lambda s: s.servo_id):
                    self._answer(servo.servo_id, instruction, params, reply=reply)
            else:
                self._answer(servo_id, instruction, params)

    def _answer(self, servo_id: int, instruction: int, params: bytes, reply: bool = True) -> None:
        servo = next((s for s in self._servos.values() if s.servo_id == servo_id), None)
        if servo is None or servo.faults.silent:
            return
        status = servo.handle(instruction, params)
        if status is None or not reply:
            return
        packet = bytearray(status_packet(servo.servo_id, servo.faults.error_bits, status))
        if servo.faults.corrupt_checksum:
            packet[-1] ^= 0xFF
        self._queue(bytes(packet), servo.faults.reply_delay_s)


def _split_packets(buffer: bytearray) -> list[bytes]:
    """Remove every complete, valid instruction packet from ``buffer`` and return them.

    Resynchronises on the ``FF FF`` header after noise; packets with a wrong checksum are
    dropped, as a servo ignores them. An incomplete packet stays in the buffer.
    """
    packets = []
    while True:
        start = buffer.find(b"\xff\xff")
        if start < 0:
            # Keep a trailing 0xFF: it may be the first half of the next header.
            del buffer[: len(buffer) - 1 if buffer.endswith(b"\xff") else len(buffer)]
            return packets
        del buffer[:start]
        if len(buffer) < 4:
            return packets
        servo_id, length = buffer[2], buffer[3]
        if servo_id == 0xFF or length < 2:
            del buffer[0]
            continue
        total = length + 4
        if len(buffer) < total:
            return packets
        packet = bytes(buffer[:total])
        del buffer[:total]
        if checksum(packet[2:-1]) == packet[-1]:
            packets.append(packet)
