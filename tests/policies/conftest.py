"""Tiny ACT configs and synthetic episode stores for the policy tests."""

from pathlib import Path

import numpy as np
import pytest
import torch

from aloha_bench import keys
from aloha_bench.data.store import EpisodeStore
from aloha_bench.policies import load_config

# Tiny models gain nothing from a second thread, and two OpenMP threads on a machine whose other
# core is busy spin-wait on each other (tens of times slower): one thread keeps the tests fast.
torch.set_num_threads(1)

ENV_DIM = 7  # transfer_cube: one cube pose
# A model small enough to train a few steps in well under a second on two cores.
TINY = {
    "dim_model": 32,
    "n_heads": 2,
    "dim_feedforward": 64,
    "n_encoder_layers": 1,
    "n_decoder_layers": 1,
    "n_vae_encoder_layers": 1,
    "latent_dim": 8,
    "chunk_size": 5,
    "n_action_steps": 5,
    "image_size": [32, 32],
    "cameras": ["top"],
    "batch_size": 4,
    "lr": 1e-3,
    "lr_backbone": 1e-3,
    "dropout": 0.0,
    "val_batches": 1,
    "log_every": 1,
    "image_norm": "dataset",
    "backbone_norm": "groupnorm",
}


def tiny_config(**overrides):
    return load_config(overrides={**TINY, **overrides})


def make_store(
    path: Path,
    n_episodes: int = 3,
    length: int = 12,
    obs_mode: str = "pixels",
    image_size=(32, 32),
    cameras=("top",),
) -> Path:
    """Episodes whose actions are a smooth function of the state (easy to learn)."""
    pixels = obs_mode == "pixels"
    store = EpisodeStore.create(
        path,
        task_id="transfer_cube",  # stores must fit a real task (environment-state width 7)
        task_version=1,
        obs_mode=obs_mode,
        cameras=cameras if pixels else (),
        image_size=tuple(image_size) if pixels else None,
    )
    for seed in range(n_episodes):
        rng = np.random.default_rng(seed)
        t = np.linspace(0.0, 1.0, length)[:, None]  # (T, 1)
        state = np.sin(3.0 * t + np.arange(12) / 4.0 + seed) * 0.5  # (T, 12)
        arrays = {
            keys.STATE: state.astype(np.float32),
            keys.ACTION: (state + 0.1).astype(np.float32),
            keys.ENVIRONMENT_STATE: rng.normal(size=(length, ENV_DIM)).astype(np.float32),
        }
        if pixels:
            for camera in cameras:
                arrays[keys.image_key(camera)] = rng.integers(
                    0, 256, (length, *image_size, 3), dtype=np.uint8
                )
        meta = {"seed": seed, "success": True, "max_stage": 1, "source": "scripted"}
        store.append_episode(arrays, {**meta, "strategy": "default"})
    store.close()
    return path


def fake_stats(env_dim: int = ENV_DIM) -> dict:
    ones, zeros = np.ones(12, np.float32), np.zeros(12, np.float32)
    stats = {key: {"mean": zeros, "std": ones} for key in (keys.ACTION, keys.STATE)}
    stats[keys.ENVIRONMENT_STATE] = {"mean": np.zeros(env_dim), "std": np.ones(env_dim)}
    for camera in keys.CAMERAS:
        stats[keys.image_key(camera)] = {"mean": np.full(3, 0.5), "std": np.full(3, 0.25)}
    return stats


@pytest.fixture
def pixels_store(tmp_path) -> Path:
    return make_store(tmp_path / "pixels.zarr")


@pytest.fixture
def state_store(tmp_path) -> Path:
    return make_store(tmp_path / "state.zarr", obs_mode="state")
