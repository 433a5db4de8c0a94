"""The 50 Hz control loop on the emulated rig, sync vs async chunks (L4): printed, not asserted.

``aloha-bench bench control`` drives :class:`~aloha_bench.robots.real_env.RealRigEnv` on
:class:`~aloha_bench.robots.emulated_rig.EmulatedRig` (both followers on servo emulators behind
pseudo-terminals, synthetic 30 fps cameras) with a ``cpu``-profile pixels policy, through the
same :class:`~aloha_bench.policies.chunking.ChunkExecutor` the evaluation uses, on a wall clock:

* ``sync``: the loop blocks while a chunk is computed (the stall users see on the arm);
* ``async``: chunks are computed on a background thread while the current one plays, and the
  actions that elapsed during inference are skipped.

Per mode: ``deadline_misses`` (ticks the env's watchdog saw finish after their 20 ms deadline;
``late_ticks`` says which),
``longest_gap_ms`` (the longest time between two commands sent), ``p50_loop_ms`` and
``p99_loop_ms`` (the time between successive commands), the policy's own time per tick
(``p50_act_ms``, ``p99_act_ms``) and the inference latencies.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import numpy as np

from aloha_bench.bench import machine_info
from aloha_bench.policies.chunking import (
    ChunkExecutor,
    ExecutionConfig,
    ThreadedInference,
    WallClock,
)

MODES = ("sync", "async")


def _policy(run: str | None, runtime: str, threads: int) -> tuple[Any, str]:
    """The policy to drive the rig with, and how to name it in the report."""
    from aloha_bench import policies
    from aloha_bench.bench_infer import _stats
    from aloha_bench.policies.export import OnnxPolicy, onnx_model_bytes

    if run is not None:
        return policies.load(run, runtime=runtime, threads=threads), f"trained policy {run}"
    config = policies.load_config("act", profile="cpu")
    policy = policies.make_policy(config, _stats()).eval()
    if runtime == "onnx":
        policy = OnnxPolicy(onnx_model_bytes(policy), config, threads=threads)
    return policy, "cpu profile, random weights (timing does not depend on weight values)"


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


def run_loop(env: Any, policy: Any, mode: str, steps: int) -> dict[str, Any]:
    """``steps`` ticks of ``policy`` on ``env`` (reset first) with ``mode`` chunk execution."""
    clock = WallClock()
    config = ExecutionConfig.from_policy_config(policy.config, mode=mode, margin_steps=1)
    executor = ChunkExecutor(
        policy.predict_chunk, config, clock, ThreadedInference(policy.predict_chunk, clock)
    )
    sent_s, act_s, late_ticks = [], [], []
    try:
        obs, info = env.reset()
        for tick in range(steps):
            started = time.perf_counter()
            action = executor.act(obs)
            sent_s.append(time.perf_counter())
            act_s.append(sent_s[-1] - started)
            obs, _, _, _, info = env.step(action)
            if info["overrun_s"] > 0:
                late_ticks.append(tick)
    finally:
        executor.close()
    gaps_ms = list(1e3 * np.diff(sent_s))
    latencies_ms = [1e3 * s for s in executor.latencies_s]
    return {
        "deadline_misses": int(info["overruns"]),
        "late_ticks": late_ticks,  # which ticks missed (0: waiting for the first chunk)
        "ticks": steps,
        "longest_gap_ms": max(gaps_ms, default=0.0),
        "p50_loop_ms": _percentile(gaps_ms, 50),
        "p99_loop_ms": _percentile(gaps_ms, 99),
        "p50_act_ms": _percentile(list(1e3 * np.array(act_s)), 50),
        "p99_act_ms": _percentile(list(1e3 * np.array(act_s)), 99),
        "p50_inference_ms": _percentile(latencies_ms, 50),
        "max_inference_ms": max(latencies_ms, default=0.0),
        "chunks": len(executor.switch_ticks),
        "stall_ticks": executor.stall_ticks,
        "execution": dataclasses.asdict(config),
    }


def bench_control(
    run: str | None = None,
    runtime: str = "torch",
    steps: int = 500,
    threads: int = 1,
    modes: tuple[str, ...] = MODES,
) -> dict[str, Any]:
    """Time the control loop on the emulated rig in each mode.

    Args:
        run: a trained pixels policy (run folder or ONNX export); None: the ``cpu`` profile with
            random weights.
        runtime: ``"torch"`` or ``"onnx"``.
        steps: control ticks per mode (500 = 10 s at 50 Hz).
        threads: inference threads (torch and ONNX Runtime).

    Returns:
        ``{"sync": {...}, "async": {...}}`` with ``deadline_misses``, ``longest_gap_ms``,
        ``p50_loop_ms``, ``p99_loop_ms`` and more (see the module docstring), plus ``policy``,
        ``runtime``, ``load_avg_1min`` and the machine.

    Raises:
        ValueError: a state-mode policy (the real rig has no object poses).
    """
    import torch

    from aloha_bench.robots.emulated_rig import EmulatedRig

    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    torch.set_num_threads(threads)
    policy, described = _policy(run, runtime, threads)
    config = policy.config
    if config.obs_mode != "pixels":
        raise ValueError(
            f"{run}: a {config.obs_mode}-mode policy cannot drive the rig (it measures no object "
            "poses); pass a pixels policy"
        )
    result: dict[str, Any] = {
        "policy": described,
        "runtime": runtime,
        "cameras": list(config.cameras),
        "image_size": list(config.image_size),
        "chunk_size": config.chunk_size,
        "n_action_steps": config.n_action_steps,
        "threads": threads,
        "load_avg_1min": os.getloadavg()[0],
        **machine_info(),
    }
    with EmulatedRig(tuple(config.cameras), tuple(config.image_size)) as rig:
        env = rig.env()
        try:
            obs, _ = env.reset()
            for _ in range(3):  # first calls build kernels; a real session warms up too
                policy.predict_chunk(obs)
            for mode in modes:
                result[mode] = run_loop(env, policy, mode, steps)
        finally:
            env.close()
    return result
