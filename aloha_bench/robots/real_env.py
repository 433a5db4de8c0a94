"""The real bimanual SO-101 rig as a Gymnasium env, with the simulator's spaces, keys and units.

:class:`RealRigEnv` exposes exactly ``envs.spaces.observation_space("pixels", cameras, image_size,
0)`` and ``envs.spaces.action_space()``: 12 follower joint positions (radians, embodiment order)
plus one RGB image per configured camera; actions are 12 absolute joint goals. A policy trained in
simulation or on recorded real data therefore runs unchanged.

Differences from the simulator, by necessity:

* No success detector exists on hardware: ``info["stage"]``, ``info["max_stage"]`` and
  ``info["is_success"]`` are always 0, 0 and False, and the reward is 0. Score real episodes by
  hand (the paper's real-task stages, REFERENCE.md) and record the result next to the episode.
* ``obs_mode="state"`` is refused: object poses (``observation.environment_state``) are not
  measured on the rig.
* Time is wall-clock: :meth:`RealRigEnv.step` sends the goals, then sleeps until the next control
  deadline (50 Hz, ``embodiment.CONTROL_RATE_HZ``) before observing. The time the caller spends
  between steps (policy inference) counts toward the tick; a late tick is reported as
  ``info["overrun_s"]`` and counted in ``info["overruns"]`` rather than caught up with a burst.
* Reset does not teleport: followers ramp to ``embodiment.HOME_STATE_RAD`` at
  ``reset_speed_rad_s`` (rig.toml), then hold it.
* Safety: actions outside the joint ranges are clipped (as in the simulator), then every goal
  passes the calibrated limits and the per-tick step cap (:mod:`safety`). Any exception, Ctrl-C
  included, switches the followers' torque off before it propagates, and so does :meth:`close`.
  The fault latches: :meth:`RealRigEnv.step` (and teleoperation) raise :class:`RigFaultError`
  until :meth:`RealRigEnv.reset`, which powers the followers from their present pose (goal =
  present position, then torque on) before ramping them home. An unpowered arm never "steps".

Seeding only seeds ``np_random``; the rig itself is not reproducible. Register the env with
``nondeterministic=True``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import numpy as np

from aloha_bench import embodiment, keys
from aloha_bench.envs import spaces
from aloha_bench.robots import safety
from aloha_bench.robots.arm import ArmFaultError, SO101Arm
from aloha_bench.robots.cameras import Camera, CaptureFactory, open_cameras, open_opencv_capture
from aloha_bench.robots.rig_config import RigConfig

# A follower counts as home once every joint is this close to the home pose.
HOME_TOLERANCE_RAD = 0.05
# Longest time reset keeps commanding the home pose after the ramp while joints settle.
SETTLE_TIMEOUT_S = 1.0
_GRIPPER = embodiment.ARM_JOINTS.index("gripper")
# Joints without end stops, whose readings wrap at +/-pi (calibration.FULL_TURN_JOINTS).
_ENDLESS = [embodiment.ARM_JOINTS.index("wrist_roll")]


class LeaderUnwrap:
    """One leader arm's readings with its endless joints (wrist_roll) unwrapped across +/-pi.

    A leader's wrist_roll reading jumps from +pi to -pi when it is turned past the encoder's seam.
    The follower's range (-157..163 deg) does not reach the seam, so copying the reading would
    throw the follower's goal about 320 deg to its other limit in one tick, and the follower
    would spin the long way round. Each reading is instead the previous angle plus the shortest
    turn to the new reading (a hand turns far less than half a turn in one 20 ms tick), so the
    angle continues past +/-pi; the follower's joint limits then hold it at the limit until the
    leader comes back. :meth:`reset` forgets the history (at each episode start).
    """

    def __init__(self) -> None:
        self._last: np.ndarray | None = None

    def reset(self) -> None:
        self._last = None

    def __call__(self, leader_rad: np.ndarray) -> np.ndarray:
        """Raw leader angles (6,) -> the same with endless joints continuous (6,), radians."""
        angles = np.array(leader_rad, dtype=np.float64)
        if self._last is not None:
            turn = angles[_ENDLESS] - self._last[_ENDLESS]
            angles[_ENDLESS] = self._last[_ENDLESS] + (turn + np.pi) % (2 * np.pi) - np.pi
        self._last = angles.copy()
        return angles


class RigFaultError(ArmFaultError):
    """The rig was stepped after a fault switched the followers' torque off; call reset()."""


def map_leader_to_follower(
    leader_rad: np.ndarray,
    leader_limits: tuple[np.ndarray, np.ndarray],
    follower_limits: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """One arm's leader joint angles -> follower goals (radians, embodiment order).

    Arm joints copy over: both arms share kinematics and the mid-range zero. The gripper does
    not: the leader's trigger has a shorter travel than the follower's jaw, so the trigger's
    fraction of its calibrated range becomes the same fraction of the follower's gripper range
    (what LeRobot's 0..100 gripper scale achieves).
    """
    goal = np.array(leader_rad, dtype=np.float64)
    leader_low, leader_high = leader_limits[0][_GRIPPER], leader_limits[1][_GRIPPER]
    follower_low, follower_high = follower_limits[0][_GRIPPER], follower_limits[1][_GRIPPER]
    fraction = (goal[_GRIPPER] - leader_low) / (leader_high - leader_low)
    goal[_GRIPPER] = follower_low + np.clip(fraction, 0.0, 1.0) * (follower_high - follower_low)
    return goal


class RealRigEnv(gym.Env):
    """The real rig: two follower arms, optional leader arms, and cameras.

    Connects to everything on construction; :meth:`close` releases it (torque off first).

    Args:
        config: the rig description (``rig_config.load_rig_config("rig.toml")``).
        obs_mode: only ``"pixels"`` exists on hardware.
        control_rate_hz: step rate (50 Hz as in the paper; tests may lower or raise it).
        max_episode_steps: truncate after this many steps (``None``: never).
        teleop: also connect the leader arms, for :meth:`teleop_step`.
        capture_factory: opens one camera device (OpenCV by default; tests pass fakes).
        max_consecutive_overruns: raise :class:`safety.DeadlineMissedError` after this many late
            ticks in a row; ``None`` only reports them.
    """

    metadata = {"render_modes": [], "render_fps": embodiment.CONTROL_RATE_HZ}

    def __init__(
        self,
        config: RigConfig,
        obs_mode: str = "pixels",
        control_rate_hz: float = embodiment.CONTROL_RATE_HZ,
        max_episode_steps: int | None = None,
        teleop: bool = False,
        capture_factory: CaptureFactory = open_opencv_capture,
        max_consecutive_overruns: int | None = None,
    ) -> None:
        if obs_mode == "state":
            raise ValueError(
                "obs_mode='state' needs object poses (observation.environment_state), which the "
                "real rig does not measure; use obs_mode='pixels' with a vision policy"
            )
        if obs_mode != "pixels":
            raise ValueError(f"unknown obs_mode {obs_mode!r}; the real rig supports 'pixels'")
        if not (control_rate_hz > 0 and math.isfinite(control_rate_hz)):
            raise ValueError(f"control_rate_hz must be positive, got {control_rate_hz}")
        if teleop and not config.has_leaders:
            raise ValueError(
                f"{config.source}: teleop needs leader_port and leader_calibration in both "
                "[arms.left] and [arms.right]"
            )
        self.config = config
        self.obs_mode = obs_mode
        self.camera_names = config.camera_names
        self.observation_space = spaces.observation_space(
            "pixels", self.camera_names, config.image_size, 0
        )
        self.action_space = spaces.action_space()
        self.control_dt_s = 1.0 / control_rate_hz
        self.max_episode_steps = max_episode_steps
        self._watchdog = safety.DeadlineWatchdog(self.control_dt_s, max_consecutive_overruns)
        self._steps = 0
        self._overruns_at_reset = 0
        self._leaders_synced = False
        self._unwrap = {side: LeaderUnwrap() for side in embodiment.ARMS}
        self._closed = False
        # The first error since the last good reset ("TypeName: message"); see _require_ready.
        self._fault: str | None = None
        self.followers: dict[str, SO101Arm] = {}
        self.leaders: dict[str, SO101Arm] = {}
        self.cameras: dict[str, Camera] = {}
        try:
            self.cameras = open_cameras(
                {
                    name: (cam.device, cam.fps, cam.capture_size)
                    for name, cam in config.cameras.items()
                },
                config.image_size,
                config.camera_timeout_s,
                capture_factory,
            )
            for side in embodiment.ARMS:
                ports = config.arms[side]
                self.followers[side] = SO101Arm(
                    ports.follower_port,
                    ports.follower_calibration,
                    "follower",
                    config.max_relative_target_rad,
                    name=f"{side} follower",
                )
                if teleop:
                    self.leaders[side] = SO101Arm(
                        ports.leader_port,
                        ports.leader_calibration,
                        "leader",
                        name=f"{side} leader",
                    )
            for arm in (*self.leaders.values(), *self.followers.values()):
                arm.connect()
        except BaseException:
            self.close()
            raise

    # --- gym API ---

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Power the followers, ramp them slowly to the home pose, return the first observation.

        Torque is (re-)enabled with each servo's goal set to its present position first, so an
        arm that went limp after a fault is held where it hangs, then ramped home; this clears a
        latched fault.
        """
        super().reset(seed=seed)
        self._require_open()
        with self._torque_off_on_error():
            for side in embodiment.ARMS:
                self.followers[side].enable_torque()
            home_error_rad = self._move_followers_to(embodiment.HOME_STATE_RAD)
            self._steps = 0
            self._overruns_at_reset = self._watchdog.missed
            self._leaders_synced = False
            observation = self._observe()
            self._watchdog.start(time.perf_counter())
        self._fault = None
        info = self._info(overrun_s=0.0)
        info["home_error_rad"] = home_error_rad
        return observation, info

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Send 12 joint goals, wait for the next control deadline, observe.

        Raises:
            ValueError: the action is not 12 finite numbers (torque is switched off first).
            RigFaultError: an earlier error switched the torque off; call :meth:`reset`.
        """
        self._require_ready()
        with self._torque_off_on_error():
            goal = np.asarray(action, dtype=np.float64)
            if goal.shape != (embodiment.ACTION_DIM,):
                raise ValueError(
                    f"action must have shape ({embodiment.ACTION_DIM},), got {goal.shape}"
                )
            if not np.all(np.isfinite(goal)):
                raise ValueError(f"action contains NaN or infinity: {goal}")
            self._send(embodiment.clip_to_limits(goal))
            tick = self._watchdog.end_tick(time.perf_counter())
            if tick.sleep_s > 0:
                time.sleep(tick.sleep_s)
            observation = self._observe()
        self._steps += 1
        truncated = self.max_episode_steps is not None and self._steps >= self.max_episode_steps
        return observation, 0.0, False, truncated, self._info(overrun_s=tick.overrun_s)

    def teleop_step(self) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """One teleoperation tick: the leaders' pose becomes the action; returns like step.

        The first call after a reset first ramps the followers to the leaders' pose, so they
        never jump when teleoperation starts. ``info["action"]`` holds the 12-D action sent,
        which is what a dataset records (the paper's actions are the leader joint positions,
        here in follower units).
        """
        self._require_ready()
        self.sync_followers_to_leaders()
        with self._torque_off_on_error():
            action = self.leader_action()
        result = self.step(action)
        result[4][keys.ACTION] = action.astype(np.float32)
        return result

    def sync_followers_to_leaders(self) -> None:
        """Ramp the followers to the leaders' pose, once per reset, so teleop starts smoothly."""
        if not self.leaders:
            raise RuntimeError(
                "teleoperation needs the leader arms: create the env with teleop=True"
            )
        self._require_ready()
        with self._torque_off_on_error():
            if not self._leaders_synced:
                for unwrap in self._unwrap.values():
                    unwrap.reset()
                self._move_followers_to(self.leader_action())
                self._leaders_synced = True
                self._watchdog.start(time.perf_counter())

    def leader_action(self) -> np.ndarray:
        """The leaders' pose as a 12-D follower goal (radians, embodiment order)."""
        parts = []
        for side in embodiment.ARMS:
            leader, follower = self.leaders[side], self.followers[side]
            leader_rad = self._unwrap[side](leader.read_rad())
            parts.append(map_leader_to_follower(leader_rad, leader.limits_rad, follower.limits_rad))
        return embodiment.clip_to_limits(np.concatenate(parts))

    def close(self) -> None:
        """Switch torque off, disconnect the arms and release the cameras (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for arm in (*self.followers.values(), *self.leaders.values()):
            arm.disconnect()
        for camera in self.cameras.values():
            camera.close()

    # --- internals ---

    def _require_open(self) -> None:
        if self._closed:
            raise RuntimeError("the rig env is closed; create a new RealRigEnv")

    def _require_ready(self) -> None:
        """Refuse to move after a fault: the followers are unpowered until reset()."""
        self._require_open()
        if self._fault is not None:
            raise RigFaultError(
                f"the rig faulted ({self._fault}) and the followers' torque is off; call "
                "env.reset() to power them from their present pose and ramp them home"
            )

    @contextlib.contextmanager
    def _torque_off_on_error(self) -> Iterator[None]:
        try:
            yield
        except BaseException as exc:
            if self._fault is None:
                self._fault = f"{type(exc).__name__}: {exc}".rstrip(": ")
            for arm in self.followers.values():
                arm.torque_off(reason=self._fault)
            raise

    def _read_state(self) -> np.ndarray:
        return np.concatenate([self.followers[side].read_rad() for side in embodiment.ARMS])

    def _send(self, goal: np.ndarray) -> None:
        for side in embodiment.ARMS:
            self.followers[side].write_goal_rad(goal[embodiment.arm_slice(side)])

    def _observe(self) -> dict[str, np.ndarray]:
        observation = {keys.STATE: self._read_state().astype(np.float32)}
        for name in self.camera_names:
            observation[keys.image_key(name)] = self.cameras[name].read()
        return observation

    def _info(self, overrun_s: float) -> dict[str, Any]:
        return {
            "stage": 0,
            "max_stage": 0,
            "is_success": False,
            "overrun_s": overrun_s,
            "overruns": self._watchdog.missed - self._overruns_at_reset,
        }

    def _move_followers_to(self, target: np.ndarray) -> float:
        """Ramp the followers linearly to ``target`` at the configured speed; return the error.

        The target is first clamped to the calibrated ranges (a pose the arm cannot reach would
        never settle). After the ramp the target is held until every joint is within
        :data:`HOME_TOLERANCE_RAD` or :data:`SETTLE_TIMEOUT_S` passes.
        """
        target = np.concatenate(
            [
                safety.clamp_to_limits(
                    target[embodiment.arm_slice(side)], *self.followers[side].limits_rad
                )
                for side in embodiment.ARMS
            ]
        )
        start = self._read_state()
        distance = float(np.max(np.abs(target - start)))
        ticks = max(1, math.ceil(distance / self.config.reset_speed_rad_s / self.control_dt_s))
        schedule = safety.DeadlineWatchdog(self.control_dt_s)
        schedule.start(time.perf_counter())
        for k in range(1, ticks + 1):
            self._send(start + (target - start) * (k / ticks))
            time.sleep(schedule.end_tick(time.perf_counter()).sleep_s)
        error = float(np.max(np.abs(self._read_state() - target)))
        deadline = time.perf_counter() + SETTLE_TIMEOUT_S
        while error > HOME_TOLERANCE_RAD and time.perf_counter() < deadline:
            self._send(target)
            time.sleep(schedule.end_tick(time.perf_counter()).sleep_s)
            error = float(np.max(np.abs(self._read_state() - target)))
        return error


def from_rig_toml(robot_config: str, **kwargs: Any) -> RealRigEnv:
    """Gymnasium entry point: ``gym.make("AlohaBench/RealRig-v0", robot_config="rig.toml")``."""
    from aloha_bench.robots.rig_config import load_rig_config

    return RealRigEnv(load_rig_config(robot_config), **kwargs)
