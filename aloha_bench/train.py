"""Policy training (L4): windows of a Zarr episode store -> a run folder of checkpoints.

The run folder::

    <out_dir>/
      config.json        the resolved config
      split.json         dataset path, training and validation episodes
      losses.csv         training metrics every ``log_every`` steps, validation every ``val_every``
      losses.png         the same curves, drawn at the end of the run
      last/              model.safetensors + config.json + training_state.pt (to resume)
      best/              model.safetensors + config.json of the lowest validation L1 at z = 0

Choices, each deliberate:
  * Steps, not epochs: the original's "2000 epochs" hid ~10k steps; ``steps`` counts gradient steps.
  * Split by episode (``data.train_val_split``), statistics from the training split only.
  * AdamW with the backbone in its own parameter group (``lr_backbone``), gradients clipped to
    ``grad_clip_norm``. The optimizer is torch's fused AdamW (one kernel over every parameter;
    the default on a CPU is a Python loop over 136 tensors that cost ~100 ms a step). Learning
    rate: linear warmup over ``warmup_steps``, then constant (the paper and LeRobot train ACT at
    a constant rate; warmup only steadies the higher rates of the ``cpu`` profile) or, with
    ``lr_schedule = "cosine"``, decayed to ``min_lr_ratio * lr`` at the last step. The rate is
    a pure function of the step, so there is no scheduler state.
  * Best checkpoint by the validation L1 with z = 0: the actions the policy executes at test time
    (the original selected by the training-style loss with z from the posterior). Without held-out
    episodes (``val_fraction = 0`` or a one-episode store) the training batch's L1 stands in.
  * Batches are random windows drawn with a seeded numpy generator in this process (no workers:
    two cores are better spent on the model). Resuming restores that generator, torch's RNG, the
    optimizer and the step, so a resumed run is bit-for-bit the uninterrupted one.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file
from torch.optim.swa_utils import AveragedModel

from aloha_bench import keys
from aloha_bench.checkpoint import (
    check_finite_loss,
    check_same_dataset,
    dataset_identity,
    prepare_run_dir,
    write_checkpoint,
)
from aloha_bench.data.dataset import WindowDataset, compute_stats, train_val_split
from aloha_bench.data.store import DatasetError, EpisodeStore
from aloha_bench.policies import ACTConfig, ACTPolicy, make_policy
from aloha_bench.policies.act.config import LR_SCHEDULES
from aloha_bench.policies.act.policy import CONFIG_FILE, MODEL_FILE
from aloha_bench.train_checks import TrainingWarning, load_training_state, training_warnings

TRAINING_STATE_FILE = "training_state.pt"
LOSSES_FILE = "losses.csv"
SPLIT_FILE = "split.json"
CSV_COLUMNS = (
    "step",
    "loss",
    "l1",
    "kl",
    "grad_norm",
    "lr",
    "samples_per_s",
    "val_loss",
    "val_l1",
    "val_kl",
    "val_l1_prior",
    # aux_state_weight > 0 (an extension): L1 of the objects' poses read from the image features
    "aux_state_l1",
    "val_aux_state_l1",
)
# Config fields a resumed run may change: only how long it runs.
RESUMABLE_CHANGES = ("steps",)


def resolve_device(device: str) -> torch.device:
    """``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch sees no CUDA device; use --device cpu")
    return torch.device(device)


class _LossModule(torch.nn.Module):
    """``compute_loss`` as ``forward``: DistributedDataParallel syncs gradients through forward."""

    def __init__(self, policy: torch.nn.Module) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        return self.policy.compute_loss(batch)


def distributed_context() -> tuple[int, int]:
    """(rank, world size): torchrun's, with the process group started; (0, 1) without torchrun.

    nccl on GPUs, gloo on CPUs (PyTorch's own engines); torchrun sets the environment.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def learning_rate(
    step: int,
    base_lr: float,
    warmup_steps: int,
    schedule: str = "constant",
    total_steps: int = 0,
    min_lr_ratio: float = 0.0,
) -> float:
    """The rate at ``step``: linear warmup from base_lr / warmup_steps to base_lr, then either
    ``"constant"`` (the paper's and LeRobot's ACT) or ``"cosine"`` (a half cosine from base_lr at
    the end of warmup to ``min_lr_ratio * base_lr`` at ``total_steps``; Loshchilov & Hutter 2017,
    the schedule diffusion_policy and most short-budget recipes use).
    """
    if warmup_steps and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    if schedule != "cosine":
        raise ValueError(f"unknown lr_schedule {schedule!r}; use one of {LR_SCHEDULES}")
    span = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / span, 1.0)
    return base_lr * (
        min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    )


def check_dataset(config: ACTConfig, store: EpisodeStore) -> None:
    """Fail early, saying how to fix it, when the store cannot feed this config."""
    attrs = store.attrs
    missing = [key for key in config.input_keys if key not in store.data_keys]
    if missing:
        raise DatasetError(
            f"{store.path} ({attrs['obs_mode']} mode, cameras {attrs['cameras']}) lacks "
            f"{missing} that this {config.obs_mode}-mode config reads; set cameras/obs_mode to "
            "match (e.g. --set obs_mode=state) or generate a matching dataset"
        )
    if config.aux_state_weight > 0 and not (
        keys.ENVIRONMENT_STATE in store.data_keys
        and store.array_info(keys.ENVIRONMENT_STATE)["shape"] != [0]
    ):
        raise DatasetError(
            f"{store.path} records no {keys.ENVIRONMENT_STATE} (object poses exist only in "
            "simulated datasets), which aux_state_weight > 0 learns to predict; train on a "
            "simulated dataset or set aux_state_weight=0"
        )
    if config.obs_mode == "pixels" and tuple(attrs["image_size"]) != config.image_size:
        height, width = attrs["image_size"]
        raise DatasetError(
            f"{store.path} has {height}x{width} images, the config expects "
            f"{config.image_size[0]}x{config.image_size[1]}; pass --set image_size={height}x{width}"
        )
    if store.n_episodes < 1:
        raise DatasetError(f"{store.path} holds no episodes; generate some first")


def _to_device(batch: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    # Images travel as uint8 (4x less than float) and become floats on the device.
    return {
        key: torch.from_numpy(value).to(device, non_blocking=True) for key, value in batch.items()
    }


def _split(config: ACTConfig, n_episodes: int) -> tuple[np.ndarray, np.ndarray]:
    if config.val_fraction == 0 or n_episodes < 2:
        return np.arange(n_episodes, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return train_val_split(n_episodes, config.val_fraction, seed=config.seed)


def _atomic_checkpoint(policy: ACTPolicy, directory: Path, training_state: dict | None) -> None:
    """Write a checkpoint folder next to ``directory``, then swap it in (never half-written;
    refused for non-finite weights; ``checkpoint.write_checkpoint``)."""
    write_checkpoint(policy, directory, training_state)


def _check_resumable(saved: ACTConfig, config: ACTConfig, run_dir: Path) -> None:
    saved_fields, new_fields = dataclasses.asdict(saved), dataclasses.asdict(config)
    changed = [
        name
        for name in saved_fields
        if name not in RESUMABLE_CHANGES and saved_fields[name] != new_fields[name]
    ]
    if changed:
        diff = ", ".join(f"{n}: {saved_fields[n]!r} -> {new_fields[n]!r}" for n in changed)
        raise ValueError(
            f"cannot resume {run_dir}: the config differs from the saved one ({diff}); resume "
            "with the same config (only steps may change) or train into a new folder"
        )


def make_optimizer(policy: ACTPolicy, config: ACTConfig) -> torch.optim.AdamW:
    """AdamW over the policy, the backbone in its own group at ``lr_backbone``.

    Fused: one kernel updates every parameter (CPU and CUDA). Each group carries ``base_lr``, the
    rate :func:`learning_rate` scales at every step.
    """
    backbone = {id(p) for p in policy.backbone_parameters()}
    groups = [
        {"params": [p for p in policy.parameters() if id(p) not in backbone], "base_lr": config.lr},
        {"params": policy.backbone_parameters(), "base_lr": config.lr_backbone},
    ]
    return torch.optim.AdamW(
        [{**g, "lr": g["base_lr"]} for g in groups if g["params"]],
        weight_decay=config.weight_decay,
        fused=True,
    )


def weight_average(policy: ACTPolicy, decay: float) -> AveragedModel | None:
    """An exponential moving average of ``policy``'s weights and buffers (``ema_decay``), or None
    when ``decay`` is 0.

    torch's ``AveragedModel`` holds the average (a copy of the policy, so checkpoints and
    validation use it as they use the policy); its first update copies the weights, later ones
    move each averaged tensor towards the live one by 1 - d with d = min(decay, (1 + n) / (10 + n))
    after n updates (the ``num_updates`` warm-up of TensorFlow's ``ExponentialMovingAverage``), so
    the random initialization fades within the first hundred steps.
    """
    if decay == 0.0:
        return None

    @torch.no_grad()
    def update(averaged: list, current: list, n_averaged: torch.Tensor) -> None:
        n = int(n_averaged)
        rate = 1.0 - min(decay, (1 + n) / (10 + n))
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, rate)
        else:  # integer buffers (none in ACT today) follow the live model
            for a, c in zip(averaged, current, strict=True):
                a.copy_(c)

    return AveragedModel(policy, multi_avg_fn=update, use_buffers=True)


def train_step(
    policy: ACTPolicy,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    config: ACTConfig,
    loss_module: torch.nn.Module | None = None,
    check: Callable[[dict[str, float]], None] | None = None,
) -> tuple[dict[str, float], float]:
    """One gradient step: loss (under the policy's autocast), backward, clip, AdamW.

    ``train`` and ``aloha-bench bench train`` both run this function, so the benchmark times the
    training loop's own arithmetic.

    Args:
        policy: the policy, in training mode.
        optimizer: from :func:`make_optimizer` (learning rates already set for this step).
        batch: tensors on the policy's device (``compute_loss``'s input).
        config: for ``grad_clip_norm``.
        loss_module: a DistributedDataParallel wrapper of the policy's loss, or None.
        check: called with the loss metrics before anything is updated (``train`` stops a
            diverging run there: ``checkpoint.check_finite_loss``).

    Returns:
        (metrics of ``compute_loss``, gradient norm before clipping).
    """
    with policy.autocast():
        loss, metrics = (loss_module or policy.compute_loss)(batch)
    if check is not None:
        check(metrics)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(
        policy.parameters(), config.grad_clip_norm, foreach=True
    )
    optimizer.step()
    return metrics, float(grad_norm)


def _validate(
    policy: ACTPolicy,
    val_data: WindowDataset | None,
    val_indices: np.ndarray,
    config: ACTConfig,
    device: torch.device,
) -> dict[str, float]:
    """Mean validation metrics over fixed batches (eval mode, no gradients, no RNG draws)."""
    if val_data is None:
        return {}
    policy.eval()
    totals: dict[str, float] = {}
    batches = val_indices.reshape(config.val_batches, -1)
    with torch.no_grad(), policy.autocast():
        for indices in batches:
            _, metrics = policy.compute_loss(_to_device(val_data.sample_batch(indices), device))
            for name, value in metrics.items():
                totals[name] = totals.get(name, 0.0) + value / len(batches)
    policy.train()
    return {f"val_{name}": value for name, value in totals.items()}


def write_loss_plot(run_dir: str | Path) -> Path:
    """Draw ``losses.png`` from ``losses.csv``: training L1 and KL, validation L1 with z = 0.

    Matplotlib (headless Agg), log-scale loss against gradient steps, with axis titles.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    with (run_dir / LOSSES_FILE).open(newline="") as f:
        rows = list(csv.DictReader(f))

    def column(name: str) -> tuple[list[float], list[float]]:
        picked = [(float(r["step"]), float(r[name])) for r in rows if r.get(name)]
        picked = [(x, y) for x, y in picked if y > 0 and np.isfinite(y)]  # log scale
        return [x for x, _ in picked], [y for _, y in picked]

    fig, ax = plt.subplots(figsize=(7.5, 4.0), dpi=110)
    for label, name, style in (
        ("train L1", "l1", "-"),
        ("train KL", "kl", "-"),
        ("validation L1, z = 0 (what the policy executes)", "val_l1_prior", "o-"),
    ):
        xs, ys = column(name)
        if xs:
            ax.plot(xs, ys, style, label=label, markersize=3, linewidth=1.4)
    ax.set_yscale("log")
    ax.set_xlabel("gradient step")
    ax.set_ylabel("loss (normalized actions, log scale)")
    ax.set_title(f"{run_dir.name}: training curves")
    ax.grid(True, which="both", alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    fig.tight_layout()
    out = run_dir / "losses.png"
    fig.savefig(out)
    plt.close(fig)
    return out


def _tensorboard_writer(run_dir: Path, start_step: int):
    """A TensorBoard ``SummaryWriter`` in ``run_dir/tensorboard``; on resume, events logged
    after the checkpoint's step (by the interrupted run) are purged, as losses.csv's rows are."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ValueError(
            "TensorBoard logging needs the tensorboard package: pip install "
            "'aloha-bench[tensorboard]' (or train without --log tensorboard)"
        ) from err
    return SummaryWriter(run_dir / "tensorboard", purge_step=start_step + 1 if start_step else None)


def _write_run_files(
    run_dir: Path,
    config: ACTConfig,
    dataset_path: str | Path,
    store: EpisodeStore,
    train_ids,
    val_ids,
    resume: bool = False,
) -> None:
    # The demos' seeds travel with the run, so evaluation can refuse scenes the policy was
    # trained on even after the dataset is deleted (aloha_bench.evaluate.check_seed_overlap).
    split = {
        **dataset_identity(dataset_path, store),
        "train_episodes": train_ids.tolist(),
        "val_episodes": val_ids.tolist(),
    }
    if resume and (run_dir / SPLIT_FILE).is_file():
        # Before anything is rewritten: other data would mix runs and void the seed check.
        check_same_dataset(json.loads((run_dir / SPLIT_FILE).read_text()), split, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config.save(run_dir / CONFIG_FILE)
    (run_dir / SPLIT_FILE).write_text(json.dumps(split, indent=2) + "\n")


def _read_csv_rows(path: Path, up_to_step: int) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [row for row in csv.DictReader(f) if int(row["step"]) <= up_to_step]


def train(
    config: ACTConfig,
    dataset_path: str | Path,
    out_dir: str | Path,
    steps: int | None = None,
    device: str = "auto",
    resume: bool = False,
    progress: Callable[[dict[str, Any]], None] | None = None,
    tensorboard: bool = False,
) -> dict[str, Any]:
    """Train a policy on a dataset and write the run folder.

    Args:
        config: the resolved policy config (``policies.load_config``).
        dataset_path: the Zarr episode store.
        out_dir: the run folder (created; must be new unless ``resume``).
        steps: gradient steps in total; overrides ``config.steps``.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        resume: continue the run in ``out_dir`` from its ``last/`` checkpoint, bit-for-bit.
        progress: called once when the first step starts (after every check of the dataset and
            the folder passed) with ``step`` and ``steps`` only, then every ``log_every`` steps
            and after each validation with a dict of
            ``step``, ``steps``, ``loss``, ``l1``, ``kl``, ``grad_norm``, ``lr``,
            ``samples_per_s`` (and ``val_*`` entries after a validation).
        tensorboard: also write the same rows as TensorBoard scalars to ``<out_dir>/tensorboard``
            (needs the ``tensorboard`` package: ``pip install 'aloha-bench[tensorboard]'``).

    Returns:
        A summary: ``run_dir``, ``steps``, ``final_loss``, ``best_step``, ``best_val_l1_prior``,
        ``train_samples_per_s``, ``seconds``, ``train_episodes``, ``val_episodes``, ``device``,
        ``precision`` (the one computed in: ``"fp32"`` where bf16 is not native).

    Raises:
        DatasetError: the dataset does not match the config (the message says how to fix it).
        ValueError: ``out_dir`` exists without ``resume``, or resuming with a different config.
    """
    if steps is not None:
        config = dataclasses.replace(config, steps=steps)
    run_dir = Path(out_dir)
    rank, world = distributed_context()
    is_main = rank == 0
    torch_device = resolve_device(device)
    if torch_device.type == "cuda" and world > 1:
        torch_device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(torch_device)
    if is_main:  # may recover last/ from an interrupted checkpoint swap (one writer)
        prepare_run_dir(run_dir, resume, config)
    if resume:
        _check_resumable(ACTConfig.load_json(run_dir / CONFIG_FILE), config, run_dir)
    if world > 1:
        dist.barrier()  # every rank has checked the folder before rank 0 starts writing it

    store = EpisodeStore.open(dataset_path)
    check_dataset(config, store)
    for note in training_warnings(config, store.attrs, str(dataset_path)) if is_main else ():
        warnings.warn(note, TrainingWarning, stacklevel=2)
    train_ids, val_ids = _split(config, store.n_episodes)
    train_data = WindowDataset(
        store, config.chunk_size, episodes=train_ids, keys=config.training_keys
    )
    val_data = (
        WindowDataset(store, config.chunk_size, episodes=val_ids, keys=config.training_keys)
        if len(val_ids)
        else None
    )
    stats_keys = [keys.ACTION, keys.STATE]
    if keys.ENVIRONMENT_STATE in config.training_keys:
        stats_keys.append(keys.ENVIRONMENT_STATE)
    if config.obs_mode == "pixels" and config.image_norm == "dataset":
        stats_keys.extend(config.image_keys)
    stats = compute_stats(store, stats_keys, train_ids)

    torch.manual_seed(config.seed)
    policy = make_policy(config, stats).to(torch_device)
    optimizer = make_optimizer(policy, config)
    # With ema_decay > 0 the average is the policy a run produces: checkpoints and validation
    # use it; the live weights train (and are kept in the training state for resuming).
    ema = weight_average(policy, config.ema_decay)
    produced = policy if ema is None else ema.module
    # Each rank samples its own windows; a single process keeps the plain seed (bit-for-bit
    # resume is defined, and tested, for single-process runs).
    rng = np.random.default_rng(config.seed if world == 1 else [config.seed, rank])
    ddp = (
        torch.nn.parallel.DistributedDataParallel(
            _LossModule(policy),
            # the original-code flag leaves later decoder layers out of the loss
            find_unused_parameters=config.use_first_decoder_layer_only,
        )
        if world > 1
        else None
    )
    # The same held-out windows at every validation, so the curve compares like with like.
    val_indices = (
        np.random.default_rng(config.seed + 1).integers(
            0, len(val_data), config.val_batches * config.batch_size
        )
        if val_data is not None
        else np.zeros(0, dtype=np.int64)
    )
    start_step, best = 0, {"step": None, "val_l1_prior": float("inf")}
    if resume:
        state = load_training_state(run_dir / "last" / TRAINING_STATE_FILE)
        if ema is None:
            policy.load_state_dict(load_file(run_dir / "last" / MODEL_FILE))
        else:
            # last/ holds the average itself; the training state, the live weights and the
            # number of updates behind the average (its decay's warm-up).
            policy.load_state_dict(state["live_model"])
            ema.module.load_state_dict(load_file(run_dir / "last" / MODEL_FILE))
            ema.n_averaged.fill_(int(state["ema_updates"]))
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        if torch_device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"])
        start_step, best = int(state["step"]), json.loads(state["best"])
        if world == 1:
            rng.bit_generator.state = json.loads(state["numpy_rng"])
        else:  # per-rank streams continue from a fresh, still distinct draw
            rng = np.random.default_rng([config.seed, rank, start_step])
    rows = _read_csv_rows(run_dir / LOSSES_FILE, start_step) if resume and is_main else []
    if is_main:
        _write_run_files(run_dir, config, dataset_path, store, train_ids, val_ids, resume)
    csv_file = (run_dir / LOSSES_FILE).open("w", newline="") if is_main else io.StringIO()
    writer = csv.DictWriter(csv_file, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    csv_file.flush()
    board = _tensorboard_writer(run_dir, start_step) if tensorboard and is_main else None

    policy.train()
    if progress is not None and is_main:
        progress({"step": start_step, "steps": config.steps})
    started = time.perf_counter()
    window_start, window_samples = started, 0
    metrics: dict[str, Any] = {}
    try:
        for step in range(start_step, config.steps):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(
                    step,
                    group["base_lr"],
                    config.warmup_steps,
                    config.lr_schedule,
                    config.steps,
                    config.min_lr_ratio,
                )
            batch = _to_device(
                train_data.sample_batch(rng.integers(0, len(train_data), config.batch_size)),
                torch_device,
            )
            metrics, grad_norm = train_step(
                policy,
                optimizer,
                batch,
                config,
                ddp,
                check=lambda m, done=step + 1: check_finite_loss(
                    m, done, optimizer.param_groups[0]["lr"]
                ),
            )
            if ema is not None:
                ema.update_parameters(policy)
            window_samples += config.batch_size * world
            done = step + 1
            row: dict[str, Any] = {}
            if done % config.log_every == 0 or done == config.steps:
                now = time.perf_counter()
                row = {
                    "step": done,
                    **metrics,
                    "grad_norm": grad_norm,
                    "lr": optimizer.param_groups[0]["lr"],
                    "samples_per_s": window_samples / max(now - window_start, 1e-9),
                }
                window_start, window_samples = now, 0
            if is_main and (done % config.val_every == 0 or done == config.steps):
                val = _validate(produced, val_data, val_indices, config, torch_device)
                row = {"step": done, **row, **val}
                improved = val.get("val_l1_prior", metrics["l1"]) < best["val_l1_prior"]
                if improved:
                    best = {"step": done, "val_l1_prior": val.get("val_l1_prior", metrics["l1"])}
                    _atomic_checkpoint(produced, run_dir / "best", None)
                _atomic_checkpoint(
                    produced,
                    run_dir / "last",
                    {
                        "step": done,
                        "optimizer": optimizer.state_dict(),
                        "torch_rng": torch.get_rng_state(),
                        "cuda_rng": torch.cuda.get_rng_state()
                        if torch_device.type == "cuda"
                        else None,
                        "numpy_rng": json.dumps(rng.bit_generator.state),
                        "best": json.dumps(best),
                        **(
                            {}
                            if ema is None
                            else {
                                "live_model": policy.state_dict(),
                                "ema_updates": int(ema.n_averaged),
                            }
                        ),
                    },
                )
            if row and is_main:
                writer.writerow({k: row.get(k, "") for k in CSV_COLUMNS})
                csv_file.flush()
                if board is not None:
                    for name, value in row.items():
                        if name != "step" and isinstance(value, int | float):
                            tag = "val" if name.startswith("val_") else "train"
                            board.add_scalar(f"{tag}/{name}", value, row["step"])
                if progress is not None:
                    progress({**row, "steps": config.steps})
    finally:
        csv_file.close()
        if board is not None:
            board.close()
    if is_main:
        write_loss_plot(run_dir)
    if world > 1:
        dist.barrier()  # the checkpoints are written before any rank returns
    seconds = time.perf_counter() - started
    return {
        "run_dir": str(run_dir),
        "steps": config.steps,
        "final_loss": metrics.get("loss"),
        "best_step": best["step"],
        "best_val_l1_prior": best["val_l1_prior"],
        "train_samples_per_s": (config.steps - start_step)
        * config.batch_size
        * world
        / max(seconds, 1e-9),
        "world_size": world,
        "seconds": seconds,
        "train_episodes": train_ids.tolist(),
        "val_episodes": val_ids.tolist(),
        "device": str(torch_device),
        # What the products ran in: bf16 falls back to fp32 where it is not native (precision.py).
        "precision": policy.precision,
    }
