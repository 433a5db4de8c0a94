"""Domain randomization: levels, determinism, the record, each factor, and restoration."""

import functools
import json
import math

import numpy as np
import pytest

from aloha_bench import embodiment, keys
from aloha_bench.envs.aloha_env import AlohaEnv
from aloha_bench.sim.randomize import RandomizationConfig, corrupt_image, gaussian_blur

TOP = keys.image_key("top")


def make(randomize="none", obs_mode="state", **kwargs):
    return AlohaEnv(
        "transfer_cube",
        obs_mode=obs_mode,
        cameras=["top"],
        image_size=(32, 40),
        randomize=randomize,
        **kwargs,
    )


def only(**factor):
    return RandomizationConfig().replace(**factor)


def test_levels_and_validation():
    assert not RandomizationConfig.from_level("none").active
    light, strong = (RandomizationConfig.from_level(n) for n in ("light", "strong"))
    assert light.active and strong.active
    assert strong.joint_offset_deg > light.joint_offset_deg > 0
    assert light.replace(mass_scale=0.0).mass_scale == 0.0
    with pytest.raises(ValueError, match="unknown randomization level"):
        RandomizationConfig.from_level("medium")
    with pytest.raises(ValueError, match="mass_scale must be < 1"):
        only(mass_scale=1.0)
    with pytest.raises(ValueError, match=">= 0"):
        only(color_jitter=-0.1)
    with pytest.raises(ValueError, match="joint_offset_deg must be <= 10"):
        only(joint_offset_deg=45.0)
    with pytest.raises(TypeError):
        only(no_such_factor=1.0)


def test_none_is_bit_identical_to_no_option():
    plain = AlohaEnv("transfer_cube", obs_mode="pixels", cameras=["top"], image_size=(32, 40))
    off = make("none", obs_mode="pixels", latency="none")
    rng = np.random.default_rng(0)
    obs_a, _ = plain.reset(seed=3)
    obs_b, info = off.reset(seed=3)
    assert info["randomization"]["config"] == RandomizationConfig().to_dict()
    for _ in range(5):
        for key in obs_a:
            np.testing.assert_array_equal(obs_a[key], obs_b[key])
        action = (embodiment.HOME_STATE_RAD + rng.uniform(-0.2, 0.2, 12)).astype(np.float32)
        obs_a, *_ = plain.step(action)
        obs_b, *_ = off.step(action)
    np.testing.assert_array_equal(plain.data.qpos, off.data.qpos)
    for name in ("geom_rgba", "cam_pos", "body_mass", "actuator_gainprm", "light_diffuse"):
        np.testing.assert_array_equal(getattr(plain.model, name), getattr(off.model, name))
    plain.close()
    off.close()


def test_deterministic_under_a_seed_and_recorded():
    env = make("strong", obs_mode="pixels")
    obs_1, info_1 = env.reset(seed=7)
    obs_2, info_2 = env.reset(seed=7)
    assert json.loads(json.dumps(info_1["randomization"])) == info_1["randomization"]
    assert info_1["randomization"] == info_2["randomization"]
    np.testing.assert_array_equal(obs_1[TOP], obs_2[TOP])
    _, info_3 = env.reset(seed=8)
    assert info_3["randomization"] != info_1["randomization"]
    record = info_1["randomization"]
    assert set(record["joint_offset_rad"]) == set(embodiment.STATE_NAMES)
    assert set(record["camera_fovy_deg"]) == {
        "rig/top",
        "rig/front",
        "left/wrist_camera",
        "right/wrist_camera",
    }
    env.close()


def test_props_are_placed_the_same_at_every_level():
    plain, strong = make(), make("strong")
    _, info_a = plain.reset(seed=11)
    _, info_b = strong.reset(seed=11)
    np.testing.assert_array_equal(
        info_a[keys.ENVIRONMENT_STATE][:3], info_b[keys.ENVIRONMENT_STATE][:3]
    )


@functools.cache
def _nominal_model():
    return AlohaEnv("transfer_cube", obs_mode="state").model


def _changed(env, name, rows=None):
    now, nominal = getattr(env.model, name), getattr(_nominal_model(), name)
    if rows is not None:
        now, nominal = now[rows], nominal[rows]
    return not np.array_equal(now, nominal)


def _mean_brightness(randomize, seed=0):
    env = make(randomize, obs_mode="pixels")
    obs, _ = env.reset(seed=seed)
    env.close()
    return float(obs[TOP].mean())


def test_light_diffuse_changes_brightness():
    env = make(only(light_diffuse_scale=0.5))
    _, info = env.reset(seed=1)
    nominal = _nominal_model().light_diffuse
    ratio = env.model.light_diffuse[:, 0] / nominal[:, 0]
    assert np.all(np.abs(ratio - 1) <= 0.5 + 1e-9) and np.any(np.abs(ratio - 1) > 0.01)
    assert info["randomization"]["light_diffuse"]["rig/key"] == env.model.light_diffuse[0].tolist()
    brightness = {_mean_brightness(only(light_diffuse_scale=0.5), s) for s in range(3)}
    assert len(brightness) == 3 and _mean_brightness("none") not in brightness


def test_light_direction_tilts_within_the_bound():
    env = make(only(light_direction_deg=20.0))
    env.reset(seed=1)
    nominal = _nominal_model().light_dir
    cos = np.sum(env.model.light_dir * nominal, axis=1)  # both unit vectors
    angles = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    assert np.all(angles <= 20.0 + 1e-6) and np.all(angles > 0.01)
    np.testing.assert_allclose(env.data.light_xdir, env.model.light_dir, atol=1e-9)


def test_colour_changes_table_and_prop_rgba():
    env = make(only(color_jitter=0.1))
    env.reset(seed=1)
    for geom in ("cube", "rig/table"):
        gid = env.model.geom(geom).id
        assert _changed(env, "geom_rgba", gid)
    # The table's colour was its material's; the jitter is around that, not MuJoCo's grey.
    table = env.model.geom_rgba[env.model.geom("rig/table").id]
    material = env.model.mat_rgba[env.model.geom("rig/table").matid[0]]
    assert np.all(np.abs(table[:3] - material[:3]) <= 0.1 + 1e-6)
    # Arms keep their colour.
    assert not _changed(env, "geom_rgba", env.model.geom("left/shoulder").id)


def test_camera_position_jitter_moves_the_cameras():
    env = make(only(camera_position_m=0.02))
    env.reset(seed=1)
    cams = sorted(env.index.cameras.values())
    delta = env.model.cam_pos[cams] - _nominal_model().cam_pos[cams]
    assert np.all(np.abs(delta) <= 0.02 + 1e-12) and np.all(np.abs(delta).max(axis=1) > 1e-4)
    assert not _changed(env, "cam_quat") and not _changed(env, "cam_fovy")


def test_camera_rotation_jitter_turns_the_cameras():
    env = make(only(camera_rotation_deg=3.0))
    env.reset(seed=1)
    cams = sorted(env.index.cameras.values())
    now, nominal = env.model.cam_quat[cams], _nominal_model().cam_quat[cams]
    np.testing.assert_allclose(np.linalg.norm(now, axis=1), 1.0, atol=1e-9)
    angles = np.degrees(2 * np.arccos(np.clip(np.abs(np.sum(now * nominal, axis=1)), 0, 1)))
    assert np.all(angles <= 3.0 + 1e-6) and np.all(angles > 1e-3)


def test_fovy_jitter_changes_the_field_of_view():
    env = make(only(camera_fovy_deg=4.0))
    env.reset(seed=1)
    delta = env.model.cam_fovy - _nominal_model().cam_fovy
    assert np.all(np.abs(delta) <= 4.0 + 1e-9) and np.all(np.abs(delta) > 1e-3)


def test_image_noise_changes_pixels_deterministically():
    plain = make(obs_mode="pixels")
    noisy = make(only(image_noise_std=8.0), obs_mode="pixels")
    clean, _ = plain.reset(seed=2)
    dirty, info = noisy.reset(seed=2)
    assert info["randomization"]["image_noise_std"] > 0
    difference = dirty[TOP].astype(float) - clean[TOP]
    assert 0 < np.abs(difference).mean() < 3 * 8.0
    again, _ = noisy.reset(seed=2)
    np.testing.assert_array_equal(again[TOP], dirty[TOP])


def test_blur_smooths_the_image():
    plain = make(obs_mode="pixels")
    blurred = make(only(image_blur_sigma_px=2.0), obs_mode="pixels")
    sharp, _ = plain.reset(seed=2)
    soft, info = blurred.reset(seed=2)
    assert info["randomization"]["image_blur_sigma_px"] > 0.1

    def edges(image):
        return np.abs(np.diff(image.astype(float), axis=1)).mean()

    assert edges(soft[TOP]) < edges(sharp[TOP])


def test_mass_scale_changes_prop_mass_and_inertia_only():
    env = make(only(mass_scale=0.3))
    _, info = env.reset(seed=1)
    cube = env.model.body("cube").id
    nominal = _nominal_model()
    factor = env.model.body_mass[cube] / nominal.body_mass[cube]
    assert 0.7 <= factor <= 1.3 and factor != 1.0
    np.testing.assert_allclose(env.model.body_inertia[cube], nominal.body_inertia[cube] * factor)
    assert info["randomization"]["body_mass_kg"]["cube"] == env.model.body_mass[cube]
    assert not _changed(env, "body_mass", env.model.body("left/forearm").id)


def test_friction_scale_changes_prop_friction():
    env = make(only(friction_scale=0.3))
    env.reset(seed=1)
    cube = env.model.geom("cube").id
    nominal = _nominal_model().geom_friction[cube]
    factor = env.model.geom_friction[cube, 0] / nominal[0]
    assert 0.7 <= factor <= 1.3 and factor != 1.0
    np.testing.assert_array_equal(env.model.geom_friction[cube, 1:], nominal[1:])
    assert not _changed(env, "geom_friction", env.model.geom("rig/table").id)


def test_actuator_gains_change_kp_and_kv():
    env = make(only(actuator_gain_scale=0.2))
    _, info = env.reset(seed=1)
    servos = env.index.follower_actuators
    kp = env.model.actuator_gainprm[servos, 0]
    np.testing.assert_array_equal(env.model.actuator_biasprm[servos, 1], -kp)
    kp_ratio = kp / 998.0
    kv_ratio = -env.model.actuator_biasprm[servos, 2] / 2.7
    for ratio in (kp_ratio, kv_ratio):
        assert np.all(np.abs(ratio - 1) <= 0.2 + 1e-9) and len(set(ratio.round(6))) == 12
    assert info["randomization"]["actuator_kp"]["left/elbow_flex"] == kp[2]


def test_joint_offset_shifts_the_measured_state():
    env = make(only(joint_offset_deg=1.0))
    obs, info = env.reset(seed=1)
    offset = np.array(
        [info["randomization"]["joint_offset_rad"][n] for n in embodiment.STATE_NAMES]
    )
    assert np.all(np.abs(offset) <= math.radians(1.0)) and np.any(np.abs(offset) > 1e-4)
    physical = env.data.qpos[env.index.follower_qpos]
    # Reset ramps to where the encoders read home; the physical joints sit off by the offset.
    np.testing.assert_allclose(obs[keys.STATE], embodiment.HOME_STATE_RAD, atol=1e-6)
    np.testing.assert_allclose(obs[keys.STATE] - physical, offset, atol=1e-6)
    target = embodiment.HOME_STATE_RAD + 0.05
    for _ in range(25):
        obs, *_ = env.step(target.astype(np.float32))
    # The servo drives the encoder reading, not the physical angle, to the goal.
    np.testing.assert_allclose(
        env.data.ctrl[env.index.follower_actuators], target.astype(np.float32) - offset, atol=1e-6
    )
    np.testing.assert_allclose(
        obs[keys.STATE] - env.data.qpos[env.index.follower_qpos], offset, atol=1e-6
    )


def test_gripper_force_limit_changes():
    env = make(only(gripper_force_scale=0.3))
    _, info = env.reset(seed=1)
    grippers = env.index.follower_actuators[list(embodiment.GRIPPER_INDICES)]
    limit = env.model.actuator_forcerange[grippers, 1]
    assert np.all(np.abs(limit / 1.47 - 1) <= 0.3 + 1e-9) and np.all(limit != 1.47)
    np.testing.assert_array_equal(env.model.actuator_forcerange[grippers, 0], -limit)
    assert info["randomization"]["gripper_force_limit_nm"]["left/gripper"] == limit[0]
    others = np.setdiff1d(env.index.follower_actuators, grippers)
    assert not _changed(env, "actuator_forcerange", others)


def test_nominal_values_are_restored_at_every_reset():
    env = make("strong")
    env.reset(seed=1)
    first = {
        name: getattr(env.model, name).copy() for name in ("body_mass", "cam_pos", "geom_rgba")
    }
    for seed in (2, 3, 4):
        env.reset(seed=seed)
    env.reset(seed=1)
    for name, value in first.items():
        np.testing.assert_array_equal(getattr(env.model, name), value)
    fresh = _nominal_model()
    env._randomizer.restore()
    for name in ("light_diffuse", "light_dir", "geom_rgba", "cam_pos", "cam_quat", "cam_fovy"):
        np.testing.assert_array_equal(getattr(env.model, name), getattr(fresh, name))
    for name in ("body_mass", "geom_friction", "actuator_gainprm", "actuator_forcerange"):
        np.testing.assert_array_equal(getattr(env.model, name), getattr(fresh, name))


def test_blur_and_noise_helpers():
    image = np.zeros((9, 9, 3), np.uint8)
    image[4, 4] = 255
    blurred = gaussian_blur(image, 1.0)
    assert blurred.sum() == pytest.approx(255 * 3, rel=1e-5)  # energy kept
    assert blurred[4, 4, 0] < 255 and blurred[4, 5, 0] > 0
    rng = np.random.default_rng(0)
    assert corrupt_image(image, 0.0, 0.0, rng) is image
    noisy = corrupt_image(np.full((64, 64, 3), 128, np.uint8), 5.0, 0.0, rng)
    assert noisy.dtype == np.uint8 and 4.0 < noisy.astype(float).std() < 6.0
