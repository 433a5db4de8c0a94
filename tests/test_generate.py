"""Demonstration generation: determinism across workers, resume, the human operator model."""

import numpy as np
import pytest

from aloha_bench import keys
from aloha_bench.data.store import EpisodeStore
from aloha_bench.experts.base import strategy_of
from aloha_bench.experts.human import HumanOperator, HumanOperatorConfig
from aloha_bench.generate import GenerateSettings, generate

STATE = GenerateSettings(task="transfer_cube", obs_mode="state")


def _arrays(store):
    return [store.episode(i) for i in range(store.n_episodes)]


def _assert_same(a, b):
    assert a.n_episodes == b.n_episodes
    for ea, eb in zip(_arrays(a), _arrays(b), strict=True):
        assert ea.keys() == eb.keys()
        for key in ea:
            np.testing.assert_array_equal(ea[key], eb[key], err_msg=key)
    assert [a.episode_meta(i) for i in range(a.n_episodes)] == [
        b.episode_meta(i) for i in range(b.n_episodes)
    ]


def test_parallel_workers_write_the_serial_dataset(tmp_path):
    serial = generate(STATE, tmp_path / "serial.zarr", episodes=2, seed=7)
    parallel = generate(STATE, tmp_path / "parallel.zarr", episodes=2, seed=7, workers=2)
    _assert_same(serial, parallel)
    assert [serial.episode_meta(i)["seed"] for i in range(2)] == [7, 8]


def test_an_interrupted_run_continues_to_the_same_dataset(tmp_path):
    whole = generate(STATE, tmp_path / "whole.zarr", episodes=2)
    generate(STATE, tmp_path / "resumed.zarr", episodes=1)
    resumed = generate(STATE, tmp_path / "resumed.zarr", episodes=2)
    _assert_same(whole, resumed)


def test_pixels_episode_has_every_key(tmp_path):
    settings = GenerateSettings(
        task="insertion", obs_mode="pixels", cameras=("top", "right_wrist"), image_size=(24, 32)
    )
    store = generate(settings, tmp_path / "px.zarr", episodes=1)
    episode = EpisodeStore.open(tmp_path / "px.zarr").episode(0)
    assert episode[keys.ACTION].shape == (400, 12)
    assert episode[keys.STATE].shape == (400, 12)
    assert episode[keys.ENVIRONMENT_STATE].shape == (400, 14)
    assert episode[keys.image_key("top")].shape == (400, 24, 32, 3)
    assert store.attrs["generator"]["source"] == "scripted"
    assert store.episode_meta(0)["success"]


def test_appending_other_settings_is_refused(tmp_path):
    generate(STATE, tmp_path / "a.zarr", episodes=1)
    other = GenerateSettings(task="transfer_cube", obs_mode="pixels", cameras=("top",))
    with pytest.raises(ValueError, match="obs_mode"):
        generate(other, tmp_path / "a.zarr", episodes=2)


def test_human_operator_mixes_strategies_and_traits():
    config = HumanOperatorConfig()
    operators = [
        HumanOperator("transfer_cube", config, np.random.default_rng(seed)) for seed in range(20)
    ]
    strategies = {strategy_of(op.expert.style) for op in operators}
    assert strategies == {"top_down", "angled"}
    paces = [op.traits.pace for op in operators]
    assert min(paces) >= config.pace[0] and max(paces) <= config.pace[1]
    assert len({op.traits.lag_steps for op in operators}) > 1
    assert any(op.traits.hesitations for op in operators)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="unknown source"):
        GenerateSettings(task="transfer_cube", source="dream")
    with pytest.raises(ValueError, match="valid tasks"):
        GenerateSettings(task="fold_towel")
    with pytest.raises(ValueError, match="pace"):
        HumanOperatorConfig(pace=(1.2, 0.8))


def test_a_chosen_expert_style_is_recorded_and_bad_fields_are_named(tmp_path):
    styled = GenerateSettings(
        task="transfer_cube", obs_mode="state", style=(("left_clearance_m", 0.005),)
    )
    store = generate(styled, tmp_path / "styled.zarr", episodes=1)
    assert store.episode_meta(0)["style"]["left_clearance_m"] == 0.005
    assert store.attrs["generator"]["expert_style"] == {"left_clearance_m": 0.005}
    with pytest.raises(ValueError, match="refuse|settings|differ"):
        generate(STATE, tmp_path / "styled.zarr", episodes=2)  # the default style: another run
    with pytest.raises(ValueError, match=r"unknown style fields \['clearance'\].*left_clearance_m"):
        GenerateSettings(task="transfer_cube", style=(("clearance", 0.005),))
    with pytest.raises(ValueError, match="scripted"):
        GenerateSettings(task="transfer_cube", source="human", style=(("speed", 1.1),))


def test_human_config_from_toml(tmp_path):
    from aloha_bench.experts.human import load_human_config

    path = tmp_path / "human.toml"
    path.write_text("pace = [0.7, 0.9]\nhesitation_rate_hz = 0.0\n")
    config = load_human_config(path)
    assert config.pace == (0.7, 0.9) and config.hesitation_rate_hz == 0.0
    path.write_text("patience = 3\n")
    with pytest.raises(ValueError, match="unknown fields \\['patience'\\]"):
        load_human_config(path)
    path.write_text("lag_s = [0.2, 0.1]\n")
    with pytest.raises(ValueError, match="human.toml: human operator lag_s"):
        load_human_config(path)
