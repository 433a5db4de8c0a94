"""Calibration files, tick/radian conversions, homing offsets and the guided routine."""

import json
import math
import time

import numpy as np
import pytest

from aloha_bench import embodiment
from aloha_bench.robots import calibration as cal
from aloha_bench.robots.control_table import Entry
from aloha_bench.robots.emulator import ServoEmulator
from aloha_bench.robots.feetech import FeetechBus

K = 2 * math.pi / 4096


def make_calibration(gripper_drive_mode=0, **overrides):
    motors = {}
    for joint in embodiment.ARM_JOINTS:
        low, high = (0, 4095) if joint == "wrist_roll" else (1000, 3000)
        if joint == "gripper":
            low, high = 1500, 2700
        fields = dict(
            id=embodiment.MOTOR_IDS[joint],
            drive_mode=gripper_drive_mode if joint == "gripper" else 0,
            homing_offset=0,
            range_min=low,
            range_max=high,
        )
        fields.update(overrides.get(joint, {}))
        motors[joint] = cal.MotorCalibration(**fields)
    return cal.ArmCalibration(motors)


def test_arm_joints_zero_at_mid_range():
    calib = make_calibration()
    rad = cal.ticks_to_rad([2000, 2000, 1000, 3000, 2048, 1500], calib)
    np.testing.assert_allclose(rad[:4], [0.0, 0.0, -1000 * K, 1000 * K])
    assert rad[4] == pytest.approx(0.5 * K)  # full-turn wrist roll: mid 2047.5


def test_gripper_zero_is_closed_and_opening_is_positive():
    calib = make_calibration(gripper_drive_mode=0)
    assert cal.ticks_to_rad([2000] * 5 + [1500], calib)[5] == 0.0
    assert cal.ticks_to_rad([2000] * 5 + [2700], calib)[5] == pytest.approx(1200 * K)
    # drive_mode 1: ticks fall as the jaws open, so the closed end is range_max.
    flipped = make_calibration(gripper_drive_mode=1)
    assert cal.ticks_to_rad([2000] * 5 + [2700], flipped)[5] == 0.0
    assert cal.ticks_to_rad([2000] * 5 + [1500], flipped)[5] == pytest.approx(1200 * K)
    low, high = cal.joint_limits_rad(flipped)
    assert (low[5], high[5]) == (0.0, pytest.approx(1200 * K))


def test_round_trip_ticks_radians():
    calib = make_calibration(shoulder_lift={"drive_mode": 1})
    ticks = np.array([1000, 1234, 2999, 2048, 0, 2100])
    np.testing.assert_array_equal(cal.rad_to_ticks(cal.ticks_to_rad(ticks, calib), calib), ticks)
    rad = cal.ticks_to_rad(ticks, calib)
    assert rad[1] == pytest.approx(-(1234 - 2000) * K)  # drive_mode 1 flips the sign
    # Goals beyond a full turn clip to the encoder range instead of wrapping.
    assert cal.rad_to_ticks([0, 0, 0, 0, 10.0, 0], calib)[4] == 4095


def test_wrist_roll_wraps_at_plus_minus_pi():
    calib = make_calibration()
    rad = cal.ticks_to_rad([2000, 2000, 2000, 2000, 4095, 1500], calib)[4]
    assert rad == pytest.approx(math.pi - 0.5 * K)
    assert cal.ticks_to_rad([2000, 2000, 2000, 2000, 0, 1500], calib)[4] == pytest.approx(
        -math.pi + 0.5 * K
    )
    # The embodiment's wrist-roll range fits inside one turn, away from the seam.
    low, high = embodiment.ARM_LIMITS_RAD["wrist_roll"]
    ticks = (
        cal.rad_to_ticks([0, 0, 0, 0, low, 0], calib)[4],
        cal.rad_to_ticks([0, 0, 0, 0, high, 0], calib)[4],
    )
    assert 0 < ticks[0] < ticks[1] < 4095


@pytest.mark.parametrize(
    ("present", "current", "expected"),
    [
        (2048, 0, 0),
        (3000, 0, 952),
        (100, 0, -1948),
        (0, 0, -2047),  # raw 0 would need -2048: one tick off instead
        # Read through an old offset: raw = 3500 + 1500 - 4096 = 904; naive 1500 + 1452 = 2952.
        (3500, 1500, 904 - 2048),
        (10, -2000, (10 - 2000) % 4096 - 2048),
    ],
)
def test_middle_homing_offset_wraps_into_register_range(present, current, expected):
    offset = cal.middle_homing_offset(present, current)
    assert offset == expected
    assert abs(offset) <= 2047
    raw = (present + current) % 4096
    assert (raw - offset) % 4096 in (2048, 2047)


def test_middle_homing_offset_rejects_impossible_inputs():
    with pytest.raises(ValueError, match="outside 0..4095"):
        cal.middle_homing_offset(5000)
    with pytest.raises(ValueError, match="2047"):
        cal.middle_homing_offset(10, 3000)


def test_json_round_trip_in_lerobot_format(tmp_path):
    calib = make_calibration(shoulder_pan={"homing_offset": -1470})
    path = tmp_path / "arm" / "left_follower.json"
    cal.save_calibration(calib, path)
    data = json.loads(path.read_text())
    assert data["shoulder_pan"] == {
        "id": 1,
        "drive_mode": 0,
        "homing_offset": -1470,
        "range_min": 1000,
        "range_max": 3000,
    }
    assert cal.load_calibration(path) == calib


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["elbow_flex"].update(homing_offset=2048), r"elbow_flex\.homing_offset.*2047"),
        (lambda d: d["gripper"].update(range_min=3000), r"gripper: range_min \(3000\)"),
        (lambda d: d["wrist_flex"].update(range_max=5000), r"wrist_flex\.range_max"),
        (lambda d: d["wrist_flex"].update(id=9), r"wrist_flex\.id.*servo 4"),
        (lambda d: d["shoulder_pan"].update(drive_mode=2), r"shoulder_pan\.drive_mode"),
        (lambda d: d["shoulder_pan"].update(range_min="1"), r"shoulder_pan\.range_min.*integer"),
        (lambda d: d.pop("gripper"), r"missing \['gripper'\]"),
        (lambda d: d["gripper"].update(extra=1), r"gripper: unknown fields \['extra'\]"),
    ],
)
def test_invalid_files_name_file_and_field(tmp_path, mutate, message):
    data = make_calibration().to_json_dict()
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(cal.CalibrationError, match=message) as info:
        cal.load_calibration(path)
    assert str(path) in str(info.value)


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(cal.CalibrationError, match="not found; calibrate"):
        cal.load_calibration(tmp_path / "nope.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(cal.CalibrationError, match="not valid JSON"):
        cal.load_calibration(tmp_path / "broken.json")


class ScriptedUser:
    """Plays the person at the arm: answers prompts by moving the emulated joints."""

    def __init__(self, emulator, middle_raw, sweeps, gripper_closed_raw):
        self.emulator = emulator
        self.middle_raw = middle_raw
        self.sweeps = sweeps
        self.gripper_closed_raw = gripper_closed_raw
        self.prompts = []

    def ask(self, prompt):
        self.prompts.append(prompt)
        if "middle pose" in prompt:
            for motor_id, raw in self.middle_raw.items():
                self.emulator.move_by_hand(motor_id, raw)
            return ""
        for motor_id, positions in self.sweeps.items():
            for raw in positions:
                self.emulator.move_by_hand(motor_id, raw)
                time.sleep(0.02)  # let the sampler see it
        self.emulator.move_by_hand(6, self.gripper_closed_raw)
        time.sleep(0.02)
        return ""


def run_calibration(tmp_path, sweeps, gripper_closed_raw, middle_raw=None):
    # Stale offsets and limits from an earlier calibration, which the routine must clear.
    middle_raw = middle_raw or {1: 1000, 2: 3500, 3: 30, 4: 2048, 5: 4000, 6: 2500}
    with ServoEmulator(ids=range(1, 7)) as emu:
        for motor_id in range(1, 7):
            emu.servo(motor_id).write_memory(Entry.Homing_Offset.address, bytes([0xD0, 0x07]))
        user = ScriptedUser(emu, middle_raw, sweeps, gripper_closed_raw)
        with FeetechBus(emu.port, range(1, 7)) as bus:
            calib = cal.calibrate_arm(
                bus, tmp_path / "arm.json", ask=user.ask, say=lambda _: None, sample_period_s=0.002
            )
        registers = {
            i: (
                emu.get(i, Entry.Homing_Offset),
                emu.get(i, Entry.Min_Position_Limit),
                emu.get(i, Entry.Max_Position_Limit),
                emu.get(i, Entry.Lock),
            )
            for i in range(1, 7)
        }
    return calib, registers, user


def test_guided_calibration_with_the_emulator(tmp_path):
    middle = {1: 1000, 2: 3500, 3: 30, 4: 2048, 5: 4000, 6: 2500}
    # Each sweep is +/- some ticks around the middle, in raw (magnet) ticks.
    sweeps = {
        1: [1000 - 900, 1000 + 800],
        2: [3500 - 700, 3500 + 500],
        3: [30 - 1000, 30 + 1000],
        4: [2048 - 1000, 2048 + 1000],
        6: [2500 - 300, 2500 + 900],
    }
    calib, registers, user = run_calibration(
        tmp_path, sweeps, gripper_closed_raw=2200, middle_raw=middle
    )
    assert len(user.prompts) == 2
    motors = calib.motors
    assert motors["shoulder_pan"].homing_offset == 1000 - 2048
    assert motors["elbow_flex"].homing_offset == 30 - 2048  # raw 30: offset -2018
    assert (motors["shoulder_pan"].range_min, motors["shoulder_pan"].range_max) == (1148, 2848)
    assert (motors["elbow_flex"].range_min, motors["elbow_flex"].range_max) == (1048, 3048)
    assert (motors["wrist_roll"].range_min, motors["wrist_roll"].range_max) == (0, 4095)
    assert (motors["gripper"].range_min, motors["gripper"].drive_mode) == (1748, 0)
    assert all(m.drive_mode == 0 for j, m in motors.items() if j != "gripper")
    # Written to the servos too, and EPROM locked again.
    assert registers[3] == (-2018, 1048, 3048, 1)
    assert cal.load_calibration(tmp_path / "arm.json") == calib


def test_guided_calibration_detects_gripper_direction(tmp_path):
    sweeps = {i: [2048 - 500, 2048 + 500] for i in (1, 2, 3, 4, 6)}
    calib, _, _ = run_calibration(
        tmp_path,
        sweeps,
        gripper_closed_raw=2048 + 500,
        middle_raw={i: 2048 for i in range(1, 7)},
    )
    assert calib.motors["gripper"].drive_mode == 1
    assert cal.ticks_to_rad([2048] * 5 + [2548], calib)[5] == 0.0


def test_guided_calibration_rejects_an_unswept_joint(tmp_path):
    sweeps = {i: [2048 - 500, 2048 + 500] for i in (1, 2, 3, 6)}  # wrist_flex never moved
    with pytest.raises(cal.CalibrationError, match="wrist_flex moved only 0 ticks"):
        run_calibration(tmp_path, sweeps, 1548, middle_raw={i: 2048 for i in range(1, 7)})


def test_sweep_across_the_seam_is_explained(tmp_path):
    sweeps = {1: [2048 + 1500, 2048 + 2100]}  # passes the 4095/0 seam of the offset frame
    with pytest.raises(cal.CalibrationError, match="shoulder_pan jumped .* seam"):
        run_calibration(tmp_path, sweeps, 1548, middle_raw={i: 2048 for i in range(1, 7)})
