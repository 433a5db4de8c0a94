"""Observation and action spaces shared by the simulated and the real rig.

Both backends build their spaces here, so a policy sees the same keys, shapes, dtypes and joint
order whichever one runs it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from gymnasium import spaces

from aloha_bench import embodiment, keys

OBS_MODES = ("pixels", "state")


def action_space() -> spaces.Box:
    """12 absolute joint targets (radians, embodiment order) bounded by the joint ranges."""
    return spaces.Box(
        low=embodiment.STATE_LOW_RAD.astype(np.float32),
        high=embodiment.STATE_HIGH_RAD.astype(np.float32),
        dtype=np.float32,
    )


def observation_space(
    obs_mode: str,
    cameras: Sequence[str],
    image_size: tuple[int, int],
    environment_state_dim: int,
) -> spaces.Dict:
    """The observation space for ``obs_mode``.

    Args:
        obs_mode: ``"pixels"`` (joint state + one uint8 HxWx3 image per camera) or ``"state"``
            (joint state + ``observation.environment_state``, the task objects' poses).
        cameras: camera names for pixels mode, from ``keys.CAMERAS``.
        image_size: (height, width) of every image in pixels.
        environment_state_dim: length of the environment-state vector (state mode only).
    """
    if obs_mode not in OBS_MODES:
        raise ValueError(f"unknown obs_mode {obs_mode!r}; expected one of {OBS_MODES}")
    # Joint readings can pass the nominal limits slightly (soft joint limits, encoder noise), so
    # the state is unbounded rather than an observation that would fall outside its own space.
    entries: dict[str, spaces.Space] = {
        keys.STATE: spaces.Box(-np.inf, np.inf, shape=(embodiment.STATE_DIM,), dtype=np.float32)
    }
    if obs_mode == "pixels":
        if not cameras:
            raise ValueError("pixels mode needs at least one camera; pass cameras=[...]")
        height, width = keys.image_size(image_size)
        for camera in keys.camera_names(cameras):
            entries[keys.image_key(camera)] = spaces.Box(
                0, 255, shape=(height, width, 3), dtype=np.uint8
            )
    else:
        entries[keys.ENVIRONMENT_STATE] = spaces.Box(
            -np.inf, np.inf, shape=(environment_state_dim,), dtype=np.float32
        )
    return spaces.Dict(entries)
