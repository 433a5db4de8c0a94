"""Warnings about a training run that will finish but not as its user probably expects.

``train`` raises on what cannot work (``train.check_dataset``); what *works* but quietly gives
less than asked is reported here, as :class:`TrainingWarning` (the CLI prints each as one line):

* dataset cameras the config does not read. The config's ``cameras`` are kept rather than
  widened to the dataset's: the camera list is part of the method being compared (the study's
  camera ablation trains one- and multi-camera policies on the same multi-camera data), it sets
  the cost of every step, and the saved config must be what was asked for. The warning names the
  ignored cameras and the override that uses them.
* a run shorter than its learning-rate warmup: it never trains at the configured ``lr``.
* a run shorter than ``val_every``: it validates (and picks ``best/``) only once, at its end.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


class TrainingWarning(UserWarning):
    """A training run that will finish, but not with what its config seems to ask for."""


def training_warnings(config: Any, dataset_attrs: Mapping[str, Any], path: str) -> list[str]:
    """What to warn about before training ``config`` on a store with ``dataset_attrs``.

    Args:
        config: the resolved ``ACTConfig`` (with the run's final ``steps``).
        dataset_attrs: the store's attributes (``obs_mode``, ``cameras``).
        path: the dataset's path, to name it.

    Returns:
        One message per finding, each saying how to change it; empty when there is none.
    """
    notes = []
    if config.obs_mode == "pixels":
        unused = [c for c in dataset_attrs.get("cameras", ()) if c not in config.cameras]
        if unused:
            every = ",".join((*config.cameras, *unused))
            notes.append(
                f"{path} also has cameras {unused}, which this config does not read (it trains "
                f"on {list(config.cameras)}); to train on them too, pass --set cameras={every}"
            )
    if config.steps < config.warmup_steps:
        peak = config.lr * config.steps / config.warmup_steps
        notes.append(
            f"steps={config.steps} is shorter than warmup_steps={config.warmup_steps}: the "
            f"learning rate peaks at {peak:.3g} instead of lr={config.lr:g}; train for more steps "
            f"or pass --set warmup_steps={max(config.steps // 10, 0)}"
        )
    if config.steps < config.val_every:
        notes.append(
            f"steps={config.steps} is shorter than val_every={config.val_every}: the run "
            "validates once, at its last step, so best/ is simply last/; pass "
            f"--set val_every={max(config.steps // 10, 1)} for a validation curve"
        )
    return notes


def load_training_state(path: str | Path) -> dict[str, Any]:
    """``training_state.pt`` of a checkpoint, or an error that names it and what to do.

    Raises:
        ValueError: the file is truncated or corrupt.
    """
    import torch

    try:
        return torch.load(path, weights_only=True)
    except Exception as err:  # torch raises RuntimeError, EOFError or UnpicklingError here
        raise ValueError(
            f"{path} cannot be read ({str(err).splitlines()[0]}); the training state is "
            "damaged, so this run cannot resume from it: train into a new folder (the policy "
            "beside it still loads for evaluation if its checksum holds)"
        ) from None
