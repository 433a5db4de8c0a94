"""RealRigEnv end to end: emulated servo buses, fake cameras, the production code in between."""

import ast
import contextlib
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from gymnasium.envs.registration import EnvSpec
from gymnasium.utils.env_checker import check_env

from aloha_bench import embodiment, keys
from aloha_bench.envs import spaces
from aloha_bench.robots import real_env
from aloha_bench.robots.calibration import (
    ArmCalibration,
    MotorCalibration,
    joint_limits_rad,
    save_calibration,
)
from aloha_bench.robots.cameras import CameraError
from aloha_bench.robots.control_table import Entry
from aloha_bench.robots.emulator import ServoEmulator
from aloha_bench.robots.real_env import RealRigEnv, map_leader_to_follower
from aloha_bench.robots.rig_config import ArmConfig, CameraConfig, RigConfig

K = 2 * math.pi / 4096
IMAGE_SIZE = (24, 32)
CAMERAS = ("top", "left_wrist")


class FakeCapture:
    def __init__(self):
        self.count = 0
        self.failing = False

    def read(self):
        time.sleep(0.01)
        if self.failing:
            return False, None
        self.count += 1
        return True, np.full((*IMAGE_SIZE, 3), self.count % 256, np.uint8)

    def release(self):
        pass


def calibration(gripper=(1500, 2500)):
    ranges = {"wrist_roll": (0, 4095), "gripper": gripper}
    return ArmCalibration(
        {
            joint: MotorCalibration(
                embodiment.MOTOR_IDS[joint], 0, 0, *ranges.get(joint, (800, 3300))
            )
            for joint in embodiment.ARM_JOINTS
        }
    )


class Rig:
    """Emulated buses and calibration files for a whole rig."""

    def __init__(self, tmp_path, stack, leaders=False):
        self.emulators = {}
        arms = {}
        for side in embodiment.ARMS:
            ports = {}
            for role in ("follower", "leader") if leaders else ("follower",):
                emu = stack.enter_context(ServoEmulator(ids=range(1, 7), time_constant_s=0.0))
                self.emulators[side, role] = emu
                # A leader's trigger travels less than the follower's jaw.
                calib = calibration((1800, 2400) if role == "leader" else (1500, 2500))
                save_calibration(calib, tmp_path / f"{side}_{role}.json")
                ports[role] = emu.port
            arms[side] = ArmConfig(
                follower_port=ports["follower"],
                follower_calibration=tmp_path / f"{side}_follower.json",
                leader_port=ports.get("leader"),
                leader_calibration=tmp_path / f"{side}_leader.json" if leaders else None,
            )
        self.captures = {}
        self.config = RigConfig(
            arms=arms,
            cameras={name: CameraConfig(device=i) for i, name in enumerate(CAMERAS)},
            image_size=IMAGE_SIZE,
            max_relative_target_rad=0.15,
            reset_speed_rad_s=5.0,
            camera_timeout_s=0.3,
        )

    def capture_factory(self, device, fps, capture_size):
        self.captures[device] = FakeCapture()
        return self.captures[device]

    def env(self, **kwargs):
        return RealRigEnv(self.config, capture_factory=self.capture_factory, **kwargs)

    def follower_torque(self, expect, timeout_s=1.0):
        deadline = time.monotonic() + timeout_s
        while True:
            values = [
                self.emulators[side, "follower"].get(i, Entry.Torque_Enable)
                for side in embodiment.ARMS
                for i in range(1, 7)
            ]
            if values == expect or time.monotonic() > deadline:
                return values
            time.sleep(0.002)


@pytest.fixture
def rig(tmp_path):
    with contextlib.ExitStack() as stack:
        yield Rig(tmp_path, stack)


def test_episode_with_a_constant_policy(rig):
    env = rig.env(max_episode_steps=20)
    try:
        assert env.observation_space == spaces.observation_space("pixels", CAMERAS, IMAGE_SIZE, 0)
        assert env.action_space == spaces.action_space()
        observation, info = env.reset(seed=0)
        assert observation in env.observation_space
        np.testing.assert_allclose(observation[keys.STATE], embodiment.HOME_STATE_RAD, atol=K)
        assert info["home_error_rad"] < 0.05
        action = embodiment.HOME_STATE_RAD.astype(np.float32)
        start = time.perf_counter()
        for step in range(20):
            observation, reward, terminated, truncated, info = env.step(action)
            assert observation in env.observation_space
            assert (reward, terminated, truncated) == (0.0, False, step == 19)
            assert (info["stage"], info["max_stage"], info["is_success"]) == (0, 0, False)
            assert info["overrun_s"] >= 0.0 and info["overruns"] >= 0
        elapsed = time.perf_counter() - start
        # Paced by the wall clock: never faster than 50 Hz.
        assert 20 * embodiment.CONTROL_DT_S * 0.95 < elapsed < 20 * embodiment.CONTROL_DT_S * 3
        assert set(observation) == {keys.STATE, *(keys.image_key(c) for c in CAMERAS)}
        assert rig.follower_torque([1] * 12) == [1] * 12
    finally:
        env.close()
    assert rig.follower_torque([0] * 12) == [0] * 12
    env.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        env.step(np.zeros(12, np.float32))


# The spaces are shared with the simulator; these two advisories are about their design.
@pytest.mark.filterwarnings("ignore:.*symmetric and normalized space:UserWarning")
@pytest.mark.filterwarnings("ignore:.*Box observation space m..imum value is:UserWarning")
def test_passes_gymnasium_env_checker(rig):
    env = rig.env(control_rate_hz=100.0)
    # Declared nondeterministic: real joints and cameras never repeat exactly.
    env.spec = EnvSpec("AlohaBench/RealRig-v0", nondeterministic=True)
    try:
        check_env(env, skip_render_check=True, skip_close_check=True)
    finally:
        env.close()


def test_reset_ramps_instead_of_jumping(rig):
    env = rig.env()
    try:
        start = time.perf_counter()
        observation, _ = env.reset()
        elapsed = time.perf_counter() - start
        # From mid-range (about 0 rad) to wrist_flex = 1.0 rad at 5 rad/s takes ~0.2 s.
        assert elapsed > 0.9 * 1.0 / 5.0
        np.testing.assert_allclose(observation[keys.STATE], embodiment.HOME_STATE_RAD, atol=K)
    finally:
        env.close()


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (np.full(12, np.nan, np.float32), "NaN"),
        (np.zeros(11, np.float32), r"shape \(12,\)"),
        (np.zeros((2, 12), np.float32), r"shape \(12,\)"),
    ],
)
def test_bad_actions_raise_and_switch_torque_off(rig, action, message):
    env = rig.env()
    try:
        env.reset()
        with pytest.raises(ValueError, match=message):
            env.step(action)
        assert rig.follower_torque([0] * 12) == [0] * 12
    finally:
        env.close()


def test_out_of_range_actions_are_clipped_and_capped(rig):
    env = rig.env()
    try:
        observation, _ = env.reset()
        action = np.full(12, 10.0, np.float32)
        observation, *_ = env.step(action)
        # At most max_relative_target_rad per tick toward the (clipped) goal.
        assert np.all(observation[keys.STATE] - embodiment.HOME_STATE_RAD <= 0.15 + K)
    finally:
        env.close()


def test_state_mode_is_refused(rig):
    with pytest.raises(ValueError, match="object poses"):
        rig.env(obs_mode="state")


def test_overruns_are_reported(rig):
    env = rig.env()
    try:
        env.reset()
        action = embodiment.HOME_STATE_RAD.astype(np.float32)
        _, _, _, _, info = env.step(action)
        time.sleep(3 * embodiment.CONTROL_DT_S)  # a slow policy
        _, _, _, _, info = env.step(action)
        assert info["overrun_s"] > embodiment.CONTROL_DT_S
        assert info["overruns"] == 1
        _, _, _, _, info = env.step(action)
        assert info["overrun_s"] == 0.0 and info["overruns"] == 1
    finally:
        env.close()


def test_camera_failure_mid_episode_switches_torque_off(rig):
    env = rig.env()
    try:
        env.reset()
        rig.captures[0].failing = True
        time.sleep(0.4)
        with pytest.raises(CameraError, match="'top'"):
            env.step(embodiment.HOME_STATE_RAD.astype(np.float32))
        assert rig.follower_torque([0] * 12) == [0] * 12
    finally:
        env.close()


def test_servo_fault_mid_episode_switches_torque_off(rig):
    env = rig.env()
    try:
        env.reset()
        rig.emulators["right", "follower"].inject(5, error_bits=0x20)
        with pytest.raises(Exception, match="overload"):
            env.step(embodiment.HOME_STATE_RAD.astype(np.float32))
        assert rig.follower_torque([0] * 12) == [0] * 12
    finally:
        env.close()


def test_teleop_ramps_to_the_leaders_then_follows(tmp_path):
    with contextlib.ExitStack() as stack:
        rig = Rig(tmp_path, stack, leaders=True)
        env = rig.env(teleop=True)
        try:
            env.reset()
            left_leader = rig.emulators["left", "leader"]
            left_leader.move_by_hand(3, 2048 + 600)  # elbow_flex
            left_leader.move_by_hand(6, 2400)  # trigger fully open
            start = time.perf_counter()
            observation, _, _, _, info = env.teleop_step()
            # The first step ramps the followers over from home (elbow 0.4 -> ~1.0 rad).
            assert time.perf_counter() - start > 0.1
            action = info[keys.ACTION]
            assert action.shape == (12,) and action.dtype == np.float32
            assert action[2] == pytest.approx((2648 - 2050) * K, abs=1e-6)
            # Trigger at its open stop -> follower gripper at its open stop.
            assert action[5] == pytest.approx(1000 * K, abs=1e-6)
            np.testing.assert_allclose(observation[keys.STATE], action, atol=K)
            left_leader.move_by_hand(3, 2048 + 650)
            observation, _, _, _, info = env.teleop_step()
            assert info[keys.ACTION][2] == pytest.approx((2698 - 2050) * K, abs=1e-6)
            np.testing.assert_allclose(observation[keys.STATE], info[keys.ACTION], atol=K)
        finally:
            env.close()


def test_teleop_needs_leaders(rig):
    with pytest.raises(ValueError, match="teleop needs leader_port"):
        rig.env(teleop=True)
    env = rig.env()
    try:
        with pytest.raises(RuntimeError, match="teleop=True"):
            env.teleop_step()
    finally:
        env.close()


def test_map_leader_to_follower():
    leader_limits = joint_limits_rad(calibration((1800, 2400)))
    follower_limits = joint_limits_rad(calibration((1500, 2500)))
    leader = np.array([0.1, -0.2, 0.3, 0.4, 0.5, 300 * K])
    goal = map_leader_to_follower(leader, leader_limits, follower_limits)
    np.testing.assert_allclose(goal[:5], leader[:5])
    assert goal[5] == pytest.approx(500 * K)  # half the trigger travel -> half the jaw travel
    leader[5] = -1.0
    assert map_leader_to_follower(leader, leader_limits, follower_limits)[5] == 0.0


def test_layering_imports_no_torch_or_mujoco():
    code = (
        "import sys, aloha_bench.robots.real_env, aloha_bench.robots.bench_bus;"
        "print([m for m in ('torch', 'mujoco', 'dm_control') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_robots_import_only_the_allowed_package_modules():
    allowed = {"aloha_bench.embodiment", "aloha_bench.keys", "aloha_bench.envs.spaces"}
    for path in Path(real_env.__file__).parent.glob("*.py"):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module.startswith("aloha_bench"):
                # `from aloha_bench import keys` imports aloha_bench.keys.
                imported |= {f"{node.module}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
        outside = {
            name
            for name in imported
            if name.startswith("aloha_bench.") and not name.startswith("aloha_bench.robots.")
        }
        assert outside <= allowed, (path.name, outside - allowed)


def test_leader_unwrap_continues_past_the_seam_and_forgets_on_reset():
    unwrap = real_env.LeaderUnwrap()
    wrist = embodiment.ARM_JOINTS.index("wrist_roll")
    readings = np.radians([170.0, 179.0, -178.0, -170.0, 175.0, 120.0])
    got = []
    for angle in readings:
        joints = np.zeros(6)
        joints[wrist] = angle
        joints[0] = 0.3  # other joints pass through untouched
        out = unwrap(joints)
        assert out[0] == 0.3
        got.append(np.degrees(out[wrist]))
    np.testing.assert_allclose(got, [170.0, 179.0, 182.0, 190.0, 175.0, 120.0], atol=1e-9)
    unwrap.reset()
    joints = np.zeros(6)
    joints[wrist] = np.radians(-178.0)
    assert np.degrees(unwrap(joints)[wrist]) == pytest.approx(-178.0)


def test_teleop_across_the_wrist_roll_seam_holds_the_follower_at_its_limit(tmp_path):
    wrist = embodiment.state_index("left", "wrist_roll")
    high = embodiment.ARM_LIMITS_RAD["wrist_roll"][1]  # 163 deg
    with contextlib.ExitStack() as stack:
        rig = Rig(tmp_path, stack, leaders=True)
        env = rig.env(teleop=True)
        try:
            env.reset()
            leader = rig.emulators["left", "leader"]
            goals = []
            # Ticks of the leader's wrist_roll (zero at 2048): past +180 deg the reading wraps.
            for tick in (3900, 4050, 4095 + 30, 4095 + 120, 4050, 3500):
                leader.move_by_hand(5, tick % 4096)
                _, _, _, _, info = env.teleop_step()
                goals.append(info[keys.ACTION][wrist])
            zero = (0 + 4095) / 2  # mid-range of the full-turn calibration
            expected = [(3900 - zero) * K, high, high, high, high, (3500 - zero) * K]
            np.testing.assert_allclose(goals, expected, atol=1e-5)  # float32 actions
            # Never a jump to the other end of the range (the long way round).
            assert np.abs(np.diff(goals)).max() < np.radians(40)
        finally:
            env.close()


def test_sim_leader_device_unwraps_the_wrist_roll_too():
    from aloha_bench.teleop import LeaderDevice

    class Leader:
        limits_rad = joint_limits_rad(calibration((1800, 2400)))

        def __init__(self):
            self.angles = np.zeros(6)

        def read_rad(self):
            return self.angles.copy()

    leaders = {side: Leader() for side in embodiment.ARMS}
    device = LeaderDevice(leaders)
    device.reset(None)
    wrist = embodiment.ARM_JOINTS.index("wrist_roll")
    high = embodiment.ARM_LIMITS_RAD["wrist_roll"][1]
    goals = []
    for degrees in (170.0, 179.0, -178.0, 150.0):
        leaders["right"].angles[wrist] = np.radians(degrees)
        goals.append(device.act(None)[embodiment.state_index("right", "wrist_roll")])
    np.testing.assert_allclose(goals, [high, high, high, np.radians(150.0)])


class BusWriteLog:
    """Records every sync write of one follower's bus (entry, {id: value}) in order."""

    def __init__(self, arm):
        self.writes = []
        self._write = arm.bus.sync_write
        arm.bus.sync_write = self

    def __call__(self, entry, values):
        self.writes.append((entry, dict(values)))
        return self._write(entry, values)


@pytest.mark.parametrize(
    "fault",
    ["nan_action", "servo_overload", "keyboard_interrupt"],
)
def test_a_fault_latches_until_reset_powers_the_arms_from_their_present_pose(rig, fault):
    env = rig.env()
    try:
        env.reset()
        home = embodiment.HOME_STATE_RAD.astype(np.float32)
        if fault == "nan_action":
            with pytest.raises(ValueError, match="NaN"):
                env.step(np.full(12, np.nan, np.float32))
        elif fault == "servo_overload":
            rig.emulators["right", "follower"].inject(5, error_bits=0x20)
            with pytest.raises(Exception, match="overload"):
                env.step(home)
            rig.emulators["right", "follower"].inject(5, error_bits=0)
        else:
            real_send = env._send

            def interrupted(goal):
                raise KeyboardInterrupt

            env._send = interrupted
            with pytest.raises(KeyboardInterrupt):
                env.step(home)
            env._send = real_send
        assert rig.follower_torque([0] * 12) == [0] * 12
        # The arm sags while limp; stale goals stay in the servos' Goal_Position.
        left = rig.emulators["left", "follower"]
        left.move_by_hand(2, 2048 - 300)
        logs = {side: BusWriteLog(env.followers[side]) for side in embodiment.ARMS}
        for _ in range(20):
            with pytest.raises(real_env.RigFaultError, match=r"call env\.reset\(\)"):
                env.step(home)
        assert all(not log.writes for log in logs.values())  # nothing was sent to the servos
        assert rig.follower_torque([0] * 12) == [0] * 12
        # Teleop and the arms themselves refuse too.
        with pytest.raises(real_env.RigFaultError):
            env.teleop_step()
        with pytest.raises(real_env.ArmFaultError, match="enable_torque"):
            env.followers["right"].write_goal_rad(home[6:])

        observation, _ = env.reset()
        np.testing.assert_allclose(observation[keys.STATE], embodiment.HOME_STATE_RAD, atol=K)
        assert rig.follower_torque([1] * 12) == [1] * 12
        writes = logs["left"].writes
        first_enable = next(
            i
            for i, (entry, values) in enumerate(writes)
            if entry == Entry.Torque_Enable and set(values.values()) == {1}
        )
        goals_before = [v for e, v in writes[:first_enable] if e == Entry.Goal_Position]
        # Exactly one goal write before torque on: the sagged present pose, not the old goal.
        assert len(goals_before) == 1
        assert goals_before[0][2] == 2048 - 300
        env.step(home)  # stepping works again
    finally:
        env.close()
