"""``rig.toml``: which serial ports, cameras and calibration files make up the real rig.

Example (docs/real_robot.md explains every field)::

    image_size = [480, 640]            # (height, width) the policy was trained on
    max_relative_target_rad = 0.15     # per-tick goal cap around the present position

    [arms.left]
    follower_port = "/dev/serial/by-id/usb-1a86_USB_Single_Serial_5A46-if00"
    follower_calibration = "calibration/left_follower.json"
    leader_port = "/dev/serial/by-id/usb-1a86_USB_Single_Serial_5A47-if00"
    leader_calibration = "calibration/left_leader.json"

    [arms.right]
    ...

    [cameras.top]
    device = "/dev/v4l/by-id/usb-046d_C922-video-index0"
    fps = 30

Relative paths are resolved against the file's folder. The dataclasses validate themselves, so a
config built in code gets the same checks; every error names the field and the fix.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aloha_bench import embodiment, keys


class RigConfigError(ValueError):
    """``rig.toml`` is invalid; the message names the file, the field and the fix."""


@dataclass(frozen=True)
class ArmConfig:
    """Ports and calibration files of one side's follower and (optional) leader arm."""

    follower_port: str
    follower_calibration: Path
    leader_port: str | None = None
    leader_calibration: Path | None = None

    @property
    def has_leader(self) -> bool:
        """Whether a leader arm is configured (needed for teleoperation)."""
        return self.leader_port is not None


@dataclass(frozen=True)
class CameraConfig:
    """One camera: its device, and optionally the frame rate and size to request."""

    device: int | str
    fps: int | None = None
    capture_size: tuple[int, int] | None = None


@dataclass(frozen=True)
class RigConfig:
    """The whole real rig.

    Attributes:
        arms: ``"left"`` and ``"right"`` :class:`ArmConfig`.
        cameras: camera name (from ``keys.CAMERAS``) -> :class:`CameraConfig`.
        image_size: (height, width) of every image the env returns; must match the policy.
        max_relative_target_rad: largest goal lead over the present position per tick.
        reset_speed_rad_s: joint speed of the slow ramp to the home pose on reset.
        camera_timeout_s: a camera with no new frame for this long is an error.
        source: where the config came from, for messages.
    """

    arms: Mapping[str, ArmConfig]
    cameras: Mapping[str, CameraConfig]
    image_size: tuple[int, int]
    max_relative_target_rad: float | None = 0.15
    reset_speed_rad_s: float = 0.5
    camera_timeout_s: float = 0.5
    source: str = field(default="rig config", compare=False)

    def __post_init__(self) -> None:
        def fail(name: str, problem: str) -> RigConfigError:
            return RigConfigError(f"{self.source}: {name}: {problem}")

        if set(self.arms) != set(embodiment.ARMS):
            raise fail(
                "arms", f"need exactly [arms.left] and [arms.right], got {sorted(self.arms)}"
            )
        ports: dict[str, str] = {}
        for side in embodiment.ARMS:
            arm = self.arms[side]
            for role in ("follower", "leader"):
                port = getattr(arm, f"{role}_port")
                calibration = getattr(arm, f"{role}_calibration")
                where = f"arms.{side}.{role}_port"
                if port is None and role == "leader":
                    if calibration is not None:
                        raise fail(where, "leader_calibration is set but leader_port is not")
                    continue
                if not isinstance(port, str) or not port:
                    raise fail(where, "set it to the arm's serial port, e.g. '/dev/ttyACM0'")
                if port in ports:
                    raise fail(where, f"{port!r} is already used by {ports[port]}")
                ports[port] = where
                if calibration is None:
                    raise fail(
                        f"arms.{side}.{role}_calibration",
                        "set it to the arm's calibration JSON (see docs/real_robot.md)",
                    )
        if not self.cameras:
            raise fail("cameras", f"add at least one [cameras.<name>] from {keys.CAMERAS}")
        devices: dict[int | str, str] = {}
        for name, camera in self.cameras.items():
            if name not in keys.CAMERAS:
                raise fail(f"cameras.{name}", f"unknown camera name; use one of {keys.CAMERAS}")
            if camera.device in devices:
                raise fail(
                    f"cameras.{name}.device", f"{camera.device!r} is also {devices[camera.device]}"
                )
            devices[camera.device] = f"cameras.{name}"
            if camera.fps is not None and camera.fps <= 0:
                raise fail(f"cameras.{name}.fps", f"must be positive, got {camera.fps}")
            if camera.capture_size is not None and not _is_size(camera.capture_size):
                raise fail(f"cameras.{name}.capture_size", "must be [height, width] > 0")
        if not _is_size(self.image_size):
            raise fail(
                "image_size",
                f"must be [height, width] of positive integers, got {self.image_size!r}; use "
                "the image size the policy was trained on",
            )
        for name in ("reset_speed_rad_s", "camera_timeout_s"):
            value = getattr(self, name)
            if not (_is_number(value) and value > 0):
                raise fail(name, f"must be a positive number, got {value!r}")
        limit = self.max_relative_target_rad
        if limit is not None and not (_is_number(limit) and limit > 0):
            raise fail(
                "max_relative_target_rad",
                f"must be a positive number of radians, got {limit!r} (0.15 is a safe start)",
            )

    @property
    def camera_names(self) -> tuple[str, ...]:
        """Configured cameras in ``keys.CAMERAS`` order (the observation's key order)."""
        return tuple(name for name in keys.CAMERAS if name in self.cameras)

    @property
    def has_leaders(self) -> bool:
        """Whether both sides have a leader arm (teleoperation)."""
        return all(self.arms[side].has_leader for side in embodiment.ARMS)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_size(value: Any) -> bool:
    return (
        isinstance(value, tuple | list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    )


_TOP_KEYS = {
    "arms",
    "cameras",
    "image_size",
    "max_relative_target_rad",
    "reset_speed_rad_s",
    "camera_timeout_s",
}
_ARM_KEYS = {"follower_port", "follower_calibration", "leader_port", "leader_calibration"}
_CAMERA_KEYS = {"device", "fps", "capture_size"}


def _check_keys(table: Any, allowed: set[str], where: str, source: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise RigConfigError(f"{source}: {where}: expected a table, got {table!r}")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise RigConfigError(
            f"{source}: {where}: unknown keys {unknown}; allowed: {sorted(allowed)}"
        )
    return table


def rig_config_from_dict(data: Mapping[str, Any], source: str, base_dir: Path) -> RigConfig:
    """Build a :class:`RigConfig` from parsed TOML; relative paths are taken from ``base_dir``.

    Raises:
        RigConfigError: a key is unknown, missing or invalid.
    """
    top = _check_keys(dict(data), _TOP_KEYS, "top level", source)
    if "image_size" not in top:
        raise RigConfigError(
            f"{source}: image_size: missing; add image_size = [height, width] matching the "
            "policy's training images"
        )

    def path_or_none(value: Any, where: str) -> Path | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise RigConfigError(f"{source}: {where}: expected a file path string, got {value!r}")
        path = Path(value).expanduser()
        return path if path.is_absolute() else base_dir / path

    arms = {}
    arm_tables = _check_keys(top.get("arms", {}), set(embodiment.ARMS), "arms", source)
    for side, table in arm_tables.items():
        table = _check_keys(table, _ARM_KEYS, f"arms.{side}", source)
        arms[side] = ArmConfig(
            follower_port=table.get("follower_port"),
            follower_calibration=path_or_none(
                table.get("follower_calibration"), f"arms.{side}.follower_calibration"
            ),
            leader_port=table.get("leader_port"),
            leader_calibration=path_or_none(
                table.get("leader_calibration"), f"arms.{side}.leader_calibration"
            ),
        )
    cameras = {}
    camera_tables = _check_keys(top.get("cameras", {}), set(keys.CAMERAS), "cameras", source)
    for name, table in camera_tables.items():
        table = _check_keys(table, _CAMERA_KEYS, f"cameras.{name}", source)
        device = table.get("device")
        if isinstance(device, bool) or not isinstance(device, int | str) or device == "":
            raise RigConfigError(
                f"{source}: cameras.{name}.device: set it to a camera index (0) or a device "
                f"path ('/dev/video0'), got {device!r}"
            )
        size = table.get("capture_size")
        cameras[name] = CameraConfig(
            device=device,
            fps=table.get("fps"),
            capture_size=tuple(size) if isinstance(size, list) else size,
        )
    size = top["image_size"]
    optional = ("max_relative_target_rad", "reset_speed_rad_s", "camera_timeout_s")
    return RigConfig(
        arms=arms,
        cameras=cameras,
        image_size=tuple(size) if isinstance(size, list) else size,
        source=source,
        **{name: top[name] for name in optional if name in top},
    )


def load_rig_config(path: str | Path) -> RigConfig:
    """Read and validate ``rig.toml``.

    Raises:
        RigConfigError: the file is missing, not TOML, or has an invalid field (named).
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise RigConfigError(
            f"{path}: rig config not found; copy the example from docs/real_robot.md"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise RigConfigError(f"{path}: not valid TOML ({exc})") from exc
    return rig_config_from_dict(data, str(path), path.resolve().parent)
