"""Chunk execution: sync stalls, async alignment (elapsed actions skipped), seam blending."""

import math
import threading

import numpy as np
import pytest

from aloha_bench import keys
from aloha_bench.policies.chunking import (
    ChunkExecutor,
    ExecutionConfig,
    SimClock,
    SimulatedInference,
    ThreadedInference,
    raised_cosine,
    seam_smoothness,
)

DT = 0.02


def _obs(tick):
    return {keys.STATE: np.full(12, -1.0, np.float32), "tick": np.array(tick)}


def _timeline_predict(chunk_size):
    """A policy that plans perfectly: the chunk from the observation at tick s says "tick s + i"
    at index i, so a clock-aligned executor sends action == tick at every tick."""

    def predict(obs):
        start = float(obs["tick"])
        return np.repeat((start + np.arange(chunk_size))[:, None], 12, axis=1)

    return predict


def _run(executor, clock, ticks):
    actions = []
    for tick in range(ticks):
        actions.append(executor.act(_obs(tick))[0])
        clock.advance(DT)
    return np.array(actions)


def test_sync_plays_each_chunk_from_its_start_after_the_stall():
    clock = SimClock()
    predict = _timeline_predict(20)
    config = ExecutionConfig(chunk_size=20, n_action_steps=10)
    executor = ChunkExecutor(predict, config, clock, SimulatedInference(predict, delay_s=0.1))
    actions = _run(executor, clock, 45)
    # Ticks 0-4 wait for the first chunk (the arm holds its pose, -1), then 10 actions from
    # index 0; then 5 ticks hold the last action while the next chunk (observed at 15) computes.
    np.testing.assert_array_equal(actions[:5], -1.0)
    np.testing.assert_array_equal(actions[5:15], np.arange(10))
    np.testing.assert_array_equal(actions[15:20], 9.0)
    np.testing.assert_array_equal(actions[20:30], 15 + np.arange(10))
    assert executor.switch_ticks == [5, 20, 35]
    assert executor.skipped == [0, 0, 0]
    assert executor.stall_ticks == 15


def test_sync_without_delay_is_the_plain_chunk_queue():
    clock = SimClock()
    predict = _timeline_predict(20)
    executor = ChunkExecutor(predict, ExecutionConfig(chunk_size=20, n_action_steps=10), clock)
    actions = _run(executor, clock, 30)
    np.testing.assert_array_equal(actions, np.arange(30))
    assert executor.switch_ticks == [0, 10, 20] and executor.stall_ticks == 0


@pytest.mark.parametrize("horizon", [15, 30])
@pytest.mark.parametrize("delay_ms", [20, 50, 100, 140])
def test_async_skips_elapsed_actions_and_stays_aligned_with_the_clock(delay_ms, horizon):
    clock = SimClock()
    predict = _timeline_predict(30)
    # horizon 30 = K: each chunk arrives exactly when the previous one runs out.
    config = ExecutionConfig(chunk_size=30, n_action_steps=horizon, mode="async")
    inference = SimulatedInference(predict, delay_s=delay_ms / 1e3)
    executor = ChunkExecutor(predict, config, clock, inference)
    latency = math.ceil(delay_ms / 20 - 1e-9)
    actions = _run(executor, clock, 120)
    # The first chunk arrives while the arm waits, so it plays from its start, `latency` late.
    np.testing.assert_array_equal(actions[:latency], -1.0)
    first = executor.switch_ticks[1]
    np.testing.assert_array_equal(actions[latency:first], np.arange(first - latency))
    # Every later chunk skips the actions whose time passed during inference: from then on the
    # action sent at tick t is the one planned for t, and the arm never stalls again.
    np.testing.assert_array_equal(actions[first:], np.arange(first, 120))
    assert executor.skipped[1:] == [latency] * (len(executor.skipped) - 1)
    assert executor.stall_ticks == latency
    # Each chunk takes over n_action_steps after the observation it was predicted from.
    assert np.diff(executor.switch_ticks[1:]).tolist() == [horizon - latency] * (
        len(executor.switch_ticks) - 2
    )


def test_async_without_delay_equals_sync():
    predict = _timeline_predict(20)
    runs = []
    for mode in ("sync", "async"):
        clock = SimClock()
        executor = ChunkExecutor(
            predict, ExecutionConfig(chunk_size=20, n_action_steps=20, mode=mode), clock
        )
        runs.append((_run(executor, clock, 70), executor.switch_ticks))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1] == [0, 20, 40, 60]


def _two_chunk_predict(levels, chunk_size=20):
    calls = iter(levels)
    return lambda obs: np.full((chunk_size, 12), next(calls), dtype=np.float32)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_blend_crossfades_a_crafted_pair_of_chunks_with_a_raised_cosine(mode):
    blend = 4
    trajectories, switches = {}, {}
    for smoothing in ("none", "blend"):
        clock = SimClock()
        predict = _two_chunk_predict([0.0] + [1.0] * 10)
        config = ExecutionConfig(
            chunk_size=20, n_action_steps=10, mode=mode, smoothing=smoothing, blend_steps=blend
        )
        executor = ChunkExecutor(predict, config, clock)
        trajectories[smoothing] = _run(executor, clock, 25)
        switches[smoothing] = executor.switch_ticks[1]
    hard, soft = trajectories["none"], trajectories["blend"]
    # An outright switch is a step of 1. Async starts a blended chunk `blend` ticks earlier.
    assert hard[switches["none"] - 1] == 0.0 and hard[switches["none"]] == 1.0
    switch = switches["blend"]
    weights = [raised_cosine(j, blend) for j in range(blend)]
    np.testing.assert_allclose(soft[switch : switch + blend], weights, rtol=1e-6)
    np.testing.assert_array_equal(soft[:switch], 0.0)
    np.testing.assert_array_equal(soft[switch + blend :], 1.0)
    # Symmetric, zero slope at both ends: w(j) + w(T - 1 - j) = 1, and the first step is small.
    np.testing.assert_allclose(np.add(weights, weights[::-1]), 1.0)
    assert weights[0] < 0.1
    for name, value in (("hard", hard), ("soft", soft)):
        trajectories[name] = np.repeat(value[:, None], 12, axis=1)
    hard_seams = seam_smoothness(trajectories["hard"], [0, switches["none"]], DT)
    soft_seams = seam_smoothness(trajectories["soft"], [0, switch], DT)
    assert hard_seams["seams"] == soft_seams["seams"] == 1
    assert hard_seams["seam_jump_mean"] == pytest.approx(1.0)
    assert soft_seams["seam_jump_mean"] == pytest.approx(weights[0])
    # A step of 1 rad gives 1 / dt^2 = 2500 rad/s^2; the 4-tick raised cosine about a fifth.
    assert hard_seams["seam_accel_max"] == pytest.approx(1 / DT**2)
    assert soft_seams["seam_accel_max"] < 0.25 * hard_seams["seam_accel_max"]


def test_async_blend_fades_from_the_outgoing_chunk_while_it_still_plays():
    clock = SimClock()
    predict = _timeline_predict(30)
    config = ExecutionConfig(
        chunk_size=30, n_action_steps=20, mode="async", smoothing="blend", blend_steps=5
    )
    executor = ChunkExecutor(predict, config, clock, SimulatedInference(predict, 0.04))
    actions = _run(executor, clock, 80)
    # Once aligned (from the second chunk on) both chunks of a seam follow the same perfect
    # timeline, so blending them changes nothing: the outgoing chunk is read at the current
    # time, not frozen at the switch.
    first = executor.switch_ticks[2]
    np.testing.assert_allclose(actions[first:], np.arange(first, 80), rtol=1e-6)
    assert executor.stall_ticks == 2


def test_threaded_inference_in_async_mode_uses_the_clock_it_is_given():
    clock = SimClock()
    first, release = threading.Event(), threading.Event()
    predict = _timeline_predict(30)

    def slow_predict(obs):
        assert (release if float(obs["tick"]) > 0 else first).wait(5.0)
        return predict(obs)

    config = ExecutionConfig(chunk_size=30, n_action_steps=10, mode="async")
    inference = ThreadedInference(slow_predict, clock)
    executor = ChunkExecutor(slow_predict, config, clock, inference)
    try:
        # The first chunk: the loop does not wait for it but holds the present joints (-1).
        actions = [executor.act(_obs(0))[0]]
        assert actions == [-1.0] and executor.stall_ticks == 1
        first.set()
        inference._future.result(timeout=5.0)
        for tick in range(1, 16):
            clock.advance(DT)
            actions.append(executor.act(_obs(tick))[0])
        # It arrived at tick 1 and plays from its first action (the arm stood still); the
        # second inference started at tick 11 and is still running: the first chunk plays on
        # (no stall) past its horizon.
        assert inference.pending and actions == [-1.0, *range(15)]
        release.set()
        inference._future.result(timeout=5.0)
        clock.advance(DT)
        action = executor.act(_obs(16))[0]
        # It arrives at tick 16, 5 ticks after its observation: indices 0-4 are skipped.
        assert action == 16.0 and executor.skipped == [0, 5]
    finally:
        first.set()
        release.set()
        executor.close()


def test_sync_blocks_for_a_threaded_chunk_and_async_holds_still():
    # On a wall clock sync waits for the chunk it needs; async keeps sending (the present
    # joints before the first chunk) so the 50 Hz loop keeps its deadlines.
    for mode, expected in (("sync", 0.0), ("async", -1.0)):
        clock = SimClock()
        started = threading.Event()
        release = threading.Event()
        predict = _timeline_predict(20)

        def slow_predict(obs, predict=predict, started=started, release=release):
            started.set()
            assert release.wait(5.0)
            return predict(obs)

        config = ExecutionConfig(chunk_size=20, n_action_steps=10, mode=mode)
        inference = ThreadedInference(slow_predict, clock)
        executor = ChunkExecutor(slow_predict, config, clock, inference)
        try:
            if mode == "sync":
                threading.Timer(0.05, release.set).start()
            action = executor.act(_obs(0))[0]
            assert action == expected
            assert executor.stall_ticks == (mode == "async")
        finally:
            release.set()
            executor.close()


def test_bad_execution_settings_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="n_action_steps 1"):
        ExecutionConfig(chunk_size=10, n_action_steps=10, temporal_ensemble_coeff=0.01)
    with pytest.raises(ValueError, match="unknown execution mode"):
        ExecutionConfig(chunk_size=10, n_action_steps=10, mode="later")
    with pytest.raises(ValueError, match="shorter than the chunk"):
        ExecutionConfig(chunk_size=10, n_action_steps=5, smoothing="blend", blend_steps=10)
    with pytest.raises(ValueError, match=">= 0"):
        SimulatedInference(lambda o: o, delay_s=-0.1)
