"""Speed benchmarks (L4): figures printed by ``aloha-bench bench``, never asserted in tests."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence

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
    """Where a figure was measured, stored beside it."""
    return {
        "cpu_count": os.cpu_count() or 0,
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "mujoco_gl": os.environ.get("MUJOCO_GL", ""),
    }


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
