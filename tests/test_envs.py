"""Registry-generated env tests: every task folder gets all of them."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import aloha_bench  # noqa: F401  (registers the Gymnasium ids)
from aloha_bench import embodiment, envs, keys
from aloha_bench.experts import EXPERTS, make_expert
from aloha_bench.rollout import ARM_JOINTS
from aloha_bench.sim import rig
from aloha_bench.sim.task_spec import available_tasks, load_task_spec

TASKS = available_tasks()


def _gym_id(task_id):
    return load_task_spec(task_id).gym_id


def _warnings(env):
    return {i: w.number for i, w in enumerate(env.unwrapped.data.warning) if w.number}


@pytest.mark.parametrize("task_id", TASKS)
def test_check_env_state_mode(task_id):
    env = gym.make(_gym_id(task_id), obs_mode="state")
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("task_id", TASKS)
def test_check_env_pixels_mode(task_id):
    env = gym.make(
        _gym_id(task_id),
        obs_mode="pixels",
        cameras=["top", "left_wrist"],
        image_size=(48, 64),
        render_mode="rgb_array",
    )
    # Rendering is checked below; check_env would also open the "human" viewer (needs a display).
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs[keys.image_key("top")].shape == (48, 64, 3)
    assert obs[keys.image_key("top")].std() > 0, "a blank image means the camera sees nothing"
    frame = env.render()
    assert frame.shape == (240, 4 * 320, 3)
    env.close()


@pytest.mark.parametrize("task_id", TASKS)
def test_deterministic_under_seed(task_id):
    def rollout(seed):
        env = envs.make(task_id, obs_mode="state")
        obs, _ = env.reset(seed=seed)
        states = [obs[keys.ENVIRONMENT_STATE]]
        rng = np.random.default_rng(0)
        for _ in range(30):
            action = embodiment.HOME_STATE_RAD + rng.normal(0, 0.2, 12)
            obs, *_ = env.step(action)
            states.append(np.concatenate([obs[keys.STATE], obs[keys.ENVIRONMENT_STATE]]))
        env.close()
        return states

    a, b, c = rollout(3), rollout(3), rollout(4)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0]), "different seeds must place the props differently"


@pytest.mark.parametrize("task_id", TASKS)
@pytest.mark.parametrize("hold", ["home", "zeros"])
def test_doing_nothing_never_succeeds(task_id, hold):
    env = envs.make(task_id, obs_mode="state")
    action = embodiment.HOME_STATE_RAD if hold == "home" else np.zeros(12)
    for seed in range(2):
        env.reset(seed=seed)
        truncated = False
        while not truncated:
            _, _, _, truncated, info = env.step(action)
        assert not info["is_success"] and info["max_stage"] < len(env.unwrapped.stage_names)
    assert not _warnings(env)
    env.close()


@pytest.mark.parametrize("task_id", TASKS)
def test_random_actions_stay_sane(task_id):
    env = envs.make(task_id, obs_mode="state")
    env.reset(seed=5)
    space = env.action_space
    space.seed(5)
    for _ in range(100):
        obs, reward, terminated, truncated, info = env.step(space.sample())
    assert not info["is_success"]
    assert np.all(np.isfinite(obs[keys.ENVIRONMENT_STATE]))
    assert np.all(np.abs(obs[keys.ENVIRONMENT_STATE][:3]) < 2.0), "a prop flew off"
    assert not _warnings(env)
    env.close()


@pytest.mark.parametrize("task_id", TASKS)
@pytest.mark.parametrize("style", ["default", "varied"])
def test_expert_succeeds_without_warnings(task_id, style):
    env = envs.make(task_id, obs_mode="state")
    sim = env.unwrapped
    for seed in (0, 1):
        env.reset(seed=seed)
        expert = make_expert(task_id, style, rng=np.random.default_rng(seed))
        expert.reset(sim)
        truncated = False
        penetration = 0.0
        previous, jump = None, 0.0
        while not truncated:
            action = expert.act(sim)
            if previous is not None:
                # A target that leaps in one 20 ms step is an IK answer on another branch (the
                # first transfer_cube retreat jumped 3.5 rad); 0.3 rad/step is 15 rad/s.
                jump = max(jump, float(np.abs(action - previous)[ARM_JOINTS].max()))
            previous = action
            _, _, _, truncated, info = env.step(action)
            if sim.data.ncon:
                penetration = max(penetration, -sim.data.contact.dist[: sim.data.ncon].min())
        assert info["is_success"], f"{task_id} expert failed on seed {seed} ({style})"
        assert jump < 0.3, f"{task_id} ({style}, seed {seed}): a target jumped {jump:.2f} rad"
        # Jaws squeezing at full servo torque press ~5 mm into a prop with MuJoCo default contacts.
        assert penetration < 0.008, f"interpenetration of {penetration * 1000:.1f} mm"
        assert not _warnings(env)
    env.close()


def test_every_task_has_an_expert():
    assert set(TASKS) <= set(EXPERTS)


@pytest.mark.parametrize(
    "action",
    [np.full(12, np.nan), np.zeros(11), np.zeros((2, 12)), np.r_[np.zeros(11), np.inf]],
)
def test_bad_actions_raise_before_anything_moves(action):
    env = envs.make("transfer_cube", obs_mode="state")
    env.reset(seed=0)
    before = env.unwrapped.data.qpos.copy()
    with pytest.raises(ValueError, match="action"):
        env.step(action)
    np.testing.assert_array_equal(env.unwrapped.data.qpos, before)
    env.close()


def test_out_of_range_targets_are_clipped_and_leaders_mirror_them():
    env = envs.make("transfer_cube", obs_mode="state")
    env.reset(seed=0)
    env.step(np.full(12, 5.0))
    sim = env.unwrapped
    np.testing.assert_allclose(
        sim.data.ctrl[sim.index.follower_actuators], embodiment.STATE_HIGH_RAD
    )
    np.testing.assert_allclose(sim.data.qpos[sim.index.leader_qpos], embodiment.STATE_HIGH_RAD)
    env.close()


def test_unknown_task_lists_valid_ones():
    with pytest.raises(ValueError, match="valid tasks: .*transfer_cube"):
        envs.make("fold_towel")
    with pytest.raises(ValueError, match="unknown obs_mode"):
        envs.make("transfer_cube", obs_mode="depth")


def test_info_reports_stages_and_environment_state():
    env = envs.make("transfer_cube", obs_mode="pixels", cameras=["top"], image_size=(32, 32))
    obs, info = env.reset(seed=0)
    assert set(info) >= {"stage", "max_stage", "is_success", keys.ENVIRONMENT_STATE}
    assert keys.ENVIRONMENT_STATE not in obs  # pixels mode: only in info
    assert info[keys.ENVIRONMENT_STATE].shape == (7,)
    env.close()


def test_rig_model_has_four_arms_cameras_and_hidden_leaders():
    model = rig.build_model(load_task_spec("transfer_cube"))
    for arm in ("left", "right", "left_leader", "right_leader"):
        assert model.joint(f"{arm}/elbow_flex").id >= 0
    assert model.nu == 12, "only the followers are actuated"
    for cam in keys.CAMERAS:
        assert model.camera(rig.CAMERA_MJCF_NAMES[cam]).id >= 0
    leader_body = model.body("left_leader/forearm").id
    leader_geoms = np.flatnonzero(model.geom_bodyid == leader_body)
    assert np.all(model.geom_contype[leader_geoms] == 0)
    assert np.all(model.geom_conaffinity[leader_geoms] == 0)
    assert np.all(model.geom_group[leader_geoms] == rig.LEADER_GEOM_GROUP)


def test_handover_counts_only_once_the_right_gripper_lets_go():
    """transfer_cube v2: while both grippers hold the cube the strict rule says no and the
    original ACT code's lenient rule says yes; once the right jaws open, both say yes."""
    from aloha_bench.experts import make_expert
    from aloha_bench.sim import predicates

    env = envs.make("transfer_cube", obs_mode="state")
    sim = env.unwrapped
    env.reset(seed=0)
    expert = make_expert("transfer_cube")
    expert.reset(sim)
    both_holding, truncated = [], False
    right = ["right/gripper", "right/moving_jaw"]
    while not truncated:
        _, _, _, truncated, info = env.step(expert.act(sim))
        if info["is_success_lenient"] and not info["is_success"]:
            both_holding.append(predicates.touching(sim.model, sim.data, right, ["cube"]))
        assert info["success_lenient"] or not info["is_success"]  # strict implies lenient
    env.close()
    assert both_holding and all(both_holding)  # the lenient-only steps: right still holds it
    assert info["is_success"] and info["is_success_lenient"] and info["success_lenient"]


@pytest.mark.parametrize("task_id", TASKS)
def test_environment_state_width_is_the_specs(task_id):
    # Stores are checked against TaskSpec.environment_state_dim without building the scene.
    env = envs.make(task_id, obs_mode="state")
    _, info = env.reset(seed=0)
    assert info[keys.ENVIRONMENT_STATE].shape == (load_task_spec(task_id).environment_state_dim,)
    env.close()


@pytest.mark.parametrize("task_id", sorted(EXPERTS))
@pytest.mark.parametrize("style", ["default", "varied"])
def test_expert_plan_is_within_reach(task_id, style):
    """Every keyframe of an expert, and the straight paths between them, are reachable: the IK
    lands within 5 mm of each target on every control step. The first plans were missed by up to
    19 cm (transfer_cube), 42 mm (ziplock), 22 mm (insertion v2) and 12 mm (cup_lid). Seeds 0-99
    of ziplock v2, cup_lid v2 and insertion v3, and seeds 0-19 of battery, stay at the IK's 0.1 mm
    tolerance; transfer_cube v3's varied style within 1.8 mm (seeds 0-199; its left arm above a
    cube held high). transfer_cube's default style keeps plan v2's demonstrations: 4.2 mm on
    these seeds (its retreat), more where the cube lies beyond ~19 cm from the right arm's base
    (its hover, over 5 mm on 9 of seeds 0-199, up to 16.4 mm). Seeds 4 and 6 put varied
    transfer_cube handovers close to the right arm's base."""
    env = envs.make(task_id, obs_mode="state")
    sim = env.unwrapped
    for seed in (0, 1, 4, 6):
        env.reset(seed=seed)
        expert = make_expert(task_id, style, rng=np.random.default_rng(seed))
        expert.reset(sim)
        truncated = False
        while not truncated:
            _, _, _, truncated, _ = env.step(expert.act(sim))
        assert expert.ik_miss_m < 0.005, f"seed {seed}: {expert.ik_miss_m * 1000:.1f} mm off"
    env.close()
