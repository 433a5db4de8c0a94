"""Episode videos: every camera side by side, one frame per step."""

import imageio.v2 as imageio
import numpy as np
import pytest

from aloha_bench.data import DatasetError, EpisodeStore, write_episode_video
from tests.data.test_store import IMAGE_SIZE, make_episode, make_store


def test_video_has_one_frame_per_step_and_cameras_side_by_side(tmp_path):
    store = make_store(tmp_path / "s.zarr", lengths=(5, 7))
    out = write_episode_video(store, 1, tmp_path / "videos" / "episode_1.mp4")
    with imageio.get_reader(out) as reader:
        # A list comprehension: list(reader) asks len(), which is inf for ffmpeg streams.
        frames = np.stack([frame for frame in reader])
        assert reader.count_frames() == 7
    height, width = IMAGE_SIZE
    assert frames.shape == (7, height, 2 * width, 3)


def test_state_mode_store_has_no_video(tmp_path):
    store = EpisodeStore.create(
        tmp_path / "s.zarr", task_id="transfer_cube", task_version=1, obs_mode="state"
    )
    arrays, meta = make_episode(0, 3)
    store.append_episode({k: v for k, v in arrays.items() if "images" not in k}, meta)
    with pytest.raises(DatasetError, match="holds no images"):
        write_episode_video(store, 0, tmp_path / "e.mp4")
