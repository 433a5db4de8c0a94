"""Warnings for training runs that finish but give less than their config seems to ask."""

import pytest

from aloha_bench.train import train
from aloha_bench.train_checks import TrainingWarning, training_warnings
from tests.policies.conftest import make_store, tiny_config


def test_dataset_cameras_the_config_ignores_are_named_with_the_override():
    config = tiny_config(cameras=["top"], steps=10, val_every=5)
    (note,) = training_warnings(config, {"obs_mode": "pixels", "cameras": ["top", "front"]}, "d")
    assert "['front']" in note and "--set cameras=top,front" in note
    assert training_warnings(config, {"cameras": ["top"]}, "d") == []
    # State mode reads no images: a pixels dataset's cameras are not "ignored" there.
    state = tiny_config(obs_mode="state", steps=10, val_every=5)
    assert training_warnings(state, {"cameras": ["top", "front"]}, "d") == []


def test_a_run_shorter_than_its_warmup_or_its_validation_interval_is_named():
    config = tiny_config(steps=4, warmup_steps=500, lr=2e-4, val_every=1000)
    warmup, validation = training_warnings(config, {"cameras": ["top"]}, "d")
    # The rate at the last step (index 3) is lr * 4 / 500.
    assert "warmup_steps=500" in warmup and "peaks at 1.6e-06 instead of lr=0.0002" in warmup
    assert "val_every=1000" in validation and "validates once" in validation
    assert training_warnings(tiny_config(steps=500, warmup_steps=500, val_every=500), {}, "d") == []


def test_train_warns_before_it_trains(tmp_path):
    store = make_store(tmp_path / "two_cameras.zarr", cameras=("top", "front"))
    config = tiny_config(cameras=["top"], warmup_steps=10, val_every=2)
    with pytest.warns(TrainingWarning) as caught:
        train(config, store, tmp_path / "run", steps=2)
    messages = [str(w.message) for w in caught]
    assert any("also has cameras ['front']" in m for m in messages)
    assert any("shorter than warmup_steps=10" in m for m in messages)
