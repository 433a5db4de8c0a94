"""Mean/std normalization whose statistics live in the policy's saved state.

diffusion_policy's ``LinearNormalizer`` pattern: the statistics are buffers of a module inside the
policy, so a checkpoint carries them and evaluation never recomputes them from a dataset (a
different split or a re-generated store would otherwise silently shift every input).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch
from torch import nn

# A feature that barely varies (a joint the expert never moves, a constant object coordinate)
# would otherwise be divided by ~0 and blow small noise up into huge inputs.
STD_MIN = 1e-2
# ImageNet per-channel statistics of [0, 1] pixels: what torchvision's ResNet18 weights expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def buffer_name(key: str) -> str:
    """Module name of a key's statistics (module names may not contain dots)."""
    return key.replace(".", "_")


class _MeanStd(nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)


class Normalizer(nn.Module):
    """Per-key ``(x - mean) / std`` and its inverse, with the statistics as buffers.

    Args:
        stats: ``{key: {"mean": array, "std": array}}`` as ``data.compute_stats`` returns them.
            Image keys (``observation.images.*``) take per-channel (3,) statistics of [0, 1]
            pixels and apply them to (..., 3, H, W) tensors.
        keys: the keys to keep (others in ``stats`` are ignored).

    Raises:
        KeyError: a requested key has no statistics (the message lists those available).
    """

    def __init__(self, stats: Mapping[str, Mapping[str, np.ndarray]], keys: Iterable[str]) -> None:
        super().__init__()
        self.keys = tuple(keys)
        self.stats = nn.ModuleDict()
        for key in self.keys:
            if key not in stats:
                raise KeyError(
                    f"no normalization statistics for {key!r} (have {sorted(stats)}); compute "
                    "them over the training split with aloha_bench.data.compute_stats"
                )
            # torch.tensor copies: buffers must not alias the caller's (possibly shared) arrays.
            mean = torch.tensor(np.asarray(stats[key]["mean"]), dtype=torch.float32)
            std = torch.tensor(np.asarray(stats[key]["std"]), dtype=torch.float32)
            std = std.clamp(min=STD_MIN)
            if key.startswith("observation.images."):
                mean, std = mean.reshape(3, 1, 1), std.reshape(3, 1, 1)  # (3, 1, 1)
            self.stats[buffer_name(key)] = _MeanStd(mean, std)

    def _get(self, key: str) -> _MeanStd:
        return self.stats[buffer_name(key)]

    def normalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        stat = self._get(key)
        return (x - stat.mean) / stat.std

    def unnormalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        stat = self._get(key)
        return x * stat.std + stat.mean

    def to_stats(self) -> dict[str, dict[str, np.ndarray]]:
        """The (clamped) statistics back as numpy, keyed like ``data.compute_stats``."""
        return {
            key: {
                "mean": self._get(key).mean.detach().cpu().numpy().reshape(-1),
                "std": self._get(key).std.detach().cpu().numpy().reshape(-1),
            }
            for key in self.keys
        }

    @staticmethod
    def stats_from_state_dict(
        state: Mapping[str, torch.Tensor], keys: Iterable[str], prefix: str = "normalizer."
    ) -> dict[str, dict[str, np.ndarray]]:
        """Statistics of ``keys`` out of a saved policy state (to rebuild before loading it)."""
        out = {}
        for key in keys:
            base = f"{prefix}stats.{buffer_name(key)}."
            try:
                out[key] = {k: state[base + k].numpy().reshape(-1) for k in ("mean", "std")}
            except KeyError as err:
                raise KeyError(
                    f"saved policy state lacks {err}; the checkpoint is damaged"
                ) from err
        return out


def imagenet_stats() -> dict[str, np.ndarray]:
    """ImageNet per-channel mean/std of [0, 1] pixels (the statistics of pretrained ResNets)."""
    return {
        "mean": np.array(IMAGENET_MEAN, dtype=np.float32),
        "std": np.array(IMAGENET_STD, dtype=np.float32),
    }
