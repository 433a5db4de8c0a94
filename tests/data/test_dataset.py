"""Training windows, the episode split, normalization statistics and the loader benchmark."""

import numpy as np
import pytest

from aloha_bench import keys
from aloha_bench.data import (
    EpisodeStore,
    WindowDataset,
    bench_loader,
    compute_stats,
    train_val_split,
)
from tests.data.test_store import IMAGE_KEYS, make_episode, make_store

LENGTHS = (5, 7, 4)


@pytest.fixture
def store(tmp_path) -> EpisodeStore:
    make_store(tmp_path / "s.zarr", LENGTHS)
    return EpisodeStore.open(tmp_path / "s.zarr")


def test_window_in_the_middle_has_no_padding(store):
    dataset = WindowDataset(store, chunk_size=3)
    item = dataset[5 + 2]  # episode 1, step 2
    arrays, _ = make_episode(1, 7)
    np.testing.assert_array_equal(item[keys.ACTION], arrays[keys.ACTION][2:5])
    assert not item[keys.ACTION_IS_PAD].any()
    for key in (keys.STATE, keys.ENVIRONMENT_STATE, *IMAGE_KEYS):
        np.testing.assert_array_equal(item[key], arrays[key][2], err_msg=key)
    assert item[IMAGE_KEYS[0]].dtype == np.uint8 and item[IMAGE_KEYS[0]].shape == (12, 16, 3)
    assert item["episode_index"] == 1 and item["frame_index"] == 2


def test_window_at_the_end_repeats_the_last_action_and_flags_it(store):
    dataset = WindowDataset(store, chunk_size=4)
    arrays, _ = make_episode(0, 5)
    actions = arrays[keys.ACTION]
    item = dataset[3]  # episode 0, step 3 of 5: actions 3, 4, then two padded steps
    np.testing.assert_array_equal(item[keys.ACTION], actions[[3, 4, 4, 4]])
    np.testing.assert_array_equal(item[keys.ACTION_IS_PAD], [False, False, True, True])
    last = dataset[4]  # the episode's last step never reaches into episode 1
    np.testing.assert_array_equal(last[keys.ACTION], actions[[4, 4, 4, 4]])
    np.testing.assert_array_equal(last[keys.ACTION_IS_PAD], [False, True, True, True])
    long = WindowDataset(store, chunk_size=100)[0]
    assert long[keys.ACTION].shape == (100, 12) and long[keys.ACTION_IS_PAD].sum() == 95


def test_length_episodes_and_keys(store):
    assert len(WindowDataset(store)) == sum(LENGTHS)
    subset = WindowDataset(store, chunk_size=2, episodes=[2, 0], keys=[keys.STATE])
    assert len(subset) == 4 + 5
    assert subset.locate(0) == (2, 0) and subset.locate(4) == (0, 0) and subset.locate(-1) == (0, 4)
    assert set(subset[0]) == {
        keys.STATE,
        keys.ACTION,
        keys.ACTION_IS_PAD,
        "episode_index",
        "frame_index",
    }
    with pytest.raises(IndexError):
        subset[9]
    with pytest.raises(ValueError, match="unknown keys"):
        WindowDataset(store, keys=["observation.images.front"])
    with pytest.raises(ValueError, match="episodes must be indices"):
        WindowDataset(store, episodes=[3])


def test_sample_batch_stacks_items(store):
    dataset = WindowDataset(store, chunk_size=6)
    indices = [15, 0, 7, 7, 4]
    batch = dataset.sample_batch(indices)
    assert batch[keys.ACTION].shape == (5, 6, 12)
    assert batch[IMAGE_KEYS[1]].shape == (5, 12, 16, 3)
    for row, index in enumerate(indices):
        for key, value in dataset[index].items():
            np.testing.assert_array_equal(batch[key][row], value, err_msg=key)


def test_opening_by_path_matches_opening_the_store(store):
    by_path = WindowDataset(store.path, chunk_size=3)
    np.testing.assert_array_equal(by_path[6][keys.ACTION], WindowDataset(store, 3)[6][keys.ACTION])


def test_split_is_by_episode_disjoint_and_deterministic():
    train, val = train_val_split(50, val_fraction=0.2, seed=3)
    assert len(val) == 10 and len(train) == 40
    assert not set(train) & set(val) and sorted([*train, *val]) == list(range(50))
    again = train_val_split(50, val_fraction=0.2, seed=3)
    np.testing.assert_array_equal(again[1], val)
    assert not np.array_equal(train_val_split(50, val_fraction=0.2, seed=4)[1], val)
    assert len(train_val_split(3, 0.01)[1]) == 1
    assert len(train_val_split(3, 0.0)[1]) == 0
    with pytest.raises(ValueError, match="none for training"):
        train_val_split(1, 0.5)


def test_stats_match_numpy_over_the_chosen_episodes(store):
    stats = compute_stats(store, episodes=[0, 2])
    rows = np.concatenate([np.arange(0, 5), np.arange(12, 16)])
    state = store.read_all(keys.STATE)[rows]
    np.testing.assert_allclose(stats[keys.STATE]["mean"], state.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(stats[keys.STATE]["std"], state.std(axis=0), rtol=1e-5)
    np.testing.assert_array_equal(stats[keys.STATE]["max"], state.max(axis=0))
    assert stats[keys.STATE]["count"] == 9
    image = stats[IMAGE_KEYS[0]]
    pixels = store.read_rows(IMAGE_KEYS[0], rows).reshape(-1, 3) / 255.0
    np.testing.assert_allclose(image["mean"], pixels.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(image["std"], pixels.std(axis=0), rtol=1e-4)
    assert image["mean"].shape == (3,) and 0.0 <= image["min"].min() <= image["max"].max() <= 1.0
    sampled = WindowDataset(store, keys=[IMAGE_KEYS[0]]).stats(max_image_frames=4)
    assert sampled[IMAGE_KEYS[0]]["count"] == 4 and set(sampled) == {keys.ACTION, IMAGE_KEYS[0]}


def test_bench_loader_reports_a_rate(store):
    result = bench_loader(store.path, batch_size=4, chunk_size=10, n_batches=3)
    assert result["samples_per_s"] > 0 and result["n_batches"] == 3
    assert result["episodes"] == 3 and result["cameras"] == ["top", "left_wrist"]


def test_image_cache_serves_what_the_store_holds(tmp_path):
    from tests.policies.conftest import make_store

    path = make_store(tmp_path / "p.zarr", n_episodes=3, length=9, cameras=("top", "front"))
    cached = WindowDataset(path, chunk_size=4, episodes=[2, 0])
    direct = WindowDataset(path, chunk_size=4, episodes=[2, 0], image_cache_bytes=0)
    assert set(cached._images) == {"observation.images.top", "observation.images.front"}
    assert not direct._images
    indices = np.arange(len(cached))
    a, b = cached.sample_batch(indices), direct.sample_batch(indices)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
