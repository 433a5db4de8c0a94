"""Training run folders (L4): checkpoints that can be checked, recovered and refused safely.

A checkpoint folder (``last/``, ``best/``) is written beside its final place as ``<name>.tmp/``,
and its ``manifest.json`` (every file's size and SHA-256, and the step) is written **last**: a
folder with a manifest whose files all match it is complete. It is then swapped in with two
renames (``last/ -> last.old/``, ``last.tmp/ -> last/``) and ``last.old/`` is deleted. A process
stopped anywhere in that sequence leaves at least one complete folder among ``last/``,
``last.tmp/`` and ``last.old/``; :func:`prepare_run_dir` finds the newest complete one and puts it
back at ``last/`` before a resume.

Training also stops, rather than writing NaN checkpoints, at the first non-finite loss
(:func:`check_finite_loss`) and before saving non-finite weights (:func:`write_checkpoint`).
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from aloha_bench.data.store import DatasetError, EpisodeStore
from aloha_bench.policies import ACTConfig, ACTPolicy
from aloha_bench.policies.act.policy import file_sha256

MANIFEST_FILE = "manifest.json"
TRAINING_STATE_FILE = "training_state.pt"
# Files a run writes before its first checkpoint: a folder holding only these (and unfinished
# checkpoint folders) holds nothing of value, so a fresh run may start over in it.
RUN_FILES = ("config.json", "split.json", "losses.csv", "losses.png")
# Entries of split.json that define which data a run trains on; a resume must see the same.
DATASET_IDENTITY = ("task", "source", "demo_seeds", "train_episodes", "dataset_fingerprint")


class TrainingDivergedError(ValueError):
    """The loss or the weights became NaN or infinite; the run stopped before saving them."""


def write_checkpoint(
    policy: ACTPolicy, directory: Path, training_state: Mapping[str, Any] | None
) -> None:
    """Write ``directory`` (weights, config, optional training state, manifest) atomically.

    Raises:
        TrainingDivergedError: a weight is NaN or infinite (nothing is written, so the previous
            checkpoint stays the last good one).
    """
    bad = [name for name, p in policy.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        step = None if training_state is None else training_state.get("step")
        raise TrainingDivergedError(
            f"non-finite weights after step {step} ({bad[0]}{' and more' if len(bad) > 1 else ''})"
            f"; {directory} was not overwritten and keeps the last good checkpoint. Likely cause: "
            "a learning rate too high for this model (lower lr / lr_backbone or add "
            "warmup_steps), or non-finite values in the dataset"
        )
    staging = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    policy.save(staging)
    if training_state is not None:
        torch.save(dict(training_state), staging / TRAINING_STATE_FILE)
    files = sorted(p for p in staging.iterdir() if p.is_file())
    manifest = {
        "step": None if training_state is None else int(training_state["step"]),
        "files": {p.name: {"bytes": p.stat().st_size, "sha256": file_sha256(p)} for p in files},
    }
    (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    staging.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def checkpoint_step(directory: Path, need_training_state: bool = True) -> int | None:
    """The step of a complete checkpoint folder, or ``None`` if it is absent or incomplete.

    Complete: ``manifest.json`` parses and every file it lists exists with its recorded size
    (sizes, not hashes: this runs on every resume and must stay cheap; the hashes are there to
    verify a suspect copy). Folders written before manifests existed count as complete when
    they hold the weights, the config and (if needed) the training state, read as step -1 so
    that any manifest-backed sibling wins.
    """
    if not directory.is_dir():
        return None
    manifest_path = directory / MANIFEST_FILE
    if not manifest_path.is_file():
        legacy = ["model.safetensors", "config.json"]
        if need_training_state:
            legacy.append(TRAINING_STATE_FILE)
        return -1 if all((directory / n).is_file() for n in legacy) else None
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
        for name, entry in files.items():
            if (directory / name).stat().st_size != entry["bytes"]:
                return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if need_training_state and TRAINING_STATE_FILE not in files:
        return None
    step = manifest.get("step")
    return int(step) if step is not None else -1


def recover_last(run_dir: Path) -> Path | None:
    """Put the newest complete one of ``last/``, ``last.tmp/``, ``last.old/`` at ``last/``.

    Returns:
        ``run_dir / "last"`` if a complete checkpoint with training state exists, else None.
    """
    last = run_dir / "last"
    candidates = [
        (step, path)
        for path in (last, run_dir / "last.tmp", run_dir / "last.old")
        if (step := checkpoint_step(path)) is not None
    ]
    if not candidates:
        return None
    _, newest = max(candidates, key=lambda c: c[0])  # ties keep last/ (listed first)
    if newest != last:
        stale = run_dir / "last.stale"
        shutil.rmtree(stale, ignore_errors=True)
        if last.exists():
            last.rename(stale)
        newest.rename(last)
        shutil.rmtree(stale, ignore_errors=True)
    for leftover in (run_dir / "last.tmp", run_dir / "last.old"):
        shutil.rmtree(leftover, ignore_errors=True)
    return last


def _holds_nothing_of_value(run_dir: Path) -> bool:
    for entry in run_dir.iterdir():
        if entry.is_file() and entry.name in RUN_FILES:
            continue
        if entry.is_dir() and entry.name.split(".")[0] in ("last", "best"):
            if checkpoint_step(entry, need_training_state=False) is None:
                continue  # an unfinished checkpoint folder
        return False
    return True


def prepare_run_dir(run_dir: Path, resume: bool, config: ACTConfig) -> None:
    """Check ``run_dir`` for a fresh run or a resume; recover ``last/`` for a resume.

    A fresh run needs a new or empty folder, or one that holds nothing of value (a run stopped
    before its first checkpoint: only config, split and loss files, unfinished checkpoints),
    which is cleared. A resume needs a complete checkpoint with training state, recovered from
    an interrupted swap if needed (the caller then compares the configs).

    Raises:
        ValueError: the folder cannot be used; the message says what to do.
    """
    if not resume:
        if not run_dir.exists() or not any(run_dir.iterdir()):
            return
        if _holds_nothing_of_value(run_dir):
            for entry in run_dir.iterdir():
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            return
        resumable = recover_last(run_dir) is not None
        raise ValueError(
            f"{run_dir} exists and holds a training run or other files; choose a new --out folder"
            + (", or continue this run with --resume" if resumable else "")
        )
    if recover_last(run_dir) is None:
        if run_dir.exists() and _holds_nothing_of_value(run_dir):
            raise ValueError(
                f"cannot resume {run_dir}: the run stopped before its first checkpoint (one is "
                f"written every val_every = {config.val_every} steps), so there is nothing to "
                "resume; start it again without --resume into the same folder"
            )
        raise ValueError(
            f"cannot resume {run_dir}: no complete checkpoint with training state in last/, "
            "last.tmp/ or last.old/; train into a new folder"
        )


def dataset_identity(dataset_path: str | Path, store: EpisodeStore) -> dict[str, Any]:
    """What split.json records of the dataset, to recognise it on resume."""
    return {
        "dataset": str(Path(dataset_path).resolve()),
        "dataset_fingerprint": store.fingerprint(),
        "task": store.attrs["task_id"],
        "source": store.attrs.get("generator", {}).get("source", "unknown"),
        "demo_seeds": [int(store.episode_meta(i)["seed"]) for i in range(store.n_episodes)],
    }


def check_same_dataset(
    saved_split: Mapping[str, Any], current_split: Mapping[str, Any], run_dir: Path
) -> None:
    """Refuse a resume on other data than the run started with (before split.json changes).

    Compares the dataset's content fingerprint, task, source, demo seeds and the training
    episodes (the path may change: a moved dataset is the same data). Runs whose split.json
    predates fingerprints are compared on the rest.

    Raises:
        DatasetError: names the first differing entry and both values.
    """
    for name in DATASET_IDENTITY:
        if name not in saved_split:
            continue
        have, want = saved_split[name], current_split.get(name)
        if have != want:

            def short(v: Any) -> str:
                text = repr(v)
                return text if len(text) <= 80 else text[:77] + "..."

            raise DatasetError(
                f"cannot resume {run_dir}: it was trained on {saved_split.get('dataset')} and "
                f"this dataset ({current_split.get('dataset')}) differs in {name}: the run has "
                f"{short(have)}, the dataset has {short(want)}. Resume with the run's dataset, "
                "or train into a new folder"
            )


def check_finite_loss(metrics: Mapping[str, float], step: int, lr: float) -> None:
    """Stop at the first NaN or infinite loss, before the optimizer applies it.

    ``metrics`` are the floats ``compute_loss`` returns (already on the host: no extra sync).

    Raises:
        TrainingDivergedError: names the step, the values and the likely cause.
    """
    if all(math.isfinite(v) for v in metrics.values()):
        return
    values = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
    raise TrainingDivergedError(
        f"the loss became non-finite at step {step} ({values}; lr={lr:.3g}); training stopped "
        "before applying it, and the checkpoints written before it are kept. Likely cause: a "
        "learning rate too high for this model and batch (lower lr / lr_backbone, add "
        "warmup_steps, or lower grad_clip_norm), else non-finite values in the dataset "
        "(aloha-bench inspect)"
    )
