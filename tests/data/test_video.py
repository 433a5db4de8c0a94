"""Episode videos: every camera side by side, one frame per step."""

import imageio.v2 as imageio
import numpy as np
import pytest

from aloha_bench.data import DatasetError, EpisodeStore, write_episode_video
from aloha_bench.data.video import (
    CAPTION_HEIGHT_PX,
    MIN_PANEL_WIDTH,
    VIDEO_FPS,
    labeled_frame,
    stage_text,
)
from tests.data.test_store import IMAGE_SIZE, make_episode, make_store


def test_video_plays_in_real_time_with_cameras_side_by_side_and_labelled(tmp_path):
    store = make_store(tmp_path / "s.zarr", lengths=(5, 7))
    out = write_episode_video(store, 1, tmp_path / "videos" / "episode_1.mp4")
    with imageio.get_reader(out) as reader:
        # A list comprehension: list(reader) asks len(), which is inf for ffmpeg streams.
        frames = np.stack([frame for frame in reader])
        # Every second step of 7 (0, 2, 4, 6) at 25 fps: the 50 Hz episode in real time, at the
        # rate every video of the project uses.
        assert reader.count_frames() == 4
        assert reader.get_meta_data()["fps"] == VIDEO_FPS == 25
    height, width = IMAGE_SIZE
    # Small panels are enlarged by a whole factor (never distorted) under a caption bar.
    scale = -(-MIN_PANEL_WIDTH // width)
    assert frames.shape == (4, CAPTION_HEIGHT_PX + scale * height, 2 * scale * width, 3)
    # The caption bar carries text (light pixels on black), and so does each camera's corner.
    assert (frames[0, :CAPTION_HEIGHT_PX] > 128).any()
    assert (frames[0, :CAPTION_HEIGHT_PX, -20:] < 40).all()  # the rest of the bar stays black


def test_labeled_frame_names_each_camera_in_its_own_panel():
    panels = [np.full((100, 200, 3), 128, np.uint8) for _ in range(3)]
    frame = labeled_frame(panels, ["top", "front", "left_wrist"], "step 4  stage 1/3 touched")
    assert frame.shape == (CAPTION_HEIGHT_PX + 100, 600, 3)
    for i in range(3):  # the label box (black with yellow text) sits at each panel's corner
        corner = frame[CAPTION_HEIGHT_PX + 2 : CAPTION_HEIGHT_PX + 16, i * 200 : i * 200 + 20]
        assert (corner < 20).any() and (corner[..., 0] > 200).any()
    assert stage_text(1, ("touched", "lifted", "transferred")) == "stage 1/3 touched"
    assert stage_text(0, ("touched", "lifted", "transferred")) == "stage 0/3"


def test_state_mode_store_has_no_video(tmp_path):
    store = EpisodeStore.create(
        tmp_path / "s.zarr", task_id="transfer_cube", task_version=1, obs_mode="state"
    )
    arrays, meta = make_episode(0, 3)
    store.append_episode({k: v for k, v in arrays.items() if "images" not in k}, meta)
    with pytest.raises(DatasetError, match="holds no images"):
        write_episode_video(store, 0, tmp_path / "e.mp4")
