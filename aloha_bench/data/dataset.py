"""Training windows over an episode store: one observation plus the next K actions, padded.

Sample ``i`` is step ``t`` of some episode: the observation at ``t`` and the action chunk
``a[t : t + K]`` that ACT learns to predict (Zhao et al. 2023, sec. IV). Steps past the episode's
end repeat its last action and are flagged in ``action_is_pad`` so the loss can mask them out
(LeRobot's convention; the original ACT code padded with zeros and sometimes counted them).

numpy only; a torch ``Dataset`` wraps this class without copying its logic.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aloha_bench import keys
from aloha_bench.data.store import EpisodeStore

# LeRobot names of the bookkeeping entries of a sample.
EPISODE_INDEX = "episode_index"
FRAME_INDEX = "frame_index"
# Module aliases: the constructor's ``keys`` argument shadows the ``keys`` module.
_ACTION = keys.ACTION
_ACTION_IS_PAD = keys.ACTION_IS_PAD
_IMAGES_PREFIX = keys.IMAGES_PREFIX
# Images of a training split up to this size are decoded once into memory: reading a batch's
# frames chunk by chunk from Zarr cost a fifth of a pixel-mode training step on 2 cores.
IMAGE_CACHE_BYTES = 2 << 30
# Frames decoded at once for image statistics (~10 MB of float64 pixels at 96x128).
_STATS_BLOCK = 32


class WindowDataset:
    """Indexable windows of an :class:`EpisodeStore` (``len``, ``[i]``, ``sample_batch``).

    Low-dimensional arrays (actions, states) are decoded once and kept in memory. Images are too
    when the selected episodes' frames fit in ``image_cache_bytes`` (50 episodes of 400 steps at
    96x128 take 0.7 GiB per camera); otherwise they are read from the store per sample, one chunk
    per frame.

    Args:
        store: an open store or its path.
        chunk_size: K, the number of future actions in each sample (ACT uses 100).
        episodes: episode indices to draw samples from (e.g. a training split); default all.
        keys: observation keys to return; default every ``data/`` key except ``action``.
        image_cache_bytes: decode the episodes' images into memory up to this many bytes (0:
            always read from the store).

    Each sample is a dict: the observation keys at step ``t`` (images as (H, W, 3) uint8),
    ``action`` (K, 12) float32, ``action_is_pad`` (K,) bool, ``episode_index`` and
    ``frame_index`` (int64 scalars).
    """

    def __init__(
        self,
        store: EpisodeStore | str | Path,
        chunk_size: int = 100,
        episodes: Sequence[int] | None = None,
        keys: Sequence[str] | None = None,
        image_cache_bytes: int = IMAGE_CACHE_BYTES,
    ) -> None:
        self.store = store if isinstance(store, EpisodeStore) else EpisodeStore.open(store)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        self.chunk_size = int(chunk_size)
        n = self.store.n_episodes
        self.episodes = np.arange(n) if episodes is None else np.asarray(episodes, dtype=np.int64)
        if self.episodes.ndim != 1 or np.any((self.episodes < 0) | (self.episodes >= n)):
            raise ValueError(f"episodes must be indices in 0..{n - 1}, got {episodes}")
        available = [k for k in self.store.data_keys if k != _ACTION]
        self.keys = tuple(available if keys is None else keys)
        unknown = set(self.keys) - set(available)
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}; the store has {available}")
        self.image_keys = tuple(k for k in self.keys if k.startswith(_IMAGES_PREFIX))
        self._memory = {
            k: self.store.read_all(k) for k in (_ACTION, *self.keys) if k not in self.image_keys
        }
        ends = self.store.episode_ends
        self._starts = np.array([self.store.episode_slice(e).start for e in self.episodes], int)
        self._lengths = np.array([ends[e] for e in self.episodes], int) - self._starts
        # Sample i belongs to the episode whose range of sample ids holds it.
        self._sample_ends = np.cumsum(self._lengths)
        self._images = self._cache_images(image_cache_bytes)

    def _cache_images(self, budget: int) -> dict[str, np.ndarray]:
        """The selected episodes' frames per image key, concatenated in ``episodes`` order."""
        n_frames = int(self._lengths.sum())
        size = sum(
            n_frames * int(np.prod(self.store.array_info(k)["shape"])) for k in self.image_keys
        )
        if not self.image_keys or size > budget:
            return {}
        return {
            key: np.concatenate(
                [self.store.read_rows(key, self.store.episode_slice(e)) for e in self.episodes]
            )
            for key in self.image_keys
        }

    def __len__(self) -> int:
        return int(self._sample_ends[-1]) if len(self._sample_ends) else 0

    def locate(self, index: int) -> tuple[int, int]:
        """(episode index in the store, step within it) of sample ``index``."""
        position, step = self._locate(index)
        return int(self.episodes[position]), step

    def _locate(self, index: int) -> tuple[int, int]:
        """(position in ``self.episodes``, step within that episode) of sample ``index``."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample {index} out of range; the dataset has {len(self)}")
        index %= len(self)
        position = int(np.searchsorted(self._sample_ends, index, side="right"))
        first = self._sample_ends[position - 1] if position else 0
        return position, int(index - first)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return {key: value[0] for key, value in self.sample_batch([index]).items()}

    def sample_batch(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
        """Samples ``indices`` stacked along a new first axis (B, ...).

        Each camera's frames are fetched in one request, which Zarr serves concurrently.
        """
        located = np.array([self._locate(int(i)) for i in indices], dtype=np.int64).reshape(-1, 2)
        positions, steps = located[:, 0], located[:, 1]  # (B,), (B,)
        starts = self._starts[positions]
        lengths = self._lengths[positions]
        rows = starts + steps  # (B,) store rows of the observations
        offsets = steps[:, None] + np.arange(self.chunk_size)  # (B, K) steps of the actions
        is_pad = offsets >= lengths[:, None]  # (B, K)
        # Past the end, repeat the last action (LeRobot clamps its frame index the same way).
        action_rows = starts[:, None] + np.minimum(offsets, lengths[:, None] - 1)  # (B, K)
        # Cached frames sit at (samples before this episode) + step.
        cached_rows = self._sample_ends[positions] - lengths + steps  # (B,)
        batch = {}
        for key in self.keys:
            if key in self._images:
                batch[key] = self._images[key][cached_rows]
            elif key in self.image_keys:
                batch[key] = self.store.read_rows(key, rows)
            else:
                batch[key] = self._memory[key][rows]
        batch[_ACTION] = self._memory[_ACTION][action_rows]  # (B, K, 12)
        batch[_ACTION_IS_PAD] = is_pad
        batch[EPISODE_INDEX] = self.episodes[positions]
        batch[FRAME_INDEX] = steps
        return batch

    def stats(self, max_image_frames: int = 1000) -> dict[str, dict[str, np.ndarray]]:
        """:func:`compute_stats` over this dataset's episodes and keys (plus ``action``)."""
        return compute_stats(
            self.store, (_ACTION, *self.keys), self.episodes, max_image_frames=max_image_frames
        )


def train_val_split(
    n_episodes: int, val_fraction: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split episode indices ``0..n_episodes-1`` into training and validation sets.

    Splitting by episode (not by step) keeps near-identical neighbouring frames out of both
    sets. The same (n_episodes, val_fraction, seed) always gives the same split.

    Args:
        n_episodes: number of episodes in the store.
        val_fraction: share of episodes held out, in [0, 1); rounded, at least one episode when
            positive.
        seed: seed of the shuffle.

    Returns:
        (train_ids, val_ids), each sorted int64.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = max(1, round(n_episodes * val_fraction)) if val_fraction > 0 else 0
    if n_episodes - n_val < 1:
        raise ValueError(
            f"{n_episodes} episodes leave none for training at val_fraction {val_fraction}; "
            "record more episodes or lower val_fraction"
        )
    order = np.random.default_rng(seed).permutation(n_episodes)
    return np.sort(order[n_val:]).astype(np.int64), np.sort(order[:n_val]).astype(np.int64)


def compute_stats(
    store: EpisodeStore | str | Path,
    keys: Sequence[str] | None = None,
    episodes: Sequence[int] | None = None,
    max_image_frames: int = 1000,
) -> dict[str, dict[str, np.ndarray]]:
    """Per-key mean, std, min and max over the rows of some episodes, for normalization.

    Args:
        store: an open store or its path.
        keys: data keys; default all.
        episodes: episodes to include (use the training split); default all.
        max_image_frames: images are summarized over at most this many frames, evenly spaced
            over the selected rows (decoding every frame would take minutes on a full store).

    Returns:
        ``{key: {"mean", "std", "min", "max", "count"}}``. Low-dimensional keys give one value
        per feature (float32, shape (D,)); image keys give one value per channel (shape (3,))
        with pixels scaled to [0, 1], as LeRobot normalizes images. ``count`` is the number of
        rows (frames) summarized.
    """
    store = store if isinstance(store, EpisodeStore) else EpisodeStore.open(store)
    chosen = range(store.n_episodes) if episodes is None else episodes
    rows = np.concatenate(
        [np.arange(s.start, s.stop) for s in map(store.episode_slice, chosen)] or [[]]
    ).astype(np.int64)
    if not len(rows):
        raise ValueError("no rows to summarize; the store or the episode selection is empty")
    spread = np.linspace(0, len(rows) - 1, min(max_image_frames, len(rows))).astype(int)
    frames = np.unique(rows[spread])
    out = {}
    for key in keys or store.data_keys:
        if key.startswith(_IMAGES_PREFIX):
            out[key] = _image_stats(store, key, frames)
            continue
        values = store.read_all(key)[rows].astype(np.float64)  # (N, D)
        out[key] = {
            "mean": values.mean(axis=0).astype(np.float32),
            "std": values.std(axis=0).astype(np.float32),
            "min": values.min(axis=0).astype(np.float32),
            "max": values.max(axis=0).astype(np.float32),
            "count": np.int64(len(rows)),
        }
    return out


def _image_stats(store: EpisodeStore, key: str, frames: np.ndarray) -> dict[str, np.ndarray]:
    """Per-channel statistics of some frames in [0, 1], accumulated a block at a time."""
    total, total_sq = np.zeros(3), np.zeros(3)
    low, high = np.full(3, np.inf), np.full(3, -np.inf)
    n = 0
    for block in np.array_split(frames, max(1, len(frames) // _STATS_BLOCK)):
        pixels = store.read_rows(key, block).reshape(-1, 3) / 255.0  # (F*H*W, 3)
        n += len(pixels)
        total += pixels.sum(axis=0)
        total_sq += np.square(pixels).sum(axis=0)
        low, high = np.minimum(low, pixels.min(axis=0)), np.maximum(high, pixels.max(axis=0))
    mean = total / n
    return {
        "mean": mean.astype(np.float32),
        "std": np.sqrt(np.maximum(total_sq / n - mean**2, 0.0)).astype(np.float32),
        "min": low.astype(np.float32),
        "max": high.astype(np.float32),
        "count": np.int64(len(frames)),
    }


def bench_loader(
    store_path: str | Path,
    batch_size: int = 8,
    chunk_size: int = 100,
    n_batches: int = 50,
    seed: int = 0,
) -> dict[str, Any]:
    """Measure how fast :class:`WindowDataset` serves random batches (images included).

    Args:
        store_path: the store to read.
        batch_size: samples per batch (ACT trains with 8).
        chunk_size: K actions per sample.
        n_batches: batches to time, after one untimed warm-up batch.
        seed: seed of the random sample indices.

    Returns:
        ``samples_per_s``, ``batches_per_s``, ``seconds`` (timed part), ``open_s`` (opening,
        validating and caching the low-dimensional arrays), and the settings and store size.
    """
    started = time.perf_counter()
    dataset = WindowDataset(store_path, chunk_size=chunk_size)
    open_s = time.perf_counter() - started
    rng = np.random.default_rng(seed)
    dataset.sample_batch(rng.integers(0, len(dataset), batch_size))
    started = time.perf_counter()
    for _ in range(n_batches):
        dataset.sample_batch(rng.integers(0, len(dataset), batch_size))
    seconds = time.perf_counter() - started
    return {
        "store": str(store_path),
        "episodes": dataset.store.n_episodes,
        "steps": dataset.store.n_steps,
        "cameras": list(dataset.store.cameras),
        "image_size": dataset.store.attrs["image_size"],
        "batch_size": batch_size,
        "chunk_size": chunk_size,
        "n_batches": n_batches,
        "open_s": open_s,
        "seconds": seconds,
        "batches_per_s": n_batches / seconds,
        "samples_per_s": n_batches * batch_size / seconds,
    }
