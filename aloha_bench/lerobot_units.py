"""Joint units of LeRobot's SO-101 driver <-> this embodiment's radians: the one function pair.

LeRobot's Feetech bus (``lerobot/motors/motors_bus.py``, ``MotorsBus._normalize``, LeRobot 0.6)
reports each SO-101 motor in one of three modes, from the servo's Present_Position tick ``t`` and
the arm's calibration (``range_min``, ``range_max``, ``drive_mode``):

* ``DEGREES`` (arm joints with ``use_degrees=True``): ``(t - mid) * 360 / 4095``, mid =
  (range_min + range_max) / 2; the drive mode is not applied.
* ``RANGE_M100_100`` (arm joints, LeRobot's default): ``(t - range_min) / (range_max -
  range_min) * 200 - 100``, negated for drive_mode 1.
* ``RANGE_0_100`` (the gripper, always): ``(t - range_min) / (range_max - range_min) * 100``,
  ``100 -`` that for drive_mode 1.

This package's radians come from the same ticks (``robots/calibration.py``): ``s * (t - mid) *
2 pi / 4096`` for arm joints and ``s * (t - closed) * 2 pi / 4096`` for the gripper (0 = jaws
touching), ``s = -1`` for drive_mode 1. Solving one for the other per joint gives, with ``k = 2
pi / 4096`` rad per tick and ``w = range_max - range_min``:

* degrees:  ``rad = s * deg * 4095 / 360 * k``  (LeRobot's "degree" is 360/4095 of a tick turn,
  so 1 LeRobot degree is 4095/4096 of a true degree; the sign ``s`` is +1 without a calibration,
  as every LeRobot SO-101 calibration has drive_mode 0);
* range -100..100:  ``rad = v / 200 * w * k``  (the drive mode cancels);
* gripper 0..100:  ``rad = p / 100 * w * k``  (the drive mode cancels: 0 is the closed stop in
  both conventions).

Both range modes need ``w``: the calibration is the only source of it, so converting them
without one is refused, naming the feature. Values clamped by LeRobot to the range are not
un-clamped (nothing can recover them).

Only the standard library, numpy and ``embodiment`` are imported here (layer L0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from aloha_bench import embodiment

RAD_PER_TICK = 2.0 * math.pi / embodiment.SERVO_TICKS_PER_TURN
# LeRobot's degree mode divides a turn into (resolution - 1) = 4095 steps of 360 degrees.
LEROBOT_TICKS_PER_DEGREE = (embodiment.SERVO_TICKS_PER_TURN - 1) / 360.0
# Arm-joint modes of LeRobot's SO-101 (``SOFollowerConfig.use_degrees`` picks one) and ours.
UNITS = ("radians", "degrees", "range")
# LeRobot names a motor feature "<motor>.pos"; the bimanual robot prefixes "left_"/"right_".
POSITION_SUFFIX = ".pos"
LEROBOT_JOINT_NAMES: tuple[str, ...] = tuple(
    f"{n}{POSITION_SUFFIX}" for n in embodiment.STATE_NAMES
)


class UnitsError(ValueError):
    """A conversion cannot be made (unknown mode, or a calibration it needs is missing)."""


@dataclass(frozen=True)
class JointRanges:
    """Calibrated tick range and direction of the 12 joints (embodiment order).

    Built from the two arms' calibration files (LeRobot's format, ``robots/calibration.py``).

    Attributes:
        range_min: (12,) ticks.
        range_max: (12,) ticks.
        drive_mode: (12,) 0 or 1.
    """

    range_min: np.ndarray
    range_max: np.ndarray
    drive_mode: np.ndarray

    @classmethod
    def from_arms(cls, arms: Mapping[str, Mapping[str, Mapping[str, int]]]) -> JointRanges:
        """From ``{"left": {joint: {"range_min", "range_max", "drive_mode"}}, "right": ...}``."""
        rows = [arms[arm][joint] for arm in embodiment.ARMS for joint in embodiment.ARM_JOINTS]
        return cls(
            np.array([r["range_min"] for r in rows], dtype=np.float64),
            np.array([r["range_max"] for r in rows], dtype=np.float64),
            np.array([r["drive_mode"] for r in rows], dtype=np.int64),
        )


def rad_per_unit(
    units: str, ranges: JointRanges | None = None, names: Sequence[str] = LEROBOT_JOINT_NAMES
) -> np.ndarray:
    """Radians per LeRobot unit of each of the 12 joints, (12,) float64.

    Every conversion here is linear with no offset (both sides put zero at the same tick), so
    normalization statistics convert with the same factors: mean / f, std / abs(f).

    Raises:
        UnitsError: as :func:`lerobot_to_rad`.
    """
    if units not in UNITS:
        raise UnitsError(f"unknown units {units!r}; choose one of {UNITS}")
    gripper = np.zeros(embodiment.STATE_DIM, dtype=bool)
    gripper[list(embodiment.GRIPPER_INDICES)] = True
    if units == "radians":
        return np.ones(embodiment.STATE_DIM)
    needs_range = gripper if units == "degrees" else np.ones(embodiment.STATE_DIM, dtype=bool)
    if ranges is None:
        missing = [names[i] for i in np.flatnonzero(needs_range)]
        kind = "gripper 0..100" if units == "degrees" else "-100..100 range and gripper 0..100"
        raise UnitsError(
            f"{missing[0]} (and {len(missing) - 1} more) is in LeRobot's {kind} units, which "
            "only the arms' calibration turns into angles; pass --calibration DIR with the "
            "left and right calibration JSON files the data was recorded with"
        )
    width = ranges.range_max - ranges.range_min  # (12,) ticks
    if units == "degrees":
        sign = np.where(ranges.drive_mode == 1, -1.0, 1.0)
        factor = sign * RAD_PER_TICK * LEROBOT_TICKS_PER_DEGREE
    else:
        factor = width / 200.0 * RAD_PER_TICK
    return np.where(gripper, width / 100.0 * RAD_PER_TICK, factor)


def lerobot_to_rad(
    values: np.ndarray,
    units: str,
    ranges: JointRanges | None = None,
    names: Sequence[str] = LEROBOT_JOINT_NAMES,
) -> np.ndarray:
    """LeRobot SO-101 joint values (..., 12) -> this embodiment's radians (..., 12), float64.

    Args:
        values: joint values in embodiment order (left arm then right).
        units: ``"degrees"`` (LeRobot's ``use_degrees=True``), ``"range"`` (its default
            -100..100) or ``"radians"`` (already ours: returned unchanged). The gripper is 0..100
            in both LeRobot modes.
        ranges: the arms' calibration; needed by the 0..100 and -100..100 values.
        names: feature names of the 12 values, for error messages.

    Raises:
        UnitsError: ``units`` is unknown, or a value needs ``ranges`` and none was given.
    """
    values = np.asarray(values, dtype=np.float64)
    return values * rad_per_unit(units, ranges, names)


def rad_to_lerobot(
    angles_rad: np.ndarray,
    units: str,
    ranges: JointRanges | None = None,
    names: Sequence[str] = LEROBOT_JOINT_NAMES,
) -> np.ndarray:
    """Inverse of :func:`lerobot_to_rad`: radians (..., 12) -> LeRobot units (..., 12), float64.

    Raises:
        UnitsError: as :func:`lerobot_to_rad`.
    """
    return np.asarray(angles_rad, dtype=np.float64) / rad_per_unit(units, ranges, names)
