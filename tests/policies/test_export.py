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


def _static_export(config, quantize: str, seed: int, out):
    """A random policy of ``config`` exported with a static quantization: 4 calibration frames,
    2 check frames. Returns (export.json's contents, the check frames)."""
    torch.manual_seed(seed)
    policy = make_policy(config, fake_stats())
    reference = _fp32_twin(policy)
    calibration = [example_observation(reference, s) for s in range(4)]
    checks = [example_observation(reference, s) for s in (10, 11)]
    info = export_onnx(
        policy, out, quantize=quantize, calibration=calibration, check_observations=checks
    )
    return info, checks


def test_int8_static_quantizes_only_the_backbone_convolutions(tmp_path):
    import onnx

    from aloha_bench.policies.export import STATIC_OP_TYPES

    config = tiny_config(obs_mode="pixels", cameras=["top"])
    info, checks = _static_export(config, "int8_static", 2, tmp_path / "q")
    assert info["quantize"] == "int8_static" and info["calibration_frames"] == 4
    assert 0.0 < info["max_action_diff_rad_on_demos"] < 1.0
    graph = onnx.load(tmp_path / "q" / ONNX_FILE).graph
    consumers: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    weights = {init.name for init in graph.initializer}
    dequantize = [n for n in graph.node if n.op_type == "DequantizeLinear"]
    int8_weights = [n.output[0] for n in dequantize if n.input[0] in weights]
    assert int8_weights, "no int8 weights in the graph"
    # Every int8 weight is a convolution's, and no matrix product reads a quantized tensor:
    # the transformer computes in fp32.
    assert {op for name in int8_weights for op in consumers[name]} <= set(STATIC_OP_TYPES)
    readers = {op for n in dequantize for op in consumers.get(n.output[0], [])}
    assert not readers & {"MatMul", "Gemm"}
    loaded = load(tmp_path / "q", runtime="onnx")
    assert loaded.predict_chunk(checks[0]).shape == (config.chunk_size, 12)


@pytest.mark.parametrize("obs_mode", ["pixels", "state"])
def test_int8_static_full_quantizes_linear_layers_but_the_last_three(tmp_path, obs_mode):
    import onnx

    from aloha_bench.policies.export import FP32_LAST_LINEAR

    config = tiny_config(obs_mode=obs_mode, cameras=["top"] if obs_mode == "pixels" else [])
    info, checks = _static_export(config, "int8_static_full", 3, tmp_path / "q")
    assert info["quantize"] == "int8_static_full" and info["calibration_frames"] == 4
    assert 0.0 < info["max_action_diff_rad_on_demos"] < 1.0
    graph = onnx.load(tmp_path / "q" / ONNX_FILE).graph
    weights = {init.name for init in graph.initializer}
    # A weight is int8 when a DequantizeLinear reads it from the initializers.
    int8 = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    int8_weights = {
        n.output[0] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in weights
    }
    products = [n for n in graph.node if n.op_type in ("MatMul", "Gemm")]
    linear = [n for n in products if any(i in int8_weights for i in n.input)]
    fp32_linear = [n for n in products if any(i in weights for i in n.input)]
    # Every linear layer but the last three (the last decoder layer's feed-forward and the
    # action head) reads an int8 weight, and nothing those three read is dequantized.
    assert len(linear) >= 10 and len(fp32_linear) == FP32_LAST_LINEAR
    last = min(products.index(n) for n in fp32_linear)
    assert all(products.index(n) < last for n in linear)
    assert all(not set(n.input) & int8 for n in fp32_linear)
    # Attention products (no weight) stay fp32.
    attention = [n for n in products if not set(n.input) & (weights | int8_weights)]
    assert all(not set(n.input) & int8 for n in attention)
    if obs_mode == "pixels":
        convs = [n for n in graph.node if n.op_type == "Conv"]
        assert convs and all(set(n.input) & int8_weights for n in convs)
    loaded = load(tmp_path / "q", runtime="onnx")
    assert loaded.predict_chunk(checks[0]).shape == (config.chunk_size, 12)


def test_int8_static_refuses_a_state_policy_and_missing_calibration(tmp_path):
    from aloha_bench.demo_frames import demo_observations

    state = make_policy(tiny_config(obs_mode="state"), fake_stats())
    with pytest.raises(ValueError, match="a state policy has none"):
        export_onnx(state, tmp_path / "s", quantize="int8_static", calibration=[{}])
    pixels = make_policy(tiny_config(obs_mode="pixels", cameras=["top"]), fake_stats())
    with pytest.raises(ValueError, match="needs calibration observations"):
        export_onnx(pixels, tmp_path / "p", quantize="int8_static")
    with pytest.raises(ValueError, match="int8_static_full needs calibration observations"):
        export_onnx(state, tmp_path / "f", quantize="int8_static_full")
    assert not any((tmp_path / name).exists() for name in ("s", "p", "f"))
    keys = pixels.config.input_keys
    with pytest.raises(FileNotFoundError, match="split.json not found: int8_static calibrates"):
        demo_observations(tmp_path, keys, 4)
    (tmp_path / "split.json").write_text(json.dumps({"dataset": str(tmp_path / "gone.zarr")}))
    with pytest.raises(FileNotFoundError, match="gone.zarr is gone: int8_static calibrates"):
        demo_observations(tmp_path, keys, 4)


def test_calibration_frames_come_from_the_runs_demonstrations(tmp_path):
    from aloha_bench.demo_frames import demo_observations
    from aloha_bench.generate import GenerateSettings, generate
    from aloha_bench.train import train

    generate(GenerateSettings(task="transfer_cube", obs_mode="state"), tmp_path / "d.zarr", 2)
    config = tiny_config(obs_mode="state", val_every=2, warmup_steps=1)
    train(config, tmp_path / "d.zarr", tmp_path / "run", steps=2)
    frames = demo_observations(tmp_path / "run", config.input_keys, 5)
    assert len(frames) == 5 and set(frames[0]) == set(config.input_keys)
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    from aloha_bench.data.store import EpisodeStore

    store = EpisodeStore.open(tmp_path / "d.zarr")
    states = store.read_all("observation.state")
    rows = [store.episode_slice(e) for e in split["train_episodes"]]
    train_states = np.concatenate([states[r] for r in rows])
    # Each calibration frame is a recorded training-episode frame.
    for frame in frames:
        assert np.any(np.all(train_states == frame["observation.state"], axis=1))


def test_bench_infer_times_int8_static_for_pixel_configurations_only():
    from aloha_bench.bench_infer import bench_config

    pixels = tiny_config(obs_mode="pixels", cameras=["top"])
    rows = bench_config("tiny", pixels, runtimes=("onnx", "onnx_int8_static"), threads=1, n=1)
    assert [r["name"] for r in rows] == ["tiny_onnx", "tiny_onnx_int8_static"]
    assert rows[0]["max_action_diff_rad"] < 1e-3 < rows[1]["max_action_diff_rad"]
    assert all(r["ms_per_chunk"] > 0 for r in rows)
    state = tiny_config(obs_mode="state")
    runtimes = ("onnx", "onnx_int8_static", "onnx_int8_static_full")
    rows = bench_config("tiny_state", state, runtimes=runtimes, n=1)
    # The backbone-only quantization has nothing to quantize in a state policy; the full one does.
    assert [r["name"] for r in rows] == ["tiny_state_onnx", "tiny_state_onnx_int8_static_full"]
