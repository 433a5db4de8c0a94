"""Run folders: divergence stops training, checkpoints are checkable and recovered on resume,
a run killed before its first checkpoint can be rerun, resume refuses other data."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from aloha_bench import checkpoint, cli
from aloha_bench.checkpoint import TrainingDivergedError, checkpoint_step
from aloha_bench.data.store import DatasetError
from aloha_bench.train import train
from tests.policies.conftest import make_store, tiny_config

STATE = {"obs_mode": "state", "val_every": 1}


def _weights(run_dir):
    return load_file(Path(run_dir) / "last" / "model.safetensors")


def test_a_diverging_run_stops_at_the_first_non_finite_loss(tmp_path, state_store):
    # lr = 1 makes this tiny model's loss NaN at step 4 (measured; the issue's `--set lr=1`).
    config = tiny_config(**STATE, lr=1.0, lr_backbone=1.0, steps=50)
    with pytest.raises(TrainingDivergedError, match=r"non-finite at step 4 .*lr=1\b") as err:
        train(config, state_store, tmp_path / "run")
    assert "learning rate too high" in str(err.value)
    last = tmp_path / "run" / "last"
    assert checkpoint_step(last) == 3  # the last good state, not a NaN one
    assert all(bool(t.isfinite().all()) for t in _weights(tmp_path / "run").values())


def test_the_cli_exits_non_zero_on_divergence(tmp_path, state_store, capsys):
    args = ["train", "--dataset", str(state_store), "--out", str(tmp_path / "run"), "--steps", "50"]
    for key, value in {**tiny_config(**STATE).to_dict(), "lr": 1.0}.items():
        if key != "policy":
            value = "none" if value is None else json.dumps(value)
            args += ["--set", f"{key}={value}"]
    assert cli.main(args) != 0
    assert "non-finite at step 4" in capsys.readouterr().err


def test_checkpoints_carry_a_manifest_written_last(tmp_path, state_store):
    train(tiny_config(**STATE, steps=2), state_store, tmp_path / "run")
    last = tmp_path / "run" / "last"
    manifest = json.loads((last / "manifest.json").read_text())
    assert manifest["step"] == 2
    assert set(manifest["files"]) == {
        "model.safetensors",
        "config.json",
        "checksums.sha256",
        "training_state.pt",
    }
    assert checkpoint_step(last) == 2
    with (last / "model.safetensors").open("r+b") as f:
        f.truncate(100)  # a half-copied folder is not complete
    assert checkpoint_step(last) is None


def _interrupt_rename_at(monkeypatch, target_name, nth):
    """Raise KeyboardInterrupt at the ``nth`` rename onto ``target_name`` (a killed process)."""
    real_rename = Path.rename
    seen = []

    def rename(self, target):
        if Path(target).name == target_name:
            seen.append(target)
            if len(seen) == nth:
                raise KeyboardInterrupt
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)


@pytest.mark.parametrize(
    ("stop_before", "nth"),
    [
        ("last", 4),  # between the renames: last.old/ and last.tmp/, no last/
        ("last.old", 3),  # before the first rename: last/ and a complete last.tmp/
    ],
)
def test_resume_recovers_an_interrupted_checkpoint_swap(
    tmp_path, state_store, monkeypatch, stop_before, nth
):
    config = tiny_config(**STATE, dropout=0.1, warmup_steps=2)
    train(config, state_store, tmp_path / "straight", steps=6)
    with monkeypatch.context() as m:
        # Renames onto last/ happen from step 1, onto last.old/ from step 2: stop at step 4.
        _interrupt_rename_at(m, stop_before, nth)
        with pytest.raises(KeyboardInterrupt):
            train(config, state_store, tmp_path / "split", steps=6)
    run = tmp_path / "split"
    assert checkpoint_step(run / "last.tmp") == 4
    if stop_before == "last":
        assert not (run / "last").exists() and checkpoint_step(run / "last.old") == 3
    else:
        assert checkpoint_step(run / "last") == 3
    train(config, state_store, run, steps=6, resume=True)
    assert not (run / "last.tmp").exists() and not (run / "last.old").exists()
    straight, resumed = _weights(tmp_path / "straight"), _weights(run)
    assert all(straight[name].equal(resumed[name]) for name in straight)


def test_resume_falls_back_to_last_old_when_last_tmp_is_incomplete(tmp_path, state_store):
    run = tmp_path / "run"
    train(tiny_config(**STATE, steps=3), state_store, run)
    (run / "last").rename(run / "last.old")
    shutil.copytree(run / "last.old", run / "last.tmp")
    (run / "last.tmp" / "manifest.json").unlink()  # stopped while writing the new one
    checkpoint.recover_last(run)
    assert checkpoint_step(run / "last") == 3 and sorted(
        p.name for p in run.iterdir() if "last" in p.name
    ) == ["last"]


def test_a_run_killed_before_its_first_checkpoint(tmp_path, state_store):
    config = tiny_config(obs_mode="state", val_every=100, steps=10)

    def killed(row):
        if row["step"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, state_store, tmp_path / "run", progress=killed)
    with pytest.raises(ValueError, match="stopped before its first checkpoint.*without --resume"):
        train(config, state_store, tmp_path / "run", resume=True)
    # It holds nothing of value, so a fresh run may start over in the same folder.
    summary = train(config, state_store, tmp_path / "run")
    assert summary["steps"] == 10 and checkpoint_step(tmp_path / "run" / "last") == 10
    # A folder with anything else in it is still refused.
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="choose a new --out folder"):
        train(config, state_store, tmp_path / "other")


def test_resume_with_another_dataset_is_refused_before_split_json_changes(tmp_path, state_store):
    config = tiny_config(**STATE, steps=2)
    run = tmp_path / "run"
    train(config, state_store, run)
    split = (run / "split.json").read_text()
    other = make_store(tmp_path / "other.zarr", obs_mode="state", n_episodes=4)
    with pytest.raises(DatasetError, match=r"differs in demo_seeds: the run has \[0, 1, 2\]"):
        train(config, other, run, steps=4, resume=True)
    # Same seeds, other content (e.g. regenerated with other settings): the fingerprint differs.
    changed = make_store(tmp_path / "changed.zarr", obs_mode="state", length=13)
    with pytest.raises(DatasetError, match="differs in dataset_fingerprint"):
        train(config, changed, run, steps=4, resume=True)
    assert (run / "split.json").read_text() == split
    # The same data at another path (a moved dataset) resumes.
    moved = tmp_path / "moved.zarr"
    shutil.copytree(state_store, moved)
    train(config, moved, run, steps=3, resume=True)
    assert json.loads((run / "split.json").read_text())["dataset"] == str(moved.resolve())
    assert np.isfinite(checkpoint_step(run / "last"))
