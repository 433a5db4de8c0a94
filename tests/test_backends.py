"""`backend="sim"|"real"` is the one switch; the real path runs on emulated servos here."""

import contextlib

import numpy as np
import pytest

from aloha_bench import keys
from aloha_bench.backends import make_env
from aloha_bench.envs import spaces
from tests.robots.test_real_env import CAMERAS, IMAGE_SIZE, Rig


def test_sim_is_the_default():
    env = make_env("transfer_cube", obs_mode="state")
    assert env.unwrapped.task.task_id == "transfer_cube"
    env.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend": "real"}, "needs --robot-config"),
        ({"backend": "sim", "robot_config": "rig.toml"}, "for --backend real"),
        ({"backend": "cloud"}, "unknown backend"),
    ],
)
def test_wrong_combinations_say_how_to_fix(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_env("transfer_cube", **kwargs)


def _write_rig_toml(path, rig):
    lines = [f"image_size = {list(rig.config.image_size)}", "reset_speed_rad_s = 5.0"]
    for side, arm in rig.config.arms.items():
        lines += [
            f"[arms.{side}]",
            f'follower_port = "{arm.follower_port}"',
            f'follower_calibration = "{arm.follower_calibration}"',
        ]
    for i, name in enumerate(CAMERAS):
        lines += [f"[cameras.{name}]", f"device = {i}"]
    path.write_text("\n".join(lines) + "\n")


def test_real_backend_has_the_sim_spaces(tmp_path):
    with contextlib.ExitStack() as stack:
        rig = Rig(tmp_path, stack)
        toml = tmp_path / "rig.toml"
        _write_rig_toml(toml, rig)
        with pytest.raises(ValueError, match="differ from"):
            make_env("transfer_cube", backend="real", robot_config=toml, cameras=["front"])
        env = make_env(
            "transfer_cube",
            backend="real",
            robot_config=toml,
            image_size=IMAGE_SIZE,
            capture_factory=rig.capture_factory,
        )
        try:
            sim = make_env("transfer_cube", cameras=list(CAMERAS), image_size=IMAGE_SIZE)
            assert env.observation_space == sim.observation_space
            assert env.action_space == sim.action_space == spaces.action_space()
            sim.close()
            obs, _ = env.reset(seed=0)
            obs, *_ = env.step(obs[keys.STATE])
            assert env.observation_space.contains(obs)
            assert np.isfinite(obs[keys.STATE]).all()
        finally:
            env.close()


def test_gymnasium_make_builds_the_real_rig(tmp_path):
    import gymnasium as gym

    with contextlib.ExitStack() as stack:
        rig = Rig(tmp_path, stack)
        toml = tmp_path / "rig.toml"
        _write_rig_toml(toml, rig)
        env = gym.make(
            "AlohaBench/RealRig-v0", robot_config=str(toml), capture_factory=rig.capture_factory
        )
        try:
            assert gym.spec("AlohaBench/RealRig-v0").nondeterministic
            assert env.action_space == spaces.action_space()
        finally:
            env.close()


def test_a_trained_policy_rolls_out_on_the_emulated_real_rig(tmp_path, monkeypatch):
    from aloha_bench.evaluate import EvalSettings, evaluate
    from aloha_bench.generate import GenerateSettings, generate
    from aloha_bench.policies.act.config import load_config
    from aloha_bench.train import train
    from tests.robots import test_real_env

    size = (32, 32)  # the smallest image ResNet18 takes
    monkeypatch.setattr(test_real_env, "IMAGE_SIZE", size)  # the fake cameras' frame size
    settings = GenerateSettings(task="transfer_cube", cameras=CAMERAS, image_size=size)
    generate(settings, tmp_path / "demos.zarr", episodes=2)
    config = load_config(
        "act",
        "cpu",
        {
            "cameras": list(CAMERAS),
            "image_size": list(size),
            "dim_model": 32,
            "n_heads": 2,
            "dim_feedforward": 64,
            "n_encoder_layers": 1,
            "n_decoder_layers": 1,
            "n_vae_encoder_layers": 1,
            "chunk_size": 5,
            "n_action_steps": 5,
            "batch_size": 2,
            "warmup_steps": 1,
            "val_every": 2,
            "precision": "fp32",
        },
    )
    train(config, tmp_path / "demos.zarr", tmp_path / "run", steps=2)
    with contextlib.ExitStack() as stack:
        rig = Rig(tmp_path, stack)
        toml = tmp_path / "rig.toml"
        _write_rig_toml(toml, rig)
        settings = EvalSettings(
            run=str(tmp_path / "run"),
            task="transfer_cube",
            episodes=1,
            backend="real",
            robot_config=str(toml),
            max_steps=6,
            env_kwargs={"capture_factory": rig.capture_factory},  # fake cameras stand in
        )
        records = evaluate(settings)
    assert records[0]["steps"] == 6
    assert not records[0]["success_end"]  # no success detector on hardware: scored by hand
