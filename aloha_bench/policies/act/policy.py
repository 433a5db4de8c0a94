"""ACTPolicy: the ACT network behind the policy interface shared by every policy here.

``reset()``, ``select_action(obs) -> (12,)``, ``compute_loss(batch) -> (loss, metrics)``,
``save(dir)`` and ``ACTPolicy.load(dir)``. Normalization statistics are buffers of the policy, so a
saved policy is complete on its own.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from aloha_bench import keys
from aloha_bench.policies.act.config import ACTConfig
from aloha_bench.policies.act.losses import act_loss, masked_l1
from aloha_bench.policies.act.model import ACT
from aloha_bench.policies.act.precision import effective_precision
from aloha_bench.policies.chunking import (
    ChunkExecutor,
    ExecutionConfig,
    SimClock,
)
from aloha_bench.policies.normalize import Normalizer, imagenet_stats

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
# SHA-256 of the two files above in `sha256sum` format (by hand: `sha256sum -c checksums.sha256`).
CHECKSUM_FILE = "checksums.sha256"
# How a trained policy executes its chunks; everything else is fixed by its weights.
INFERENCE_FIELDS = ("n_action_steps", "temporal_ensemble_coeff")


class CheckpointError(ValueError):
    """A saved policy is damaged or inconsistent; the message names the file and what to do."""


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(directory: str | Path, names: tuple[str, ...] = (MODEL_FILE, CONFIG_FILE)):
    """Write ``checksums.sha256`` for ``names`` in ``directory``."""
    directory = Path(directory)
    lines = "".join(f"{file_sha256(directory / name)}  {name}\n" for name in names)
    (directory / CHECKSUM_FILE).write_text(lines)


def verify_checksums(directory: str | Path) -> None:
    """Check every file listed in ``directory/checksums.sha256`` (checkpoints written before
    checksums existed have none and pass).

    Raises:
        CheckpointError: a listed file is missing or its SHA-256 differs (truncated, corrupted,
            or replaced by another run's file).
    """
    directory = Path(directory)
    listing = directory / CHECKSUM_FILE
    if not listing.is_file():
        return
    for line in listing.read_text().splitlines():
        expected, _, name = line.strip().partition("  ")
        if not name:
            raise CheckpointError(f"{listing}: malformed line {line!r}; the checkpoint is damaged")
        path = directory / name
        if not path.is_file() or file_sha256(path) != expected:
            problem = "is missing" if not path.is_file() else "does not match its checksum"
            raise CheckpointError(
                f"{path} {problem} in {listing} (a truncated or interrupted copy, or a file "
                "from another checkpoint): copy the checkpoint folder again, or load the run's "
                "other checkpoint (best/ or last/)"
            )


def random_shift(images: torch.Tensor, pad: int) -> torch.Tensor:
    """Shift each image by up to ``pad`` pixels in x and y, edges replicated (DrQ's augmentation,
    Kostrikov et al. 2020; the random crop of diffusion_policy's image encoders).

    Training only: it teaches the backbone that a few pixels of camera motion do not move the
    target, the main defence of a from-scratch ResNet against overfitting 50 demonstrations.
    Shifts come from torch's generator, so a seeded run (and its resume) repeats them.

    Args:
        images: (B, N, C, H, W) float images (any normalization).
        pad: maximum shift in pixels (> 0).

    Returns:
        (B, N, C, H, W): every (sample, camera) image shifted independently.
    """
    b, n, c, h, w = images.shape
    flat = images.reshape(b * n, c, h, w)
    padded = torch.nn.functional.pad(flat, (pad, pad, pad, pad), mode="replicate")
    offsets = torch.randint(0, 2 * pad + 1, (b * n, 2)).tolist()
    shifted = [padded[i, :, y : y + h, x : x + w] for i, (y, x) in enumerate(offsets)]
    return torch.stack(shifted).reshape(b, n, c, h, w)


class ACTPolicy(nn.Module):
    """ACT (Zhao et al. 2023) with its normalization statistics.

    Args:
        config: the resolved configuration.
        stats: ``{key: {"mean", "std"}}`` of the training split (``data.compute_stats``): needs
            ``action`` and ``observation.state``; ``observation.environment_state`` in state
            mode; each camera's image key with ``image_norm = "dataset"``.
    """

    name = "act"

    def __init__(self, config: ACTConfig, stats: Mapping[str, Mapping[str, np.ndarray]]) -> None:
        super().__init__()
        self.config = config
        stats = dict(stats)
        if config.obs_mode == "pixels" and config.image_norm == "imagenet":
            stats |= {key: imagenet_stats() for key in config.image_keys}
        self.normalizer = Normalizer(stats, (keys.ACTION, *config.training_keys))
        env_dim = 0
        if keys.ENVIRONMENT_STATE in config.training_keys:
            env_dim = int(np.asarray(stats[keys.ENVIRONMENT_STATE]["mean"]).size)
        self.model = ACT(config, environment_state_dim=env_dim)
        self._executor: ChunkExecutor | None = None
        self._clock = SimClock()

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def precision(self) -> str:
        """The precision the matrix products run in here: ``config.precision``, except that
        ``"bf16"`` is ``"fp32"`` on hardware without native bf16 (see ``precision.py``)."""
        return effective_precision(self.config.precision, self.device.type)

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Parameters trained at ``lr_backbone`` (empty in state mode)."""
        backbone = getattr(self.model, "backbone", None)
        return [] if backbone is None else list(backbone.parameters())

    # --------------------------------------------------------------------------------------------
    # Inputs
    # --------------------------------------------------------------------------------------------
    def preprocess(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Normalized model inputs from a batch of raw observations (tensors on the device).

        Returns:
            ``state`` (B, 12), and ``images`` (B, N, 3, H, W) or ``environment_state`` (B, E),
            the keyword arguments of :class:`ACT`'s forward besides ``latent``.
        """
        cfg, norm = self.config, self.normalizer
        inputs = {"state": norm.normalize(keys.STATE, batch[keys.STATE].float())}
        if cfg.obs_mode == "pixels":
            # uint8 (B, H, W, 3) per camera -> (B, N, 3, H, W) float in [0, 1]. The permute keeps
            # the pixels in NHWC memory, the layout the backbone's convolutions want.
            raw = torch.stack([batch[key] for key in cfg.image_keys], dim=1)  # (B, N, H, W, 3)
            images = raw.permute(0, 1, 4, 2, 3).float().div_(255.0)  # (B, N, 3, H, W)
            per_camera = [
                norm.normalize(key, images[:, i]) for i, key in enumerate(cfg.image_keys)
            ]  # N x (B, 3, H, W)
            inputs["images"] = torch.stack(per_camera, dim=1)  # (B, N, 3, H, W)
        else:
            env = batch[keys.ENVIRONMENT_STATE].float()
            inputs["environment_state"] = norm.normalize(keys.ENVIRONMENT_STATE, env)
        return inputs

    def autocast(self) -> torch.autocast:
        """bfloat16 autocast of the matrix products when :attr:`precision` is ``"bf16"`` (else
        a no-op)."""
        return torch.autocast(
            device_type=self.device.type,
            dtype=torch.bfloat16,
            enabled=self.precision == "bf16",
        )

    def zero_latent(self, batch_size: int) -> torch.Tensor:
        """z = 0 (B, L): the prior's mean, used at inference and without the CVAE."""
        return torch.zeros(batch_size, self.config.latent_dim, device=self.device)

    # --------------------------------------------------------------------------------------------
    # Training
    # --------------------------------------------------------------------------------------------
    def compute_loss(
        self, batch: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """ACT's loss on a batch of windows (tensors on the policy's device).

        In training mode z is sampled from the posterior (reparameterized). In eval mode z is
        the posterior mean, and the metrics add ``l1_prior``: the L1 with z = 0, the error of the
        actions the policy will actually execute (what ``train`` selects the best checkpoint by).

        Args:
            batch: observation keys, ``action`` (B, K, 12) and ``action_is_pad`` (B, K).

        Returns:
            (loss, metrics) with metrics ``loss``, ``l1``, ``kl`` (and ``l1_prior``) as floats.
        """
        inputs = self.preprocess(batch)
        if self.training and self.config.image_shift_px and "images" in inputs:
            inputs["images"] = random_shift(inputs["images"], self.config.image_shift_px)
        target = self.normalizer.normalize(keys.ACTION, batch[keys.ACTION].float())
        is_pad = batch.get(keys.ACTION_IS_PAD)
        batch_size = target.shape[0]
        mu = log_var = None
        if self.config.use_vae:
            mu, log_var = self.model.encode_posterior(inputs["state"], target, is_pad)
            latent = mu
            if self.training:  # reparameterization trick
                latent = mu + (0.5 * log_var).exp() * torch.randn_like(mu)
        else:
            latent = self.zero_latent(batch_size)
        aux_weight = self.config.aux_state_weight
        if aux_weight > 0:
            # EXTENSION (not in the paper): the image features must also tell the objects' poses.
            predicted, predicted_state = self.model(
                latent=latent, predict_environment_state=True, **inputs
            )
        else:
            predicted = self.model(latent=latent, **inputs)
        loss, parts = act_loss(predicted, target, is_pad, mu, log_var, self.config.kl_weight)
        if aux_weight > 0:
            env = batch[keys.ENVIRONMENT_STATE].float()
            target_state = self.normalizer.normalize(keys.ENVIRONMENT_STATE, env)
            parts["aux_state_l1"] = (predicted_state - target_state).abs().mean()
            loss = loss + aux_weight * parts["aux_state_l1"]
        metrics = {"loss": loss.item(), **{name: value.item() for name, value in parts.items()}}
        if not self.training:
            if self.config.use_vae:
                prior = self.model(latent=self.zero_latent(batch_size), **inputs)
                metrics["l1_prior"] = masked_l1(prior, target, is_pad).item()
            else:
                metrics["l1_prior"] = metrics["l1"]
        return loss, metrics

    # --------------------------------------------------------------------------------------------
    # Acting
    # --------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget queued actions and past predictions; call at the start of every episode."""
        if self._executor is not None:
            self._executor.reset()

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of each observation the policy reads, unbatched: images (H, W, 3), vectors
        (D,) as in the training statistics."""
        stats = self.normalizer.to_stats()
        return {
            key: (*self.config.image_size, 3)
            if key.startswith("observation.images.")
            else tuple(stats[key]["mean"].shape)
            for key in self.config.input_keys
        }

    def observation_batch(self, obs: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """One raw observation (numpy, unbatched) as a batch of 1 on the policy's device."""
        return {
            key: torch.from_numpy(np.ascontiguousarray(obs[key]))[None].to(self.device)
            for key in self.config.input_keys
        }

    # The bfloat16 copy of the model that inference runs (see ``inference_model``); kept out of
    # the module tree (no parameters, no state dict) and dropped whenever the weights may change.
    _INFERENCE_COPY = "_bf16_inference_model"

    def inference_model(self) -> nn.Module:
        """The module ``predict_chunk`` runs: ``self.model``, or with ``precision = "bf16"`` a
        copy whose linear and convolution weights are stored in bfloat16.

        Autocast casts every fp32 weight to bf16 on every call; for one observation that copying
        is about a fifth of a CPU chunk inference. Casting once gives bit-identical actions (the
        same rounding of the same weights), and the fp32 action head stays fp32 as in training.
        The copy is made on first use and dropped by ``train()``, ``load_state_dict`` and device
        or dtype moves, so it never serves stale weights.
        """
        if self.precision != "bf16":
            return self.model
        cached = self.__dict__.get(self._INFERENCE_COPY)
        if cached is None:
            cached = copy.deepcopy(self.model).eval()
            for module in cached.modules():
                if isinstance(module, nn.Linear | nn.Conv2d) and module is not cached.action_head:
                    module.to(torch.bfloat16)
            self.__dict__[self._INFERENCE_COPY] = cached
        return cached

    def _drop_inference_copy(self) -> None:
        self.__dict__.pop(self._INFERENCE_COPY, None)

    def train(self, mode: bool = True) -> ACTPolicy:
        if mode:
            self._drop_inference_copy()
        return super().train(mode)

    def load_state_dict(self, *args: Any, **kwargs: Any):
        self._drop_inference_copy()
        return super().load_state_dict(*args, **kwargs)

    def _apply(self, *args: Any, **kwargs: Any):
        self._drop_inference_copy()
        return super()._apply(*args, **kwargs)

    @torch.inference_mode()
    def predict_chunk(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The next K actions (K, 12), unnormalized, from one observation (z = 0)."""
        if self.training:
            self.eval()
        batch = self.observation_batch(obs)
        with self.autocast():
            predicted = self.inference_model()(
                latent=self.zero_latent(1), **self.preprocess(batch)
            )  # (1, K, 12)
        actions = self.normalizer.unnormalize(keys.ACTION, predicted.float())
        return actions[0].cpu().numpy()

    def select_action(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The action (12,) to send now, given the current observation (numpy, unbatched).

        Without temporal ensembling a chunk is predicted every ``n_action_steps`` steps and its
        first ``n_action_steps`` actions are played out; with it, a chunk is predicted every
        step and the predictions for the current step are averaged (:class:`TemporalEnsembler`).
        Both run through :class:`~aloha_bench.policies.chunking.ChunkExecutor` in ``sync`` mode,
        one call per control step; loops that need asynchronous chunks or a wall clock build
        their own executor around :meth:`predict_chunk`. Puts the policy in eval mode (dropout
        off), as LeRobot's ``select_action`` does.
        """
        if self._executor is None:
            self._executor = ChunkExecutor(
                lambda o: self.predict_chunk(o),
                ExecutionConfig.from_policy_config(self.config),
                self._clock,
            )
        action = self._executor.act(obs)
        self._clock.advance(self._executor.config.control_dt_s)
        return action

    # --------------------------------------------------------------------------------------------
    # Saving
    # --------------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """Write ``model.safetensors`` (weights and statistics) and ``config.json``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, directory / MODEL_FILE, metadata={"policy": self.name})
        self.config.save(directory / CONFIG_FILE)
        write_checksums(directory)

    @classmethod
    def load(
        cls,
        directory: str | Path,
        device: str | torch.device = "cpu",
        overrides: Mapping[str, Any] | None = None,
    ) -> ACTPolicy:
        """Rebuild a policy from a folder written by :meth:`save` (no dataset needed).

        Args:
            directory: the checkpoint folder.
            device: where to put the policy.
            overrides: execution-time settings to change (``INFERENCE_FIELDS``), e.g.
                ``{"temporal_ensemble_coeff": 0.01, "n_action_steps": 1}`` to evaluate a policy
                with and without temporal ensembling.
        """
        directory = Path(directory)
        for name in (MODEL_FILE, CONFIG_FILE):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"{directory / name} missing; not a saved ACT policy")
        verify_checksums(directory)
        config = ACTConfig.load_json(directory / CONFIG_FILE)
        if overrides:
            fixed = sorted(set(overrides) - set(INFERENCE_FIELDS))
            if fixed:
                raise ValueError(
                    f"{fixed} are fixed by training; at load time only {INFERENCE_FIELDS} change"
                )
            config = dataclasses.replace(config, **overrides)
        model_file = directory / MODEL_FILE
        try:
            state = load_file(model_file)
        except Exception as err:  # safetensors raises its own error type for a damaged header
            raise CheckpointError(
                f"{model_file} cannot be read ({err}); the file is damaged: copy the checkpoint "
                "again or load the run's other checkpoint (best/ or last/)"
            ) from None
        try:
            stats = Normalizer.stats_from_state_dict(state, (keys.ACTION, *config.training_keys))
            policy = cls(config, stats)
            policy.load_state_dict(state)
        except (KeyError, RuntimeError) as err:
            first = str(err).strip().splitlines()[:2]
            raise CheckpointError(
                f"{model_file} does not fit {directory / CONFIG_FILE} ({' '.join(first)}): the "
                "weights come from a model of another configuration; keep each checkpoint's "
                "model.safetensors and config.json together"
            ) from None
        return policy.to(device)


def read_config(directory: str | Path) -> dict:
    """The raw ``config.json`` of a saved policy (to find out which policy it is).

    Raises:
        CheckpointError: the file is not valid JSON.
    """
    path = Path(directory) / CONFIG_FILE
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(
            f"{path} is not valid JSON ({err.msg}, line {err.lineno}); the checkpoint is damaged: "
            "copy it again or load the run's other checkpoint (best/ or last/)"
        ) from None
