"""Control table data, sign-magnitude encoding and packet bytes."""

import os
import tty

import pytest

from aloha_bench.robots import control_table as ct
from aloha_bench.robots.control_table import Entry
from aloha_bench.robots.emulator import checksum, instruction_packet, status_packet
from aloha_bench.robots.feetech import FeetechBus, ServoCommError


def test_entries_match_the_sts3215_table():
    assert Entry.Min_Position_Limit.value == (9, 2)
    assert Entry.Max_Position_Limit.value == (11, 2)
    assert Entry.Homing_Offset.value == (31, 2)
    assert Entry.Torque_Enable.value == (40, 1)
    assert Entry.Goal_Position.value == (42, 2)
    assert Entry.Lock.value == (55, 1)
    assert Entry.Present_Position.value == (56, 2)
    assert Entry.Model_Number.value == (3, 2)
    assert Entry.Max_Torque_Limit.value == (16, 2)
    assert Entry.Homing_Offset.is_eprom and not Entry.Torque_Enable.is_eprom
    # No two registers overlap.
    spans = sorted((e.address, e.address + e.size) for e in Entry)
    assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:], strict=False))


@pytest.mark.parametrize(
    ("value", "raw"), [(0, 0), (5, 5), (-5, 0x805), (2047, 0x7FF), (-2047, 0xFFF)]
)
def test_homing_offset_sign_magnitude(value, raw):
    assert ct.encode(Entry.Homing_Offset, value) == raw
    assert ct.decode(Entry.Homing_Offset, raw) == value


def test_sign_magnitude_rejects_out_of_range():
    with pytest.raises(ValueError, match="-2047..2047"):
        ct.encode(Entry.Homing_Offset, 2048)
    with pytest.raises(ValueError, match="unsigned 8-bit"):
        ct.encode(Entry.Torque_Enable, 256)
    with pytest.raises(ValueError, match="unsigned 16-bit"):
        ct.encode(Entry.Goal_Position, -1)


def test_other_sign_bits():
    assert ct.decode(Entry.Present_Load, (1 << 10) | 300) == -300
    assert ct.encode(Entry.Goal_Velocity, -100) == 0x8000 | 100
    assert ct.to_bytes(Entry.Goal_Position, 0x0ABC) == [0xBC, 0x0A]
    assert ct.from_bytes([0xBC, 0x0A]) == 0x0ABC


def test_error_bits_are_named():
    assert ct.describe_error_bits(0x20) == "overload"
    assert ct.describe_error_bits(0x05) == "input voltage out of range, overheat"
    assert "unknown bits 0x40" in ct.describe_error_bits(0x40)
    assert ct.describe_error_bits(0) == "no error"


def test_packet_bytes_match_the_protocol_example():
    expected = bytes.fromhex("FF FF 02 04 03 28 01 CD")
    assert instruction_packet(2, 0x03, [40, 1]) == expected
    assert checksum(expected[2:-1]) == 0xCD
    assert status_packet(1, 0x20) == bytes([0xFF, 0xFF, 1, 2, 0x20, ~(1 + 2 + 0x20) & 0xFF])


def test_driver_sends_exactly_the_protocol_bytes():
    """The production driver writes `FF FF 02 04 03 28 01 CD` for Torque_Enable=1 on id 2."""
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        bus = FeetechBus(os.ttyname(slave), [2], retries=0)
        bus.connect(check_motors=False)
        # Nobody answers on this bare pty, so the write times out after sending its packet.
        with pytest.raises(ServoCommError, match="timeout"):
            bus.write(Entry.Torque_Enable, 2, 1)
        assert os.read(master, 64)[:8] == bytes.fromhex("FF FF 02 04 03 28 01 CD")
        bus._close_port()
    finally:
        os.close(master)
        os.close(slave)
