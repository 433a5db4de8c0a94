"""Real-world timing and servo imperfections for the simulated rig, as small pure components.

The simulator observes and acts instantly and exactly; the real rig does not. These components let
:class:`~aloha_bench.envs.aloha_env.AlohaEnv` reproduce the main differences, each switchable:

* :class:`CameraClock`: cameras run slower than the control loop (30 fps against 50 Hz) and deliver
  each frame some time after it was captured; between two frames the policy sees the last one
  again, exactly as :class:`aloha_bench.robots.cameras.Camera` hands the newest frame to the loop.
* :class:`DelayLine`: a fixed delay of whole control steps (joint readings, actions).
* :class:`DeadbandBacklash`: a servo ignores goal changes inside its dead zone, and its gear train
  has play that must be taken up after each reversal.
* :func:`quantize_rad`: encoder and goal positions are whole ticks, 4096 per turn.

:class:`LatencyConfig` bundles the settings; level ``"none"`` (the default) switches everything off
and leaves the env bit-identical to one built without it; level ``"real"`` uses the defaults below.

Defaults of the ``"real"`` level, and where they come from:

* ``camera_fps = 30``: the UVC webcams of SO-101 rigs run at 30 fps (LeRobot's OpenCV camera
  configs and docs/real_robot.md use 30).
* ``camera_latency_s = 0.06``: glass-to-application latency of USB (UVC) cameras is commonly
  measured at 50-100 ms (exposure, on-camera encoding, USB transfer, decoding); 60 ms is three
  control ticks. Not measured on this project's rig.
* ``state_delay_steps = 0``: a Feetech sync read of six servos at 1 Mbaud takes ~1-2 ms
  (REFERENCE.md: packet sizes and baud rate), far below one 20 ms tick.
* ``action_delay_steps = 1``: policy inference (~10 ms for ACT on an RTX 2080 Ti, Zhao et al.
  2023, more on a CPU) plus the USB-serial adapter's latency timer (1-16 ms) make a goal reach the
  servos about one tick after the observation it answers.
* ``deadband_ticks = 1``: the STS3215 control table's CW/CCW dead zone registers (addresses 26
  and 27) hold 1 tick each at the factory.
* ``backlash_ticks = 4`` (~0.35 degrees): an estimate for the STS3215's metal gear train, which its
  datasheet does not specify; measure it on your arms with ``aloha-bench replay`` (a reversal
  shows as a flat step in the tracking error) and override it.
* ``quantize = True``: 4096 ticks per turn (``embodiment.SERVO_TICKS_PER_TURN``).

Layer L2: numpy only (no mujoco, no torch).
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from aloha_bench import embodiment
from aloha_bench.presets import resolve_preset

LATENCY_LEVELS = ("none", "real")
# Floors of ratios of floats: 0.6 * 5 must floor to 3, not 2.9999999999999996 -> 2.
_EPS = 1e-9
TICK_RAD = 2.0 * math.pi / embodiment.SERVO_TICKS_PER_TURN


@dataclasses.dataclass(frozen=True)
class LatencyConfig:
    """Timing and servo imperfections of the simulated rig (all off by default).

    Attributes:
        camera_fps: camera frame rate; ``None`` renders a fresh frame at every control step.
        camera_latency_s: time from a frame's capture until the policy can see it.
        state_delay_steps: control steps by which joint readings (observation.state) lag.
        action_delay_steps: control steps by which actions reach the servos late.
        deadband_ticks: goal changes up to this many ticks (per joint) are ignored.
        backlash_ticks: gear play (full width, ticks) taken up after each direction reversal.
        quantize: round joint readings and goals to whole encoder ticks (4096 per turn).
    """

    camera_fps: float | None = None
    camera_latency_s: float = 0.0
    state_delay_steps: int = 0
    action_delay_steps: int = 0
    deadband_ticks: float = 0.0
    backlash_ticks: float = 0.0
    quantize: bool = False

    def __post_init__(self) -> None:
        if self.camera_fps is not None and not 0.0 < self.camera_fps <= 1000.0:
            raise ValueError(
                f"camera_fps must be in (0, 1000] or None (a frame every step), got "
                f"{self.camera_fps}"
            )
        if not 0.0 <= self.camera_latency_s <= 1.0:
            raise ValueError(
                f"camera_latency_s must be in [0, 1] s, got {self.camera_latency_s}; USB cameras "
                "typically show 0.05-0.1 s"
            )
        for name in ("state_delay_steps", "action_delay_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 50:
                raise ValueError(f"{name} must be an integer in [0, 50] steps, got {value!r}")
        for name in ("deadband_ticks", "backlash_ticks"):
            value = getattr(self, name)
            if not 0.0 <= value <= 100.0:
                raise ValueError(f"{name} must be in [0, 100] ticks, got {value}")

    @classmethod
    def from_level(cls, name: str) -> LatencyConfig:
        """The named preset: ``"none"`` (ideal simulator) or ``"real"`` (module defaults)."""
        if name == "none":
            return cls()
        if name == "real":
            return cls(
                camera_fps=30.0,
                camera_latency_s=0.06,
                state_delay_steps=0,
                action_delay_steps=1,
                deadband_ticks=1.0,
                backlash_ticks=4.0,
                quantize=True,
            )
        raise ValueError(f"unknown latency level {name!r}; expected one of {LATENCY_LEVELS}")

    @classmethod
    def resolve(cls, value: str | Mapping[str, Any] | LatencyConfig) -> LatencyConfig:
        """A config from a level name, a config (returned as is), or a mapping of a ``level``
        (default ``"none"``) plus field overrides, e.g. ``{"action_delay_steps": 2}``."""
        return resolve_preset(cls, value, "latency")

    def replace(self, **overrides: Any) -> LatencyConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **overrides)

    @property
    def camera_active(self) -> bool:
        """Whether camera frames can differ from a fresh render at every step."""
        return self.camera_fps is not None or self.camera_latency_s > 0.0

    @property
    def active(self) -> bool:
        """Whether anything differs from the ideal simulator."""
        return self != LatencyConfig()


class CameraClock:
    """Which control step's state a camera image shows, for a camera slower than the loop.

    Frame ``k`` is captured at ``k / camera_fps`` seconds after reset. It shows the simulator state
    of the last control step at or before that time (the state only exists at control steps), and
    the policy can see it from ``camera_latency_s`` later on. At control step ``t`` the policy gets
    the newest frame it can see; before the first one arrives, the frame captured at reset.

    Args:
        control_dt_s: control period (0.02 s at 50 Hz).
        camera_fps: frame rate; ``None`` means one frame per control step.
        latency_s: capture-to-delivery delay.
    """

    def __init__(self, control_dt_s: float, camera_fps: float | None, latency_s: float) -> None:
        if not (control_dt_s > 0 and math.isfinite(control_dt_s)):
            raise ValueError(f"control_dt_s must be positive, got {control_dt_s}")
        self.control_dt_s = control_dt_s
        self.frame_dt_s = control_dt_s if camera_fps is None else 1.0 / camera_fps
        self.latency_s = latency_s

    def capture_step(self, frame: int) -> int:
        """The control step whose state frame ``frame`` shows."""
        return math.floor(frame * self.frame_dt_s / self.control_dt_s + _EPS)

    def delivered_frame(self, step: int) -> int:
        """The newest frame visible at control step ``step`` (0 until the first one arrives)."""
        return max(
            0, math.floor((step * self.control_dt_s - self.latency_s) / self.frame_dt_s + _EPS)
        )

    def source_step(self, step: int) -> int:
        """The control step whose state the image delivered at ``step`` shows."""
        return self.capture_step(self.delivered_frame(step))

    def is_capture_step(self, step: int) -> bool:
        """Whether some frame shows the state of ``step`` (so it must be rendered then)."""
        first = math.ceil(step * self.control_dt_s / self.frame_dt_s - _EPS)
        return self.capture_step(first) == step


def frame_schedule(
    n_steps: int, control_dt_s: float, camera_fps: float | None, latency_s: float
) -> np.ndarray:
    """Source step of the image the policy sees at each of control steps ``0..n_steps-1``.

    E.g. 30 fps against 50 Hz without latency gives ``[0, 0, 1, 1, 3, 5, 5, 6, 6, 8, ...]``: a
    new frame at 3 of every 5 steps, the last one repeated in between.
    """
    clock = CameraClock(control_dt_s, camera_fps, latency_s)
    return np.array([clock.source_step(t) for t in range(n_steps)], dtype=np.int64)


class DelayLine:
    """Delays a stream of arrays by a fixed number of calls.

    The first ``delay_steps`` outputs after :meth:`reset` repeat the reset value: what a delayed
    channel shows before anything newer has come through.
    """

    def __init__(self, delay_steps: int) -> None:
        if delay_steps < 0:
            raise ValueError(f"delay_steps must be >= 0, got {delay_steps}")
        self.delay_steps = delay_steps
        self._queue: collections.deque[np.ndarray] = collections.deque()

    def reset(self, value: np.ndarray) -> None:
        """Fill the line with ``value``."""
        self._queue = collections.deque(np.array(value, copy=True) for _ in range(self.delay_steps))

    def __call__(self, value: np.ndarray) -> np.ndarray:
        """Push ``value``; return the value pushed ``delay_steps`` calls ago."""
        if self.delay_steps == 0:
            return value
        self._queue.append(np.array(value, copy=True))
        return self._queue.popleft()


class DeadbandBacklash:
    """A servo's dead zone and gear backlash, applied to its goal positions (per joint).

    Dead zone: the servo acts on a new goal only once it differs from the goal it holds by more
    than ``deadband_rad`` (the STS3215 stops driving inside its CW/CCW dead zone, so smaller
    corrections never move the joint). Backlash: the classic play operator (a "dead zone on
    reversal"): the joint follows the held goal only when it pushes against one side of a gap of
    width ``backlash_rad``; after a reversal the goal must cross the whole gap before the joint
    moves again, and at rest the joint sits half the gap behind the last direction of travel.
    Modelled on the goal, not the torque, which keeps the MuJoCo servo unchanged.

    Args:
        deadband_rad: dead zone half-width (radians).
        backlash_rad: full width of the gear play (radians).
    """

    def __init__(self, deadband_rad: float, backlash_rad: float) -> None:
        if not all(v >= 0 and math.isfinite(v) for v in (deadband_rad, backlash_rad)):
            raise ValueError(
                f"deadband_rad and backlash_rad must be finite and >= 0, got {deadband_rad}, "
                f"{backlash_rad}"
            )
        self.deadband_rad = deadband_rad
        self.backlash_rad = backlash_rad
        self._held: np.ndarray | None = None
        self._output: np.ndarray | None = None

    def reset(self, goal: np.ndarray) -> None:
        """Start at rest at ``goal`` (no play taken up on either side)."""
        self._held = np.array(goal, dtype=np.float64, copy=True)
        self._output = self._held.copy()

    def __call__(self, goal: np.ndarray) -> np.ndarray:
        """The effective goal the joint is driven to, given the commanded ``goal``."""
        if self._held is None or self._output is None:
            raise RuntimeError("call reset() before filtering goals")
        goal = np.asarray(goal, dtype=np.float64)
        moved = np.abs(goal - self._held) > self.deadband_rad
        self._held = np.where(moved, goal, self._held)
        half = 0.5 * self.backlash_rad
        self._output = np.clip(self._output, self._held - half, self._held + half)
        return self._output.copy()


def quantize_rad(
    q_rad: np.ndarray, ticks_per_turn: int = embodiment.SERVO_TICKS_PER_TURN
) -> np.ndarray:
    """Round joint angles to whole encoder ticks (zero is a tick: calibration puts mid-range on
    a whole tick)."""
    tick = 2.0 * math.pi / ticks_per_turn
    return np.round(np.asarray(q_rad, dtype=np.float64) / tick) * tick
