"""Speed benchmarks (L4): figures printed by ``aloha-bench bench``, never asserted in tests."""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aloha_bench import embodiment, envs
from aloha_bench.sim.task_spec import available_tasks

# (label, obs_mode, number of cameras, image size, steps timed)
ENV_CONFIGS: tuple[tuple[str, str, int, tuple[int, int], int], ...] = (
    ("state", "state", 0, (96, 128), 2000),
    ("pixels_1cam_96x128", "pixels", 1, (96, 128), 400),
    ("pixels_4cam_96x128", "pixels", 4, (96, 128), 200),
    ("pixels_1cam_480x640", "pixels", 1, (480, 640), 60),
    ("pixels_4cam_480x640", "pixels", 4, (480, 640), 30),
)


def machine_info() -> dict[str, str | int]:
    """Where a figure was measured, stored beside it: core count, the CPU's model name and the
    vector extension PyTorch dispatches to (``cpu_capability``, e.g. ``AVX2``, ``AVX512``): rates
    differ by CPU generation, bf16 ones by up to 100x (``policies/act/precision.py``)."""
    info: dict[str, str | int] = {
        "cpu_count": os.cpu_count() or 0,
        "processor": _cpu_model(),
        "python": platform.python_version(),
        "mujoco_gl": os.environ.get("MUJOCO_GL", ""),
    }
    torch = sys.modules.get("torch")  # only where torch is loaded already: no import for this
    if torch is not None:
        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return info


def _cpu_model() -> str:
    """The CPU's model name from Linux's ``/proc/cpuinfo`` (``platform.processor()``, often just
    the architecture, elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# LeRobot's ACTPolicy at d_model 512 with 2 cameras 96x128 trains at ~5.7 samples/s on this
# project's 2-core CPU (issue #5's stated baseline); the loader must serve 10x what training eats.
TRAIN_SAMPLES_PER_S_REFERENCE = 5.7


def bench_data(task: str = "transfer_cube", episodes: int = 2) -> list[dict]:
    """Generation speed per source and observation mode, then loader speed on the pixels store.

    Generation rows time ``episodes`` recorded attempts (failures included, as a run pays for
    them); the loader row serves batch 8 of K = 100 windows with all four 96x128 images.
    """
    import tempfile
    from pathlib import Path

    from aloha_bench.data.dataset import bench_loader
    from aloha_bench.generate import GenerateSettings, generate

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        pixels_store = None
        for source in ("scripted", "human"):
            for obs_mode in ("pixels", "state"):
                settings = GenerateSettings(
                    task=task, source=source, obs_mode=obs_mode, image_size=(96, 128)
                )
                out = Path(tmp) / f"{source}_{obs_mode}.zarr"
                attempts = 0

                def count(_episode, _kept, tried) -> None:
                    nonlocal attempts
                    attempts = tried

                start = time.perf_counter()
                generate(settings, out, episodes, keep_failed=True, progress=count)
                elapsed = time.perf_counter() - start
                rows.append(
                    {
                        "name": f"generate_{source}_{obs_mode}",
                        "task": task,
                        "cameras": 4 if obs_mode == "pixels" else 0,
                        "image_size": [96, 128] if obs_mode == "pixels" else None,
                        "episodes": attempts,
                        "episodes_per_min": 60 * attempts / elapsed,
                        **machine_info(),
                    }
                )
                if source == "scripted" and obs_mode == "pixels":
                    pixels_store = out
        loader = bench_loader(pixels_store, batch_size=8, chunk_size=100, n_batches=50)
        rows.append(
            {
                "name": "loader_pixels_4cam_96x128",
                "samples_per_s": loader["samples_per_s"],
                "batches_per_s": loader["batches_per_s"],
                "batch_size": 8,
                "chunk_size": 100,
                "train_reference_samples_per_s": TRAIN_SAMPLES_PER_S_REFERENCE,
                "loader_over_training": loader["samples_per_s"] / TRAIN_SAMPLES_PER_S_REFERENCE,
                **machine_info(),
            }
        )
    return rows


def bench_env(tasks: Sequence[str] | None = None, scale: float = 1.0) -> list[dict]:
    """Env steps per second for each task and observation configuration.

    Actions follow a slow sinusoid around the home pose so the arms and contacts really move.
    ``scale`` multiplies the number of timed steps (use < 1 for a quick look).
    """
    results = []
    for task in tasks or available_tasks():
        for label, obs_mode, n_cams, size, steps in ENV_CONFIGS:
            steps = max(5, int(steps * scale))
            cameras = list(("top", "front", "left_wrist", "right_wrist")[:n_cams]) or None
            env = envs.make(task, obs_mode=obs_mode, cameras=cameras, image_size=size)
            env.reset(seed=0)
            env.step(embodiment.HOME_STATE_RAD)  # first render creates the GL context
            phases = np.linspace(0, 2 * np.pi, embodiment.ACTION_DIM, endpoint=False)
            start = time.perf_counter()
            for t in range(steps):
                wave = 0.2 * np.sin(2 * np.pi * t / 100 + phases)
                env.step(embodiment.HOME_STATE_RAD + wave)
            elapsed = time.perf_counter() - start
            env.close()
            results.append(
                {
                    "task": task,
                    "config": label,
                    "obs_mode": obs_mode,
                    "cameras": n_cams,
                    "image_size": list(size),
                    "steps": steps,
                    "steps_per_s": steps / elapsed,
                    "ms_per_step": 1000 * elapsed / steps,
                    **machine_info(),
                }
            )
    return results
