"""The Zarr episode store: round trip, crash safety, compatibility checks, damage reports."""

import ast
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from aloha_bench import embodiment, keys
from aloha_bench.data import DatasetError, EpisodeStore, inspect
from aloha_bench.data.store import META_FIELDS

CAMERAS = ("top", "left_wrist")
IMAGE_SIZE = (12, 16)
ENV_DIM = 7
IMAGE_KEYS = tuple(keys.image_key(c) for c in CAMERAS)
PACKAGE = Path(__file__).resolve().parents[2] / "aloha_bench"


def make_episode(seed: int, length: int) -> tuple[dict, dict]:
    """A synthetic episode whose action row t holds ``1000 * seed + t`` (+ column / 100)."""
    rng = np.random.default_rng(seed)
    action = (1000.0 * seed + np.arange(length))[:, None] + np.arange(12) / 100.0
    arrays = {
        keys.ACTION: action.astype(np.float32),
        keys.STATE: rng.normal(size=(length, 12)).astype(np.float32),
        keys.ENVIRONMENT_STATE: rng.normal(size=(length, ENV_DIM)).astype(np.float32),
    }
    for key in IMAGE_KEYS:
        arrays[key] = rng.integers(0, 256, (length, *IMAGE_SIZE, 3), dtype=np.uint8)
    meta = {
        "seed": seed,
        "success": seed % 2 == 0,
        "max_stage": seed % 4,
        "source": "scripted",
        "strategy": "varied" if seed % 2 else "default",
        "style": {"approach": "left", "speed": 1.0 + seed},
    }
    return arrays, meta


def create_store(path: Path, **overrides) -> EpisodeStore:
    settings = dict(
        task_id="transfer_cube",
        task_version=1,
        obs_mode="pixels",
        cameras=CAMERAS,
        image_size=IMAGE_SIZE,
        generator={"expert": "scripted", "style": "varied"},
    )
    settings.update(overrides)
    return EpisodeStore.create(path, **settings)


def make_store(path: Path, lengths=(5, 7, 4)) -> EpisodeStore:
    """A pixels-mode store whose episode i has seed i and ``lengths[i]`` steps."""
    store = create_store(path)
    for seed, length in enumerate(lengths):
        store.append_episode(*make_episode(seed, length))
    return store


def assert_episode_equal(store: EpisodeStore, index: int, seed: int, length: int) -> None:
    arrays, meta = make_episode(seed, length)
    stored = store.episode(index)
    assert set(stored) == set(arrays)
    for key, value in arrays.items():
        np.testing.assert_array_equal(stored[key], value, err_msg=key)
        assert stored[key].dtype == value.dtype
    assert store.episode_meta(index) == meta


# ------------------------------------------------------------------------------------------------
# Round trip
# ------------------------------------------------------------------------------------------------
def test_round_trip_every_key_meta_and_attribute(tmp_path):
    lengths = (5, 7, 4)
    make_store(tmp_path / "s.zarr", lengths)
    store = EpisodeStore.open(tmp_path / "s.zarr")
    store.validate(deep=True)
    assert store.n_episodes == 3 and store.n_steps == sum(lengths)
    np.testing.assert_array_equal(store.episode_lengths, lengths)
    np.testing.assert_array_equal(store.episode_ends, np.cumsum(lengths))
    for i, length in enumerate(lengths):
        assert_episode_equal(store, i, seed=i, length=length)
    attrs = store.attrs
    assert attrs["task_id"] == "transfer_cube" and attrs["task_version"] == 1
    assert attrs["cameras"] == list(CAMERAS) and attrs["image_size"] == list(IMAGE_SIZE)
    assert attrs["obs_mode"] == "pixels" and attrs["fps"] == embodiment.CONTROL_RATE_HZ
    assert attrs["embodiment"]["state_names"] == list(embodiment.STATE_NAMES)
    assert attrs["embodiment"]["units"] == "rad"
    assert attrs["generator"] == {"expert": "scripted", "style": "varied"}
    assert attrs["format_version"] == 1 and "aloha_bench_version" in attrs


def test_on_disk_layout_chunks_and_dtypes(tmp_path):
    make_store(tmp_path / "s.zarr")
    root = zarr.open_group(tmp_path / "s.zarr", mode="r")
    assert root.metadata.zarr_format == 3
    assert root["meta/episode_ends"].dtype == np.int64
    assert root["data/action"].dtype == np.float32 and root["data/action"].shape == (16, 12)
    image = root["data/observation.images.top"]
    assert image.dtype == np.uint8 and image.chunks == (1, *IMAGE_SIZE, 3)
    assert any("Blosc" in type(c).__name__ for c in image.metadata.codecs)
    for name, _ in META_FIELDS.values():
        assert root[f"meta/{name}"].shape == (3,)
    assert root["meta/episode_source"][:].tolist() == ["scripted"] * 3
    assert json.loads(root["meta/episode_style"][:].tolist()[1]) == {
        "approach": "left",
        "speed": 2.0,
    }


def test_state_mode_store_has_no_images(tmp_path):
    store = EpisodeStore.create(
        tmp_path / "s.zarr", task_id="transfer_cube", task_version=1, obs_mode="state"
    )
    arrays, meta = make_episode(0, 6)
    store.append_episode({k: v for k, v in arrays.items() if k not in IMAGE_KEYS}, meta)
    reopened = EpisodeStore.open(tmp_path / "s.zarr")
    assert reopened.data_keys == (keys.ACTION, keys.ENVIRONMENT_STATE, keys.STATE)
    assert reopened.cameras == ()
    with pytest.raises(ValueError, match="state mode stores no images"):
        create_store(tmp_path / "t.zarr", obs_mode="state")


def test_readme_plain_zarr_example_runs(tmp_path, capsys):
    make_store(tmp_path / "transfer_cube.zarr")
    code = README_EXAMPLE.replace("data/transfer_cube.zarr", str(tmp_path / "transfer_cube.zarr"))
    assert len(README_EXAMPLE.strip().splitlines()) <= 12
    exec(compile(code, "README", "exec"), {})
    assert capsys.readouterr().out.splitlines() == [
        "transfer_cube 3 episodes",
        "(7, 12) (7, 12, 16, 3) 1 scripted",
    ]


def _readme_example() -> str:
    # The README's plain-zarr snippet, read from the README itself so the two cannot drift.
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("```python\nimport zarr\n", 1)[1].split("```", 1)[0]
    return "import zarr\n" + block


README_EXAMPLE = _readme_example()


def test_inspect_summarizes_the_store(tmp_path):
    summary = inspect(make_store(tmp_path / "s.zarr"))
    assert summary["episodes"] == 3 and summary["steps"] == 16
    assert summary["length"] == {"min": 4, "mean": 16 / 3, "max": 7}
    assert summary["success"] == {"count": 2, "rate": 2 / 3}
    assert summary["sources"] == {"scripted": 3}
    assert summary["strategies"] == {"default": 2, "varied": 1}
    assert summary["cameras"] == list(CAMERAS) and summary["image_size"] == list(IMAGE_SIZE)
    assert summary["data"][keys.image_key("top")]["chunks"] == [1, *IMAGE_SIZE, 3]
    json.dumps(summary)


# ------------------------------------------------------------------------------------------------
# Appending: input checks and compatibility
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("task_id", "insertion"),
        ("task_version", 2),
        ("cameras", ("top",)),
        ("image_size", (24, 32)),
        ("fps", 25.0),
    ],
)
def test_resume_with_other_settings_names_the_attribute(tmp_path, attribute, value):
    make_store(tmp_path / "s.zarr", lengths=(3,))
    with pytest.raises(DatasetError, match=f"'{attribute}' differs") as error:
        create_store(tmp_path / "s.zarr", resume=True, **{attribute: value})
    message = str(error.value)
    stored = {"task_id": "transfer_cube", "task_version": 1, "cameras": list(CAMERAS)}
    stored |= {"image_size": list(IMAGE_SIZE), "fps": 50.0}
    assert repr(stored[attribute]) in message


def test_resume_with_other_obs_mode_names_it(tmp_path):
    make_store(tmp_path / "s.zarr", lengths=(3,))
    with pytest.raises(DatasetError, match="'obs_mode' differs: the store has 'pixels'"):
        EpisodeStore.create(
            tmp_path / "s.zarr",
            task_id="transfer_cube",
            task_version=1,
            obs_mode="state",
            resume=True,
        )


def test_existing_path_needs_resume_and_resume_appends(tmp_path):
    make_store(tmp_path / "s.zarr", lengths=(3, 4))
    with pytest.raises(DatasetError, match="resume=True"):
        create_store(tmp_path / "s.zarr")
    store = create_store(tmp_path / "s.zarr", resume=True)
    assert store.append_episode(*make_episode(2, 5)) == 2
    assert_episode_equal(EpisodeStore.open(tmp_path / "s.zarr"), 2, seed=2, length=5)


def test_bad_episodes_are_rejected_with_the_key_named(tmp_path):
    store = make_store(tmp_path / "s.zarr", lengths=(3,))
    arrays, meta = make_episode(1, 4)
    with pytest.raises(ValueError, match=r"observation.images.top must be \(T, 12, 16, 3\)"):
        store.append_episode({**arrays, IMAGE_KEYS[0]: arrays[IMAGE_KEYS[0]][:, :6]}, meta)
    with pytest.raises(ValueError, match="lacks arrays"):
        store.append_episode({k: v for k, v in arrays.items() if k != keys.STATE}, meta)
    with pytest.raises(ValueError, match="action has NaN"):
        store.append_episode({**arrays, keys.ACTION: arrays[keys.ACTION] * np.nan}, meta)
    with pytest.raises(ValueError, match="one common, nonzero length"):
        store.append_episode({**arrays, keys.STATE: arrays[keys.STATE][:2]}, meta)
    with pytest.raises(
        ValueError, match=r"observation.environment_state must be \(T, 7\) for task 'transfer_"
    ):
        store.append_episode({**arrays, keys.ENVIRONMENT_STATE: np.zeros((4, 3))}, meta)
    with pytest.raises(ValueError, match="observation.environment_state has NaN"):
        env_state = arrays[keys.ENVIRONMENT_STATE].copy()
        env_state[2, 1] = np.inf
        store.append_episode({**arrays, keys.ENVIRONMENT_STATE: env_state}, meta)
    with pytest.raises(ValueError, match="missing \\['seed'\\]"):
        store.append_episode(arrays, {k: v for k, v in meta.items() if k != "seed"})
    with pytest.raises(DatasetError, match="read-only"):
        EpisodeStore.open(tmp_path / "s.zarr").append_episode(arrays, meta)
    assert EpisodeStore.open(tmp_path / "s.zarr").n_episodes == 1


# ------------------------------------------------------------------------------------------------
# Crash safety
# ------------------------------------------------------------------------------------------------
def _fail_meta(self, name):
    raise RuntimeError("injected crash after the data rows were written")


def _fail_commit(*args, **kwargs):
    raise RuntimeError("injected crash after the metadata was written")


@pytest.mark.parametrize(
    ("target", "name", "replacement"),
    [(EpisodeStore, "_meta_array", _fail_meta), (zarr, "AsyncArray", _fail_commit)],
    ids=["after-data", "after-meta"],
)
def test_exception_mid_append_keeps_finished_episodes(
    tmp_path, monkeypatch, target, name, replacement
):
    store = make_store(tmp_path / "s.zarr", lengths=(5, 7))
    with monkeypatch.context() as patch:
        patch.setattr(target, name, replacement)
        with pytest.raises(RuntimeError, match="injected crash"):
            store.append_episode(*make_episode(2, 6))
    store.close()  # the crashed writer is gone
    reopened = EpisodeStore.open(tmp_path / "s.zarr", mode="a")
    reopened.validate(deep=True)
    assert reopened.n_episodes == 2
    root = zarr.open_group(tmp_path / "s.zarr", mode="r")
    assert root["data/action"].shape[0] == 18  # trailing rows of the unfinished episode
    assert_episode_equal(reopened, 1, seed=1, length=7)
    # The next append overwrites the leftovers and is complete.
    reopened.append_episode(*make_episode(3, 4))
    final = EpisodeStore.open(tmp_path / "s.zarr")
    assert final.n_episodes == 3 and root["data/action"].shape[0] == 16
    for index, (seed, length) in enumerate([(0, 5), (1, 7), (3, 4)]):
        assert_episode_equal(final, index, seed=seed, length=length)


CHILD = """
import os, signal, sys
import zarr
from tests.data.test_store import create_store, make_episode

store = create_store({path!r}, resume=True)
mode = sys.argv[1]
for seed in range(store.n_episodes, 1000):
    if mode == "before-commit" and seed == 2:
        def die(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)
        zarr.AsyncArray = die  # dies after this episode's data and meta, before episode_ends
    store.append_episode(*make_episode(seed, 5 + seed % 4))
    print(seed, flush=True)
"""


def _run_child(path: Path, mode: str) -> subprocess.Popen:
    script = path.parent / "child.py"
    script.write_text(CHILD.format(path=str(path)))
    root = Path(__file__).resolve().parents[2]
    return subprocess.Popen(
        [sys.executable, str(script), mode],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.PIPE,
        text=True,
    )


def _assert_recovered(path: Path, at_least: int) -> None:
    store = EpisodeStore.open(path, mode="a")
    store.validate(deep=True)
    assert store.n_episodes >= at_least
    for seed in range(store.n_episodes):
        assert_episode_equal(store, seed, seed=seed, length=5 + seed % 4)
    n = store.n_episodes
    store.append_episode(*make_episode(n, 5 + n % 4))
    assert_episode_equal(EpisodeStore.open(path), n, seed=n, length=5 + n % 4)


def test_sigkill_before_commit_keeps_finished_episodes(tmp_path):
    path = tmp_path / "s.zarr"
    create_store(path)
    child = _run_child(path, "before-commit")
    out, _ = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert out.split() == ["0", "1"]
    root = zarr.open_group(path, mode="r")
    assert root["meta/episode_seed"].shape == (3,)  # the killed episode's meta, not committed
    _assert_recovered(path, at_least=2)
    assert EpisodeStore.open(path).n_episodes == 3


def test_sigkill_at_a_random_moment_keeps_finished_episodes(tmp_path):
    path = tmp_path / "s.zarr"
    create_store(path)
    child = _run_child(path, "forever")
    finished = [int(child.stdout.readline()) for _ in range(3)]
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=60)
    assert finished == [0, 1, 2]
    _assert_recovered(path, at_least=3)


# ------------------------------------------------------------------------------------------------
# Damage is reported as DatasetError naming the array, the episode and the fix
# ------------------------------------------------------------------------------------------------
def _chunk(path: Path, array: str, index: int) -> Path:
    """The file of chunk ``index`` (first axis) of ``array``."""
    (chunk,) = (path / array).glob(f"c.{index}.*")
    return chunk


def test_missing_data_array(tmp_path):
    make_store(tmp_path / "s.zarr")
    shutil.rmtree(tmp_path / "s.zarr/data/action")
    with pytest.raises(DatasetError, match=r"data/action is missing.*episode 0.*regenerate"):
        EpisodeStore.open(tmp_path / "s.zarr")


def test_missing_meta_array(tmp_path):
    make_store(tmp_path / "s.zarr")
    shutil.rmtree(tmp_path / "s.zarr/meta/episode_seed")
    with pytest.raises(DatasetError, match="meta/episode_seed is missing"):
        EpisodeStore.open(tmp_path / "s.zarr")


def test_truncated_array_names_episode_and_truncate_repairs(tmp_path):
    make_store(tmp_path / "s.zarr", lengths=(5, 7, 4))
    zarr.open_group(tmp_path / "s.zarr", mode="r+")["data/observation.state"].resize((9, 12))
    with pytest.raises(DatasetError) as error:
        EpisodeStore.open(tmp_path / "s.zarr")
    message = str(error.value)
    assert "data/observation.state has 9 rows" in message and "episode 1" in message
    assert ".truncate(1)" in message
    EpisodeStore.open(tmp_path / "s.zarr", mode="a", validate=False).truncate(1)
    repaired = EpisodeStore.open(tmp_path / "s.zarr")
    assert repaired.n_episodes == 1
    assert_episode_equal(repaired, 0, seed=0, length=5)


def test_deleted_image_chunk_names_array_and_episode(tmp_path):
    make_store(tmp_path / "s.zarr", lengths=(5, 7, 4))
    _chunk(tmp_path / "s.zarr", "data/observation.images.top", 13).unlink()
    with pytest.raises(DatasetError, match=r"observation.images.top lacks chunk 13.*episode 2"):
        EpisodeStore.open(tmp_path / "s.zarr")


def test_corrupt_low_dim_chunk_fails_on_open(tmp_path):
    make_store(tmp_path / "s.zarr")
    chunk = _chunk(tmp_path / "s.zarr", "data/action", 0)
    chunk.write_bytes(chunk.read_bytes()[:-9] + b"corrupted")
    with pytest.raises(DatasetError, match=r"data/action cannot be read.*episode 0.*damaged"):
        EpisodeStore.open(tmp_path / "s.zarr")


def test_corrupt_image_chunk_fails_deep_validation_and_reads(tmp_path):
    make_store(tmp_path / "s.zarr", lengths=(5, 7, 4))
    chunk = _chunk(tmp_path / "s.zarr", "data/observation.images.left_wrist", 6)
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    store = EpisodeStore.open(tmp_path / "s.zarr")  # cheap checks do not decode images
    damaged = r"data/observation.images.left_wrist cannot be read near row 6 \(episode 1\)"
    with pytest.raises(DatasetError, match=damaged):
        store.validate(deep=True)
    with pytest.raises(DatasetError, match=damaged):
        store.episode(1)
    store.episode(0)  # the other episodes still read


def test_episode_ends_not_increasing(tmp_path):
    make_store(tmp_path / "s.zarr", lengths=(5, 7, 4))
    zarr.open_group(tmp_path / "s.zarr", mode="r+")["meta/episode_ends"][1] = 3
    with pytest.raises(DatasetError, match="episode_ends is not strictly increasing at episode 1"):
        EpisodeStore.open(tmp_path / "s.zarr")


def test_meta_array_too_short(tmp_path):
    make_store(tmp_path / "s.zarr", lengths=(5, 7, 4))
    zarr.open_group(tmp_path / "s.zarr", mode="r+")["meta/episode_success"].resize((2,))
    with pytest.raises(DatasetError, match=r"meta/episode_success has 2 entries.*episode 2"):
        EpisodeStore.open(tmp_path / "s.zarr")


def test_unreadable_or_foreign_stores(tmp_path):
    with pytest.raises(DatasetError, match="no Zarr store here"):
        EpisodeStore.open(tmp_path / "nothing.zarr")
    make_store(tmp_path / "s.zarr", lengths=(3,))
    (tmp_path / "s.zarr/zarr.json").write_text("{ not json")
    with pytest.raises(DatasetError, match="zarr.json of the store is unreadable"):
        EpisodeStore.open(tmp_path / "s.zarr")
    zarr.open_group(tmp_path / "other.zarr", mode="w", attributes={"format": "something"})
    with pytest.raises(DatasetError, match="not an aloha-bench episode store"):
        EpisodeStore.open(tmp_path / "other.zarr")
    make_store(tmp_path / "t.zarr", lengths=(3,))
    shutil.rmtree(tmp_path / "t.zarr/meta/episode_ends")
    with pytest.raises(DatasetError, match="episode_ends is missing or unreadable"):
        EpisodeStore.open(tmp_path / "t.zarr")


# ------------------------------------------------------------------------------------------------
# Layer rule
# ------------------------------------------------------------------------------------------------
def test_data_layer_imports_no_torch_mujoco_or_gymnasium():
    # PIL: imageio's own dependency, which draws the labels of videos (data/video.py).
    allowed = set(sys.stdlib_module_names) | {"__future__", "numpy", "zarr", "imageio", "PIL"}
    # task_spec is the one place tasks are defined (stdlib TOML parsing, no mujoco): the store
    # checks a store's task id and environment-state width against it.
    allowed_internal = {
        "aloha_bench",
        "aloha_bench.keys",
        "aloha_bench.embodiment",
        "aloha_bench.sim.task_spec",
    }
    for source in sorted((PACKAGE / "data").glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                internal = name.startswith("aloha_bench")
                ok = (
                    name in allowed_internal or name.startswith("aloha_bench.data")
                    if internal
                    else name.split(".")[0] in allowed
                )
                assert ok, f"{source.name} imports {name}"


def test_checking_stores_against_their_task_loads_no_mujoco_or_torch():
    code = (
        "import sys, aloha_bench.data.store;"
        "print([m for m in ('torch', 'mujoco', 'dm_control') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
