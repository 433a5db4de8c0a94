"""Interoperability with LeRobot: datasets and ACT checkpoints, both ways (layer L4).

Imports ``data/`` and ``policies/``; imported only by the CLI. The joint-unit conventions live in
one function pair beside the embodiment (``aloha_bench.lerobot_units``).

* :func:`to_lerobot` / :func:`from_lerobot`: Zarr episode store <-> LeRobotDataset (v3.0 written;
  v3.0, v2.1 and v2.0 read).
* :func:`export_lerobot` / :func:`import_lerobot`: our ACT run <-> LeRobot ``pretrained_model``.
* :func:`store_for_training` and :func:`policy_for_eval`: what ``train --dataset`` and
  ``eval --run`` do with a LeRobot folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aloha_bench.interop.lerobot_dataset import (
    LeRobotFormatError,
    from_lerobot,
    is_lerobot_dataset,
    parse_camera_map,
    to_lerobot,
)
from aloha_bench.interop.lerobot_policy import (
    PolicyConversionError,
    export_lerobot,
    import_lerobot,
    is_lerobot_policy,
)

__all__ = [
    "LeRobotFormatError",
    "PolicyConversionError",
    "export_lerobot",
    "from_lerobot",
    "import_lerobot",
    "is_lerobot_dataset",
    "is_lerobot_policy",
    "parse_camera_map",
    "policy_for_eval",
    "store_for_training",
    "to_lerobot",
]


def store_for_training(
    dataset: str | Path, run_dir: str | Path, **options: Any
) -> tuple[Path, dict[str, Any] | None]:
    """The Zarr store ``train`` reads for ``dataset``: itself, or a LeRobot folder converted once.

    A LeRobot dataset is converted to ``<run_dir>.dataset.zarr`` beside the run folder (the run
    folder itself must start empty) and reused when it exists, so ``--resume`` converts nothing.

    Args:
        dataset: a Zarr store or a LeRobot dataset folder.
        run_dir: the training run's folder.
        **options: ``units``, ``calibration``, ``camera_map`` of :func:`from_lerobot`.

    Returns:
        (store path, the conversion's summary or None if nothing was converted).
    """
    if not is_lerobot_dataset(dataset):
        return Path(dataset), None
    target = Path(f"{str(run_dir).rstrip('/')}.dataset.zarr")
    if target.exists():
        return target, None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(
            f"{dataset} is a LeRobot dataset; under torchrun convert it once first: "
            f"aloha-bench convert {dataset} --to zarr --out {target}"
        )
    return target, from_lerobot(dataset, target, **options)


def policy_for_eval(run: str | Path, scratch: str | Path, **options: Any) -> Path:
    """The folder ``eval`` loads for ``run``: itself, or a LeRobot ACT folder imported into
    ``scratch`` (a temporary folder the caller removes).

    Args:
        run: our run folder or a LeRobot ``pretrained_model`` folder.
        scratch: an empty folder for the imported checkpoint.
        **options: ``units``, ``calibration``, ``camera_map`` of :func:`import_lerobot`.
    """
    if not is_lerobot_policy(run):
        return Path(run)
    out = Path(scratch) / Path(run).name
    import_lerobot(run, out, **options)
    return out


def lerobot_options(args: Any) -> dict[str, Mapping | str | None]:
    """``units``, ``calibration`` and ``camera_map`` from the CLI's shared LeRobot flags."""
    return {
        "units": getattr(args, "lerobot_units", None),
        "calibration": getattr(args, "calibration", None),
        "camera_map": parse_camera_map(getattr(args, "camera_map", None)),
    }
