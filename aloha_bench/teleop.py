"""Teleoperated demonstrations (L4): a person drives the rig; episodes go into the Zarr store.

Devices share one small interface (``reset``, ``act``, ``events``), so the recording loop does not
know who is driving:

* ``LeaderDevice``: two real SO-ARM101 leader arms on their Feetech buses (50 Hz) driving the
  simulated followers (the paper's actions are the leader joint positions);
* ``RigLeaderDevice``: the real rig's leaders driving its real followers;
* ``KeyboardDevice``: end-effector steps through IK, keys from MuJoCo's viewer key callback;
* any object with the same three methods (tests drive a scripted device).

On the real rig (``backend="real"``) the followers track the leaders through ``RealRigEnv``'s
``teleop_step`` (ramped start, safety limits, torque off on any exit) and the same store format is
written, with an empty environment state (object poses are not measured on hardware).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from aloha_bench import embodiment, keys
from aloha_bench.data.store import EpisodeStore
from aloha_bench.sim.ik import ArmIK

EVENTS = ("save", "discard", "redo", "quit")


class TeleopDevice(Protocol):
    """What the recording loop needs from an input device."""

    def reset(self, env) -> None:
        """Called after each env reset (``env`` is the unwrapped env)."""

    def act(self, env) -> np.ndarray:
        """The 12 joint targets for this control step."""

    def events(self) -> list[str]:
        """Operator commands since the last call, from ``EVENTS``."""


# GLFW key codes, as MuJoCo's viewer passes them to ``key_callback``.
KEY_RIGHT, KEY_LEFT, KEY_DOWN, KEY_UP = 262, 263, 264, 265
KEY_PAGE_UP, KEY_PAGE_DOWN = 266, 267
KEY_TAB, KEY_SPACE, KEY_ENTER, KEY_BACKSPACE = 258, 32, 257, 259
KEY_R, KEY_Q = 82, 81


class KeyboardDevice:
    """Tool-position steps through IK, one arm at a time, from key presses.

    Keys: arrows move the active tool in x/y, Page Up/Down in z, Tab switches arm, Space opens or
    closes its gripper, Enter saves the episode, Backspace discards it, R redoes it, Q quits.
    The gripper points straight down, the reachable way for a 5-DOF arm (SIM_NOTES.md).

    Args:
        step_m: tool displacement per key press.
    """

    def __init__(self, step_m: float = 0.005) -> None:
        self.step_m = step_m
        self.active = "right"
        self._pending: list[str] = []
        self._ik: dict[str, Any] = {}
        self._model = None

    def reset(self, env) -> None:
        if self._model is not env.model:
            self._model = env.model
            self._ik = {arm: ArmIK(env.model, arm) for arm in embodiment.ARMS}
        q = env.joint_state().astype(float)
        self._q = {arm: q[embodiment.arm_slice(arm)].copy() for arm in embodiment.ARMS}
        self._target = {arm: self._ik[arm].forward(self._q[arm])[0] for arm in embodiment.ARMS}
        self._closed = dict.fromkeys(embodiment.ARMS, True)

    def handle_key(self, keycode: int) -> None:
        """MuJoCo viewer ``key_callback``: update the target or queue an event."""
        moves = {
            KEY_RIGHT: (1, 0, 0),
            KEY_LEFT: (-1, 0, 0),
            KEY_UP: (0, 1, 0),
            KEY_DOWN: (0, -1, 0),
            KEY_PAGE_UP: (0, 0, 1),
            KEY_PAGE_DOWN: (0, 0, -1),
        }
        if keycode in moves:
            self._target[self.active] = self._target[self.active] + self.step_m * np.array(
                moves[keycode], dtype=float
            )
        elif keycode == KEY_TAB:
            self.active = "left" if self.active == "right" else "right"
        elif keycode == KEY_SPACE:
            self._closed[self.active] = not self._closed[self.active]
        elif keycode in (KEY_ENTER, KEY_BACKSPACE, KEY_R, KEY_Q):
            self._pending.append(
                {KEY_ENTER: "save", KEY_BACKSPACE: "discard", KEY_R: "redo", KEY_Q: "quit"}[keycode]
            )

    def act(self, env) -> np.ndarray:
        action = np.empty(embodiment.ACTION_DIM)
        for arm in embodiment.ARMS:
            q = self._ik[arm].solve(self._q[arm], self._target[arm], np.pi / 2).q_rad
            q[5] = -0.17 if self._closed[arm] else 0.8  # squeeze, or open ~45 degrees
            self._q[arm] = q
            action[embodiment.arm_slice(arm)] = q
        return action

    def events(self) -> list[str]:
        pending, self._pending = self._pending, []
        return pending


class LeaderDevice:
    """Two real leader arms drive the simulated followers.

    Each leader's joints copy over (shared kinematics, mid-range zero); its gripper trigger's
    fraction of its calibrated travel becomes the same fraction of the follower's gripper range.

    Args:
        leaders: connected ``SO101Arm`` leaders by side (``"left"``, ``"right"``).
        events: where operator commands come from (a foot pedal, the terminal); default none.
    """

    def __init__(self, leaders: dict[str, Any], events: Callable[[], list[str]] | None = None):
        from aloha_bench.robots.real_env import LeaderUnwrap

        self.leaders = leaders
        self._unwrap = {side: LeaderUnwrap() for side in leaders}
        self._events = events or list
        self._follower_limits = (
            embodiment.STATE_LOW_RAD[: embodiment.JOINTS_PER_ARM],
            embodiment.STATE_HIGH_RAD[: embodiment.JOINTS_PER_ARM],
        )

    def reset(self, env) -> None:
        """Nothing to plan: the leaders are wherever the operator holds them."""
        for unwrap in self._unwrap.values():
            unwrap.reset()

    def act(self, env) -> np.ndarray:
        from aloha_bench.robots.real_env import map_leader_to_follower

        parts = [
            map_leader_to_follower(
                self._unwrap[side](self.leaders[side].read_rad()),
                self.leaders[side].limits_rad,
                self._follower_limits,
            )
            for side in embodiment.ARMS
        ]
        return embodiment.clip_to_limits(np.concatenate(parts))

    def events(self) -> list[str]:
        return list(self._events())


class RigLeaderDevice:
    """The real rig's own leaders driving its real followers (``RealRigEnv(teleop=True)``).

    Each episode starts by ramping the followers to the leaders' pose, so nothing jumps.
    """

    def __init__(self, events: Callable[[], list[str]] | None = None) -> None:
        self._events = events or list

    def reset(self, env) -> None:
        env.sync_followers_to_leaders()

    def act(self, env) -> np.ndarray:
        return env.leader_action()

    def events(self) -> list[str]:
        return list(self._events())


@dataclasses.dataclass(frozen=True)
class TeleopResult:
    """What a teleoperation session recorded."""

    saved: int
    discarded: int
    store: Path


def record_teleop(
    env,
    device: TeleopDevice,
    store: EpisodeStore,
    episodes: int,
    seed: int = 0,
    step_hook: Callable[[], None] | None = None,
) -> TeleopResult:
    """Record ``episodes`` teleoperated episodes of ``env`` into ``store``.

    An episode runs until the env truncates it or the operator saves it early; ``discard``
    drops it and moves to the next seed, ``redo`` drops it and replays the same seed, ``quit``
    drops it and stops. Kept episodes store their success as the env reported it.

    Args:
        env: a Gymnasium env (simulated or real) whose observations match the store.
        device: the input device.
        store: an open, writable store.
        episodes: episodes to keep.
        seed: seed of the first episode (later episodes continue after the store's last one).
        step_hook: called after every step (e.g. the viewer's ``sync``).
    """
    sim = env.unwrapped
    saved = discarded = 0
    if store.n_episodes:
        seed = int(max(store.episode_meta(i)["seed"] for i in range(store.n_episodes))) + 1
    while saved < episodes:
        obs, info = env.reset(seed=seed)
        device.reset(sim)
        rows: dict[str, list[np.ndarray]] = {}
        outcome = "save"
        truncated = False
        while not truncated:
            events = device.events()
            if events:
                outcome = events[0]
                break
            action = np.asarray(device.act(sim), dtype=np.float32)
            row = {k: v for k, v in obs.items() if k != keys.ENVIRONMENT_STATE}
            row[keys.ENVIRONMENT_STATE] = np.asarray(
                info.get(keys.ENVIRONMENT_STATE, np.zeros(0)), dtype=np.float32
            )
            row[keys.ACTION] = action
            for key, value in row.items():
                rows.setdefault(key, []).append(value)
            obs, _, _, truncated, info = env.step(action)
            if step_hook is not None:
                step_hook()
        if outcome == "save" and rows:
            arrays = {key: np.stack(values) for key, values in rows.items()}
            meta = {
                "seed": seed,
                "success": bool(info.get("is_success", False)),
                "max_stage": int(info.get("max_stage", 0)),
                "source": "teleop",
                "strategy": "operator",
                "style": {"device": type(device).__name__},
            }
            store.append_episode(arrays, meta)
            saved += 1
        else:
            discarded += 1
        if outcome == "quit":
            break
        if outcome != "redo":
            seed += 1
    return TeleopResult(saved=saved, discarded=discarded, store=Path(store.path))


def terminal_events() -> list[str]:
    """Commands typed on the terminal without blocking: s(ave), d(iscard), r(edo), q(uit)."""
    import select
    import sys

    commands = {"s": "save", "d": "discard", "r": "redo", "q": "quit"}
    events = []
    while select.select([sys.stdin], [], [], 0.0)[0]:
        line = sys.stdin.readline()
        if not line:
            break
        if line.strip()[:1].lower() in commands:
            events.append(commands[line.strip()[:1].lower()])
    return events


class RealTimePacer:
    """Sleeps so a simulated step takes one control period of wall-clock time (for a human)."""

    def __init__(self, period_s: float = embodiment.CONTROL_DT_S) -> None:
        self.period_s = period_s
        self._next = time.perf_counter()

    def __call__(self) -> None:
        self._next += self.period_s
        delay = self._next - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        else:  # fell behind (slow renderer): do not try to catch up with a burst
            self._next = time.perf_counter()


def teleop_session(
    task: str,
    out: str | Path,
    episodes: int,
    device: str,
    backend: str = "sim",
    robot_config: str | Path | None = None,
    obs_mode: str = "pixels",
    cameras: tuple[str, ...] | None = None,
    image_size: tuple[int, int] = (96, 128),
    seed: int = 0,
) -> TeleopResult:
    """Open the env and device a teleoperation run needs, record, and close everything.

    ``device="keyboard"`` opens MuJoCo's viewer (needs a display); ``device="leader"`` reads the
    leader arms named in ``robot_config`` (on ``backend="real"`` they drive the real followers
    and the cameras of ``rig.toml`` are recorded). Terminal commands s/d/r/q save, discard, redo,
    quit with leader arms.
    """
    from aloha_bench import envs

    spec = envs.load_task_spec(task)
    if device not in ("keyboard", "leader"):
        raise ValueError(f"unknown teleop device {device!r}; use keyboard or leader")
    if backend == "real":
        if device != "leader" or robot_config is None:
            raise ValueError("--backend real records with --device leader --robot-config rig.toml")
        from aloha_bench.robots.real_env import RealRigEnv
        from aloha_bench.robots.rig_config import load_rig_config

        config = load_rig_config(robot_config)
        env = RealRigEnv(config, teleop=True)
        store_cameras, store_size, mode = config.camera_names, config.image_size, "pixels"
        driver: TeleopDevice = RigLeaderDevice(events=terminal_events)
        hook = None
    else:
        env = envs.make(
            task,
            obs_mode=obs_mode,
            cameras=list(cameras) if cameras else None,
            image_size=image_size,
        )
        store_cameras = tuple(cameras or spec.cameras) if obs_mode == "pixels" else ()
        store_size, mode = (image_size if obs_mode == "pixels" else None), obs_mode
        pacer = RealTimePacer()
        if device == "keyboard":
            from mujoco import viewer

            driver = KeyboardDevice()
            window = viewer.launch_passive(
                env.unwrapped.model, env.unwrapped.data, key_callback=driver.handle_key
            )

            def hook() -> None:
                window.sync()
                pacer()
        else:
            if robot_config is None:
                raise ValueError("--device leader needs --robot-config rig.toml (leader ports)")
            driver, hook = _sim_leader_device(robot_config), pacer
    try:
        store = EpisodeStore.create(
            out,
            task_id=spec.task_id,
            task_version=spec.version,
            obs_mode=mode,
            cameras=store_cameras,
            image_size=store_size,
            generator={
                "source": "teleop",
                "device": device,
                "backend": backend,
                "first_seed": seed,
            },
            resume=True,
        )
        try:
            return record_teleop(env, driver, store, episodes, seed=seed, step_hook=hook)
        finally:
            store.close(remove_if_empty=True)  # the writer lock; no empty store left behind
    finally:
        env.close()
        for arm in getattr(driver, "leaders", {}).values():
            arm.disconnect()


def _sim_leader_device(robot_config: str | Path) -> LeaderDevice:
    from aloha_bench.robots.arm import SO101Arm
    from aloha_bench.robots.rig_config import load_rig_config

    config = load_rig_config(robot_config)
    if not config.has_leaders:
        raise ValueError(f"{config.source}: name leader_port and leader_calibration for both arms")
    leaders = {}
    for side, arm in config.arms.items():
        leaders[side] = SO101Arm(arm.leader_port, arm.leader_calibration, "leader", name=side)
        leaders[side].connect()
    return LeaderDevice(leaders, events=terminal_events)
