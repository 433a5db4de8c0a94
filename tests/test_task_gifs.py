"""The README's GIFs (aloha_bench.task_gifs): one filmed success per task, cut by the report."""

import json

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image

from aloha_bench import keys, report, task_gifs
from aloha_bench.data.video import CAPTION_HEIGHT_PX
from tests.test_report_html import study_results  # noqa: F401 (a fixture)


def test_the_report_cuts_one_gif_per_task_with_a_filmed_success(study_results):  # noqa: F811
    gifs = study_results / task_gifs.GIF_DIR
    gif = Image.open(gifs / "transfer_cube.gif")
    # 30 filmed steps, one frame in GIF_FRAME_STEP kept; one camera panel wide.
    assert gif.n_frames == len(range(0, 30, task_gifs.GIF_FRAME_STEP))
    video = imageio.mimread(
        str(next((study_results.parent / "runs" / "videos").glob("*success.mp4"))), memtest=False
    )
    assert gif.size == (video[0].shape[1] // len(keys.CAMERAS), video[0].shape[0])
    sidecar = json.loads((gifs / "transfer_cube.json").read_text())
    cell = (sidecar["policy"], sidecar["source"], sidecar["task"])
    assert cell == ("act", "scripted", "transfer_cube")
    # insertion has no filmed success: no GIF, and the index lists only what exists.
    assert not (gifs / "insertion.gif").exists()
    index = (gifs / task_gifs.GIF_INDEX).read_text()
    assert "![transfer_cube](transfer_cube.gif)" in index and "insertion" not in index
    assert "40 of 50 episodes" in index
    assert f"{task_gifs.GIF_DIR}/{task_gifs.GIF_INDEX}" in (study_results / "REPORT.md").read_text()


def test_a_gif_outlives_its_film(study_results):  # noqa: F811
    """Videos are not committed: on a clone without them, the report keeps the GIFs it made."""
    gif = study_results / task_gifs.GIF_DIR / "transfer_cube.gif"
    before = gif.read_bytes()
    for video in (study_results.parent / "runs" / "videos").glob("*.mp4"):
        video.unlink()
    report.write_report(study_results / "summary.csv", study_results)
    assert gif.read_bytes() == before
    assert "transfer_cube.gif" in (gif.parent / task_gifs.GIF_INDEX).read_text()


def test_gif_frames_keep_the_caption_over_the_chosen_camera(tmp_path):
    height, width = 40, 16
    frame = np.zeros((CAPTION_HEIGHT_PX + height, width * len(keys.CAMERAS), 3), np.uint8)
    frame[:CAPTION_HEIGHT_PX, :width] = 200  # the caption's text sits at the left
    for i in range(len(keys.CAMERAS)):
        frame[CAPTION_HEIGHT_PX:, i * width : (i + 1) * width] = 10 * (i + 1)
    path = tmp_path / "film.mp4"
    imageio.mimwrite(path, [frame] * 6, fps=25, macro_block_size=1)
    frames = task_gifs.gif_frames(path, camera="front", step=2)
    assert len(frames) == 3 and frames[0].shape == (CAPTION_HEIGHT_PX + height, width, 3)
    front = 10 * (keys.CAMERAS.index("front") + 1)
    assert abs(int(np.median(frames[0][CAPTION_HEIGHT_PX + 4 :, 4:-4])) - front) <= 3
    assert np.median(frames[0][:CAPTION_HEIGHT_PX]) > 150
    with pytest.raises(ValueError, match="camera must be one of"):
        task_gifs.gif_frames(path, camera="rear")
    with pytest.raises(ValueError, match="step must be an integer >= 1"):
        task_gifs.gif_frames(path, step=0)
    with pytest.raises(FileNotFoundError, match="no such film.*eval --videos"):
        task_gifs.gif_frames(tmp_path / "gone.mp4")
    (tmp_path / "text.mp4").write_text("not a film")
    with pytest.raises(ValueError, match="text.mp4: not a readable video"):
        task_gifs.gif_frames(tmp_path / "text.mp4")
    imageio.mimwrite(tmp_path / "odd.mp4", [frame[:, :-2]] * 2, fps=25, macro_block_size=1)
    with pytest.raises(ValueError, match=r"odd.mp4: frames of shape \(54, 62, 3\) are not 4"):
        task_gifs.gif_frames(tmp_path / "odd.mp4")


def test_an_unreadable_film_is_named_and_the_report_goes_on(study_results):  # noqa: F811
    gif = study_results / task_gifs.GIF_DIR / "transfer_cube.gif"
    before = gif.read_bytes()
    video = next((study_results.parent / "runs" / "videos").glob("*success.mp4"))
    video.write_bytes(b"not an mp4")
    with pytest.warns(UserWarning, match=f"{video.name}: not a readable rollout film"):
        written = report.write_report(study_results / "summary.csv", study_results)
    assert written[-1].name == "REPORT.md" and gif.read_bytes() == before
