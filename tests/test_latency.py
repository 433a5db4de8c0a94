"""Timing and servo imperfections: the pure components, then their effect inside the env."""

import math

import numpy as np
import pytest

from aloha_bench import embodiment, keys
from aloha_bench.envs.aloha_env import AlohaEnv
from aloha_bench.envs.latency import (
    TICK_RAD,
    CameraClock,
    DeadbandBacklash,
    DelayLine,
    LatencyConfig,
    frame_schedule,
    quantize_rad,
)

DT = embodiment.CONTROL_DT_S
TOP = keys.image_key("top")
HOME = embodiment.HOME_STATE_RAD


def test_levels_and_validation():
    assert not LatencyConfig.from_level("none").active
    real = LatencyConfig.from_level("real")
    assert real.camera_fps == 30.0 and real.quantize and real.deadband_ticks == 1.0
    assert real.replace(backlash_ticks=0.0).backlash_ticks == 0.0
    with pytest.raises(ValueError, match="unknown latency level"):
        LatencyConfig.from_level("laggy")
    with pytest.raises(ValueError, match="action_delay_steps"):
        LatencyConfig(action_delay_steps=1.5)
    with pytest.raises(ValueError, match="camera_fps"):
        LatencyConfig(camera_fps=0.0)


def test_30fps_camera_against_50hz_control_repeats_frames():
    schedule = frame_schedule(10, DT, 30.0, 0.0)
    np.testing.assert_array_equal(schedule, [0, 0, 1, 1, 3, 5, 5, 6, 6, 8])
    one_second = frame_schedule(50, DT, 30.0, 0.0)
    assert len(np.unique(one_second)) == 30  # 30 new frames per 50 control steps
    # Without a camera rate or latency every step gets its own frame.
    np.testing.assert_array_equal(frame_schedule(5, DT, None, 0.0), np.arange(5))


def test_camera_latency_delays_every_frame():
    latency_s = 0.06
    clock = CameraClock(DT, 30.0, latency_s)
    for step in range(10, 200):
        source = clock.source_step(step)
        age_s = (step - source) * DT
        # At least the latency old; at most latency + one frame period + one control period.
        assert latency_s - 1e-9 <= age_s <= latency_s + 1 / 30 + DT + 1e-9
        assert clock.is_capture_step(source)
    # Before the first delayed frame arrives, the reset frame is shown.
    assert [clock.source_step(t) for t in range(4)] == [0, 0, 0, 0]
    # Latency without a camera rate: a plain delay of whole steps.
    np.testing.assert_array_equal(frame_schedule(6, DT, None, 0.06), [0, 0, 0, 0, 1, 2])


def test_delay_line():
    line = DelayLine(2)
    line.reset(np.array([0.0]))
    outputs = [line(np.array([float(v)]))[0] for v in (1, 2, 3, 4)]
    assert outputs == [0.0, 0.0, 1.0, 2.0]
    passthrough = DelayLine(0)
    value = np.array([5.0])
    assert passthrough(value) is value


def test_deadband_ignores_small_goal_changes():
    servo = DeadbandBacklash(deadband_rad=1.0, backlash_rad=0.0)
    servo.reset(np.zeros(2))
    np.testing.assert_array_equal(servo(np.array([0.9, -0.5])), [0.0, 0.0])
    # Creeping goals are ignored until they leave the dead zone of the held goal.
    np.testing.assert_array_equal(servo(np.array([1.1, -0.9])), [1.1, 0.0])
    np.testing.assert_array_equal(servo(np.array([1.5, -1.2])), [1.1, -1.2])


def test_backlash_is_a_dead_zone_on_reversal():
    servo = DeadbandBacklash(deadband_rad=0.0, backlash_rad=0.2)
    servo.reset(np.zeros(1))
    up = [servo(np.array([g]))[0] for g in (0.05, 0.1, 0.5)]
    np.testing.assert_allclose(up, [0.0, 0.0, 0.4])  # takes up half the play, then lags by it
    # Reverse: nothing moves until the goal has crossed the whole gap.
    down = [servo(np.array([g]))[0] for g in (0.45, 0.35, 0.3, 0.2)]
    np.testing.assert_allclose(down, [0.4, 0.4, 0.4, 0.3])
    with pytest.raises(RuntimeError, match="reset"):
        DeadbandBacklash(0.0, 0.1)(np.zeros(1))


def test_quantize_to_4096_ticks():
    assert TICK_RAD == pytest.approx(2 * math.pi / 4096)
    q = np.random.default_rng(0).uniform(-3, 3, 1000)
    quantized = quantize_rad(q)
    ticks = quantized / TICK_RAD
    np.testing.assert_allclose(ticks, np.round(ticks), atol=1e-9)
    assert np.max(np.abs(quantized - q)) <= TICK_RAD / 2 + 1e-12
    np.testing.assert_array_equal(quantize_rad(quantized), quantized)
    assert quantize_rad(np.zeros(1))[0] == 0.0


# --- inside the env ---------------------------------------------------------------------------


def make(latency="none", obs_mode="state"):
    return AlohaEnv(
        "transfer_cube", obs_mode=obs_mode, cameras=["top"], image_size=(24, 32), latency=latency
    )


def sweep(n):
    """Actions swinging both shoulders a lot, so every camera frame differs from the last."""
    t = np.arange(n)[:, None]
    actions = np.tile(HOME, (n, 1))
    actions[:, [0, 6]] += 0.6 * np.sin(0.4 * t + 1.0)
    return actions.astype(np.float32)


def rollout(env, actions, seed=0):
    obs, _ = env.reset(seed=seed)
    observations = [obs]
    for action in actions:
        obs, *_ = env.step(action)
        observations.append(obs)
    return observations


def test_env_delivers_camera_frames_at_30fps_with_latency():
    actions = sweep(15)
    reference = rollout(make(obs_mode="pixels"), actions)
    config = LatencyConfig(camera_fps=30.0, camera_latency_s=0.04)
    delayed = rollout(make(config, obs_mode="pixels"), actions)
    schedule = frame_schedule(16, DT, 30.0, 0.04)
    for step, source in enumerate(schedule):
        np.testing.assert_array_equal(delayed[step][TOP], reference[source][TOP])
        # Joint readings stay current: cameras lag, joints do not.
        np.testing.assert_array_equal(delayed[step][keys.STATE], reference[step][keys.STATE])
    repeated = [np.array_equal(delayed[t][TOP], delayed[t - 1][TOP]) for t in range(1, 16)]
    assert repeated == [a == b for a, b in zip(schedule[1:], schedule[:-1], strict=True)]


def test_env_delays_joint_readings():
    actions = sweep(10)
    reference = rollout(make(), actions)
    delayed = rollout(make(LatencyConfig(state_delay_steps=2)), actions)
    for step in range(11):
        np.testing.assert_array_equal(
            delayed[step][keys.STATE], reference[max(0, step - 2)][keys.STATE]
        )


def test_env_applies_actions_late():
    actions = sweep(10)
    late = rollout(make(LatencyConfig(action_delay_steps=3)), actions)
    # Equivalent: the ideal env holding the reset pose for 3 steps, then the same actions.
    held = np.concatenate([np.tile(HOME, (3, 1)), actions[:-3]])
    reference = rollout(make(), held)
    for a, b in zip(late, reference, strict=True):
        np.testing.assert_array_equal(a[keys.STATE], b[keys.STATE])


def test_env_quantizes_readings_and_goals():
    env = make(LatencyConfig(quantize=True))
    obs, _ = env.reset(seed=0)
    for action in sweep(5):
        ticks = obs[keys.STATE].astype(np.float64) / TICK_RAD
        np.testing.assert_allclose(ticks, np.round(ticks), atol=1e-3)  # float32 readings
        obs, *_ = env.step(action)
        goal = env.data.ctrl[env.index.follower_actuators] / TICK_RAD
        np.testing.assert_allclose(goal, np.round(goal), atol=1e-9)


def test_env_deadband_keeps_the_servo_still():
    env = make(LatencyConfig(deadband_ticks=3.0))
    env.reset(seed=0)
    nudge = (HOME + 2 * TICK_RAD).astype(np.float32)
    env.step(nudge)
    np.testing.assert_array_equal(env.data.ctrl[env.index.follower_actuators], HOME)
    push = (HOME + 4 * TICK_RAD).astype(np.float32)
    env.step(push)
    np.testing.assert_allclose(env.data.ctrl[env.index.follower_actuators], push, atol=1e-7)


def test_real_level_runs_a_pixels_episode_deterministically():
    actions = sweep(8)
    first = rollout(make("real", obs_mode="pixels"), actions, seed=4)
    second = rollout(make("real", obs_mode="pixels"), actions, seed=4)
    for a, b in zip(first, second, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
