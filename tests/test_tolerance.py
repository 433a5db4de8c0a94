"""The precision measurement: joint-target errors held per chunk, the expert's success against
their size, a policy's open-loop error on its validation demos, and the report."""

import json
import subprocess
import sys

import numpy as np
import pytest

from aloha_bench import tolerance


def test_errors_are_held_for_hold_steps_and_identical_for_a_seed():
    normals = tolerance.joint_error_normals(seed=3, steps=250, hold_steps=100)
    assert normals.shape == (250, 10)
    # One draw per block of 100 steps (the last block is cut short), a new draw per block.
    for start, stop in ((0, 100), (100, 200), (200, 250)):
        assert np.all(normals[start:stop] == normals[start])
    assert not np.allclose(normals[0], normals[100])
    np.testing.assert_array_equal(normals, tolerance.joint_error_normals(3, 250, 100))
    assert not np.allclose(normals, tolerance.joint_error_normals(4, 250, 100))
    per_step = tolerance.joint_error_normals(3, 50, 1)
    assert len(np.unique(per_step[:, 0])) == 50
    with pytest.raises(ValueError, match="hold_steps must be at least 1"):
        tolerance.joint_error_normals(3, 50, 0)


def test_the_expert_succeeds_without_error_and_fails_with_a_large_one():
    rows = tolerance.expert_tolerance("transfer_cube", [0.0, 400.0], episodes=1, hold_steps=100)
    assert [r["sigma_mrad"] for r in rows] == [0.0, 400.0]
    clean, wild = rows
    assert clean["success_end"] == 1.0 and clean["failed_seeds"] == []
    assert clean["stage_transferred"] == 1.0
    # 0.4 rad per joint puts the gripper centimetres off the cube.
    assert wild["success_end"] == 0.0 and wild["failed_seeds"] == [0]
    assert 0.0 <= wild["ci_low"] <= wild["success_end"] <= wild["ci_high"] <= 1.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"episodes": 0}, "episodes must be positive"),
        ({"sigmas_mrad": [-1.0]}, "sigmas must be finite"),
        ({"sigmas_mrad": [float("nan")]}, "sigmas must be finite"),
        ({"hold_steps": 0}, "hold_steps must be at least 1"),
    ],
)
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tolerance.expert_tolerance("transfer_cube", **{"sigmas_mrad": [0.0], **kwargs})


def test_policy_error_is_the_rms_of_the_chunk_against_the_demo(tiny_run):
    from aloha_bench.data.dataset import WindowDataset
    from aloha_bench.policies import load

    error = tolerance.policy_action_error(tiny_run, stride=1000, max_frames=1)
    assert error["task"] == "transfer_cube" and error["frames"] == 1
    assert set(error["rms_mrad_per_joint"]) == {
        f"{arm}_{joint}"
        for arm in ("left", "right")
        for joint in ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll")
    }
    # Recompute frame 0 of the validation episode by hand.
    split = json.loads((tiny_run / "split.json").read_text())
    policy = load(tiny_run)
    data = WindowDataset(
        split["dataset"], 10, episodes=split["val_episodes"], keys=policy.config.input_keys
    )
    sample = data[0]
    diff = (policy.predict_chunk(sample) - sample["action"])[:, tolerance.ARM_JOINTS]
    assert error["rms_mrad"] == pytest.approx(1000 * np.sqrt(np.mean(diff**2)), rel=1e-5)
    assert error["first_rms_mrad"] == pytest.approx(1000 * np.sqrt(np.mean(diff[0] ** 2)))
    assert error["chunk_mean_rms_mrad"] == pytest.approx(
        1000 * np.sqrt(np.mean(diff.mean(axis=0) ** 2)), rel=1e-5
    )


def test_policy_error_names_what_is_missing(tiny_run, tmp_path):
    with pytest.raises(FileNotFoundError, match="split.json not found"):
        tolerance.policy_action_error(tmp_path)
    split = json.loads((tiny_run / "split.json").read_text())
    moved = tmp_path / "run"
    moved.mkdir()
    (moved / "split.json").write_text(json.dumps({**split, "dataset": str(tmp_path / "gone")}))
    held_out = "the policy.s error is measured on its held-out demos; regenerate it"
    with pytest.raises(FileNotFoundError, match=f"dataset .*gone is gone: {held_out}"):
        tolerance.policy_action_error(moved)


def test_report_files_and_table(tmp_path):
    rows = [
        {
            "task": "battery",
            "sigma_mrad": s,
            "hold_steps": 100,
            "episodes": 10,
            "successes": k,
            "success_end": k / 10,
            "ci_low": max(k / 10 - 0.2, 0.0),
            "ci_high": min(k / 10 + 0.2, 1.0),
            "success_any": k / 10,
            "failed_seeds": list(range(10 - k)),
        }
        for s, k in ((0.0, 10), (8.0, 6), (32.0, 0))
    ]
    errors = [
        {
            "run": "runs/x/battery_act_s0",
            "task": "battery",
            "frames": 200,
            "rms_mrad": 21.5,
            "chunk_mean_rms_mrad": 15.0,
            "first_rms_mrad": 9.0,
            "rms_mrad_per_joint": {"right_wrist_roll": 50.0},
        }
    ]
    written = tolerance.write_tolerance_report(
        tmp_path, rows, errors, "test scale", {"battery_act_s0": 0.3}
    )
    assert {p.name for p in written} == {
        "tolerance.csv",
        "policy_error.csv",
        "tolerance.png",
        "tolerance.md",
        "tolerance.json",
    }
    table = (tmp_path / "tolerance.md").read_text()
    assert "| battery | 100 [80, 100] | 60 [40, 80] | 0 [0, 20] |" in table
    assert "| battery | `battery_act_s0` | 200 | 21.5 | 15.0 | 9.0 | 30% |" in table
    assert "test scale" in table


def test_cli_writes_the_report(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "aloha_bench.cli", "tolerance", "--tasks", "transfer_cube",
         "--sigma-mrad", "0", "--episodes", "1", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "transfer_cube sigma   0.0 mrad: end 100%" in result.stdout
    assert (tmp_path / "tolerance.png").stat().st_size > 0


def test_cli_redraws_from_json_and_asks_for_tasks(tmp_path):
    rows = [
        {"task": "insertion", "sigma_mrad": s, "hold_steps": 100, "episodes": 4, "successes": k,
         "success_end": k / 4, "ci_low": 0.0, "ci_high": 1.0, "success_any": k / 4,
         "failed_seeds": []}
        for s, k in ((0.0, 4), (16.0, 1))
    ]  # fmt: skip
    saved = tmp_path / "tolerance.json"
    saved.write_text(json.dumps({"scale": "s", "tolerance": rows, "policy_error": []}))
    cli = [sys.executable, "-m", "aloha_bench.cli", "tolerance"]
    result = subprocess.run(
        [*cli, "--from", str(saved), "--out", str(tmp_path / "re")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert (
        "| insertion | 100 [0, 100] | 25 [0, 100] |"
        in (tmp_path / "re" / "tolerance.md").read_text()
    )
    result = subprocess.run([*cli, "--out", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode != 0 and "give --tasks" in result.stderr
    assert "Traceback" not in result.stderr
