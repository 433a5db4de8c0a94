"""SO101Arm against the emulator: configuration, goals through safety, torque off on every exit."""

import math
import time

import numpy as np
import pytest

from aloha_bench import embodiment
from aloha_bench.robots.arm import ArmFaultError, SO101Arm
from aloha_bench.robots.calibration import ArmCalibration, MotorCalibration, ticks_to_rad
from aloha_bench.robots.control_table import Entry
from aloha_bench.robots.emulator import ServoEmulator
from aloha_bench.robots.feetech import FeetechBus, ServoCommError

K = 2 * math.pi / 4096
IDS = range(1, 7)


def calibration():
    ranges = {"wrist_roll": (0, 4095), "gripper": (1500, 2700)}
    return ArmCalibration(
        {
            joint: MotorCalibration(
                embodiment.MOTOR_IDS[joint], 0, -100, *ranges.get(joint, (1000, 3000))
            )
            for joint in embodiment.ARM_JOINTS
        }
    )


@pytest.fixture
def emulator():
    with ServoEmulator(ids=IDS, time_constant_s=0.01) as emu:
        yield emu


def torque(emulator, expect, timeout_s=1.0):
    """Torque_Enable of all six servos once it equals ``expect`` (sync writes are not acked)."""
    deadline = time.monotonic() + timeout_s
    values = None
    while values != expect and time.monotonic() < deadline:
        values = [emulator.get(i, Entry.Torque_Enable) for i in IDS]
        time.sleep(0.002)
    return values


def test_follower_connect_configures_and_holds_its_pose(emulator):
    # A stale goal from an earlier session must not be driven to when torque comes on.
    emulator.servo(2).write_memory(Entry.Goal_Position.address, (500).to_bytes(2, "little"))
    with SO101Arm(emulator.port, calibration(), "follower") as arm:
        assert torque(emulator, [1] * 6) == [1] * 6
        time.sleep(0.05)
        # Calibration written: offset -100 makes raw 2048 read 2148.
        assert emulator.get(2, Entry.Present_Position) == 2148
        assert emulator.get(2, Entry.Homing_Offset) == -100
        assert emulator.get(2, Entry.Max_Position_Limit) == 3000
        assert emulator.get(6, Entry.Max_Torque_Limit) == 500
        assert emulator.get(6, Entry.Torque_Limit) == 500
        assert emulator.get(1, Entry.Max_Torque_Limit) == 1000
        assert emulator.get(3, Entry.P_Coefficient) == 16
        assert emulator.get(3, Entry.Lock) == 1
        np.testing.assert_allclose(
            arm.read_rad(), ticks_to_rad([2148, 2148, 2148, 2148, 2148, 2148], calibration())
        )
    assert torque(emulator, [0] * 6) == [0] * 6


def test_goals_pass_the_safety_clamps(emulator):
    with SO101Arm(emulator.port, calibration(), max_relative_target_rad=0.1) as arm:
        present = arm.read_rad()
        sent = arm.write_goal_rad(present + np.array([0.05, 1.0, -1.0, 0, 0, 0]))
        np.testing.assert_allclose(sent - present, [0.05, 0.1, -0.1, 0, 0, 0])
        time.sleep(0.1)
        np.testing.assert_allclose(arm.read_rad(), sent, atol=K)
    with SO101Arm(emulator.port, calibration()) as arm:
        # Without a step cap only the calibrated range applies: 1000..3000 ticks = +/-1000 K.
        sent = arm.write_goal_rad(np.array([3.0, -3.0, 0, 0, 0, -0.5]))
        np.testing.assert_allclose(sent, [1000 * K, -1000 * K, 0, 0, 0, 0])
        with pytest.raises(ValueError, match="shape"):
            arm.write_goal_rad(np.zeros(5))
        assert torque(emulator, [0] * 6) == [0] * 6


def test_leader_keeps_torque_off_and_refuses_goals(emulator):
    with SO101Arm(FeetechBus(emulator.port, IDS), calibration(), "leader") as arm:
        assert torque(emulator, [0] * 6) == [0] * 6
        emulator.move_by_hand(1, 2048 + 512)
        assert arm.read_rad()[0] == pytest.approx((2660 - 2000) * K)
        with pytest.raises(RuntimeError, match="leader"):
            arm.write_goal_rad(np.zeros(6))


@pytest.mark.parametrize("exception", [RuntimeError("boom"), KeyboardInterrupt()])
def test_torque_off_when_leaving_with_an_exception(emulator, exception):
    with pytest.raises(type(exception)):
        with SO101Arm(emulator.port, calibration()):
            assert torque(emulator, [1] * 6) == [1] * 6
            raise exception
    assert torque(emulator, [0] * 6) == [0] * 6


def test_nan_goal_and_bus_faults_switch_torque_off(emulator):
    with SO101Arm(emulator.port, calibration(), max_relative_target_rad=0.1) as arm:
        with pytest.raises(ValueError, match="finite"):
            arm.write_goal_rad(np.full(6, np.nan))
        assert torque(emulator, [0] * 6) == [0] * 6
        with pytest.raises(ArmFaultError, match=r"fault \(ValueError: .*finite"):
            arm.write_goal_rad(np.zeros(6))  # latched: a limp arm takes no goals
        arm.enable_torque()
        assert torque(emulator, [1] * 6) == [1] * 6
        emulator.inject(4, silent=True)
        with pytest.raises(ServoCommError, match="servo 4: timeout"):
            arm.write_goal_rad(np.zeros(6))
        assert torque(emulator, [0, 0, 0, 1, 0, 0]) == [0, 0, 0, 1, 0, 0]  # servo 4 hears nothing


def test_enable_torque_holds_the_present_pose_instead_of_a_stale_goal(emulator):
    with SO101Arm(emulator.port, calibration(), max_relative_target_rad=0.1) as arm:
        arm.write_goal_rad(np.zeros(6))
        arm.torque_off(reason="test")
        assert torque(emulator, [0] * 6) == [0] * 6
        with pytest.raises(ArmFaultError, match="test"):
            arm.write_goal_rad(np.zeros(6))
        emulator.move_by_hand(2, 2048 + 400)  # the arm sags while limp
        sagged = emulator.get(2, Entry.Present_Position)
        assert abs(sagged - emulator.get(2, Entry.Goal_Position)) > 300
        arm.enable_torque()
        time.sleep(0.1)  # ten time constants: a stale goal would have been reached
        assert emulator.get(2, Entry.Present_Position) == sagged
        assert emulator.get(2, Entry.Goal_Position) == sagged
        assert arm.fault is None
        arm.write_goal_rad(arm.read_rad())


def test_unplugged_follower_raises_and_disconnect_still_works(emulator):
    arm = SO101Arm(emulator.port, calibration())
    arm.connect()
    emulator.unplug()
    with pytest.raises(ServoCommError, match="lost the serial port"):
        arm.read_rad()
    arm.disconnect()
    assert not arm.is_connected


def test_constructor_checks():
    with pytest.raises(ValueError, match="role"):
        SO101Arm("/dev/null", calibration(), "observer")
    with pytest.raises(ValueError, match="max_relative_target_rad"):
        SO101Arm("/dev/null", calibration(), max_relative_target_rad=0)
