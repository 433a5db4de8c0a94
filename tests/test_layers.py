"""Imports only point down the layers (ARCHITECTURE.md), checked in fresh interpreters."""

import subprocess
import sys

import pytest


def _loaded_after(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


@pytest.mark.parametrize(
    "module", ["aloha_bench.embodiment", "aloha_bench.keys", "aloha_bench.paths"]
)
def test_layer0_needs_only_numpy(module):
    loaded = _loaded_after(module)
    assert not {"mujoco", "torch", "gymnasium", "dm_control"} & loaded


@pytest.mark.parametrize(
    "module",
    ["aloha_bench.sim.rig", "aloha_bench.envs.aloha_env", "aloha_bench.experts", "aloha_bench.cli"],
)
def test_sim_envs_experts_never_import_torch(module):
    assert "torch" not in _loaded_after(module)
