"""Policies (layer L2) behind one interface: ``reset``, ``select_action``, ``compute_loss``,
``save`` and ``load``.

A policy knows nothing of tasks or simulators: it reads observation keys (``keys.py``) and returns
12 joint targets. This package never imports ``envs``, ``sim``, ``experts``, ``robots``, mujoco or
gymnasium.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from aloha_bench.policies.act import ACTConfig, ACTPolicy, load_config
from aloha_bench.policies.act.policy import CONFIG_FILE, read_config

POLICIES = {ACTPolicy.name: (ACTConfig, ACTPolicy)}
# A training run folder holds these checkpoints; `load` prefers the best.
CHECKPOINTS = ("best", "last")

__all__ = [
    "ACTConfig",
    "ACTPolicy",
    "POLICIES",
    "checkpoint_dir",
    "load",
    "load_config",
    "make_policy",
]


def make_policy(config: ACTConfig, stats: Mapping[str, Mapping[str, np.ndarray]]) -> ACTPolicy:
    """A freshly initialized policy of ``config``'s kind with the dataset's statistics."""
    for config_cls, policy_cls in POLICIES.values():
        if isinstance(config, config_cls):
            return policy_cls(config, stats)
    raise TypeError(f"no policy takes a {type(config).__name__}; known: {sorted(POLICIES)}")


def checkpoint_dir(run_dir: str | Path) -> Path:
    """The checkpoint folder of a run: ``best/``, else ``last/``, else ``run_dir`` itself."""
    run_dir = Path(run_dir)
    for name in CHECKPOINTS:
        if (run_dir / name / CONFIG_FILE).is_file():
            return run_dir / name
    if (run_dir / CONFIG_FILE).is_file():
        return run_dir
    raise FileNotFoundError(
        f"{run_dir}: no saved policy (expected best/, last/ or a config.json here); train one "
        "with `aloha-bench train`"
    )


def load(
    run_dir: str | Path,
    device: str = "cpu",
    overrides: Mapping[str, Any] | None = None,
    runtime: str = "torch",
    threads: int = 1,
) -> Any:
    """Load a trained policy from its run folder (or a checkpoint folder) alone, no dataset.

    Args:
        run_dir: a folder written by ``train`` (its ``best/`` checkpoint is used, else ``last/``)
            or a folder written by a policy's ``save``; with ``runtime="onnx"`` also a folder
            written by ``export-policy --to onnx``.
        device: where to put the policy (torch runtime).
        overrides: execution settings to change, e.g. ``{"temporal_ensemble_coeff": 0.01,
            "n_action_steps": 1}`` (see ``ACTPolicy.load``).
        runtime: ``"torch"`` (an :class:`ACTPolicy`) or ``"onnx"`` (an
            :class:`~aloha_bench.policies.export.OnnxPolicy` on ONNX Runtime's CPU provider; a
            run folder without an export is exported in memory first).
        threads: ONNX Runtime intra-op threads (torch's are set with ``torch.set_num_threads``).

    Both runtimes offer ``config``, ``reset()``, ``predict_chunk(obs)`` and
    ``select_action(obs)``.
    """
    from aloha_bench.policies import export

    if runtime not in export.RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; expected one of {export.RUNTIMES}")
    run_dir = Path(run_dir)
    exported = (run_dir / export.ONNX_FILE).is_file()
    if runtime == "onnx":
        if exported:
            return export.OnnxPolicy.load(run_dir, overrides=overrides, threads=threads)
        policy = load(run_dir, overrides=overrides)
        return export.OnnxPolicy(export.onnx_model_bytes(policy), policy.config, threads=threads)
    if exported:
        raise ValueError(
            f"{run_dir} holds an ONNX export, which torch cannot run; use --runtime onnx, or the "
            "training run it was exported from"
        )
    directory = checkpoint_dir(run_dir)
    name = read_config(directory).get("policy")
    if name not in POLICIES:
        raise ValueError(f"{directory}: unknown policy {name!r}; known: {sorted(POLICIES)}")
    return POLICIES[name][1].load(directory, device=device, overrides=overrides)
