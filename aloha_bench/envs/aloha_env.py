"""The one simulated environment class: the four-arm SO-ARM101 rig plus one task's props.

Every task is this class built from its ``tasks/<task_id>/`` folder; nothing here knows which task
it runs. See ``aloha_bench.envs`` for the Gymnasium ids.

Semantics (decided once, reported everywhere):
  * Action: 12 absolute joint targets (radians, embodiment order). They drive the followers'
    position servos and set the leaders' joints directly (the leaders show the operator's input).
    Targets outside the joint ranges are clipped to them; a wrong shape or a NaN/inf raises
    ``ValueError`` before anything moves.
  * Control: 50 Hz; each step integrates 10 physics steps of 2 ms.
  * Stages: at every step ``info["stage"]`` is the highest stage whose checks all hold now
    (0 = none), as the original ACT computed its reward; ``info["max_stage"]`` is its maximum so
    far. Reward = ``info["stage"]``.
  * Success: ``info["is_success"]`` is True at a step when the final stage holds at that step. An
    episode counts as an *end-of-episode* success if it holds at the last step, and as an
    *any-step* success if ``max_stage`` reached the final stage at some step. A hand-off or a
    release counts only once the giving gripper has let go (the final stage's ``release``
    checks, ``task.toml``). The original ACT code's lenient rule (the final stage without those
    let-go checks, at any step) is kept for comparison with the paper:
    ``info["is_success_lenient"]`` (it holds now) and ``info["success_lenient"]`` (it has held at
    some step). The evaluation harness reports all three.
  * Episodes never terminate early; they are truncated after the task's ``episode_steps``.
  * Sim-to-real options (both off by default, and then without any effect): ``randomize``
    (per-episode domain randomization, ``aloha_bench.sim.randomize``, recorded in
    ``info["randomization"]`` at reset) and ``latency`` (camera frame rate and delay, delayed
    joint readings and actions, servo dead zone, backlash and tick quantization,
    ``aloha_bench.envs.latency``). With either, ``observation.state`` and ``joint_state()`` are
    what the encoders report (calibration offset added, quantized), not the physical angles.
"""

from __future__ import annotations

import atexit
import copy
import functools
import weakref
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from aloha_bench import embodiment, keys
from aloha_bench.envs import latency as servo_timing
from aloha_bench.envs import spaces as rig_spaces
from aloha_bench.envs.latency import LatencyConfig
from aloha_bench.sim import predicates, rig
from aloha_bench.sim.randomize import RandomizationConfig, Randomizer, corrupt_image
from aloha_bench.sim.task_spec import TaskSpec, load_task_spec

DEFAULT_IMAGE_SIZE = (96, 128)
RENDER_IMAGE_SIZE = (240, 320)
# What reset(options=...) understands (see the class docstring).
RESET_OPTIONS = ("joint_state",)

# Envs whose renderers may still be open. An env that is never closed would otherwise free its
# EGL context in a destructor during interpreter shutdown, after EGL's own module is torn down,
# and print two tracebacks; closing them at exit, while everything still works, is quiet.
_OPEN_ENVS: weakref.WeakSet = weakref.WeakSet()


def _close_open_envs() -> None:
    for env in list(_OPEN_ENVS):
        env.close()


@functools.cache
def _close_envs_at_exit() -> None:
    """Register ``_close_open_envs`` once, after the first renderer exists: MuJoCo registers
    the EGL display's termination when it creates the first context, and exit handlers run last
    registered first, so ours then runs while the display still works."""
    atexit.register(_close_open_envs)


def _renderer(model: mujoco.MjModel, height: int, width: int) -> mujoco.Renderer:
    renderer = mujoco.Renderer(model, height, width)
    _close_envs_at_exit()
    return renderer


class AlohaEnv(gym.Env):
    """The simulated bimanual SO-ARM101 rig running one task.

    Args:
        task: task id (a folder under ``tasks/``) or a loaded ``TaskSpec``.
        obs_mode: ``"pixels"`` (joint state + camera images) or ``"state"`` (joint state +
            ``observation.environment_state``, the props' poses). The environment state is also in
            ``info["observation.environment_state"]`` in both modes, for experts and datasets.
        cameras: policy cameras for pixels mode; default: the task's list.
        image_size: (height, width) of each policy image.
        render_mode: ``"rgb_array"`` (``render()`` returns all four cameras side by side, leaders
            visible) or ``"human"`` (MuJoCo's passive viewer).
        randomize: domain randomization level (``"none"``, ``"light"``, ``"strong"``) or a
            ``RandomizationConfig``; drawn at every reset from the reset seed.
        latency: ``"none"``, ``"real"`` or a ``LatencyConfig``: camera rate and delay, action and
            joint-reading delays, servo dead zone, backlash and tick quantization.

    Reset options: ``{"joint_state": q}`` starts the followers (and leaders) at the 12 encoder
    readings ``q`` instead of the home pose, e.g. to replay a recorded episode.
    """

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": embodiment.CONTROL_RATE_HZ}

    def __init__(
        self,
        task: str | TaskSpec,
        obs_mode: str = "pixels",
        cameras: Sequence[str] | None = None,
        image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
        render_mode: str | None = None,
        randomize: str | RandomizationConfig = "none",
        latency: str | LatencyConfig = "none",
    ) -> None:
        self.task = task if isinstance(task, TaskSpec) else load_task_spec(task)
        if obs_mode not in rig_spaces.OBS_MODES:
            raise ValueError(
                f"unknown obs_mode {obs_mode!r}; expected one of {rig_spaces.OBS_MODES}"
            )
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            modes = self.metadata["render_modes"]
            raise ValueError(f"unknown render_mode {render_mode!r}; expected one of {modes}")
        self.cameras = keys.camera_names(cameras) if cameras is not None else self.task.cameras
        height, width = keys.image_size(image_size)
        if not (16 <= height <= 480 and 16 <= width <= 640):
            raise ValueError(f"image_size {image_size} out of range; use 16..480 x 16..640 pixels")
        self.image_size = (height, width)
        self.obs_mode = obs_mode
        self.render_mode = render_mode

        self.model = rig.build_model(self.task)
        self.data = mujoco.MjData(self.model)
        self.index = rig.RigIndex.from_model(self.model)
        self._object_qpos = [
            self.model.jnt_qposadr[self.model.body(o.body).jntadr[0]] for o in self.task.objects
        ]
        self._state_body_ids = np.array([self.model.body(o.body).id for o in self.task.objects])
        self._state_joint_qpos = np.array(
            [self.model.jnt_qposadr[self.model.joint(j).id] for j in self.task.state_joints],
            dtype=int,
        )
        self._joint_inits = [
            (self.model.jnt_qposadr[self.model.joint(j.joint).id], j.range)
            for j in self.task.joint_inits
        ]
        self._breakaways = [
            (self.model.equality(b.equality).id, b.force_n) for b in self.task.breakaways
        ]
        self._stage_checks = [
            [(predicates.resolve(c.fn), c.args) for c in stage.checks] for stage in self.task.stages
        ]
        final = self.task.stages[-1]
        # None when the final stage has no let-go checks: the lenient rule is then the strict one.
        self._lenient_checks = (
            [(predicates.resolve(c.fn), c.args) for c in final.lenient]
            if len(final.lenient) < len(final.checks)
            else None
        )
        self._lenient_reached = False
        self.observation_space = rig_spaces.observation_space(
            obs_mode, self.cameras, self.image_size, self.task.environment_state_dim
        )
        self.action_space = rig_spaces.action_space()

        self._renderer: mujoco.Renderer | None = None
        self._render_renderer: mujoco.Renderer | None = None
        self._viewer = None
        _OPEN_ENVS.add(self)
        self._steps = 0
        self._max_stage = 0

        self.randomization = RandomizationConfig.resolve(randomize)
        self.latency = LatencyConfig.resolve(latency)
        self._randomizer = (
            Randomizer(self.model, self.index, self.randomization)
            if self.randomization.active
            else None
        )
        self._randomization_record: dict[str, Any] = {"config": self.randomization.to_dict()}
        self._joint_offset_rad = np.zeros(embodiment.STATE_DIM)
        self._image_noise_std = 0.0
        self._image_blur_sigma_px = 0.0
        self._image_rng = np.random.default_rng(0)
        lat = self.latency
        self._action_delay = servo_timing.DelayLine(lat.action_delay_steps)
        self._state_delay = servo_timing.DelayLine(lat.state_delay_steps)
        self._servo_filter = (
            servo_timing.DeadbandBacklash(
                lat.deadband_ticks * servo_timing.TICK_RAD,
                lat.backlash_ticks * servo_timing.TICK_RAD,
            )
            if lat.deadband_ticks > 0 or lat.backlash_ticks > 0
            else None
        )
        self._camera_clock = (
            servo_timing.CameraClock(embodiment.CONTROL_DT_S, lat.camera_fps, lat.camera_latency_s)
            if lat.camera_active
            else None
        )
        # Frames rendered at capture steps, kept until delivered: {step: {camera: image}}.
        self._frames: dict[int, dict[str, np.ndarray]] = {}

    # ----------------------------------------------------------------------------------------
    # Gymnasium API
    # ----------------------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        mujoco.mj_resetData(self.model, self.data)
        home = embodiment.HOME_STATE_RAD
        unknown = sorted(set(options or {}) - set(RESET_OPTIONS))
        if unknown:
            raise ValueError(f"reset(options=...): unknown {unknown}; known: {RESET_OPTIONS}")
        if options and "joint_state" in options:
            home = self._checked_action(options["joint_state"], "reset option joint_state")
        self.data.qpos[self.index.follower_qpos] = home
        self.data.qpos[self.index.leader_qpos] = home
        self.data.ctrl[self.index.follower_actuators] = home
        for adr, obj in zip(self._object_qpos, self.task.objects, strict=True):
            self.data.qpos[adr : adr + 7] = self._sample_pose(obj)
        for adr, span in self._joint_inits:
            self.data.qpos[adr] = self.np_random.uniform(span.low, span.high)
        for eq_id, _ in self._breakaways:
            self.data.eq_active[eq_id] = 1
        # Drawn after the props, so a seed places the props the same at every level.
        if self._randomizer is not None:
            self._apply_randomization(home)
        mujoco.mj_forward(self.model, self.data)
        self._steps = 0
        self._max_stage = 0
        self._lenient_reached = False
        if self.latency.active:
            self._reset_latency(home)
        stage = self._stage()
        self._max_stage = stage
        info = self._info(stage)
        # A fresh copy per call: callers keep (and may edit) what reset returns.
        info["randomization"] = copy.deepcopy(self._randomization_record)
        return self._observation(), info

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        target = self._checked_action(action)
        self.data.ctrl[self.index.follower_actuators] = self._servo_goal(target)
        # Leaders are kinematic: they show the commanded pose exactly (the operator's input,
        # before any delay or servo imperfection).
        self.data.qpos[self.index.leader_qpos] = target
        self.data.qvel[self.index.leader_dof] = 0.0
        mujoco.mj_step(self.model, self.data, nstep=embodiment.SUBSTEPS_PER_CONTROL)
        # Checked once per control step: a pull that snaps a press fit builds up over several
        # 20 ms steps (a servo ramping), so finer checks change nothing but cost time.
        self._release_breakaways()
        self._steps += 1
        stage = self._stage()
        self._max_stage = max(self._max_stage, stage)
        truncated = self._steps >= self.task.episode_steps
        if self.render_mode == "human":
            self.render()
        return self._observation(), float(stage), False, truncated, self._info(stage)

    def render(self) -> np.ndarray | None:
        """All four cameras side by side with leaders shown (rgb_array), or the viewer (human)."""
        if self.render_mode == "human":
            if self._viewer is None:
                from mujoco import viewer  # deferred: opens a window, needs a display

                self._viewer = viewer.launch_passive(self.model, self.data)
            self._viewer.sync()
            return None
        if self.render_mode != "rgb_array":
            return None
        if self._render_renderer is None:
            self._render_renderer = _renderer(self.model, *RENDER_IMAGE_SIZE)
        option = mujoco.MjvOption()
        option.geomgroup[rig.LEADER_GEOM_GROUP] = 1
        frames = [
            self._draw(self._render_renderer, self.index.cameras[cam], option)
            for cam in keys.CAMERAS
        ]
        return np.concatenate(frames, axis=1)

    def close(self) -> None:
        for renderer in (self._renderer, self._render_renderer):
            if renderer is not None:
                renderer.close()
        self._renderer = self._render_renderer = None
        if self._viewer is not None:
            self._viewer.close()
            self._viewer = None

    # ----------------------------------------------------------------------------------------
    # Helpers
    # ----------------------------------------------------------------------------------------
    @property
    def stage_names(self) -> tuple[str, ...]:
        return self.task.stage_names

    def environment_state(self) -> np.ndarray:
        """Props' poses (x, y, z, qw, qx, qy, qz per object) then the task's state joints."""
        ids = self._state_body_ids
        parts = [np.concatenate([self.data.xpos[ids], self.data.xquat[ids]], axis=1).ravel()]
        parts.append(self.data.qpos[self._state_joint_qpos])
        return np.concatenate(parts).astype(np.float32)

    def joint_state(self) -> np.ndarray:
        """The followers' 12 joint positions (radians, embodiment order) as the encoders report
        them now: the physical angles plus the calibration offset, quantized to ticks if the
        latency model says so (both off by default)."""
        q = self.data.qpos[self.index.follower_qpos]
        if self._randomizer is not None:
            q = q + self._joint_offset_rad
        if self.latency.quantize:
            q = servo_timing.quantize_rad(q)
        return q.astype(np.float32)

    def _apply_randomization(self, home: np.ndarray) -> None:
        """Restore the nominal model, draw this episode's randomization and apply it."""
        draw = self._randomizer.apply(self.np_random)
        self._joint_offset_rad = draw.joint_offset_rad
        self._image_noise_std = draw.image_noise_std
        self._image_blur_sigma_px = draw.image_blur_sigma_px
        self._image_rng = np.random.default_rng(draw.image_seed)
        self._randomization_record = draw.record
        # The rig starts where its encoders read `home`; the physical joints sit off by the
        # calibration error, and the servos hold that pose.
        physical = home - self._joint_offset_rad
        self.data.qpos[self.index.follower_qpos] = physical
        self.data.ctrl[self.index.follower_actuators] = physical

    def _reset_latency(self, home: np.ndarray) -> None:
        """Fill the delay lines and servo filter with the reset pose; forget old frames."""
        goal = servo_timing.quantize_rad(home) if self.latency.quantize else home
        self._action_delay.reset(home)
        if self._servo_filter is not None:
            self._servo_filter.reset(goal)
        self._state_delay.reset(self.joint_state())
        self._frames = {}

    def _servo_goal(self, target: np.ndarray) -> np.ndarray:
        """The physical position-servo goal for a commanded (encoder-frame) target.

        Order as on the rig: the goal travels late (action delay), is sent as whole ticks, the
        servo ignores changes inside its dead zone, the gears add backlash, and the servo drives
        its miscalibrated encoder, not the physical joint, to the goal.
        """
        if not self.latency.active and self._randomizer is None:
            return target
        goal = self._action_delay(target)
        if self.latency.quantize:
            goal = servo_timing.quantize_rad(goal)
        if self._servo_filter is not None:
            goal = self._servo_filter(goal)
        return goal - self._joint_offset_rad

    def _sample_pose(self, obj) -> np.ndarray:
        rng = self.np_random
        pos = [rng.uniform(r.low, r.high) for r in (obj.x_m, obj.y_m, obj.z_m)]
        yaw = rng.uniform(obj.yaw_rad.low, obj.yaw_rad.high)
        if obj.flip_prob > 0.0 and rng.uniform() < obj.flip_prob:
            yaw += np.pi
        return np.array([*pos, np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])

    def _checked_action(self, action: np.ndarray, what: str = "action") -> np.ndarray:
        """12 finite joint angles, clipped to the joint ranges; ``what`` names them in errors."""
        try:
            array = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{what} must be 12 joint angles in radians, got {action!r}") from None
        if array.shape != (embodiment.ACTION_DIM,):
            raise ValueError(
                f"{what} must have shape ({embodiment.ACTION_DIM},) (12 joint angles in radians, "
                f"left arm then right), got shape {array.shape}"
            )
        bad = ~np.isfinite(array)
        if bad.any():
            names = [embodiment.STATE_NAMES[i] for i in np.flatnonzero(bad)]
            fix = (
                "check the policy's output and normalization statistics"
                if what == "action"
                else "pass finite joint angles"
            )
            raise ValueError(f"{what} has NaN/inf at {names}; {fix} (nothing was applied)")
        return embodiment.clip_to_limits(array)

    def _release_breakaways(self) -> None:
        """Switch off each active breakaway equality whose constraint force passed its limit."""
        if not self._breakaways:
            return
        # Equality rows come first in MuJoCo's constraint arrays (data.ne of them): scanning
        # only those keeps this per-substep check cheap.
        ne = self.data.ne
        efc_id = self.data.efc_id[:ne]
        for eq_id, force_n in self._breakaways:
            if not self.data.eq_active[eq_id]:
                continue
            # A weld has 6 rows (3 force, 3 torque); the first three are the linear force.
            rows = np.flatnonzero(efc_id == eq_id)[:3]
            if rows.size and np.linalg.norm(self.data.efc_force[rows]) > force_n:
                self.data.eq_active[eq_id] = 0

    def _stage(self) -> int:
        stage = 0
        for i, checks in enumerate(self._stage_checks, start=1):
            if all(fn(self.model, self.data, **args) for fn, args in checks):
                stage = i
        return stage

    def _info(self, stage: int) -> dict[str, Any]:
        success = stage == len(self._stage_checks)
        lenient = success
        if self._lenient_checks is not None and not success:
            lenient = all(fn(self.model, self.data, **args) for fn, args in self._lenient_checks)
        self._lenient_reached = self._lenient_reached or lenient
        return {
            "stage": stage,
            "max_stage": self._max_stage,
            "is_success": success,
            "is_success_lenient": lenient,
            "success_lenient": self._lenient_reached,
            keys.ENVIRONMENT_STATE: self.environment_state(),
        }

    def _observation(self) -> dict[str, np.ndarray]:
        state = self.joint_state()
        if self.latency.state_delay_steps:
            state = self._state_delay(state)
        obs = {keys.STATE: state}
        if self.obs_mode == "state":
            obs[keys.ENVIRONMENT_STATE] = self.environment_state()
            return obs
        if self._renderer is None:
            # Created lazily, in the thread and process that uses it: EGL contexts cannot cross
            # threads, and a process forked after one exists hangs (SIM_NOTES.md).
            self._renderer = _renderer(self.model, *self.image_size)
        clock = self._camera_clock
        if clock is None:
            obs.update(self._capture())
            return obs
        # A camera slower than the loop: render only at capture steps, deliver the newest frame
        # visible now (repeated until the next one arrives), drop frames no longer needed.
        if clock.is_capture_step(self._steps):
            self._frames[self._steps] = self._capture()
        source = clock.source_step(self._steps)
        self._frames = {s: f for s, f in self._frames.items() if s >= source}
        obs.update({key: image.copy() for key, image in self._frames[source].items()})
        return obs

    def _capture(self) -> dict[str, np.ndarray]:
        """Render every policy camera now, as the camera delivers it (blur, noise if drawn)."""
        images = {}
        for camera in self.cameras:
            image = self._draw(self._renderer, self.index.cameras[camera])
            if self._image_noise_std > 0 or self._image_blur_sigma_px > 0:
                image = corrupt_image(
                    image, self._image_noise_std, self._image_blur_sigma_px, self._image_rng
                )
            images[keys.image_key(camera)] = image
        return images

    def _draw(
        self, renderer: mujoco.Renderer, camera_id: int, option: mujoco.MjvOption | None = None
    ) -> np.ndarray:
        renderer.update_scene(self.data, camera=camera_id, scene_option=option)
        return renderer.render()
