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


def camera_names(cameras: object, name: str = "cameras") -> tuple[str, ...]:
    """Camera names as a tuple: a sequence of names, or one string (``"top"``, ``"top,front"``).

    A bare string is a list of comma-separated names, as ``--cameras`` takes it, never a
    sequence of letters.

    Raises:
        ValueError: an unknown or repeated camera, or not names at all (the message names
            ``name``, the parameter it came from).
    """
    if isinstance(cameras, str):
        cameras = [c.strip() for c in cameras.split(",") if c.strip()]
    if not isinstance(cameras, list | tuple) or not all(isinstance(c, str) for c in cameras):
        raise ValueError(f"{name} must be camera names, e.g. ['top', 'front'], got {cameras!r}")
    for camera in cameras:
        if camera not in CAMERAS:
            raise ValueError(f"{name}: unknown camera {camera!r}; expected names from {CAMERAS}")
    if len(set(cameras)) != len(cameras):
        raise ValueError(f"{name} {list(cameras)} names a camera twice; list each once")
    return tuple(cameras)


def image_size(value: object, name: str = "image_size") -> tuple[int, int]:
    """``(height, width)`` in pixels from a pair of whole numbers or a ``"96x128"`` string.

    Raises:
        ValueError: anything else, e.g. ``96`` or ``(96, 128, 3)`` (the message names ``name``).
    """
    parts = value.lower().split("x") if isinstance(value, str) else value
    try:
        if len(parts) != 2 or any(  # type: ignore[arg-type]
            isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()) for v in parts
        ):
            raise ValueError
        height, width = (int(v) for v in parts)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be (height, width) in pixels, e.g. (96, 128) or '96x128'; got {value!r}"
        ) from None
    return height, width
