"""The production driver against the emulator: transfers, retries and every injected fault."""

import time

import pytest

from aloha_bench.robots.control_table import Entry
from aloha_bench.robots.emulator import ServoEmulator
from aloha_bench.robots.feetech import FeetechBus, PortError, ServoCommError, ServoHardwareError

IDS = (1, 2, 3, 4, 5, 6)


@pytest.fixture
def emulator():
    with ServoEmulator(ids=IDS, time_constant_s=0.02) as emu:
        yield emu


@pytest.fixture
def bus(emulator):
    # One retry keeps each timeout test at ~70 ms; the default is 3.
    with FeetechBus(emulator.port, IDS, retries=1) as bus:
        yield bus


def torque_on_everywhere(bus):
    bus.sync_write(Entry.Torque_Enable, dict.fromkeys(IDS, 1))


def torques(emulator, ids=IDS, expect=None, timeout_s=1.0):
    """Torque_Enable of ``ids``; with ``expect``, wait until the emulator has caught up to it.

    A SYNC_WRITE gets no reply, so the driver returns before the emulator thread has read it.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        values = [emulator.get(i, Entry.Torque_Enable) for i in ids]
        if expect is None or values == expect or time.monotonic() > deadline:
            return values
        time.sleep(0.002)


def test_ping_read_write(bus, emulator):
    assert bus.ping(4) == 777
    assert bus.read(Entry.Model_Number, 1) == 777
    bus.write(Entry.Homing_Offset, 3, -100)
    assert emulator.get(3, Entry.Homing_Offset) == -100
    assert bus.read(Entry.Homing_Offset, 3) == -100
    # Present = (raw - offset) mod 4096 with raw 2048.
    assert bus.read(Entry.Present_Position, 3) == 2148


def test_sync_read_and_write_move_the_servos(bus, emulator):
    assert bus.sync_read(Entry.Present_Position) == dict.fromkeys(IDS, 2048)
    torque_on_everywhere(bus)
    goals = {i: 1000 + 100 * i for i in IDS}
    bus.sync_write(Entry.Goal_Position, goals)
    time.sleep(0.2)  # ten time constants
    assert bus.sync_read(Entry.Present_Position) == goals
    assert bus.sync_read(Entry.Goal_Position, [2, 5]) == {2: 1200, 5: 1500}


def test_round_trip_is_fast(bus):
    start = time.perf_counter()
    for _ in range(50):
        bus.sync_write(Entry.Goal_Position, bus.sync_read(Entry.Present_Position))
    # ~0.3 ms each unloaded; "a few ms" must hold even on a busy machine.
    assert (time.perf_counter() - start) / 50 < 0.010


def test_disconnect_switches_torque_off(emulator):
    with FeetechBus(emulator.port, IDS) as bus:
        torque_on_everywhere(bus)
        assert torques(emulator, expect=[1] * 6) == [1] * 6
    assert torques(emulator, expect=[0] * 6) == [0] * 6
    assert not bus.is_connected


def test_silent_servo_times_out_naming_port_and_id(bus, emulator):
    torque_on_everywhere(bus)
    emulator.inject(3, silent=True)
    with pytest.raises(ServoCommError, match=r"servo 3: timeout") as info:
        bus.sync_read(Entry.Present_Position)
    assert info.value.port == emulator.port and emulator.port in str(info.value)
    assert (info.value.servo_id, info.value.fault) == (3, "timeout")
    with pytest.raises(ServoCommError, match="servo 3: timeout"):
        bus.read(Entry.Present_Position, 3)
    bus.disconnect()
    # The silent servo hears nothing; every other servo got the torque-off sync write.
    assert torques(emulator, [1, 2, 4, 5, 6], expect=[0] * 5) == [0] * 5


def test_corrupt_reply_is_retried_then_reported(bus, emulator):
    torque_on_everywhere(bus)
    emulator.inject(5, corrupt_checksum=True)
    with pytest.raises(ServoCommError, match="servo 5: corrupt status packet after 2 attempts"):
        bus.sync_read(Entry.Present_Position)
    with pytest.raises(ServoCommError) as info:
        bus.ping(5)
    assert info.value.fault == "corrupt"
    bus.disconnect()
    assert torques(emulator, expect=[0] * 6) == [0] * 6


def test_hardware_error_bits_are_decoded(bus, emulator):
    torque_on_everywhere(bus)
    emulator.inject(2, error_bits=0x20)
    with pytest.raises(ServoHardwareError, match=r"servo 2 .*0x20 \(overload\)") as info:
        bus.sync_read(Entry.Present_Position)
    assert info.value.error_bits == 0x20 and info.value.fault == "hardware"
    emulator.inject(2, error_bits=0x0C)
    with pytest.raises(ServoHardwareError, match="overheat, over-current"):
        bus.read(Entry.Present_Position, 2)
    bus.disconnect()
    assert torques(emulator, expect=[0] * 6) == [0] * 6


def test_late_reply_within_timeout_succeeds(bus, emulator):
    emulator.inject(4, reply_delay_s=0.01)
    assert bus.sync_read(Entry.Present_Position)[4] == 2048


def test_reply_later_than_every_retry_times_out_then_bus_recovers(bus, emulator):
    emulator.inject(1, reply_delay_s=0.15)
    with pytest.raises(ServoCommError, match="servo 1: timeout"):
        bus.read(Entry.Present_Position, 1)
    emulator.clear_faults()
    emulator.move_by_hand(1, 1000)
    time.sleep(0.2)  # the late replies to the failed attempts arrive now, unread
    # The stale replies (2048) are flushed, not mistaken for this answer.
    assert bus.read(Entry.Present_Position, 1) == 1000


def test_unplugged_port_raises_port_error(bus, emulator):
    emulator.unplug()
    with pytest.raises(PortError, match="lost the serial port") as info:
        bus.sync_read(Entry.Present_Position)
    assert info.value.fault == "port" and emulator.port in str(info.value)
    # A later call reports the same, not a stale "port busy" from the aborted transfer.
    with pytest.raises(PortError):
        bus.sync_write(Entry.Goal_Position, {1: 2048})
    bus.disconnect()  # logs instead of raising
    assert not bus.is_connected


def test_missing_port_names_the_port_and_the_fix():
    with pytest.raises(PortError, match=r"/dev/ttyACM_nope.*dialout"):
        FeetechBus("/dev/ttyACM_nope", IDS).connect()


def test_connect_checks_every_servo(emulator):
    emulator.inject(6, silent=True)
    bus = FeetechBus(emulator.port, IDS, retries=0)
    with pytest.raises(ServoCommError, match="servo 6: timeout"):
        bus.connect()
    assert not bus.is_connected
    emulator.clear_faults()
    emulator.servo(6).memory[3:5] = bytes([0x0C, 0x03])  # model 780
    with pytest.raises(ServoCommError, match="model number 780"):
        bus.connect()


def test_use_before_connect_is_explained(emulator):
    with pytest.raises(PortError, match="not connected"):
        FeetechBus(emulator.port, IDS).sync_read(Entry.Present_Position)
