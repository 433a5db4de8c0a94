"""A training run's own demonstrations, found through its ``split.json`` (L4).

``train`` records in ``split.json`` the dataset a run learned from and which of its episodes
were for training and which for validation. Tools that need the run's demos (an int8 export's
calibration frames, a policy's error on its held-out demos) read them here, with one error
message for a run whose dataset has been deleted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from aloha_bench.data.dataset import WindowDataset

SPLITS = ("train", "val")


def run_split(run_dir: str | Path, purpose: str) -> dict[str, Any]:
    """The run's ``split.json`` with its dataset checked to exist.

    Args:
        run_dir: a ``train`` run folder.
        purpose: what the demos are for, named in the errors (e.g. "int8_static calibrates on
            its frames").

    Raises:
        FileNotFoundError: no ``split.json`` (not a training run), or its dataset is gone.
    """
    path = Path(run_dir) / "split.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: {purpose}; give a run folder written by `aloha-bench train`"
        )
    split = json.loads(path.read_text())
    dataset = Path(split["dataset"])
    if not dataset.exists():
        raise FileNotFoundError(
            f"{run_dir}'s dataset {dataset} is gone: {purpose}; regenerate it with the same "
            "`aloha-bench generate` arguments (`aloha-bench reproduce` rebuilds a study's)"
        )
    return split


def demo_windows(
    run_dir: str | Path, keys: tuple[str, ...], chunk_size: int, split: str, purpose: str
) -> WindowDataset:
    """Windows (observation at t, the next ``chunk_size`` actions) of the run's ``split``
    episodes (``"train"`` or ``"val"``; the training ones for a run without validation
    episodes), reading ``keys``.

    Raises:
        FileNotFoundError: see :func:`run_split`.
        ValueError: an unknown ``split``.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    record = run_split(run_dir, purpose)
    episodes = record.get(f"{split}_episodes") or record.get("train_episodes") or None
    return WindowDataset(record["dataset"], chunk_size, episodes=episodes, keys=keys)


def demo_observations(
    run_dir: str | Path, keys: tuple[str, ...], frames: int, split: str = "train"
) -> list[dict[str, np.ndarray]]:
    """``frames`` raw observations (unbatched) spread evenly over the run's ``split`` episodes,
    e.g. an int8 export's calibration frames (``policies.export.quantize_int8_static``).

    Raises:
        FileNotFoundError: see :func:`run_split`.
    """
    data = demo_windows(
        run_dir, keys, 1, split, "int8_static calibrates on the run's demonstration frames"
    )
    indices = np.linspace(0, len(data) - 1, min(frames, len(data))).astype(int)
    return [{key: data[int(i)][key] for key in keys} for i in indices]
