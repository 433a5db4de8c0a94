"""The CLI's handling of bad input: checked at parse time, one line naming the thing and the fix.

Most cases call ``cli.main`` in this process (fast); those about the process itself (what is
imported, what is printed at exit, a progress bar) run the console script in a subprocess.
"""

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from aloha_bench import cli
from aloha_bench.policies import make_policy
from tests.data.test_store import make_store
from tests.policies.conftest import fake_stats, tiny_config

REPO = Path(__file__).resolve().parents[1]


def _main(capsys, *argv):
    try:
        status = cli.main(list(argv))
    except SystemExit as exit_:  # argparse's own errors
        status = exit_.code
    return status, capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["eval", "--run", "r", "--task", "transfer_cube", "--max-steps", "0"],
            "--max-steps: must be at least 1, got 0",
        ),
        (
            ["eval", "--run", "r", "--task", "transfer_cube", "--max-steps", "-5"],
            "--max-steps: must be at least 1, got -5",
        ),
        (
            ["eval", "--run", "r", "--task", "transfer_cube", "--episodes", "0"],
            "--episodes: must be at least 1",
        ),
        (
            ["eval", "--run", "r", "--task", "transfer_cube", "--videos", "-1"],
            "--videos: must be at least 0, got -1",
        ),
        (
            ["eval", "--run", "r", "--task", "transfer_cube", "--workers", "0"],
            "--workers: must be at least 1",
        ),
        (
            ["eval", "--run", "r", "--task", "transfer_cube", "--threads", "0"],
            "--threads: must be at least 1",
        ),
        (
            ["eval", "--run", "r", "--task", "transfer_cube", "--seed", "-1"],
            "--seed: must be in 0..4294967295",
        ),
        (
            ["eval", "--run", "r", "--task", "transfer_cube", "--seed", str(2**64)],
            "--seed: must be in 0..4294967295",
        ),
        (
            ["eval", "--run", "r", "--task", "transfer_cube", "--temporal-ensemble", "nan"],
            "--temporal-ensemble: must be a finite number",
        ),
        (
            ["eval", "--run", "r", "--task", "fold_towel"],
            "unknown task 'fold_towel'; valid tasks: battery,",
        ),
        (
            [
                "generate",
                "--task",
                "transfer_cube",
                "--episodes",
                "1",
                "--out",
                "x.zarr",
                "--image-size",
                "0x0",
            ],
            "--image-size: image size '0x0' out of range",
        ),
        (
            [
                "generate",
                "--task",
                "transfer_cube",
                "--episodes",
                "1",
                "--out",
                "x.zarr",
                "--image-size",
                "96",
            ],
            "must look like 96x128",
        ),
        (
            [
                "generate",
                "--task",
                "transfer_cube",
                "--episodes",
                "1",
                "--out",
                "x.zarr",
                "--image-size",
                "96x128x3",
            ],
            "must look like 96x128",
        ),
        (
            ["generate", "--task", "transfer_cube", "--episodes", "-2", "--out", "x.zarr"],
            "--episodes: must be at least 1",
        ),
        (
            [
                "generate",
                "--task",
                "transfer_cube",
                "--episodes",
                "1",
                "--out",
                "x.zarr",
                "--seed",
                "-1",
            ],
            "--seed: must be in",
        ),
        (
            ["expert", "--task", "transfer_cube", "--episodes", "ten"],
            "--episodes: expected a whole number, got 'ten'",
        ),
        (["train", "--dataset", "d", "--out", "o", "--steps", "0"], "--steps: must be at least 1"),
        (["video", "d.zarr", "--episode", "-1", "--out", "v.mp4"], "--episode: must be at least 0"),
        (["replay", "d.zarr", "--episodes", "-3"], "--episodes: must be at least 0"),
        (["bench", "bus", "--n", "0"], "--n: must be at least 1"),
        (["bench", "bus", "--fault", "3"], "must look like 3:silent"),
        (
            ["align", "transfer_cube", "top", "x.png", "--out", "o.png", "--fovy", "-30"],
            "--fovy: must be a finite number >= 0",
        ),
        (["reproduce", "--workers", "0"], "--workers: must be at least 1"),
    ],
)
def test_counts_sizes_and_seeds_are_checked_at_parse_time(
    capsys, tmp_path, monkeypatch, argv, message
):
    monkeypatch.chdir(tmp_path)
    status, err = _main(capsys, *argv)
    assert status == 2
    assert message in err, err
    assert not any(tmp_path.iterdir())  # nothing was created


def test_a_parse_error_loads_neither_torch_nor_mujoco():
    code = (
        "import sys\n"
        "from aloha_bench import cli\n"
        "try:\n"
        "    cli.main(['eval', '--run', 'r', '--task', 'transfer_cube', '--max-steps', '0'])\n"
        "except SystemExit as e:\n"
        "    print(e.code, 'torch' in sys.modules, 'mujoco' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["2", "False", "False"], result.stderr


def test_subcommand_help_has_descriptions_defaults_and_the_task_list():
    parser = cli.build_parser()
    commands = parser._subparsers._group_actions[0].choices
    bench = commands["bench"]._subparsers._group_actions[0].choices
    for name, sub in [*commands.items(), *bench.items()]:
        assert sub.description, name
        for action in sub._actions:
            if not isinstance(action, argparse._SubParsersAction):
                assert action.help, (name, action.dest)
    expert = commands["expert"].format_help()
    assert "(default: 20)" in expert and "(default: default)" in expert
    assert "{battery,cup_lid,insertion,transfer_cube,ziplock}" in expert
    assert "print the list as JSON" in commands["tasks"].format_help()
    generate = commands["generate"].format_help()
    assert "(default: scripted)" in generate and "(default: (96, 128))" in generate
    assert "(default: None)" not in generate  # required or unset options show no default


def test_an_unusable_out_path_is_named(capsys, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    status, err = _main(
        capsys, "eval", "--run", "r", "--task", "transfer_cube", "--out", str(blocker / "eval")
    )
    assert status == 2
    assert f"{blocker / 'eval'}: Not a directory; choose a path" in err


def test_an_episode_index_out_of_range_names_the_store_and_the_range(capsys, tmp_path):
    store = make_store(tmp_path / "two.zarr", lengths=(3, 4))
    status, err = _main(capsys, "video", str(store.path), "--episode", "5", "--out", "v.mp4")
    assert status == 2
    assert f"{store.path}: episode 5 out of range; the store has 2 episodes (indices 0..1)" in err
    status, err = _main(capsys, "replay", str(store.path), "--episodes", "0", "99")
    assert status == 2 and "episode 99 out of range" in err


def test_calibrate_refuses_a_closed_stdin_before_touching_a_servo(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    status, err = _main(capsys, "calibrate", "--arm", "left_follower", "--port", "/dev/null")
    assert status == 2 and "stdin is not a terminal" in err
    assert "nothing was written to the servos" in err


def test_calibration_whose_input_ends_raises_and_writes_no_file(tmp_path):
    from aloha_bench.robots.calibration import CalibrationError, calibrate_arm
    from aloha_bench.robots.emulator import ServoEmulator
    from aloha_bench.robots.feetech import FeetechBus

    answers = iter(["", None])

    def ask(_prompt):  # Enter for the middle pose, then the input ends during the sweep
        if next(answers) is None:
            raise EOFError
        return ""

    with ServoEmulator(ids=range(1, 7)) as emu, FeetechBus(emu.port, range(1, 7)) as bus:
        with pytest.raises(CalibrationError, match="input is closed"):
            calibrate_arm(bus, tmp_path / "arm.json", ask=ask, say=lambda _: None)
    assert not (tmp_path / "arm.json").exists()


def _saved_run(root: Path, task: str = "transfer_cube") -> Path:
    run = root / "run"
    make_policy(tiny_config(obs_mode="state"), fake_stats(env_dim=7)).save(run / "best")
    (run / "split.json").write_text(json.dumps({"task": task, "demo_seeds": [0, 1]}))
    return run


def test_a_damaged_checkpoint_is_named(capsys, tmp_path):
    run = _saved_run(tmp_path)
    (run / "best" / "checksums.sha256").unlink()
    (run / "best" / "config.json").write_text("{not json")
    status, err = _main(capsys, "eval", "--run", str(run), "--task", "transfer_cube")
    assert status == 2
    # Named by whichever reader meets it first (the execution check or the policy loader).
    assert f"{run / 'best' / 'config.json'}" in err and "damaged" in err


def test_errors_print_below_the_progress_bar_not_inside_it(tmp_path):
    run = _saved_run(tmp_path, task="insertion")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "aloha_bench.cli",
            "eval",
            "--run",
            str(run),
            "--task",
            "transfer_cube",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    last = result.stderr.rstrip("\n").split("\n")[-1]
    assert last.startswith("aloha-bench eval: error: "), result.stderr
    assert "trained on task 'insertion'" in last and "--allow-other-task" in last


def test_printed_json_is_valid_json():
    data = {"median_ms": float("nan"), "rows": [1.0, float("inf")], "n": 3}
    assert cli._json_safe(data) == {"median_ms": None, "rows": [1.0, None], "n": 3}
    json.dumps(cli._json_safe(data), allow_nan=False)


def _readme_snippet() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index("```python\nimport gymnasium as gym")
    return text[start + len("```python\n") : text.index("```", start + 10)]


@pytest.mark.parametrize("close", [True, False])
def test_the_readme_snippet_exits_quietly(close):
    snippet = _readme_snippet()
    assert "env.close()" in snippet
    if not close:  # an env never closed is released quietly at exit too
        snippet = snippet.replace("env.close()", "pass")
    result = subprocess.run(
        [sys.executable, "-c", snippet],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "MUJOCO_GL": "egl"},
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_readme_documents_the_cpu_only_torch_install_beside_the_newcomer_commands():
    text = (REPO / "README.md").read_text()
    main = "pip install . && aloha-bench reproduce --profile quick --workers 2"
    tests = 'pip install -e ".[dev]" && MUJOCO_GL=egl pytest -q'
    cpu = "--index-url https://download.pytorch.org/whl/cpu"
    assert main in text and tests in text and cpu in text
    assert text.index(main) < text.index(cpu) < text.index(tests)


def test_the_quick_study_output_is_ignored_by_git():
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    result = subprocess.run(
        ["git", "check-ignore", "-q", "results/quick/summary.csv"], cwd=REPO, capture_output=True
    )
    assert result.returncode == 0


def test_a_missing_dataset_is_named_with_the_command_that_records_one_and_no_progress_bar(
    capsys, tmp_path
):
    missing = tmp_path / "nowhere.zarr"
    status, err = _main(
        capsys, "train", "--config", "act", "--profile", "cpu", "--dataset", str(missing),
        "--out", str(tmp_path / "run"),
    )  # fmt: skip
    assert status == 2
    assert f"{missing}: no Zarr store here" in err and "aloha-bench generate" in err
    assert "step/s" not in err  # the bar starts with training, after the checks
    assert not (tmp_path / "run").exists()


def test_eval_n_action_steps_replans_every_n_and_bad_values_are_named(capsys, tiny_run):
    """--n-action-steps N reaches the executor (recorded per run), N beyond the chunk is refused
    with the field's name, and ensembling (a chunk every step) refuses any other N."""
    import json

    base = ["eval", "--run", str(tiny_run), "--task", "transfer_cube", "--episodes", "1"]
    assert cli.main([*base, *"--max-steps 12 --n-action-steps 4 --json".split()]) == 0
    assert json.loads(capsys.readouterr().out)[0]["n_action_steps"] == 4
    status, err = _main(capsys, *base, "--n-action-steps", "11")
    assert status != 0 and "--n-action-steps" in err and "give 1..10" in err
    status, err = _main(capsys, *base, *"--temporal-ensemble 0.01 --n-action-steps 4".split())
    assert status != 0 and "--n-action-steps 4" in err


@pytest.mark.parametrize(
    ("to", "option"),
    [
        ("lerobot", ["--quantize", "int8"]),
        ("lerobot", ["--threads", "1"]),
        ("onnx", ["--units", "degrees"]),
        ("onnx", ["--calibration", "cal"]),
        ("onnx", ["--camera-map", "top=observation.images.overhead"]),
    ],
)
def test_an_export_option_of_another_format_is_refused_before_anything_is_written(
    capsys, tmp_path, to, option
):
    out = tmp_path / "exported"
    status, err = _main(
        capsys, "export-policy", str(tmp_path / "run"), "--to", to, *option, "--out", str(out)
    )
    assert status != 0 and f"{option[0]} applies to" in err and f"drop it for --to {to}" in err
    assert not out.exists()


def test_n_action_steps_plays_chunks_from_a_run_trained_to_ensemble(capsys, tmp_path, tiny_run):
    """A run trained with temporal ensembling (n_action_steps = 1) evaluated with
    --n-action-steps 4 plays chunks: the flag turns its ensembling off instead of failing."""
    import json

    from aloha_bench.policies.act.config import load_config
    from aloha_bench.train import train
    from tests.conftest import TINY_STATE_ACT

    ensembling = {**TINY_STATE_ACT, "temporal_ensemble_coeff": 0.01, "n_action_steps": 1}
    train(load_config("act", "cpu", ensembling), tiny_run.parent / "d.zarr", tmp_path / "te", 1)
    argv = ["eval", "--run", str(tmp_path / "te"), "--task", "transfer_cube", "--episodes", "1"]
    assert cli.main([*argv, *"--max-steps 8 --n-action-steps 4 --json".split()]) == 0
    summary = json.loads(capsys.readouterr().out)[0]
    assert summary["n_action_steps"] == 4 and summary["temporal_ensemble_coeff"] is None
