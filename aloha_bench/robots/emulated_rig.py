"""A whole rig without hardware: both followers on servo emulators, synthetic cameras.

:class:`EmulatedRig` starts two :class:`~aloha_bench.robots.emulator.ServoEmulator` buses (six
STS3215 servos each, on pseudo-terminals), writes a mid-range calibration file per arm, and hands
:class:`~aloha_bench.robots.real_env.RealRigEnv` cameras that deliver changing frames at 30 fps. The
production driver, safety and timing code run byte for byte, so the control loop's timing
(``aloha-bench bench control``) is measured on the same code that drives the real arms.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from aloha_bench import embodiment
from aloha_bench.robots.calibration import ArmCalibration, MotorCalibration, save_calibration
from aloha_bench.robots.emulator import ServoEmulator
from aloha_bench.robots.real_env import RealRigEnv
from aloha_bench.robots.rig_config import ArmConfig, CameraConfig, RigConfig

# Joint ranges in ticks: wide for the arm joints, a 90-degree jaw; wrist roll turns fully.
_RANGES = {"wrist_roll": (0, 4095), "gripper": (1500, 2500)}
_ARM_RANGE = (800, 3300)


def mid_range_calibration() -> ArmCalibration:
    """A plausible calibration of one SO-101 arm (no homing offset, mid-range zero)."""
    return ArmCalibration(
        {
            joint: MotorCalibration(
                embodiment.MOTOR_IDS[joint], 0, 0, *_RANGES.get(joint, _ARM_RANGE)
            )
            for joint in embodiment.ARM_JOINTS
        }
    )


class SyntheticCapture:
    """A camera that delivers a new (H, W, 3) BGR frame every 1 / fps seconds."""

    def __init__(self, image_size: tuple[int, int], fps: float = 30.0, seed: int = 0) -> None:
        self._frames = np.random.default_rng(seed).integers(
            0, 256, (8, *image_size, 3), dtype=np.uint8
        )
        self._period_s = 1.0 / fps
        self._next_s = time.monotonic()
        self._count = 0

    def read(self) -> tuple[bool, np.ndarray]:
        self._next_s += self._period_s
        time.sleep(max(0.0, self._next_s - time.monotonic()))
        self._count += 1
        return True, self._frames[self._count % len(self._frames)]

    def release(self) -> None:
        pass


class EmulatedRig:
    """Emulated follower buses, calibration files and cameras for ``RealRigEnv``.

    Args:
        cameras: camera names (the policy's).
        image_size: (height, width) the cameras deliver.
        directory: where calibration files go (default: a temporary folder).

    Use as a context manager; :meth:`env` builds a ``RealRigEnv`` on it.
    """

    def __init__(
        self,
        cameras: tuple[str, ...],
        image_size: tuple[int, int],
        directory: str | Path | None = None,
    ) -> None:
        self._stack = contextlib.ExitStack()
        try:
            if directory is None:
                directory = self._stack.enter_context(tempfile.TemporaryDirectory())
            directory = Path(directory)
            arms = {}
            for side in embodiment.ARMS:
                emulator = self._stack.enter_context(ServoEmulator(ids=range(1, 7)))
                calibration_file = directory / f"{side}_follower.json"
                save_calibration(mid_range_calibration(), calibration_file)
                arms[side] = ArmConfig(
                    follower_port=emulator.port, follower_calibration=calibration_file
                )
            self.image_size = (int(image_size[0]), int(image_size[1]))
            self.config = RigConfig(
                arms=arms,
                cameras={name: CameraConfig(device=i) for i, name in enumerate(cameras)},
                image_size=self.image_size,
                reset_speed_rad_s=2.0,
                source="emulated rig",
            )
        except BaseException:
            self._stack.close()
            raise

    def capture_factory(self, device: Any, fps: int | None, capture_size: Any) -> SyntheticCapture:
        return SyntheticCapture(self.image_size, seed=int(device))

    def env(self, **kwargs: Any) -> RealRigEnv:
        return RealRigEnv(self.config, capture_factory=self.capture_factory, **kwargs)

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> EmulatedRig:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
