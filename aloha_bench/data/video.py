"""Videos of stored episodes: every camera of the store side by side, one frame per step."""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np

from aloha_bench.data.store import DatasetError, EpisodeStore

# Frames decoded at once, so a long episode at full resolution never sits in memory whole.
_BLOCK_FRAMES = 50


def write_episode_video(
    store: EpisodeStore | str | Path, episode: int, out_path: str | Path, fps: float = 50.0
) -> Path:
    """Write one episode's camera images, side by side in the store's camera order, as an mp4.

    Args:
        store: an open store or its path (pixels mode: it must hold images).
        episode: episode index.
        out_path: the video file to write; its folder is created.
        fps: frame rate of the video; the store's own rate (50 Hz) plays in real time.

    Returns:
        ``out_path``.

    Raises:
        DatasetError: the store holds no images (it was recorded in state mode).
    """
    store = store if isinstance(store, EpisodeStore) else EpisodeStore.open(store)
    if not store.image_keys:
        raise DatasetError(
            f"{store.path} holds no images (obs_mode {store.attrs['obs_mode']!r}); record the "
            "episodes in pixels mode to make videos of them"
        )
    rows = store.episode_slice(episode)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # macro_block_size=1: keep odd image sizes as they are instead of rescaling them to /16.
    with imageio.get_writer(out_path, fps=fps, macro_block_size=1) as writer:
        for start in range(rows.start, rows.stop, _BLOCK_FRAMES):
            block = slice(start, min(start + _BLOCK_FRAMES, rows.stop))
            cameras = [store.read_rows(key, block) for key in store.image_keys]  # each (F, H, W, 3)
            for frame in np.concatenate(cameras, axis=2):  # (F, H, W * n_cameras, 3)
                writer.append_data(frame)
    return out_path
