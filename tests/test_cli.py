"""The console script end to end, as a user types it."""

import json
import subprocess
import sys

import numpy as np
import pytest

# A tiny state-mode ACT that trains in seconds.
TINY_ACT = [
    "obs_mode=state",
    "dim_model=32",
    "n_heads=2",
    "dim_feedforward=64",
    "n_encoder_layers=1",
    "n_decoder_layers=1",
    "n_vae_encoder_layers=1",
    "chunk_size=10",
    "n_action_steps=10",
    "batch_size=4",
    "val_every=2",
    "warmup_steps=1",
    "precision=fp32",
]


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "aloha_bench.cli", *args], capture_output=True, text=True
    )


def test_tasks_json_lists_ids_and_stages():
    result = _run("tasks", "--json")
    assert result.returncode == 0, result.stderr
    tasks = {t["task"]: t for t in json.loads(result.stdout)}
    assert tasks["transfer_cube"]["gym_id"] == "AlohaBench/TransferCube-v0"
    assert tasks["transfer_cube"]["stages"] == ["touched", "lifted", "transferred"]
    assert tasks["insertion"]["stages"] == ["grasp", "contact", "inserted"]


def test_expert_json_has_success_and_stage_rates():
    result = _run("expert", "--task", "transfer_cube", "--episodes", "1", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["success_rate"] == 1.0
    assert set(report["stage_rates"]) == {"touched", "lifted", "transferred"}


def test_unknown_task_is_one_clear_line():
    result = _run("expert", "--task", "fold_towel", "--episodes", "1")
    assert result.returncode == 2
    assert "unknown task 'fold_towel'; valid tasks:" in result.stderr
    assert "Traceback" not in result.stderr


def test_view_writes_an_image(tmp_path):
    out = tmp_path / "frame.png"
    result = _run("view", "--task", "insertion", "--image", str(out), "--step", "5")
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 10_000


def test_bench_env_prints_figures():
    result = _run("bench", "env", "--tasks", "transfer_cube", "--scale", "0.02", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {r["config"] for r in rows} >= {"state", "pixels_4cam_96x128", "pixels_4cam_480x640"}
    assert all(r["steps_per_s"] > 0 for r in rows)


def test_generate_inspect_video_round_trip(tmp_path):
    store = tmp_path / "demo.zarr"
    result = _run(
        "generate",
        "--task",
        "transfer_cube",
        "--episodes",
        "1",
        "--out",
        str(store),
        "--cameras",
        "top,right_wrist",
        "--image-size",
        "24x32",
        "--source",
        "human",
        "--keep-failed",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(_run("inspect", str(store), "--json").stdout)
    assert summary["episodes"] == 1 and summary["sources"] == {"human": 1}
    assert summary["cameras"] == ["top", "right_wrist"] and summary["image_size"] == [24, 32]
    video = tmp_path / "ep.mp4"
    assert _run("video", str(store), "--episode", "0", "--out", str(video)).returncode == 0
    assert video.stat().st_size > 1000


def test_generate_rejects_a_bad_image_size(tmp_path):
    result = _run(
        "generate",
        "--task",
        "transfer_cube",
        "--episodes",
        "1",
        "--out",
        str(tmp_path / "x.zarr"),
        "--image-size",
        "big",
    )
    assert result.returncode == 2 and "must look like 96x128" in result.stderr


@pytest.mark.slow
def test_bench_data_prints_generation_and_loader_figures():
    result = _run("bench", "data", "--episodes", "1", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["generate_scripted_pixels"]["episodes_per_min"] > 0
    assert rows["loader_pixels_4cam_96x128"]["samples_per_s"] > 0


def test_bench_bus_json_keys():
    rows = json.loads(_run("bench", "bus", "--n", "20", "--json").stdout)
    assert {"round_trip_ms", "wire_ms", "errors"} <= set(rows)


def test_generate_randomized_then_replay_measures_the_gap(tmp_path):
    store = tmp_path / "rand.zarr"
    args = ["--task", "transfer_cube", "--episodes", "1", "--out", str(store)]
    result = _run("generate", *args, "--obs-mode", "state", "--randomize", "light")
    assert result.returncode == 0, result.stderr
    same = json.loads(_run("replay", str(store), "--randomize", "light", "--json").stdout)
    nominal = json.loads(_run("replay", str(store), "--json").stdout)
    assert max(j["rmse_rad"] for j in same["joints"].values()) < 1e-6
    assert max(j["rmse_rad"] for j in nominal["joints"].values()) > 1e-4


def test_generate_train_load_act_end_to_end(tmp_path):
    store = tmp_path / "cube.zarr"
    result = _run(
        "generate",
        "--task",
        "transfer_cube",
        "--episodes",
        "2",
        "--out",
        str(store),
        "--obs-mode",
        "state",
    )
    assert result.returncode == 0, result.stderr
    run = tmp_path / "run"
    overrides = TINY_ACT
    result = _run(
        "train",
        "--config",
        "act",
        "--profile",
        "cpu",
        "--dataset",
        str(store),
        "--out",
        str(run),
        "--steps",
        "6",
        "--threads",
        "1",
        *[arg for o in overrides for arg in ("--set", o)],
    )
    assert result.returncode == 0, result.stderr
    for name in ("config.json", "losses.csv", "losses.png", "split.json"):
        assert (run / name).is_file(), name

    out = tmp_path / "eval"
    result = _run(
        "eval",
        "--run",
        str(run),
        "--task",
        "transfer_cube",
        "--episodes",
        "1",
        "--json",
        "--max-steps",
        "20",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    (summary,) = json.loads(result.stdout)
    assert summary["episodes"] == 1 and summary["seeds"] == [1000, 1000]
    assert 0.0 <= summary["ci_low"] <= summary["success_rate"] <= summary["ci_high"] <= 1.0
    for name in ("records.jsonl", "summary.json", "table.md"):
        assert (out / name).is_file(), name

    # Seeds 0 and 1 recorded the training demos: evaluating on them is refused, with the fix.
    result = _run("eval", "--run", str(run), "--task", "transfer_cube", "--seed", "0")
    assert result.returncode != 0
    assert "training demos" in result.stderr and "--seed" in result.stderr

    from aloha_bench import envs, policies

    policy = policies.load(run)
    env = envs.make("transfer_cube", obs_mode="state")
    obs, _ = env.reset(seed=100)
    policy.reset()
    action = policy.select_action(obs)
    assert action.shape == (12,) and np.isfinite(action).all()
    env.step(action)
    env.close()


@pytest.mark.slow
def test_torchrun_trains_with_two_cpu_processes(tmp_path):
    import shutil

    store = tmp_path / "cube.zarr"
    assert (
        _run(
            "generate",
            "--task",
            "transfer_cube",
            "--episodes",
            "2",
            "--out",
            str(store),
            "--obs-mode",
            "state",
        ).returncode
        == 0
    )
    run = tmp_path / "ddp"
    overrides = TINY_ACT
    command = [
        shutil.which("torchrun"),
        "--standalone",
        "--nproc-per-node",
        "2",
        "--no-python",
        shutil.which("aloha-bench"),
        "train",
        "--config",
        "act",
        "--profile",
        "cpu",
        "--dataset",
        str(store),
        "--out",
        str(run),
        "--steps",
        "4",
        "--threads",
        "1",
        "--json",
        *[arg for o in overrides for arg in ("--set", o)],
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert summary["world_size"] == 2
    assert (run / "last" / "training_state.pt").is_file()


def test_progress_bars_in_a_log_update_every_30_s(monkeypatch):
    """Piped to a file, a bar wrote ten updates a second into the log; there it writes one
    every 30 s (a terminal keeps tqdm's live bar)."""
    import io
    import sys

    from aloha_bench import cli

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    clock = [0.0]
    log = io.StringIO()
    bar = cli._progress_bar(total=100, desc="x", file=log)
    bar._time = lambda: clock[0]
    assert bar.mininterval == 30.0
    # The generate/train pattern: per item, set the count and the postfix, then refresh; one
    # item a second for 100 s.
    for i in range(100):
        clock[0] = i + 1.0
        bar.n = i + 1
        bar.set_postfix(success=f"{i}/{i + 1}")
        bar.refresh()
        bar.update(0)
    bar.close()
    drawn = [line for line in log.getvalue().replace("\r", "\n").splitlines() if line.strip()]
    # The first draw, one per 30 s (at 1, 31, 61, 91 s) and the last state on close.
    assert len(drawn) <= 6, drawn
    assert "100/100" in drawn[-1] and "success=99/100" in drawn[-1]
    # A disabled bar (--json, other ranks) takes the same calls and draws nothing.
    quiet = io.StringIO()
    bar = cli._progress_bar(total=3, desc="x", file=quiet, disable=True)
    bar.n = 1
    bar.set_postfix(success="1/1")
    bar.refresh()
    bar.close()
    assert quiet.getvalue() == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    bar = cli._progress_bar(total=3, desc="x", file=io.StringIO())
    assert bar.mininterval < 1.0
    bar.close()
