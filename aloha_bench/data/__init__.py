"""Recorded episodes (layer L1): the Zarr episode store, training windows, statistics, videos.

numpy, zarr and imageio only: no torch, mujoco or gymnasium, so datasets can be read anywhere.
"""

from aloha_bench.data.dataset import WindowDataset, bench_loader, compute_stats, train_val_split
from aloha_bench.data.store import DatasetError, EpisodeStore, inspect
from aloha_bench.data.video import write_episode_video

__all__ = [
    "DatasetError",
    "EpisodeStore",
    "WindowDataset",
    "bench_loader",
    "compute_stats",
    "inspect",
    "train_val_split",
    "write_episode_video",
]
