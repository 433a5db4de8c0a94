"""Teleoperation: devices driven by scripted inputs record episodes, sim and (emulated) real."""

import contextlib

import numpy as np
import pytest

from aloha_bench import envs, keys
from aloha_bench.data.store import EpisodeStore
from aloha_bench.experts import make_expert
from aloha_bench.robots.arm import SO101Arm
from aloha_bench.teleop import (
    KEY_ENTER,
    KEY_PAGE_DOWN,
    KEY_SPACE,
    KEY_TAB,
    KeyboardDevice,
    LeaderDevice,
    RigLeaderDevice,
    record_teleop,
)
from tests.robots.test_real_env import CAMERAS, IMAGE_SIZE, Rig


def _store(path, obs_mode="state", cameras=(), image_size=None):
    return EpisodeStore.create(
        path,
        task_id="transfer_cube",
        task_version=1,
        obs_mode=obs_mode,
        cameras=cameras,
        image_size=image_size,
    )


class ScriptedDevice:
    """The expert as operator, with commands queued at given steps of each episode."""

    def __init__(self, commands):
        self.commands = list(commands)  # one dict {step: event} per episode
        self.episode = -1

    def reset(self, env):
        self.expert = make_expert("transfer_cube")
        self.expert.reset(env)
        self.episode += 1
        self.step = 0

    def act(self, env):
        self.step += 1
        return self.expert.act(env)

    def events(self):
        plan = self.commands[self.episode] if self.episode < len(self.commands) else {}
        return [plan[self.step]] if self.step in plan else []


def test_keyboard_keys_move_the_tool_and_save(tmp_path):
    env = envs.make("transfer_cube", obs_mode="state")
    device = KeyboardDevice(step_m=0.01)
    store = _store(tmp_path / "kb.zarr")
    presses = {1: [KEY_PAGE_DOWN] * 5, 2: [KEY_SPACE], 3: [KEY_TAB, KEY_PAGE_DOWN], 30: [KEY_ENTER]}
    step = 0

    def hook():
        nonlocal step
        step += 1
        for key in presses.get(step, []):
            device.handle_key(key)

    result = record_teleop(env, device, store, episodes=1, seed=3, step_hook=hook)
    assert (result.saved, result.discarded) == (1, 0)
    episode = store.episode(0)
    assert len(episode[keys.ACTION]) == 30  # saved early by Enter
    actions = episode[keys.ACTION]
    assert actions[-1, 11] > 0.5 > actions[0, 11]  # right gripper opened by Space
    assert not np.allclose(actions[-1, :6], actions[0, :6], atol=1e-3)  # Tab moved the left arm
    assert store.episode_meta(0)["source"] == "teleop"
    env.close()


def test_discard_and_redo(tmp_path):
    env = envs.make("transfer_cube", obs_mode="state")
    device = ScriptedDevice([{5: "discard"}, {5: "redo"}, {}])
    store = _store(tmp_path / "s.zarr")
    result = record_teleop(env, device, store, episodes=1, seed=10)
    assert (result.saved, result.discarded) == (1, 2)
    meta = store.episode_meta(0)
    assert meta["seed"] == 11  # 10 discarded, 11 redone then kept
    assert meta["success"] and len(store.episode(0)[keys.ACTION]) == 400
    env.close()


def test_real_leader_arms_drive_the_simulator(tmp_path):
    with contextlib.ExitStack() as stack:
        rig = Rig(tmp_path, stack, leaders=True)
        leaders = {}
        for side, arm in rig.config.arms.items():
            leaders[side] = SO101Arm(arm.leader_port, arm.leader_calibration, "leader")
            leaders[side].connect()
            stack.callback(leaders[side].disconnect)
        commands = iter([[]] * 12 + [["save"]])
        device = LeaderDevice(leaders, events=lambda: next(commands))
        env = envs.make("transfer_cube", obs_mode="state")
        store = _store(tmp_path / "leader.zarr")
        result = record_teleop(env, device, store, episodes=1)
        env.close()
    assert result.saved == 1
    actions = store.episode(0)[keys.ACTION]
    assert actions.shape == (12, 12) and np.all(np.isfinite(actions))


def test_real_rig_teleop_records_the_same_format(tmp_path):
    with contextlib.ExitStack() as stack:
        rig = Rig(tmp_path, stack, leaders=True)
        env = rig.env(teleop=True)
        stack.callback(env.close)
        commands = iter([[]] * 8 + [["save"]])
        store = _store(tmp_path / "real.zarr", "pixels", CAMERAS, IMAGE_SIZE)
        result = record_teleop(env, RigLeaderDevice(events=lambda: next(commands)), store, 1)
    assert result.saved == 1
    episode = store.episode(0)
    assert episode[keys.image_key("top")].shape == (8, *IMAGE_SIZE, 3)
    assert episode[keys.ENVIRONMENT_STATE].shape == (8, 0)  # not measured on hardware
    assert episode[keys.STATE].shape == (8, 12)


def test_bad_device_requests_are_named(tmp_path):
    from aloha_bench.teleop import teleop_session

    with pytest.raises(ValueError, match="unknown teleop device"):
        teleop_session("transfer_cube", tmp_path / "x.zarr", 1, device="joystick")
    with pytest.raises(ValueError, match="--device leader --robot-config"):
        teleop_session("transfer_cube", tmp_path / "x.zarr", 1, device="keyboard", backend="real")
