"""Async chunks in the eval loops (sim and the emulated rig), the realtime grid, the CLI verbs."""

import contextlib
import csv
import json

import numpy as np
import pytest
import torch

from aloha_bench.cli import build_parser
from aloha_bench.evaluate import EvalSettings, evaluate
from aloha_bench.policies import make_policy
from tests.policies.conftest import fake_stats, tiny_config

ENV_DIM = 7  # transfer_cube's environment state: the cube's pose


def _state_run(tmp_path):
    stats = fake_stats()
    stats["observation.environment_state"] = {"mean": np.zeros(ENV_DIM), "std": np.ones(ENV_DIM)}
    torch.manual_seed(0)
    policy = make_policy(tiny_config(obs_mode="state", chunk_size=20, n_action_steps=20), stats)
    run = tmp_path / "run"
    policy.save(run / "best")
    (run / "split.json").write_text(json.dumps({"task": "transfer_cube", "demo_seeds": [0, 1]}))
    return run


def test_async_eval_in_sim_records_aligned_chunks_and_seam_figures(tmp_path):
    run = _state_run(tmp_path)
    records = {}
    for mode in ("sync", "async"):
        settings = EvalSettings(
            run=str(run),
            task="transfer_cube",
            episodes=1,
            max_steps=60,
            latency="real",
            execution={"mode": mode, "inference_delay_s": 0.1},
        )
        records[mode] = evaluate(settings)[0]
    sync, asynchronous = records["sync"], records["async"]
    assert sync["execution"]["mode"] == "sync" and asynchronous["execution"]["mode"] == "async"
    assert sync["execution"]["inference_delay_ms"] == pytest.approx(100)
    # Sync stalls 5 ticks per chunk; async only for the first one, then skips 5 actions a chunk.
    assert sync["chunking"]["stall_ticks"] == 5 * sync["chunking"]["chunks"]
    assert asynchronous["chunking"]["stall_ticks"] == 5
    assert asynchronous["chunking"]["skipped_max"] == 5
    assert asynchronous["seams"]["seams"] == asynchronous["chunking"]["chunks"] - 1 >= 2
    assert sync["seams"]["seam_accel_mean"] > 0


def test_bad_execution_is_refused_before_any_episode(tmp_path):
    run = _state_run(tmp_path)
    settings = EvalSettings(
        run=str(run),
        task="transfer_cube",
        episodes=1,
        policy_overrides={"temporal_ensemble_coeff": 0.01, "n_action_steps": 1},
        execution={"mode": "async"},
    )
    with pytest.raises(ValueError, match="drop --async"):
        evaluate(settings, workers=2)
    with pytest.raises(ValueError, match="unknown execution settings"):
        EvalSettings(run=str(run), task="transfer_cube", episodes=1, execution={"speed": 2})


def test_realtime_grid_writes_table_plot_and_commands_and_skips_finished_cells(
    tmp_path, monkeypatch
):
    from aloha_bench import realtime

    run = _state_run(tmp_path)
    out = tmp_path / "realtime"
    summaries = realtime.run_realtime(
        str(run), "transfer_cube", out, episodes=1, workers=1, delays_ms=(0, 60)
    )
    labels = [s["cell"] for s in summaries]
    assert labels == [
        "sync_0ms",
        "sync_60ms",
        "async_0ms",
        "async_60ms",
        "async_blend_0ms",
        "async_blend_60ms",
    ]
    for name in ("table.md", "summary.csv", "realtime.png", "COMMANDS.md"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["cell"] for r in rows] == labels
    commands = (out / "COMMANDS.md").read_text()
    assert "--async --smoothing blend --blend-steps 10 --label async_blend_60ms" in commands
    # Without delay async is sync exactly (same records); the blend changes the seams.
    by_cell = {s["cell"]: s for s in summaries}
    assert (
        by_cell["sync_0ms"]["seams_seam_jump_mean"] == by_cell["async_0ms"]["seams_seam_jump_mean"]
    )
    assert by_cell["sync_60ms"]["stall_ticks_mean"] > by_cell["async_60ms"]["stall_ticks_mean"]
    assert "| 1 |" in (out / "table.md").read_text()

    def refuse(*args, **kwargs):
        raise AssertionError("a finished cell ran again")

    monkeypatch.setattr(realtime, "evaluate", refuse)
    again = realtime.run_realtime(
        str(run), "transfer_cube", out, episodes=1, workers=1, delays_ms=(0, 60)
    )
    assert [s["success_rate"] for s in again] == [s["success_rate"] for s in summaries]


def test_async_eval_runs_on_the_emulated_real_rig(tmp_path, monkeypatch):
    from tests.robots import test_real_env
    from tests.robots.test_real_env import CAMERAS, Rig
    from tests.test_backends import _write_rig_toml

    size = (32, 32)
    monkeypatch.setattr(test_real_env, "IMAGE_SIZE", size)
    config = tiny_config(cameras=list(CAMERAS), image_size=list(size), chunk_size=6)
    torch.manual_seed(0)
    make_policy(config, fake_stats()).save(tmp_path / "run")
    with contextlib.ExitStack() as stack:
        rig = Rig(tmp_path, stack)
        toml = tmp_path / "rig.toml"
        _write_rig_toml(toml, rig)
        settings = EvalSettings(
            run=str(tmp_path / "run"),
            task="transfer_cube",
            episodes=1,
            backend="real",
            robot_config=str(toml),
            max_steps=15,
            env_kwargs={"capture_factory": rig.capture_factory},
            execution={"mode": "async", "inference_delay_s": 0.03},
        )
        record = evaluate(settings)[0]
    assert record["steps"] == 15 and record["execution"]["mode"] == "async"
    assert record["chunking"]["chunks"] >= 2  # later chunks came from the background thread


def test_cli_verbs_parse():
    parser = build_parser()
    args = parser.parse_args(
        ["eval", "--run", "r", "--task", "transfer_cube", "--async", "--inference-delay-ms", "50"]
    )
    assert args.async_chunks and args.inference_delay_ms == 50 and args.smoothing == "none"
    args = parser.parse_args(["export-policy", "runs/x", "--to", "onnx", "--out", "o"])
    assert args.to == "onnx" and args.quantize == "none"
    args = parser.parse_args(["bench", "infer", "--json"])
    assert args.json and args.func.__name__ == "cmd_bench_infer"
    args = parser.parse_args(["bench", "control", "--runtime", "onnx"])
    assert args.runtime == "onnx"


def test_eval_runs_on_onnx_runtime_with_the_torch_actions(tmp_path):
    # `eval --runtime onnx` loads the run through ONNX Runtime (exported in memory) and plays the
    # same episode as torch: the env checks the ONNX policy's input shapes like torch's.
    pytest.importorskip("onnxruntime")
    run = _state_run(tmp_path)
    records = {}
    for runtime in ("torch", "onnx"):
        settings = EvalSettings(
            run=str(run), task="transfer_cube", episodes=1, max_steps=30, runtime=runtime
        )
        records[runtime] = evaluate(settings)[0]
    assert records["onnx"]["runtime"] == "onnx" and records["torch"]["runtime"] == "torch"
    assert records["onnx"]["precision"] == "fp32"  # an exported graph is fp32 whatever ran before
    assert records["torch"]["precision"] in ("fp32", "bf16")
    assert records["onnx"]["steps"] == records["torch"]["steps"] == 30
    assert records["onnx"]["return"] == pytest.approx(records["torch"]["return"])
