"""ACT speed figures (L4): training samples/s, chunk latency, FLOP rates. Printed, never asserted.

Each configuration is timed twice, after untimed warm-up steps that let oneDNN build its kernels:
the bare step (``train.train_step``: forward, backward, clip, AdamW) on one synthetic batch (random
pixels and joints; the speed of a model does not depend on what it sees), and the whole training
loop (``train.train``: batches sampled from a synthetic Zarr store, logging, the learning-rate
schedule) on the same model, so the loop's overhead over the arithmetic is a printed figure.
Achieved GFLOP/s counts the FLOPs of one step with ``torch.utils.flop_counter.FlopCounterMode``
(matrix products and convolutions, as that counter does) and sits next to the peak of a
2048x2048 matrix product measured in the same run, so a figure can be read against the machine.
"""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from aloha_bench import keys
from aloha_bench.bench import machine_info
from aloha_bench.data.store import EpisodeStore
from aloha_bench.policies import ACTConfig, load_config, make_policy
from aloha_bench.policies.act.precision import bf16_is_native
from aloha_bench.train import make_optimizer, train_step

# LeRobot's ACTPolicy at this configuration: ~5.7 samples/s training, ~49 ms per chunk on the
# project's 2-core CPU (issue #5's stated bar).
LEROBOT_PARITY = ACTConfig(
    cameras=("top", "front"),
    image_size=(96, 128),
    dim_model=512,
    n_heads=8,
    dim_feedforward=3200,
    n_encoder_layers=4,
    n_decoder_layers=1,
    chunk_size=100,
    n_action_steps=100,
    batch_size=8,
    use_vae=True,
    backbone_norm="frozen_batchnorm",
)
REFERENCE = {"lerobot_train_samples_per_s": 5.7, "lerobot_chunk_inference_ms": 49.0}


# Size of transfer_cube's observation.environment_state: the cube's position and orientation.
TRANSFER_CUBE_ENV_DIM = 7


def _configs() -> dict[str, ACTConfig]:
    return {
        "lerobot_parity": LEROBOT_PARITY,
        "lerobot_parity_bf16": dataclasses.replace(LEROBOT_PARITY, precision="bf16"),
        "cpu": load_config("act", profile="cpu"),
        # The `cpu` profile on transfer_cube's object pose instead of images (issue #13).
        "cpu_state": load_config("act", profile="cpu", overrides={"obs_mode": "state"}),
        "cpu_pixels_2cam": load_config(
            "act", profile="cpu", overrides={"cameras": ["top", "right_wrist"]}
        ),
    }


def matmul_peak_gflops(size: int = 2048, dtype: torch.dtype = torch.float32, n: int = 5) -> float:
    """GFLOP/s of a square matrix product, the practical peak of this machine and dtype."""
    return matmul_gflops(size, size, size, dtype, n)


def matmul_gflops(
    m: int, k: int, n: int, dtype: torch.dtype = torch.float32, repeats: int = 5
) -> float:
    """GFLOP/s of an (m, k) x (k, n) matrix product in ``dtype`` (median of ``repeats``)."""
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    a @ b
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - started)
    return 2 * m * k * n / statistics.median(times) / 1e9


def _synthetic_batch(
    config: ACTConfig, env_dim: int = TRANSFER_CUBE_ENV_DIM
) -> dict[str, torch.Tensor]:
    batch, chunk = config.batch_size, config.chunk_size
    out = {
        keys.STATE: torch.randn(batch, 12),
        keys.ACTION: torch.randn(batch, chunk, 12),
        keys.ACTION_IS_PAD: torch.zeros(batch, chunk, dtype=torch.bool),
    }
    if config.obs_mode == "state":
        out[keys.ENVIRONMENT_STATE] = torch.randn(batch, env_dim)
    for key in config.image_keys:
        out[key] = torch.randint(0, 256, (batch, *config.image_size, 3), dtype=torch.uint8)
    return out


def _stats(env_dim: int = TRANSFER_CUBE_ENV_DIM) -> dict[str, dict[str, np.ndarray]]:
    stats = {k: {"mean": np.zeros(12), "std": np.ones(12)} for k in (keys.ACTION, keys.STATE)}
    stats[keys.ENVIRONMENT_STATE] = {"mean": np.zeros(env_dim), "std": np.ones(env_dim)}
    for camera in keys.CAMERAS:
        stats[keys.image_key(camera)] = {"mean": np.full(3, 0.5), "std": np.full(3, 0.25)}
    return stats


def _timed(fn: Callable[[], Any], warmup: int, n: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def _flops(fn: Callable[[], Any]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def _synthetic_store(path: Path, config: ACTConfig, episodes: int = 4, steps: int = 150) -> None:
    """A Zarr store of random episodes with the inputs ``config`` reads (transfer_cube's)."""
    store = EpisodeStore.create(
        path,
        task_id="transfer_cube",
        task_version=1,
        obs_mode=config.obs_mode,
        cameras=config.cameras,
        image_size=config.image_size if config.obs_mode == "pixels" else None,
        generator={"source": "synthetic"},
    )
    rng = np.random.default_rng(0)
    for episode in range(episodes):
        arrays = {
            keys.ACTION: rng.normal(size=(steps, 12)).astype(np.float32),
            keys.STATE: rng.normal(size=(steps, 12)).astype(np.float32),
            keys.ENVIRONMENT_STATE: rng.normal(size=(steps, TRANSFER_CUBE_ENV_DIM)).astype(
                np.float32
            ),
        }
        for key in config.image_keys:
            arrays[key] = rng.integers(0, 256, (steps, *config.image_size, 3), dtype=np.uint8)
        store.append_episode(
            arrays,
            {
                "seed": episode,
                "success": True,
                "max_stage": 0,
                "source": "synthetic",
                "strategy": "random",
            },
        )


def _train_loop_samples_per_s(config: ACTConfig, steps: int) -> float:
    """Samples/s of ``train.train`` itself, its warm-up excluded.

    The run logs twice, after ``steps`` warm-up steps and after ``steps`` timed ones; the second
    row's ``samples_per_s`` covers only the timed steps (it is taken before the run's final
    validation and checkpoint, which happen once per ``val_every`` steps in a real run).
    """
    import csv

    from aloha_bench.train import LOSSES_FILE, train

    run = dataclasses.replace(
        config,
        steps=2 * steps,
        log_every=steps,
        val_every=2 * steps,
        val_fraction=0.25,
        warmup_steps=0,  # the rate does not change the speed; a warmup longer than the run warns
        seed=0,
    )
    with tempfile.TemporaryDirectory() as tmp:
        _synthetic_store(Path(tmp) / "data.zarr", run)
        train(run, Path(tmp) / "data.zarr", Path(tmp) / "run", device="cpu")
        with (Path(tmp) / "run" / LOSSES_FILE).open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if r["samples_per_s"]]
    return float(rows[-1]["samples_per_s"])


LOOP_WINDOW_S = 10.0


def bench_config(name: str, config: ACTConfig, train_steps: int = 5, inferences: int = 20) -> dict:
    """Training and inference figures of one configuration (random weights, synthetic data)."""
    torch.manual_seed(0)
    policy = make_policy(config, _stats())
    optimizer = make_optimizer(policy, config)
    batch = _synthetic_batch(config)

    def step() -> None:
        train_step(policy, optimizer, batch, config)

    policy.train()
    step_times = _timed(step, warmup=2, n=train_steps)
    step_s = statistics.median(step_times)
    step_mean_s = statistics.fmean(step_times)
    train_flops = _flops(step)
    # train()'s rate over a window of at least LOOP_WINDOW_S: at 60 ms a step, 20 steps are
    # about a second, where one stall of the machine moved the ratio by 20% (0.78 in one run).
    loop_steps = max(train_steps, min(500, math.ceil(LOOP_WINDOW_S / step_mean_s)))
    loop_samples_per_s = _train_loop_samples_per_s(config, loop_steps)

    obs = {key: value[0].numpy() for key, value in batch.items() if key in config.input_keys}
    chunk_s = statistics.median(_timed(lambda: policy.predict_chunk(obs), 3, inferences))
    # Counted on a plain forward: the counter's module hooks need autograd, inference_mode has none.
    inputs = policy.preprocess(policy.observation_batch(obs))

    def forward() -> None:
        with policy.autocast():
            policy.model(latent=policy.zero_latent(1), **inputs)

    chunk_flops = _flops(forward)

    ensembling = dataclasses.replace(config, n_action_steps=1, temporal_ensemble_coeff=0.01)
    ensembled = make_policy(ensembling, _stats())
    ensembled.load_state_dict(policy.state_dict())
    ensembled.reset()
    step_latency_s = statistics.median(_timed(lambda: ensembled.select_action(obs), 3, inferences))
    # The model's largest matrix product, the feed-forward's (batch x chunk, d_model) x
    # (d_model, dim_feedforward), in its precision: the rate the arithmetic can reach at this size,
    # a ceiling to read train_achieved_gflops against (the 2048^2 peak is not reachable here).
    ffn_gflops = matmul_gflops(
        config.batch_size * config.chunk_size,
        config.dim_model,
        config.dim_feedforward,
        torch.bfloat16 if policy.precision == "bf16" else torch.float32,
        repeats=20,
    )
    return {
        "name": name,
        # Computed in: a bf16 config runs in fp32 where bf16 is not native (precision.py).
        "precision": policy.precision,
        "precision_requested": config.precision,
        "cameras": len(config.cameras),
        "image_size": list(config.image_size),
        "dim_model": config.dim_model,
        "chunk_size": config.chunk_size,
        "batch_size": config.batch_size,
        "parameters": sum(p.numel() for p in policy.parameters()),
        "train_samples_per_s": config.batch_size / step_s,
        "train_step_ms": 1e3 * step_s,
        # train(): the same step fed by the data path, logging and the schedule.
        "train_loop_samples_per_s": loop_samples_per_s,
        "train_loop_steps": loop_steps,
        # Mean against mean: the loop's rate covers every step of its window, outliers included,
        # so it is set against the mean of as many consecutive bare steps, not their median.
        "train_step_mean_ms": 1e3 * step_mean_s,
        "train_loop_vs_bare": loop_samples_per_s * step_mean_s / config.batch_size,
        "train_gflops_per_step": train_flops / 1e9,
        "train_achieved_gflops": train_flops / step_s / 1e9,
        "matmul_ffn_shape_gflops": ffn_gflops,
        "chunk_inference_ms": 1e3 * chunk_s,
        "chunk_inference_achieved_gflops": chunk_flops / chunk_s / 1e9,
        "ensembled_step_ms": 1e3 * step_latency_s,
    }


# Run by another interpreter (one with LeRobot installed): LeRobot's ACTPolicy training step
# (forward, backward, clip, AdamW as its trainer) at the `cpu_state` configuration on synthetic
# batches; prints one JSON line.
LEROBOT_TRAIN_SCRIPT = r"""
import json, statistics, sys, time
import torch
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.policies.act.configuration_act import ACTConfig
from lerobot.policies.act.modeling_act import ACTPolicy

threads, n, env_dim = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
torch.manual_seed(0)
config = ACTConfig(
    input_features={
        "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(12,)),
        "observation.environment_state": PolicyFeature(type=FeatureType.ENV, shape=(env_dim,)),
    },
    output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(12,))},
    chunk_size=100, n_action_steps=100, dim_model=256, n_heads=8, dim_feedforward=1024,
    n_encoder_layers=2, n_decoder_layers=2, n_vae_encoder_layers=2, latent_dim=32,
    use_vae=True, dropout=0.1, kl_weight=10.0, device="cpu",
)
policy = ACTPolicy(config).train()
optimizer = torch.optim.AdamW(policy.parameters(), lr=2e-4, weight_decay=1e-4)
batch = {
    "observation.state": torch.randn(8, 12),
    "observation.environment_state": torch.randn(8, env_dim),
    "action": torch.randn(8, 100, 12),
    "action_is_pad": torch.zeros(8, 100, dtype=torch.bool),
}
times = []
for i in range(n + 3):
    started = time.perf_counter()
    loss, _ = policy.forward(batch)
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), 10.0)
    optimizer.step()
    if i >= 3:
        times.append(time.perf_counter() - started)
import lerobot
step_s = statistics.median(times)
print(json.dumps({"train_samples_per_s": 8 / step_s, "train_step_ms": 1e3 * step_s,
                  "parameters": sum(p.numel() for p in policy.parameters()),
                  "lerobot": lerobot.__version__, "torch": torch.__version__}))
"""


def run_lerobot_script(python: str, script: str, *args: object) -> dict[str, Any]:
    """Run ``script`` with ``python`` (an interpreter with LeRobot installed: this package never
    imports it) and return the JSON object of its last output line.

    Raises:
        RuntimeError: the interpreter failed (its error output is included).
    """
    import json
    import subprocess

    result = subprocess.run(
        [python, "-c", script, *map(str, args)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"running LeRobot with {python} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def bench_lerobot_train(python: str, threads: int, n: int = 10) -> dict[str, Any]:
    """LeRobot's ACTPolicy training speed at ``cpu_state``, run by ``python``."""
    measured = run_lerobot_script(python, LEROBOT_TRAIN_SCRIPT, threads, n, TRANSFER_CUBE_ENV_DIM)
    return {
        "name": "lerobot_cpu_state",
        "config": "cpu_state",
        "runtime": "lerobot",
        **{k: measured[k] for k in ("train_samples_per_s", "train_step_ms", "parameters")},
        "lerobot_version": measured["lerobot"],
        "lerobot_torch": measured["torch"],
        "torch_threads": threads,
        "load_avg_1min": os.getloadavg()[0],
    }


def bench_train(
    names: Sequence[str] | None = None,
    train_steps: int = 20,
    threads: int | None = None,
    lerobot_python: str | None = None,
) -> list[dict]:
    """Speed of ACT training and inference on this machine, one dict per configuration.

    Configurations: ``lerobot_parity`` (fp32) and ``lerobot_parity_bf16`` (d_model 512,
    feed-forward 3200, 4 encoder and 1 decoder layers, 2 cameras at 96x128, K = 100, batch 8,
    CVAE: the setting of LeRobot's published CPU figure), ``cpu``
    (``baselines/profiles/cpu.toml``: one camera), ``cpu_state`` (the same model on
    transfer_cube's environment state, no images) and ``cpu_pixels_2cam`` (``top`` and
    ``right_wrist``).

    Args:
        names: configurations to run (default all).
        train_steps: timed training steps per configuration: ``train_samples_per_s`` is their
            median; ``train_loop_vs_bare`` sets ``train()``'s rate, over as many steps or more
            (at least ``LOOP_WINDOW_S`` seconds of them), against their mean.
        threads: torch threads during the run (default: torch's, one per core). On a machine
            whose cores are busy with other work, one thread avoids OpenMP threads spin-waiting
            on each other; ``load_avg_1min`` in each row tells how busy the machine was.

    Returns:
        Dicts with ``name``, ``train_samples_per_s``, ``chunk_inference_ms``,
        ``ensembled_step_ms``, ``parameters``, achieved GFLOP/s, the matrix-product peaks
        (``matmul_peak_fp32_gflops``, ``matmul_peak_bf16_gflops``), LeRobot's reference figures
        ``torch_threads`` and ``load_avg_1min``; with ``lerobot_python`` (an interpreter with
        LeRobot installed) a last row ``lerobot_cpu_state``: LeRobot's ACTPolicy training at the
        ``cpu_state`` configuration, measured in the same run.
    """
    configs = _configs()
    chosen = list(configs) if names is None else list(names)
    unknown = set(chosen) - set(configs)
    if unknown:
        raise ValueError(f"unknown bench configurations {sorted(unknown)}; known: {list(configs)}")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads or previous_threads)
    try:
        peaks = {
            "matmul_peak_fp32_gflops": matmul_peak_gflops(dtype=torch.float32),
            # None where bf16 is emulated: no configuration computes in it there, and the
            # emulated 2048^3 product alone would take minutes (~0.4 GFLOP/s on AVX2).
            "matmul_peak_bf16_gflops": matmul_peak_gflops(dtype=torch.bfloat16)
            if bf16_is_native("cpu")
            else None,
            **machine_info(),
        }
        rows = []
        for name in chosen:
            load = os.getloadavg()[0]
            row = bench_config(name, configs[name], train_steps=train_steps)
            rows.append(
                {
                    **row,
                    **peaks,
                    **REFERENCE,
                    "torch_threads": torch.get_num_threads(),
                    "load_avg_1min": load,
                }
            )
        if lerobot_python:
            rows.append(bench_lerobot_train(lerobot_python, torch.get_num_threads()))
    finally:
        torch.set_num_threads(previous_threads)
    return rows
