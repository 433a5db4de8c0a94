"""ONNX export: ONNX Runtime's actions match fp32 torch within 1e-3 rad; loading by runtime."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from aloha_bench.policies import ACTPolicy, load, make_policy
from aloha_bench.policies.export import (
    EXPORT_FILE,
    ONNX_FILE,
    OnnxPolicy,
    example_observation,
    export_onnx,
)
from tests.policies.conftest import fake_stats, tiny_config

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def _fp32_twin(policy):
    twin = ACTPolicy(dataclasses.replace(policy.config, precision="fp32"), fake_stats())
    twin.load_state_dict(policy.state_dict())
    return twin.eval()


def test_pixels_export_matches_fp32_torch_and_loads_through_policies_load(tmp_path):
    # A bf16 policy: the export is its fp32 graph, compared with fp32 torch on the same weights.
    config = tiny_config(obs_mode="pixels", cameras=["top", "front"], precision="bf16")
    torch.manual_seed(0)
    policy = make_policy(config, fake_stats())
    info = export_onnx(policy, tmp_path / "export", source="test")
    assert (tmp_path / "export" / ONNX_FILE).is_file()
    saved = json.loads((tmp_path / "export" / EXPORT_FILE).read_text())
    assert saved["max_action_diff_rad_vs_torch_fp32"] == info["max_action_diff_rad_vs_torch_fp32"]
    assert saved["inputs"] == list(config.input_keys)

    loaded = load(tmp_path / "export", runtime="onnx")
    assert isinstance(loaded, OnnxPolicy) and loaded.config == config
    reference = _fp32_twin(policy)
    for seed in range(3):
        obs = example_observation(reference, seed)
        chunk = loaded.predict_chunk(obs)
        assert chunk.shape == (config.chunk_size, 12) and chunk.dtype == np.float32
        np.testing.assert_allclose(chunk, reference.predict_chunk(obs), atol=1e-3, rtol=0)
    # The acting interface runs through the same chunk executor as torch's.
    obs = example_observation(reference, 0)
    first = loaded.select_action(obs)
    np.testing.assert_allclose(first, reference.select_action(obs), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="--runtime onnx"):
        load(tmp_path / "export")


def test_state_run_exports_in_memory_when_loaded_with_the_onnx_runtime(tmp_path):
    config = tiny_config(obs_mode="state")
    torch.manual_seed(1)
    policy = make_policy(config, fake_stats())
    policy.save(tmp_path / "ckpt")
    onnx_policy = load(tmp_path / "ckpt", runtime="onnx", overrides={"n_action_steps": 2})
    assert onnx_policy.config.n_action_steps == 2
    reference = _fp32_twin(policy)
    for seed in range(3):
        obs = example_observation(reference, seed)
        np.testing.assert_allclose(
            onnx_policy.predict_chunk(obs), reference.predict_chunk(obs), atol=1e-3, rtol=0
        )
    with pytest.raises(ValueError, match="unknown runtime"):
        load(tmp_path / "ckpt", runtime="tensorrt")
    with pytest.raises(FileNotFoundError, match="export-policy"):
        OnnxPolicy.load(tmp_path / "ckpt")
