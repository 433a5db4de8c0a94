"""Videos: stored episodes, expert rollouts and evaluations, all at one rate and all labelled.

Every video of this project plays in real time at ``VIDEO_FPS`` = 25 frames per second: one
frame every ``FRAME_STRIDE`` = 2 steps of the 50 Hz control loop. 25 fps plays smoothly in any
player or browser, and halves what is encoded and stored against 50 fps; `aloha-bench video`,
`view --video` and `eval --videos` share it, so their clips compare frame for frame.

Every frame says what it shows (``labeled_frame``): each camera panel carries its camera's name,
and a caption bar above gives the step (and the stage where it is known). Panels narrower than
``MIN_PANEL_WIDTH`` pixels are enlarged by a whole factor (nearest pixel, never distorted) so a
96x128 or smaller dataset image stays legible with its label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

from aloha_bench import embodiment
from aloha_bench.data.store import DatasetError, EpisodeStore

VIDEO_FPS = 25.0
FRAME_STRIDE = round(embodiment.CONTROL_RATE_HZ / VIDEO_FPS)
MIN_PANEL_WIDTH = 160
CAPTION_HEIGHT_PX = 14  # Pillow's built-in bitmap font is 11 px tall
# Frames decoded at once, so a long episode at full resolution never sits in memory whole.
_BLOCK_FRAMES = 50


def stage_text(stage: int, stage_names: Sequence[str]) -> str:
    """``"stage 2/3 lifted"`` (``"stage 0/3"`` before the first stage)."""
    name = f" {stage_names[stage - 1]}" if 0 < stage <= len(stage_names) else ""
    return f"stage {stage}/{len(stage_names)}{name}"


def labeled_frame(panels: Sequence[np.ndarray], names: Sequence[str], caption: str) -> np.ndarray:
    """Camera images side by side, each named, under a caption bar; (H', W', 3) uint8.

    Args:
        panels: one (H, W, 3) uint8 image per camera, all of one size.
        names: the camera of each panel.
        caption: the bar's text (step, stage, episode...).
    """
    from PIL import Image, ImageDraw  # imageio's own dependency

    height, width = panels[0].shape[:2]
    scale = max(1, math.ceil(MIN_PANEL_WIDTH / width))
    row = np.concatenate(
        [np.repeat(np.repeat(p, scale, axis=0), scale, axis=1) for p in panels], axis=1
    )
    bar = np.zeros((CAPTION_HEIGHT_PX, row.shape[1], 3), dtype=np.uint8)
    image = Image.fromarray(np.concatenate([bar, row], axis=0))
    draw = ImageDraw.Draw(image)
    draw.text((4, 1), caption, fill=(255, 255, 255))
    for i, name in enumerate(names):
        left, top = i * width * scale + 3, CAPTION_HEIGHT_PX + 3
        box = draw.textbbox((left, top), name)
        draw.rectangle((box[0] - 2, box[1] - 1, box[2] + 2, box[3] + 1), fill=(0, 0, 0))
        draw.text((left, top), name, fill=(255, 220, 0))
    return np.asarray(image)


def write_episode_video(
    store: EpisodeStore | str | Path, episode: int, out_path: str | Path
) -> Path:
    """Write one episode's camera images, side by side in the store's camera order, as an mp4.

    Frames are every ``FRAME_STRIDE``-th step at ``VIDEO_FPS`` (real time), labelled with the
    camera names, the step and the episode's seed, outcome and highest stage (the store keeps
    stages per episode, not per step).

    Args:
        store: an open store or its path (pixels mode: it must hold images).
        episode: episode index.
        out_path: the video file to write; its folder is created.

    Returns:
        ``out_path``.

    Raises:
        DatasetError: the store holds no images (it was recorded in state mode), or the
            episode index is out of range.
    """
    store = store if isinstance(store, EpisodeStore) else EpisodeStore.open(store)
    if not store.image_keys:
        raise DatasetError(
            f"{store.path} holds no images (obs_mode {store.attrs['obs_mode']!r}); record the "
            "episodes in pixels mode to make videos of them"
        )
    rows = store.episode_slice(episode)
    meta = store.episode_meta(episode)
    outcome = "success" if meta["success"] else "failure"
    about = f"episode {episode} seed {meta['seed']}: {outcome}, max stage {meta['max_stage']}"
    steps = rows.stop - rows.start
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # macro_block_size=1: keep odd image sizes as they are instead of rescaling them to /16.
    with imageio.get_writer(out_path, fps=VIDEO_FPS, macro_block_size=1) as writer:
        for start in range(rows.start, rows.stop, _BLOCK_FRAMES * FRAME_STRIDE):
            picked = np.arange(start, min(start + _BLOCK_FRAMES * FRAME_STRIDE, rows.stop))
            picked = picked[(picked - rows.start) % FRAME_STRIDE == 0]
            cameras = [store.read_rows(key, picked) for key in store.image_keys]  # (F, H, W, 3)
            for i, row in enumerate(picked):
                caption = f"step {row - rows.start}/{steps}  {about}"
                writer.append_data(labeled_frame([c[i] for c in cameras], store.cameras, caption))
    return out_path
