"""Chunk inference speed per configuration and runtime (L4): printed, never asserted.

``aloha-bench bench infer`` times one chunk prediction (``predict_chunk`` on one observation, the
whole acting path: normalization, network at z = 0, unnormalization) for each configuration and
runtime, on random weights (the speed of a network does not depend on its weights' values), and
measures each runtime's largest action difference from fp32 torch on the same observations.
A configuration's runtimes are timed in interleaved rounds (one chunk of each per round, the
median per runtime), so the drift of a shared machine's speed during the run moves every row
alike; LeRobot's ACTPolicy, in another process, is timed before and after them.

Configurations: ``lerobot_parity`` (LeRobot's ACT at d_model 512, 2 cameras 96x128, K = 100:
``bench_train.LEROBOT_PARITY``), ``cpu`` (``baselines/profiles/cpu.toml``: d_model 256, one camera
96x128) and ``cpu_state`` (the same in state mode: joints and object poses, no images).
Runtimes: ``torch_fp32``, ``torch_bf16`` (the once-cast bfloat16 inference copy),
``onnx`` (fp32 graph on ONNX Runtime's CPU provider, :mod:`aloha_bench.policies.export`) and
``onnx_int8`` (the same with int8 dynamic quantization of the matrix weights),
``onnx_int8_static`` (pixel configurations only: the backbone's convolutions in static int8) and
``onnx_int8_static_full`` (those and the transformer's linear layers but the last three). The
static rows are calibrated here on synthetic observations, which times them faithfully but
overstates the action difference a run calibrated on its own demos shows (``export-policy
--quantize int8_static[_full]`` calibrates on the run's demo frames).

LeRobot's own ``ACTPolicy`` can be timed in the same run from another interpreter that has
LeRobot installed (``lerobot_python``); this package never imports LeRobot.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from aloha_bench import keys
from aloha_bench.bench import machine_info
from aloha_bench.bench_train import LEROBOT_PARITY, REFERENCE, run_lerobot_script
from aloha_bench.policies import ACTConfig, load_config, make_policy
from aloha_bench.policies.act.precision import bf16_is_native
from aloha_bench.policies.export import (
    OnnxPolicy,
    example_observation,
    onnx_model_bytes,
    quantize_int8,
    quantize_int8_static,
)

RUNTIMES = (
    "torch_fp32",
    "torch_bf16",
    "onnx",
    "onnx_int8",
    "onnx_int8_static",
    "onnx_int8_static_full",
)
ENV_DIM = 7  # transfer_cube's environment state: the cube's pose (position, quaternion)


def configs() -> dict[str, ACTConfig]:
    """The benchmarked configurations, by row-name prefix."""
    cpu = load_config("act", profile="cpu")
    return {
        "lerobot_parity": LEROBOT_PARITY,
        "cpu": cpu,
        "cpu_state": dataclasses.replace(cpu, obs_mode="state", cameras=()),
    }


def _stats(env_dim: int = ENV_DIM) -> dict[str, dict[str, np.ndarray]]:
    stats = {k: {"mean": np.zeros(12), "std": np.ones(12)} for k in (keys.ACTION, keys.STATE)}
    stats[keys.ENVIRONMENT_STATE] = {"mean": np.zeros(env_dim), "std": np.ones(env_dim)}
    for camera in keys.CAMERAS:
        stats[keys.image_key(camera)] = {"mean": np.full(3, 0.5), "std": np.full(3, 0.25)}
    return stats


def _interleaved_ms(fns: Mapping[str, Callable[[], Any]], warmup: int, n: int) -> dict[str, float]:
    """Median ms per call of each function, timed in rounds (one call of each per round), so a
    machine whose speed drifts during the run (a shared VM does) slows every row alike and the
    rows' ratios hold."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(n):
        for name, fn in fns.items():
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def bench_config(
    name: str,
    config: ACTConfig,
    runtimes: Sequence[str] = RUNTIMES,
    threads: int = 2,
    n: int = 20,
    n_observations: int = 3,
) -> list[dict[str, Any]]:
    """One row per runtime of one configuration: ``ms_per_chunk`` and
    ``max_action_diff_rad`` (against fp32 torch, over ``n_observations`` observations)."""
    torch.manual_seed(0)
    reference = make_policy(dataclasses.replace(config, precision="fp32"), _stats()).eval()
    observations = [example_observation(reference, seed) for seed in range(n_observations)]
    expected = [reference.predict_chunk(obs) for obs in observations]
    model = None
    policies: dict[str, Any] = {}
    for runtime in runtimes:
        if runtime == "onnx_int8_static" and config.obs_mode != "pixels":
            continue  # it quantizes the image backbone; a state policy has none
        if runtime == "torch_bf16" and not bf16_is_native("cpu"):
            continue  # it would time fp32 under a bf16 name (precision.py falls back)
        if runtime.startswith("torch"):
            precision = "bf16" if runtime == "torch_bf16" else "fp32"
            policy = make_policy(dataclasses.replace(config, precision=precision), _stats())
            policy.load_state_dict(reference.state_dict())
            policy.eval()
        else:
            if model is None:
                model = onnx_model_bytes(reference)
            if runtime == "onnx_int8":
                graph = quantize_int8(model)
            elif runtime.startswith("onnx_int8_static"):
                calibration = [example_observation(reference, 100 + i) for i in range(8)]
                graph = quantize_int8_static(
                    model, config, calibration, runtime.removeprefix("onnx_")
                )
            else:
                graph = model
            policy = OnnxPolicy(graph, config, threads=threads)
        policies[runtime] = policy
    timings = _interleaved_ms(
        {r: (lambda p=p: p.predict_chunk(observations[0])) for r, p in policies.items()}, 3, n
    )
    load = os.getloadavg()[0]
    rows = []
    for runtime, policy in policies.items():
        difference = max(
            float(np.abs(policy.predict_chunk(obs) - want).max())
            for obs, want in zip(observations, expected, strict=True)
        )
        rows.append(
            {
                "name": f"{name}_{runtime}",
                "config": name,
                "runtime": runtime,
                "ms_per_chunk": timings[runtime],
                "max_action_diff_rad": difference,
                "obs_mode": config.obs_mode,
                "cameras": len(config.cameras) if config.obs_mode == "pixels" else 0,
                "image_size": list(config.image_size) if config.obs_mode == "pixels" else None,
                "dim_model": config.dim_model,
                "chunk_size": config.chunk_size,
                "threads": threads,
                "load_avg_1min": load,
            }
        )
    return rows


# Run by another interpreter (one with LeRobot installed): LeRobot's ACTPolicy at the
# lerobot_parity configuration, random weights, one observation; prints one JSON line.
LEROBOT_TIMING_SCRIPT = r"""
import json, statistics, sys, time
import torch
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.policies.act.configuration_act import ACTConfig
from lerobot.policies.act.modeling_act import ACTPolicy

threads, n = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
torch.manual_seed(0)
cams = ("top", "front")
features = {"observation.state": PolicyFeature(type=FeatureType.STATE, shape=(12,))}
for cam in cams:
    visual = PolicyFeature(type=FeatureType.VISUAL, shape=(3, 96, 128))
    features[f"observation.images.{cam}"] = visual
config = ACTConfig(
    input_features=features,
    output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(12,))},
    chunk_size=100, n_action_steps=100, dim_model=512, n_heads=8, dim_feedforward=3200,
    n_encoder_layers=4, n_decoder_layers=1, use_vae=True, pretrained_backbone_weights=None,
    device="cpu",
)
policy = ACTPolicy(config).eval()
batch = {"observation.state": torch.randn(1, 12)}
for cam in cams:
    batch[f"observation.images.{cam}"] = torch.rand(1, 3, 96, 128)
times = []
with torch.inference_mode():
    for i in range(n + 3):
        started = time.perf_counter()
        policy.predict_action_chunk(batch)
        if i >= 3:
            times.append(time.perf_counter() - started)
import lerobot
print(json.dumps({"ms_per_chunk": 1e3 * statistics.median(times),
                  "lerobot": lerobot.__version__, "torch": torch.__version__}))
"""


def bench_lerobot(python: str, threads: int = 2, n: int = 20) -> dict[str, Any]:
    """Time LeRobot's ACTPolicy (``predict_action_chunk``) at ``lerobot_parity`` with the
    interpreter ``python`` (which must have LeRobot installed).

    Raises:
        RuntimeError: the interpreter failed (its error output is included).
    """
    measured = run_lerobot_script(python, LEROBOT_TIMING_SCRIPT, threads, n)
    return {
        "name": "lerobot_parity_lerobot",
        "config": "lerobot_parity",
        "runtime": "lerobot",
        "ms_per_chunk": measured["ms_per_chunk"],
        "max_action_diff_rad": None,
        "lerobot_version": measured["lerobot"],
        "lerobot_torch": measured["torch"],
        "threads": threads,
        "load_avg_1min": os.getloadavg()[0],
    }


def bench_infer(
    names: Sequence[str] | None = None,
    runtimes: Sequence[str] = RUNTIMES,
    threads: int | None = None,
    n: int = 20,
    lerobot_python: str | None = None,
) -> list[dict[str, Any]]:
    """Chunk inference figures, one dict per ``<config>_<runtime>`` row.

    Args:
        names: configurations (default all: ``lerobot_parity``, ``cpu``, ``cpu_state``).
        runtimes: a subset of ``RUNTIMES``.
        threads: torch and ONNX Runtime threads (default: torch's, one per core).
        n: timed chunks per row (the median is reported).
        lerobot_python: an interpreter with LeRobot installed; adds the row
            ``lerobot_parity_lerobot`` measured in the same run. Without it, each row carries
            LeRobot's reference figure (``bench_train.REFERENCE``, issue 5).

    Returns:
        Rows with ``name``, ``ms_per_chunk``, ``max_action_diff_rad``, ``lerobot_ms_per_chunk``
        (measured here or the reference) and its ``lerobot_source``, plus the machine.
    """
    table = configs()
    chosen = list(table) if names is None else list(names)
    unknown = (set(chosen) - set(table)) | (set(runtimes) - set(RUNTIMES))
    if unknown:
        raise ValueError(
            f"unknown bench infer rows {sorted(unknown)}; configurations {list(table)}, "
            f"runtimes {list(RUNTIMES)}"
        )
    previous = torch.get_num_threads()
    threads = threads or previous
    torch.set_num_threads(threads)
    try:
        rows = []
        lerobot_ms, source = REFERENCE["lerobot_chunk_inference_ms"], "reference (issue 5)"
        before = bench_lerobot(lerobot_python, threads=threads, n=n) if lerobot_python else None
        for name in chosen:
            rows += bench_config(name, table[name], runtimes, threads=threads, n=n)
        if before is not None:
            # LeRobot runs in another process, so it cannot join the interleaved rounds: it is
            # timed before and after ours, and the mean of the two medians is the yardstick.
            after = bench_lerobot(lerobot_python, threads=threads, n=n)
            runs = [before["ms_per_chunk"], after["ms_per_chunk"]]
            lerobot_ms, source = statistics.fmean(runs), "measured in this run (before, after)"
            rows.insert(0, {**before, "ms_per_chunk": lerobot_ms, "ms_per_chunk_runs": runs})
    finally:
        torch.set_num_threads(previous)
    for row in rows:
        row.update(lerobot_ms_per_chunk=lerobot_ms, lerobot_source=source, **machine_info())
    return rows
