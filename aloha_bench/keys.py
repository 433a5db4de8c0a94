"""Observation and action keys, LeRobot-compatible, defined once (layer L0)."""

from __future__ import annotations

STATE = "observation.state"
ENVIRONMENT_STATE = "observation.environment_state"
IMAGES_PREFIX = "observation.images."
ACTION = "action"
ACTION_IS_PAD = "action_is_pad"

CAMERAS: tuple[str, ...] = ("top", "front", "left_wrist", "right_wrist")


def image_key(camera: str) -> str:
    """Observation key of one camera's image, e.g. ``observation.images.top``."""
    if camera not in CAMERAS:
        raise ValueError(f"unknown camera {camera!r}; expected one of {CAMERAS}")
    return IMAGES_PREFIX + camera
