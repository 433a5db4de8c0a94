"""One flag picks the rig: ``backend="sim"`` (MuJoCo) or ``backend="real"`` (SO-ARM101 servos).

Both return a Gymnasium env with the same observation keys, joint order, units and action space
(``aloha_bench.envs.spaces``), so training, generation and evaluation code never branch on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym

from aloha_bench import envs

BACKENDS = ("sim", "real")


def make_env(
    task: str,
    backend: str = "sim",
    robot_config: str | Path | None = None,
    **kwargs: Any,
) -> gym.Env:
    """Build the env for ``task`` on ``backend``.

    Args:
        task: task id; on the real rig it only names what the operator sets up (no props are
            simulated, and success is scored by hand).
        backend: ``"sim"`` or ``"real"``.
        robot_config: path of the rig's ``rig.toml`` (ports, cameras, calibration); real only.
        **kwargs: passed to the env (``obs_mode``, ``cameras``, ``image_size``...; the real rig
            takes its cameras and image size from ``rig.toml``).
    """
    if backend == "sim":
        if robot_config is not None:
            raise ValueError("--robot-config is for --backend real; drop it to use the simulator")
        return envs.make(task, **kwargs)
    if backend == "real":
        if robot_config is None:
            raise ValueError(
                "--backend real needs --robot-config rig.toml (ports, cameras, calibration "
                "files); docs/real_robot.md has an example"
            )
        from aloha_bench.robots.real_env import RealRigEnv  # only with the [robot] extra
        from aloha_bench.robots.rig_config import load_rig_config

        envs.load_task_spec(task)  # an unknown task name fails the same way on both backends
        config = load_rig_config(robot_config)
        cameras = kwargs.pop("cameras", None)
        if cameras is not None and tuple(cameras) != config.camera_names:
            raise ValueError(
                f"cameras {list(cameras)} differ from {config.source}'s "
                f"{list(config.camera_names)}; the real rig uses the cameras its rig.toml names: "
                "edit it or drop --cameras"
            )
        size = kwargs.pop("image_size", None)
        if size is not None and tuple(size) != tuple(config.image_size):
            raise ValueError(
                f"image_size {tuple(size)} differs from {config.source}'s "
                f"{tuple(config.image_size)}; set image_size in rig.toml or drop --image-size"
            )
        kwargs.pop("render_mode", None)
        return RealRigEnv(config, **kwargs)
    raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
