"""Messages name the thing that is wrong, in the user's own terms."""

import gymnasium as gym
import numpy as np
import pytest

import aloha_bench  # noqa: F401  (registers the envs)
from aloha_bench import keys
from aloha_bench.data.store import EpisodeStore
from aloha_bench.generate import GenerateSettings


def test_camera_names_take_one_string_as_names_never_letters():
    assert keys.camera_names("top") == ("top",)
    assert keys.camera_names("top,front") == ("top", "front")
    assert keys.camera_names(["front", "top"]) == ("front", "top")
    with pytest.raises(ValueError, match="cameras: unknown camera 'sky'"):
        keys.camera_names("top,sky")
    with pytest.raises(ValueError, match=r"names a camera twice"):
        keys.camera_names(["top", "top"])
    with pytest.raises(ValueError, match="cameras must be camera names"):
        keys.camera_names(3)


@pytest.mark.parametrize("bad", [96, (96, 128, 3), "big", (96.5, 128), None, (True, 128)])
def test_image_sizes_that_are_not_a_pair_name_image_size(bad):
    with pytest.raises(ValueError, match=r"image_size must be \(height, width\) in pixels"):
        keys.image_size(bad)
    assert keys.image_size("96x128") == keys.image_size([96, 128]) == (96, 128)
    assert keys.image_size((np.int64(48), 64.0)) == (48, 64)


def test_env_settings_are_named():
    env = gym.make("AlohaBench/TransferCube-v0", cameras="top", image_size=(32, 32))
    try:
        assert env.unwrapped.cameras == ("top",)
        assert set(env.observation_space.spaces) == {"observation.state", "observation.images.top"}
    finally:
        env.close()
    with pytest.raises(ValueError, match="image_size must be"):
        gym.make("AlohaBench/TransferCube-v0", image_size=96)
    with pytest.raises(ValueError, match="image_size must be"):
        gym.make("AlohaBench/TransferCube-v0", image_size=(96, 128, 3))


def test_reset_options_are_named_as_reset_options():
    env = gym.make("AlohaBench/TransferCube-v0", obs_mode="state")
    try:
        with pytest.raises(ValueError, match=r"reset\(options=...\): unknown \['bogus'\]"):
            env.reset(seed=0, options={"bogus": 1})
        with pytest.raises(ValueError, match=r"reset option joint_state must have shape \(12,\)"):
            env.reset(seed=0, options={"joint_state": [0.0, 1.0]})
        with pytest.raises(ValueError, match="reset option joint_state has NaN") as err:
            env.reset(seed=0, options={"joint_state": [float("nan")] * 12})
        assert "policy" not in str(err.value)
        env.reset(seed=0, options={"joint_state": np.zeros(12)})
        with pytest.raises(ValueError, match=r"^action must have shape"):
            env.step(np.zeros(3))
    finally:
        env.close()


def test_generate_settings_and_stores_name_cameras_and_image_size(tmp_path):
    settings = GenerateSettings(task="transfer_cube", cameras="top,front", image_size="48x64")
    assert settings.cameras == ("top", "front") and settings.image_size == (48, 64)
    with pytest.raises(ValueError, match="image_size must be"):
        GenerateSettings(task="transfer_cube", image_size=96)
    store = EpisodeStore.create(
        tmp_path / "s.zarr",
        task_id="transfer_cube",
        task_version=1,
        obs_mode="pixels",
        cameras="top",
        image_size=(24, 32),
    )
    assert store.cameras == ("top",)


def test_a_reused_run_folder_names_the_resume_flag(tmp_path):
    from aloha_bench.train import train
    from tests.policies.conftest import make_store, tiny_config

    store = make_store(tmp_path / "d.zarr", obs_mode="state")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "something").write_text("")
    with pytest.raises(ValueError, match="choose a new --out folder$"):  # nothing to resume
        train(tiny_config(obs_mode="state"), store, tmp_path / "other", steps=1)
    train(tiny_config(obs_mode="state"), store, tmp_path / "run", steps=1)
    with pytest.raises(ValueError, match="choose a new --out folder, or .* --resume"):
        train(tiny_config(obs_mode="state"), store, tmp_path / "run", steps=1)
