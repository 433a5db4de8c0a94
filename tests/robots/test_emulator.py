"""Emulator protocol details not covered through the driver."""

import os
import select
import time
import tty

import pytest

from aloha_bench.robots.control_table import Entry
from aloha_bench.robots.emulator import (
    INST_ACTION,
    INST_PING,
    INST_READ,
    INST_REG_WRITE,
    INST_WRITE,
    ServoEmulator,
    instruction_packet,
    status_packet,
)


@pytest.fixture
def raw_port():
    """The emulator plus a raw file descriptor on its port, for byte-level exchanges."""
    with ServoEmulator(ids=(1, 2, 3), time_constant_s=0.0) as emu:
        fd = os.open(emu.port, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(fd)
        try:
            yield emu, fd
        finally:
            os.close(fd)


def exchange(fd, packet, expect_bytes, timeout_s=0.2):
    os.write(fd, packet)
    data = b""
    deadline = time.monotonic() + timeout_s
    while len(data) < expect_bytes and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.01)[0]:
            data += os.read(fd, 256)
    return data


def test_ping_and_read(raw_port):
    _, fd = raw_port
    assert exchange(fd, instruction_packet(2, INST_PING), 6) == status_packet(2, 0)
    reply = exchange(fd, instruction_packet(1, INST_READ, [3, 2]), 8)
    assert reply == status_packet(1, 0, [0x09, 0x03])  # 777 little-endian


def test_broadcast_ping_answers_in_id_order(raw_port):
    _, fd = raw_port
    assert exchange(fd, instruction_packet(0xFE, INST_PING), 18) == b"".join(
        status_packet(i, 0) for i in (1, 2, 3)
    )


def test_bad_checksum_is_ignored_and_noise_skipped(raw_port):
    _, fd = raw_port
    bad = bytearray(instruction_packet(2, INST_PING))
    bad[-1] ^= 1
    assert exchange(fd, bytes(bad), 6, timeout_s=0.05) == b""
    noisy = b"\x00\xff\x13" + instruction_packet(3, INST_PING)
    assert exchange(fd, noisy, 6) == status_packet(3, 0)


def test_reg_write_waits_for_action(raw_port):
    emu, fd = raw_port
    assert exchange(fd, instruction_packet(2, INST_REG_WRITE, [40, 1]), 6) == status_packet(2, 0)
    assert emu.get(2, Entry.Torque_Enable) == 0
    assert exchange(fd, instruction_packet(0xFE, INST_ACTION), 6, timeout_s=0.05) == b""
    assert emu.get(2, Entry.Torque_Enable) == 1


def test_status_level_zero_answers_only_ping_and_read(raw_port):
    emu, fd = raw_port
    exchange(fd, instruction_packet(1, INST_WRITE, [8, 0]), 6)
    assert exchange(fd, instruction_packet(1, INST_WRITE, [40, 1]), 6, timeout_s=0.05) == b""
    assert emu.get(1, Entry.Torque_Enable) == 1
    assert exchange(fd, instruction_packet(1, INST_PING), 6) == status_packet(1, 0)


def test_id_change_and_read_only_registers(raw_port):
    emu, fd = raw_port
    exchange(fd, instruction_packet(3, INST_WRITE, [5, 9]), 6)
    assert exchange(fd, instruction_packet(9, INST_PING), 6) == status_packet(9, 0)
    exchange(fd, instruction_packet(9, INST_WRITE, [56, 0, 0]), 6)  # Present_Position
    exchange(fd, instruction_packet(9, INST_WRITE, [3, 0, 0]), 6)  # Model_Number
    assert emu.get(9, Entry.Present_Position) == 2048
    assert emu.get(9, Entry.Model_Number) == 777


def test_motion_model_homing_offset_and_limits():
    with ServoEmulator(ids=(1,), time_constant_s=0.05, raw_positions={1: 100}) as emu:
        servo = emu.servo(1)
        servo.write_memory(Entry.Homing_Offset.address, bytes([0x00, 0x08 | 0x04]))  # -1024
        assert emu.get(1, Entry.Present_Position) == 1124  # (100 + 1024) mod 4096
        servo.write_memory(Entry.Goal_Position.address, (3000).to_bytes(2, "little"))
        time.sleep(0.05)
        assert emu.get(1, Entry.Present_Position) == 1124  # torque off: no motion
        servo.write_memory(Entry.Max_Position_Limit.address, (2500).to_bytes(2, "little"))
        servo.write_memory(Entry.Torque_Enable.address, b"\x01")
        servo.advance(time.monotonic())
        time.sleep(0.05)  # one time constant: 63 % of the way
        assert 1124 + 0.5 * 1376 < emu.get(1, Entry.Present_Position) < 1124 + 0.75 * 1376
        time.sleep(0.4)
        assert emu.get(1, Entry.Present_Position) == 2500  # goal clamped to the limit
        # Moving across the offset frame's seam: raw wraps, present does not.
        assert emu.raw_position(1) == pytest.approx((2500 - 1024) % 4096, abs=0.5)


def test_overload_drops_torque_and_stop_is_clean():
    emu = ServoEmulator(ids=(1,)).start()
    emu.servo(1).write_memory(Entry.Torque_Enable.address, b"\x01")
    emu.inject(1, error_bits=0x20)
    assert emu.get(1, Entry.Torque_Enable) == 0
    emu.stop()
    emu.stop()
    assert not emu.running
    with pytest.raises(RuntimeError, match="not running"):
        _ = ServoEmulator().port
    with pytest.raises(KeyError):
        emu.servo(7)
