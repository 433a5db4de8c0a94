"""Per-arm calibration: LeRobot's JSON format, ticks <-> radians, and the guided routine.

File format (one file per arm, LeRobot-compatible)::

    {"shoulder_pan": {"id": 1, "drive_mode": 0, "homing_offset": -1470,
                      "range_min": 758, "range_max": 3292}, ...}

``homing_offset`` is written to the servo's Homing_Offset register (so ``Present_Position =
(raw - homing_offset) mod 4096``); ``range_min``/``range_max`` are the Present_Position extremes
seen while sweeping each joint, and are also written as the servo's position limits.

Conversion to the embodiment's radians (``aloha_bench.embodiment``), with ``k = 2*pi/4096`` rad per
tick and ``s = +1`` for ``drive_mode`` 0, ``-1`` for ``drive_mode`` 1:

* arm joints: ``rad = s * (tick - (range_min + range_max) / 2) * k`` -- zero at mid-range, as in
  LeRobot's degree mode;
* gripper: ``rad = s * (tick - closed) * k`` with ``closed = range_min`` for ``drive_mode`` 0 and
  ``range_max`` for ``drive_mode`` 1 -- so 0 rad is the jaws touching (the sweep's closed stop) and
  the fully open stop is ``(range_max - range_min) * k``. The embodiment's negative "squeeze"
  angles lie beyond the closed stop, outside the calibrated range, so safety clamps them to 0 rad;
  a goal at the closed stop already squeezes whatever the jaws hold.
* wrist_roll turns without end stops, so like LeRobot it is calibrated as a full turn
  (range 0..4095): its zero is the middle pose (tick 2048), and ticks 0 and 4095 are -pi and +pi.

The guided routine sets ``drive_mode`` 0 for every arm joint (as LeRobot does) and picks the
gripper's so that opening is positive (the sweep ends with the jaws closed, which tells which end
of the range is closed). Set 1 in the file for an arm joint whose real direction is opposite to
the simulator's (see docs/real_robot.md).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aloha_bench import embodiment
from aloha_bench.robots import control_table as ct
from aloha_bench.robots.control_table import Entry
from aloha_bench.robots.feetech import FeetechBus

RAD_PER_TICK = 2.0 * math.pi / ct.RESOLUTION
# Present_Position the middle pose is shifted to by the homing offset (half a turn).
MIDDLE_TICK = ct.RESOLUTION // 2
# Largest homing offset the sign-magnitude register holds (bit 11 is the sign).
MAX_HOMING_OFFSET = (1 << Entry.Homing_Offset.sign_bit) - 1
# Joints without end stops, calibrated over the full turn (LeRobot's full_turn_motor).
FULL_TURN_JOINTS: tuple[str, ...] = ("wrist_roll",)
# A sweep narrower than this (about 18 degrees) means the joint was not moved.
MIN_SWEEP_TICKS = 200
_FIELDS = ("id", "drive_mode", "homing_offset", "range_min", "range_max")


class CalibrationError(ValueError):
    """A calibration file or a calibration run is invalid; the message says where and why."""


@dataclass(frozen=True)
class MotorCalibration:
    """Calibration of one servo (field names as in LeRobot's files)."""

    id: int
    drive_mode: int
    homing_offset: int
    range_min: int
    range_max: int


@dataclass(frozen=True)
class ArmCalibration:
    """Calibration of one arm: a :class:`MotorCalibration` per joint, in embodiment order."""

    motors: Mapping[str, MotorCalibration]

    def __post_init__(self) -> None:
        for joint in embodiment.ARM_JOINTS:
            if joint in self.motors:
                _validate_motor(joint, self.motors[joint], "calibration")
        if tuple(self.motors) != embodiment.ARM_JOINTS:
            raise CalibrationError(
                f"calibration: motors must be exactly {embodiment.ARM_JOINTS} in that order, "
                f"got {tuple(self.motors)}"
            )

    def to_json_dict(self) -> dict[str, dict[str, int]]:
        """The LeRobot-format dictionary."""
        return {joint: asdict(motor) for joint, motor in self.motors.items()}

    @classmethod
    def from_json_dict(cls, data: Any, source: str = "calibration") -> ArmCalibration:
        """Parse and validate a LeRobot-format dictionary; errors name ``source`` and the field.

        Raises:
            CalibrationError: a motor or field is missing, unknown or out of range.
        """
        if not isinstance(data, dict):
            raise CalibrationError(f"{source}: expected a JSON object of motors, got {data!r}")
        missing = [j for j in embodiment.ARM_JOINTS if j not in data]
        unknown = [j for j in data if j not in embodiment.ARM_JOINTS]
        if missing or unknown:
            raise CalibrationError(
                f"{source}: motors must be {embodiment.ARM_JOINTS}; missing {missing}, "
                f"unknown {unknown}. Re-run calibration for this arm"
            )
        motors = {}
        for joint in embodiment.ARM_JOINTS:
            entry = data[joint]
            if not isinstance(entry, dict):
                raise CalibrationError(f"{source}: {joint}: expected an object with {_FIELDS}")
            for field in _FIELDS:
                value = entry.get(field)
                if isinstance(value, bool) or not isinstance(value, int):
                    raise CalibrationError(
                        f"{source}: {joint}.{field}: expected an integer, got {value!r}"
                    )
            extra = sorted(set(entry) - set(_FIELDS))
            if extra:
                raise CalibrationError(f"{source}: {joint}: unknown fields {extra}")
            motor = MotorCalibration(**{f: entry[f] for f in _FIELDS})
            _validate_motor(joint, motor, source)
            motors[joint] = motor
        return cls(motors)


def _validate_motor(joint: str, motor: MotorCalibration, source: str) -> None:
    where = f"{source}: {joint}"
    expected_id = embodiment.MOTOR_IDS[joint]
    if motor.id != expected_id:
        raise CalibrationError(
            f"{where}.id: is {motor.id}, but {joint} is servo {expected_id} on the SO-101 "
            "(embodiment.MOTOR_IDS); fix the servo's id or the file"
        )
    if motor.drive_mode not in (0, 1):
        raise CalibrationError(f"{where}.drive_mode: must be 0 or 1, got {motor.drive_mode}")
    if abs(motor.homing_offset) > MAX_HOMING_OFFSET:
        raise CalibrationError(
            f"{where}.homing_offset: {motor.homing_offset} is outside the register's "
            f"+/-{MAX_HOMING_OFFSET} (sign-magnitude, bit 11). Offsets wrap every 4096 ticks: "
            "re-run calibration, which computes the wrapped value"
        )
    for field in ("range_min", "range_max"):
        value = getattr(motor, field)
        if not 0 <= value <= ct.MAX_POSITION:
            raise CalibrationError(f"{where}.{field}: {value} is outside 0..{ct.MAX_POSITION}")
    if motor.range_min >= motor.range_max:
        raise CalibrationError(
            f"{where}: range_min ({motor.range_min}) must be below range_max ({motor.range_max})"
        )


def load_calibration(path: str | Path) -> ArmCalibration:
    """Read and validate one arm's calibration file.

    Raises:
        CalibrationError: the file is missing, not JSON, or has an invalid field (named).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise CalibrationError(
            f"{path}: calibration file not found; calibrate this arm first (docs/real_robot.md)"
        ) from exc
    except json.JSONDecodeError as exc:
        raise CalibrationError(f"{path}: not valid JSON ({exc})") from exc
    return ArmCalibration.from_json_dict(data, source=str(path))


def save_calibration(calibration: ArmCalibration, path: str | Path) -> None:
    """Write one arm's calibration file (creating its folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(calibration.to_json_dict(), indent=4) + "\n")


# --- conversions (pure) ---


def _zero_tick_and_sign(calibration: ArmCalibration) -> tuple[np.ndarray, np.ndarray]:
    zero, sign = [], []
    for joint, motor in calibration.motors.items():
        s = 1.0 if motor.drive_mode == 0 else -1.0
        if joint == "gripper":
            zero.append(motor.range_min if s > 0 else motor.range_max)
        else:
            zero.append((motor.range_min + motor.range_max) / 2.0)
        sign.append(s)
    return np.array(zero), np.array(sign)


def ticks_to_rad(ticks: np.ndarray | list[int], calibration: ArmCalibration) -> np.ndarray:
    """Present_Position ticks of the six joints (embodiment order) -> radians."""
    zero, sign = _zero_tick_and_sign(calibration)
    return sign * (np.asarray(ticks, dtype=np.float64) - zero) * RAD_PER_TICK


def rad_to_ticks(angles_rad: np.ndarray | list[float], calibration: ArmCalibration) -> np.ndarray:
    """Radians of the six joints (embodiment order) -> Goal_Position ticks, rounded to 0..4095."""
    zero, sign = _zero_tick_and_sign(calibration)
    ticks = zero + sign * np.asarray(angles_rad, dtype=np.float64) / RAD_PER_TICK
    return np.clip(np.rint(ticks), 0, ct.MAX_POSITION).astype(np.int64)


def joint_limits_rad(calibration: ArmCalibration) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bound in radians of each joint's calibrated range (embodiment order)."""
    ends = np.array([[m.range_min, m.range_max] for m in calibration.motors.values()])
    in_rad = np.stack(
        [ticks_to_rad(ends[:, 0], calibration), ticks_to_rad(ends[:, 1], calibration)]
    )
    return in_rad.min(axis=0), in_rad.max(axis=0)


def middle_homing_offset(present_tick: int, current_offset: int = 0) -> int:
    """Homing offset that makes the joint's present pose read :data:`MIDDLE_TICK` (2048).

    The magnet's raw angle is ``(present_tick + current_offset) mod 4096`` and the new offset is
    ``raw - 2048``, which always lies in -2048..2047. Adding ``present - 2048`` to an old offset
    without wrapping (the usual wrist-roll failure) can leave the register's +/-2047 range.
    The one raw angle that would need -2048 (raw tick 0) gets -2047, reading 2047: one tick off.

    Raises:
        ValueError: ``present_tick`` or ``current_offset`` is outside its register's range.
    """
    if not 0 <= present_tick <= ct.MAX_POSITION:
        raise ValueError(f"present_tick {present_tick} is outside 0..{ct.MAX_POSITION}")
    if abs(current_offset) > MAX_HOMING_OFFSET:
        raise ValueError(
            f"current_offset {current_offset} is outside +/-{MAX_HOMING_OFFSET}; a servo cannot "
            "hold it, so it did not come from a Homing_Offset register"
        )
    raw = (present_tick + current_offset) % ct.RESOLUTION
    return max(raw - MIDDLE_TICK, -MAX_HOMING_OFFSET)


# --- guided calibration ---


def _write_limits(bus: FeetechBus, limits: Mapping[int, tuple[int, int, int]]) -> None:
    """Write (homing offset, min, max) per servo id; EPROM registers, so Lock must be 0."""
    for motor_id, (offset, low, high) in limits.items():
        bus.write(Entry.Homing_Offset, motor_id, offset)
        bus.write(Entry.Min_Position_Limit, motor_id, low)
        bus.write(Entry.Max_Position_Limit, motor_id, high)


def _sweep(
    bus: FeetechBus, ask: Callable[[str], str], prompt: str, sample_period_s: float
) -> tuple[dict[int, int], dict[int, int], dict[int, int]]:
    """Record each servo's min, max and final Present_Position until ``ask(prompt)`` returns."""
    answered = threading.Event()
    failed: list[BaseException] = []

    def wait_for_user() -> None:
        try:
            ask(prompt)
        except BaseException as exc:  # re-raised below: a closed stdin must not end the sweep
            failed.append(exc)
        finally:
            answered.set()

    # The prompt blocks (Enter on a terminal), so it waits in a thread while this one samples.
    threading.Thread(target=wait_for_user, name="calibration-prompt", daemon=True).start()
    first = bus.sync_read(Entry.Present_Position)
    low, high, last = dict(first), dict(first), dict(first)
    while True:
        done = answered.is_set()
        for motor_id, tick in bus.sync_read(Entry.Present_Position).items():
            joint = embodiment.ARM_JOINTS[motor_id - 1]
            if joint not in FULL_TURN_JOINTS and abs(tick - last[motor_id]) > MIDDLE_TICK:
                raise CalibrationError(
                    f"{joint} jumped from tick {last[motor_id]} to {tick}: it crossed the "
                    "encoder's 0/4095 seam, so its middle pose was more than a half turn off. "
                    "Restart calibration and hold the arm at mid-range when asked"
                )
            last[motor_id] = tick
            low[motor_id] = min(low[motor_id], tick)
            high[motor_id] = max(high[motor_id], tick)
        if done:
            if failed:
                raise failed[0]
            return low, high, last
        time.sleep(sample_period_s)


def _answers_required(ask: Callable[[str], str]) -> Callable[[str], str]:
    """``ask`` with end of input (a closed stdin) turned into a CalibrationError that says so."""

    def checked(prompt: str) -> str:
        try:
            return ask(prompt)
        except EOFError:
            raise CalibrationError(
                "calibration waits for Enter while you move the arm, but its input is closed "
                "(stdin is not a terminal); run `aloha-bench calibrate` in an interactive "
                "terminal. No calibration file was written"
            ) from None

    return checked


def calibrate_arm(
    bus: FeetechBus,
    path: str | Path,
    ask: Callable[[str], str] = input,
    say: Callable[[str], None] = print,
    sample_period_s: float = 0.01,
) -> ArmCalibration:
    """Guided calibration of one connected arm; writes the servos and saves ``path``.

    Steps: torque off and unlock EPROM; clear homing offsets and limits; the user holds the arm
    in its middle pose (every joint halfway through its range) and the offsets that put that
    pose at tick 2048 are written; the user then sweeps every joint but wrist_roll through its
    full range, ending with the gripper closed, while positions are sampled; the ranges become
    the servos' position limits and the file.

    Args:
        bus: connected bus with servos 1..6 of one arm.
        path: where to save the JSON file.
        ask: shows a prompt and returns when the user is ready (``input`` on a terminal).
        say: shows a message (``print`` on a terminal).
        sample_period_s: pause between position samples during the sweep.

    Raises:
        CalibrationError: a joint was not swept, crossed the encoder seam, or ``ask`` found its
            input closed (EOF), e.g. stdin is not a terminal.
    """
    ask = _answers_required(ask)
    ids = {joint: embodiment.MOTOR_IDS[joint] for joint in embodiment.ARM_JOINTS}
    bus.sync_write(Entry.Torque_Enable, dict.fromkeys(ids.values(), 0))
    bus.sync_write(Entry.Lock, dict.fromkeys(ids.values(), 0))
    _write_limits(bus, {i: (0, 0, ct.MAX_POSITION) for i in ids.values()})

    ask(
        "Move the arm to its middle pose: every joint halfway through its range, gripper half "
        "open. Press Enter when it is there."
    )
    present = bus.sync_read(Entry.Present_Position)
    offsets = {joint: middle_homing_offset(present[i]) for joint, i in ids.items()}
    for joint, motor_id in ids.items():
        bus.write(Entry.Homing_Offset, motor_id, offsets[joint])
    say(f"Homing offsets written: {offsets}")

    swept = [j for j in embodiment.ARM_JOINTS if j not in FULL_TURN_JOINTS]
    low, high, final = _sweep(
        bus,
        ask,
        f"Move each of {', '.join(swept)} slowly through its whole range, end stop to end stop, "
        "and finish with the gripper fully closed. Press Enter when done.",
        sample_period_s,
    )
    motors = {}
    for joint, motor_id in ids.items():
        if joint in FULL_TURN_JOINTS:
            range_min, range_max = 0, ct.MAX_POSITION
        else:
            range_min, range_max = low[motor_id], high[motor_id]
            if range_max - range_min < MIN_SWEEP_TICKS:
                raise CalibrationError(
                    f"{joint} moved only {range_max - range_min} ticks during the sweep (need at "
                    f"least {MIN_SWEEP_TICKS}); restart calibration and sweep it end to end"
                )
        drive_mode = 0
        if joint == "gripper" and range_max - final[motor_id] < final[motor_id] - range_min:
            # The sweep ended closed: a closed end at range_max means ticks fall as the jaws open.
            drive_mode = 1
        motors[joint] = MotorCalibration(motor_id, drive_mode, offsets[joint], range_min, range_max)
    calibration = ArmCalibration(motors)
    _write_limits(bus, {m.id: (m.homing_offset, m.range_min, m.range_max) for m in motors.values()})
    for motor_id in ids.values():
        bus.write(Entry.Lock, motor_id, 1)
    save_calibration(calibration, path)
    say(f"Calibration saved to {path}")
    return calibration
