"""Safety clamps, torque limit and the deadline watchdog."""

import numpy as np
import pytest

from aloha_bench.robots import safety


def test_clamp_to_limits():
    out = safety.clamp_to_limits(np.array([-2.0, 0.5, 3.0]), np.full(3, -1.0), np.full(3, 1.0))
    np.testing.assert_array_equal(out, [-1.0, 0.5, 1.0])


def test_limit_relative_step_caps_around_present():
    goal = np.array([1.0, -1.0, 0.05])
    present = np.zeros(3)
    np.testing.assert_allclose(safety.limit_relative_step(goal, present, 0.1), [0.1, -0.1, 0.05])
    np.testing.assert_allclose(
        safety.limit_relative_step(goal, present, np.array([0.5, 0.2, 0.01])), [0.5, -0.2, 0.01]
    )
    np.testing.assert_array_equal(safety.limit_relative_step(goal, present, None), goal)
    with pytest.raises(ValueError, match="positive"):
        safety.limit_relative_step(goal, present, 0.0)


def test_safe_goal_clamps_range_then_step():
    low, high = np.full(2, -1.0), np.full(2, 1.0)
    # Range first: 5 -> 1; then the step cap around a present position of 0.9 leaves it at 1.
    np.testing.assert_allclose(safety.safe_goal([5.0, -5.0], [0.9, 0.0], low, high, 0.2), [1, -0.2])
    np.testing.assert_allclose(safety.safe_goal([5.0, -5.0], None, low, high, None), [1, -1])
    # A joint pushed outside its range by hand comes back gradually.
    np.testing.assert_allclose(safety.safe_goal([0.0, 0.0], [1.5, 0], low, high, 0.2), [1.3, 0])
    with pytest.raises(ValueError, match="finite"):
        safety.safe_goal([np.nan, 0.0], [0, 0], low, high, 0.2)
    with pytest.raises(ValueError, match="present"):
        safety.safe_goal([0.0, 0.0], None, low, high, 0.2)


def test_gripper_torque_limit_register():
    assert safety.torque_limit_register() == 500
    assert safety.torque_limit_register(1.0) == 1000
    with pytest.raises(ValueError):
        safety.torque_limit_register(0.0)


def test_watchdog_schedule_and_misses():
    dog = safety.DeadlineWatchdog(0.02)
    dog.start(100.0)
    tick = dog.end_tick(100.005)
    assert tick.sleep_s == pytest.approx(0.015) and tick.overrun_s == 0
    # Deadlines stay on the 20 ms grid when on time.
    assert dog.end_tick(100.030).sleep_s == pytest.approx(0.010)
    late = dog.end_tick(100.070)  # deadline was 100.060
    assert late.overrun_s == pytest.approx(0.010) and late.sleep_s == 0
    assert dog.missed == 1
    # After a miss the schedule restarts from now instead of bursting to catch up.
    assert dog.end_tick(100.075).sleep_s == pytest.approx(0.015)
    assert dog.consecutive_missed == 0


def test_watchdog_raises_after_consecutive_misses():
    dog = safety.DeadlineWatchdog(0.02, max_consecutive_misses=2)
    dog.start(0.0)
    dog.end_tick(1.0)
    dog.end_tick(2.0)
    with pytest.raises(safety.DeadlineMissedError, match="3 control deadlines in a row"):
        dog.end_tick(3.0)
    with pytest.raises(RuntimeError, match="start"):
        safety.DeadlineWatchdog(0.02).end_tick(0.0)
