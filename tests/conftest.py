"""Shared fixtures. Tests never need a display, a GPU or hardware."""

import os

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")

# Load torch's libraries (torchvision pulls in triton, which bundles its own LLVM) before any test
# creates an EGL context: Mesa's software renderer loads another LLVM, and importing triton after
# it segfaults. Applications do the same: load the policy first, then make rendering envs.
try:
    import torchvision.ops  # noqa: F401
except ImportError:  # torch is a core dependency; this only guards partial installs
    pass


# A tiny state-mode ACT (trains in seconds) for tests that need a real training run folder.
TINY_STATE_ACT = {
    "obs_mode": "state",
    "dim_model": 32,
    "n_heads": 2,
    "dim_feedforward": 64,
    "n_encoder_layers": 1,
    "n_decoder_layers": 1,
    "n_vae_encoder_layers": 1,
    "chunk_size": 10,
    "n_action_steps": 10,
    "batch_size": 4,
    "val_every": 2,
    "warmup_steps": 1,
    "precision": "fp32",
}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A run folder of ``train``: 2 steps on 2 transfer_cube state demos (seeds 7, 8), with a
    validation episode; shared by the session, so a test that edits a file in it restores it."""
    import torch

    from aloha_bench.generate import GenerateSettings, generate
    from aloha_bench.policies.act.config import load_config
    from aloha_bench.train import train

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny_run")
    generate(GenerateSettings(task="transfer_cube", obs_mode="state"), root / "d.zarr", 2, seed=7)
    train(load_config("act", "cpu", TINY_STATE_ACT), root / "d.zarr", root / "run", steps=2)
    return root / "run"
