"""Safety rules for commanding real arms, as pure functions (plus one small clock-driven class).

Every follower goal passes :func:`safe_goal`: first the calibrated joint range, then a cap on how
far the goal may lead the present position in one control tick (LeRobot's
``max_relative_target``), so a bad action, a policy glitch or a dropped frame cannot slam a joint.
:class:`DeadlineWatchdog` keeps the control loop's schedule and flags missed deadlines, which on
hardware show up as jerky motion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from aloha_bench import embodiment

# Max_Torque_Limit / Torque_Limit are in 0.1 % of stall torque (1000 = 100 %).
TORQUE_LIMIT_FULL_SCALE = 1000


class DeadlineMissedError(RuntimeError):
    """The control loop missed too many consecutive deadlines."""


def clamp_to_limits(goal: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Clip each joint goal into ``[low, high]`` (the calibrated range)."""
    return np.clip(np.asarray(goal, dtype=np.float64), low, high)


def limit_relative_step(
    goal: np.ndarray, present: np.ndarray, max_step: float | np.ndarray | None
) -> np.ndarray:
    """Keep each goal within ``present +/- max_step`` (LeRobot's ``max_relative_target``).

    Args:
        goal: requested joint goals.
        present: joint positions just read from the servos (same units as ``goal``).
        max_step: largest allowed goal-to-present distance per tick, one value or one per joint;
            ``None`` disables the cap.
    """
    goal = np.asarray(goal, dtype=np.float64)
    if max_step is None:
        return goal
    max_step = np.asarray(max_step, dtype=np.float64)
    if not np.all((max_step > 0) & np.isfinite(max_step)):
        raise ValueError(f"max_step must be positive, got {max_step}")
    return np.clip(goal, present - max_step, present + max_step)


def safe_goal(
    goal: np.ndarray,
    present: np.ndarray | None,
    low: np.ndarray,
    high: np.ndarray,
    max_step: float | np.ndarray | None,
) -> np.ndarray:
    """The goal actually sent: clamped to the joint range, then to ``present +/- max_step``.

    A present position outside the range (a joint pushed there by hand) is allowed to return
    gradually: the step cap applies around wherever the joint really is.

    Args:
        goal: requested joint goals.
        present: joint positions just read; only needed when ``max_step`` is set.
        low: lower joint limits.
        high: upper joint limits.
        max_step: see :func:`limit_relative_step`.

    Raises:
        ValueError: ``goal`` contains NaN or infinity, or ``present`` is missing.
    """
    goal = np.asarray(goal, dtype=np.float64)
    if not np.all(np.isfinite(goal)):
        raise ValueError(f"joint goal must be finite, got {goal}")
    goal = clamp_to_limits(goal, low, high)
    if max_step is None:
        return goal
    if present is None:
        raise ValueError("a step cap (max_step) needs the present joint positions")
    return limit_relative_step(goal, present, max_step)


def torque_limit_register(fraction: float = embodiment.GRIPPER_TORQUE_FRACTION) -> int:
    """Value for Max_Torque_Limit / Torque_Limit giving ``fraction`` of stall torque.

    The default (0.5 -> 500) is LeRobot's gripper setting, which keeps a squeezing gripper from
    overheating.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"torque fraction must be in (0, 1], got {fraction}")
    return round(fraction * TORQUE_LIMIT_FULL_SCALE)


@dataclass(frozen=True)
class TickReport:
    """Outcome of one control tick.

    Attributes:
        sleep_s: how long to wait until the tick's deadline (0 when it was missed).
        overrun_s: how late the work finished past the deadline (0 when on time).
    """

    sleep_s: float
    overrun_s: float


class DeadlineWatchdog:
    """Fixed-rate schedule that detects missed control deadlines.

    Call :meth:`start` once, then :meth:`end_tick` when a tick's work is done; sleep for the
    returned ``sleep_s``. After a miss the schedule restarts from now instead of bursting
    commands to catch up, since a burst of goals is exactly the jerk it should prevent. Time
    is passed in, so the class is deterministic under test.

    Args:
        period_s: control period (``embodiment.CONTROL_DT_S`` at 50 Hz).
        max_consecutive_misses: raise :class:`DeadlineMissedError` when more deadlines than this
            are missed in a row; ``None`` only counts them.
    """

    def __init__(self, period_s: float, max_consecutive_misses: int | None = None) -> None:
        if not (period_s > 0 and math.isfinite(period_s)):
            raise ValueError(f"period_s must be positive, got {period_s}")
        self.period_s = period_s
        self.max_consecutive_misses = max_consecutive_misses
        self.missed = 0
        self.consecutive_missed = 0
        self._deadline_s: float | None = None

    def start(self, now_s: float) -> None:
        """Begin the schedule: the first deadline is one period after ``now_s``."""
        self._deadline_s = now_s + self.period_s
        self.consecutive_missed = 0

    def end_tick(self, now_s: float) -> TickReport:
        """Report on the tick whose work finished at ``now_s`` and schedule the next one.

        Raises:
            DeadlineMissedError: more than ``max_consecutive_misses`` deadlines in a row missed.
        """
        if self._deadline_s is None:
            raise RuntimeError("call start() before end_tick()")
        deadline_s = self._deadline_s
        if now_s <= deadline_s:
            self._deadline_s = deadline_s + self.period_s
            self.consecutive_missed = 0
            return TickReport(sleep_s=deadline_s - now_s, overrun_s=0.0)
        self.missed += 1
        self.consecutive_missed += 1
        self._deadline_s = now_s + self.period_s
        if (
            self.max_consecutive_misses is not None
            and self.consecutive_missed > self.max_consecutive_misses
        ):
            raise DeadlineMissedError(
                f"missed {self.consecutive_missed} control deadlines in a row (period "
                f"{self.period_s * 1e3:.1f} ms, last one late by {(now_s - deadline_s) * 1e3:.1f} "
                "ms): the policy or the I/O is too slow for this rate"
            )
        return TickReport(sleep_s=0.0, overrun_s=now_s - deadline_s)
