"""Damaged or mismatched checkpoints are refused with the file named, never half-loaded."""

import shutil

import pytest
import torch

from aloha_bench import policies
from aloha_bench.policies.act.policy import (
    CHECKSUM_FILE,
    CONFIG_FILE,
    MODEL_FILE,
    CheckpointError,
    verify_checksums,
)
from aloha_bench.train_checks import load_training_state
from tests.policies.conftest import fake_stats, tiny_config


@pytest.fixture
def saved(tmp_path):
    directory = tmp_path / "ckpt"
    policies.make_policy(tiny_config(obs_mode="state"), fake_stats()).save(directory)
    return directory


def test_save_writes_checksums_that_load_verifies(saved):
    lines = (saved / CHECKSUM_FILE).read_text().splitlines()
    assert [line.split("  ")[1] for line in lines] == [MODEL_FILE, CONFIG_FILE]
    assert all(len(line.split("  ")[0]) == 64 for line in lines)  # SHA-256 hex
    verify_checksums(saved)
    policies.load(saved)


def test_a_truncated_model_is_named_by_its_checksum(saved):
    data = (saved / MODEL_FILE).read_bytes()
    (saved / MODEL_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"{MODEL_FILE} does not match its checksum"):
        policies.load(saved)


def test_without_checksums_a_truncated_model_is_still_named(saved):
    (saved / CHECKSUM_FILE).unlink()  # checkpoints saved before checksums existed
    (saved / MODEL_FILE).write_bytes((saved / MODEL_FILE).read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=f"{MODEL_FILE} cannot be read"):
        policies.load(saved)


def test_a_corrupt_config_is_named(saved):
    (saved / CHECKSUM_FILE).unlink()
    (saved / CONFIG_FILE).write_text('{"policy": "act", "dim_model": ')
    with pytest.raises(CheckpointError, match=f"{CONFIG_FILE} is not valid JSON"):
        policies.load(saved)


def test_weights_of_another_config_are_named(saved, tmp_path):
    other = tmp_path / "other"
    policies.make_policy(tiny_config(obs_mode="state", dim_model=64), fake_stats()).save(other)
    shutil.copy(other / MODEL_FILE, saved / MODEL_FILE)
    with pytest.raises(CheckpointError, match=f"{MODEL_FILE} does not match its checksum"):
        policies.load(saved)
    (saved / CHECKSUM_FILE).unlink()
    with pytest.raises(CheckpointError, match=f"{MODEL_FILE} does not fit .*{CONFIG_FILE}"):
        policies.load(saved)


def test_a_broken_training_state_is_named(tmp_path):
    path = tmp_path / "training_state.pt"
    torch.save({"step": 3}, path)
    assert load_training_state(path) == {"step": 3}
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ValueError, match="training_state.pt cannot be read.*new folder"):
        load_training_state(path)
