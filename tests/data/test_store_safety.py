"""Stores are safe to write: one writer at a time, resumes only with the same settings, stores
must fit their task, and a rejected or failed run leaves no empty store behind."""

import dataclasses
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import zarr

from aloha_bench import cli, keys
from aloha_bench.data.lock import StoreLockedError, lock_path
from aloha_bench.data.store import DatasetError, EpisodeStore
from aloha_bench.generate import EpisodeRecorder, GenerateSettings, generate

STATE = GenerateSettings(task="transfer_cube", obs_mode="state")
WIDTH = {"transfer_cube": 7, "insertion": 14}


def _episode(task="transfer_cube", length=5, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        keys.ACTION: rng.normal(size=(length, 12)).astype(np.float32),
        keys.STATE: rng.normal(size=(length, 12)).astype(np.float32),
        keys.ENVIRONMENT_STATE: rng.normal(size=(length, WIDTH[task])).astype(np.float32),
    }
    meta = {"seed": seed, "success": True, "max_stage": 1, "source": "scripted", "strategy": "s"}
    return arrays, meta


def _store(path, task="transfer_cube", episodes=(5, 6), **settings):
    with EpisodeStore.create(
        path, task_id=task, task_version=1, obs_mode="state", **settings
    ) as store:
        for seed, length in enumerate(episodes):
            store.append_episode(*_episode(task, length, seed))
    return path


def _set_attr(path, name, value):
    root = zarr.open_group(path, mode="r+")
    root.attrs[name] = value


# --- 2. One writer per store -------------------------------------------------------------------

WRITER = """
import sys, time
from aloha_bench.data.store import EpisodeStore
store = EpisodeStore.create(sys.argv[1], task_id="transfer_cube", task_version=1,
                            obs_mode="state", resume=True)
print("writing", flush=True)
time.sleep(120)
"""


def test_a_second_writer_is_refused_naming_the_first_and_a_killed_ones_lock_is_taken_over(
    tmp_path, caplog
):
    path = _store(tmp_path / "s.zarr")
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "writing"
        holder = json.loads(lock_path(path).read_text())
        assert holder["pid"] == child.pid
        with pytest.raises(StoreLockedError, match=f"being written by PID {child.pid} on "):
            EpisodeStore.open(path, mode="a")
        with pytest.raises(StoreLockedError, match=f"PID {child.pid}"):
            generate(STATE, path, episodes=3)
        # Readers are not blocked, and nothing was overwritten.
        assert EpisodeStore.open(path).n_episodes == 2
    finally:
        child.kill()
        child.wait()
    # The killed writer's lock file is still there, naming it: stale, taken over.
    assert json.loads(lock_path(path).read_text())["pid"] == child.pid
    with caplog.at_level(logging.WARNING, logger="aloha_bench.data.lock"):
        store = EpisodeStore.open(path, mode="a")
    assert f"stale writer lock of PID {child.pid}" in caplog.text
    assert store._lock.took_over["pid"] == child.pid
    store.append_episode(*_episode(seed=2))
    store.close()
    assert not lock_path(path).exists() and EpisodeStore.open(path).n_episodes == 3


HOLDER = """
import sys
from aloha_bench.data.lock import WriterLock
lock = WriterLock(sys.argv[1])
print("holding", flush=True)
sys.stdin.readline()
lock.release()
print("released", flush=True)
"""


def test_a_waiting_lock_names_the_holder_and_takes_the_lock_when_it_is_released(
    tmp_path, monkeypatch
):
    """``wait=True`` (the study's cell lock): blocks on another process's lock, says whom it
    waits for, and holds the lock once that process releases it."""
    import threading

    from aloha_bench.data.lock import WriterLock

    path = tmp_path / "cell"
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "holding"
        said, got = [], []
        waiter = threading.Thread(
            target=lambda: got.append(WriterLock(path, wait=True, on_wait=said.append))
        )
        waiter.start()
        waiter.join(1.0)
        assert waiter.is_alive() and not got  # still waiting
        assert said == [f"cell: waiting for PID {child.pid} on " + said[0].split(" on ", 1)[1]]
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "released"
        waiter.join(10)
        assert got and got[0].held and got[0].waited
        assert json.loads(lock_path(path).read_text())["pid"] == os.getpid()
        got[0].release()
    finally:
        child.kill()
        child.wait()
    # A filesystem that refuses flock: an error by default, an unheld lock where not required.
    import fcntl

    def refuse(_fd, _op):
        raise OSError(37, "No locks available")

    monkeypatch.setattr(fcntl, "flock", refuse)
    with pytest.raises(StoreLockedError, match="may not support flock"):
        WriterLock(path)
    assert not WriterLock(path, wait=True, required=False).held


def test_two_writers_in_one_process_and_the_cli(tmp_path, capsys):
    path = _store(tmp_path / "s.zarr")
    with EpisodeStore.open(path, mode="a"):
        with pytest.raises(StoreLockedError, match=f"PID {os.getpid()}"):
            EpisodeStore.create(
                path, task_id="transfer_cube", task_version=1, obs_mode="state", resume=True
            )
        args = ["generate", "--task", "transfer_cube", "--episodes", "3", "--obs-mode", "state"]
        assert cli.main([*args, "--out", str(path)]) == 2
        assert f"is being written by PID {os.getpid()}" in capsys.readouterr().err
    with EpisodeStore.open(path, mode="a") as store:  # released on close
        assert store.n_episodes == 2


# --- 3. Resume only with the settings that defined the data ------------------------------------


def test_resume_with_other_data_settings_is_refused_naming_both_values(tmp_path):
    path = tmp_path / "s.zarr"
    generate(STATE, path, episodes=1, seed=3)
    before = EpisodeStore.open(path).attrs
    cases = [
        (
            {"replace": dict(source="human")},
            "'source'",
            "'scripted'",
            "'human'",
        ),
        (
            {"replace": dict(randomize="light")},
            "'randomize'",
            "'none'",
            "'light'",
        ),
        ({"replace": dict(latency="real")}, "'latency'", "'none'", "'real'"),
        ({"seed": 4}, "'first_seed'", "3", "4"),
        ({"keep_failed": True}, "'keep_failed'", "False", "True"),
        (
            {"replace": dict(obs_mode="pixels")},
            "'obs_mode'",
            "'state'",
            "'pixels'",
        ),
    ]
    for change, name, have, want in cases:
        kwargs = {"seed": 3, **change}
        settings = dataclasses.replace(STATE, **kwargs.pop("replace", {}))
        with pytest.raises(DatasetError) as err:
            generate(settings, path, episodes=2, **kwargs)
        message = str(err.value)
        assert f"{name} (the store was written with {have}, this run has {want})" in message or (
            f"attribute {name} differs: the store has {have}, this run has {want}" in message
        ), message
    after = EpisodeStore.open(path)
    assert after.n_episodes == 1 and after.attrs == before
    # The same settings resume.
    assert generate(STATE, path, episodes=2, seed=3).n_episodes == 2


def test_resume_with_other_cameras_or_image_size_is_refused(tmp_path):
    pixels = GenerateSettings(task="transfer_cube", cameras=("top",), image_size=(24, 32))
    path = tmp_path / "px.zarr"
    generate(pixels, path, episodes=1)
    with pytest.raises(DatasetError, match=r"'cameras' differs: the store has \['top'\]"):
        generate(dataclasses.replace(pixels, cameras=("top", "front")), path, episodes=2)
    with pytest.raises(DatasetError, match=r"'image_size' differs: the store has \[24, 32\]"):
        generate(dataclasses.replace(pixels, image_size=(32, 32)), path, episodes=2)
    assert EpisodeStore.open(path).n_episodes == 1


# --- 4. Stores must fit their task --------------------------------------------------------------


def test_an_unknown_task_id_is_refused(tmp_path):
    with pytest.raises(ValueError, match="valid tasks"):
        EpisodeStore.create(
            tmp_path / "a.zarr", task_id="fold_towel", task_version=1, obs_mode="state"
        )
    assert not (tmp_path / "a.zarr").exists()
    path = _store(tmp_path / "s.zarr")
    _set_attr(path, "task_id", "fold_towel")
    with pytest.raises(DatasetError, match=r"task_id 'fold_towel' is not a task of this aloha"):
        EpisodeStore.open(path)


def test_an_environment_state_of_another_width_is_refused(tmp_path):
    path = _store(tmp_path / "s.zarr", task="insertion")  # 14 wide: two poses
    _set_attr(path, "task_id", "transfer_cube")  # 7 wide
    with pytest.raises(
        DatasetError,
        match=r"data/observation.environment_state is \(14,\) per step, but task "
        r"'transfer_cube' has \(7,\)",
    ):
        EpisodeStore.open(path)


@pytest.mark.parametrize("key", [keys.ACTION, keys.STATE, keys.ENVIRONMENT_STATE])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_rows_are_refused_naming_the_array_and_episode(tmp_path, key, bad):
    path = _store(tmp_path / "s.zarr")
    array = zarr.open_group(path, mode="r+")[f"data/{key}"]
    array[7, 1] = bad  # row 7: episode 1 (rows 5..10)
    with pytest.raises(DatasetError) as err:
        EpisodeStore.open(path)
    assert f"data/{key} has a NaN or infinite value in row 7 (episode 1)" in str(err.value)
    assert ".truncate(1)" in str(err.value)


def test_duplicated_camera_names_are_refused(tmp_path, capsys):
    with pytest.raises(ValueError, match="names a camera twice"):
        EpisodeStore.create(
            tmp_path / "a.zarr",
            task_id="transfer_cube",
            task_version=1,
            obs_mode="pixels",
            cameras=("top", "top"),
            image_size=(24, 32),
        )
    with pytest.raises(ValueError, match="names a camera twice"):
        GenerateSettings(task="transfer_cube", cameras=("top", "top"))
    # A bare string is a comma-separated list (as --cameras takes it), never letters.
    assert GenerateSettings(task="transfer_cube", cameras="top").cameras == ("top",)
    args = ["generate", "--task", "transfer_cube", "--episodes", "1", "--cameras", "top,top"]
    assert cli.main([*args, "--out", str(tmp_path / "b.zarr")]) == 2
    assert "names a camera twice" in capsys.readouterr().err
    assert not (tmp_path / "a.zarr").exists() and not (tmp_path / "b.zarr").exists()
    path = _store(tmp_path / "s.zarr")
    _set_attr(path, "cameras", ["top", "top"])
    with pytest.raises(DatasetError, match=r"cameras \['top', 'top'\] names a camera twice"):
        EpisodeStore.open(path)


# --- 5. Nothing is created by a rejected run; no empty store is left ---------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"replace": dict(obs_mode="pixels", image_size=(0, 0))},
            "image_size",
        ),
        ({"seed": -1}, r"seed must be an integer in 0\.\.4294967295, got -1"),
        ({"seed": 2**64}, "seed must be an integer"),
        ({"episodes": 0}, "episodes must be a positive integer"),
        ({"workers": 0}, "workers must be an integer >= 1"),
        ({"replace": dict(randomize="extreme")}, "extreme"),
        ({"replace": dict(latency="slow")}, "slow"),
        ({"replace": dict(cameras=("sky",))}, "sky"),
    ],
)
def test_rejected_arguments_create_nothing(tmp_path, kwargs, message):
    kwargs = {"episodes": 1, **kwargs}
    with pytest.raises(ValueError, match=message):
        settings = dataclasses.replace(STATE, **kwargs.pop("replace", {}))
        generate(settings, tmp_path / "s.zarr", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_the_cli_rejects_before_creating_anything(tmp_path, capsys):
    base = ["generate", "--task", "transfer_cube", "--episodes", "1", "--out"]
    for extra in (["--image-size", "0x0"], ["--seed", "-1"]):
        # Refused while parsing (argparse exits with 2), before anything is created.
        with pytest.raises(SystemExit) as exit_info:
            cli.main([*base, str(tmp_path / "s.zarr"), *extra])
        assert exit_info.value.code == 2
        assert "error" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fault", [RuntimeError("renderer died"), KeyboardInterrupt()])
def test_a_run_that_fails_before_its_first_episode_removes_its_store(tmp_path, monkeypatch, fault):
    def record(self, seed):
        raise fault

    monkeypatch.setattr(EpisodeRecorder, "record", record)
    with pytest.raises(type(fault)):
        generate(STATE, tmp_path / "s.zarr", episodes=1)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_resume_keeps_the_episodes_and_an_old_empty_store_is_replaced(
    tmp_path, monkeypatch
):
    path = tmp_path / "s.zarr"
    generate(STATE, path, episodes=1)
    monkeypatch.setattr(EpisodeRecorder, "record", lambda self, seed: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        generate(STATE, path, episodes=3)
    assert EpisodeStore.open(path).n_episodes == 1 and not lock_path(path).exists()
    monkeypatch.undo()
    # An empty store (left by an older version) holds nothing: a rerun with any settings
    # replaces it instead of being blocked by it.
    empty = tmp_path / "empty.zarr"
    EpisodeStore.create(
        empty,
        task_id="transfer_cube",
        task_version=1,
        obs_mode="pixels",
        cameras=("top",),
        image_size=(24, 32),
    ).close()
    store = generate(STATE, empty, episodes=1)
    assert store.n_episodes == 1 and store.attrs["obs_mode"] == "state"
