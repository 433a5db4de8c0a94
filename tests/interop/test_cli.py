"""The LeRobot verbs end to end: convert, train on a LeRobot folder, export-policy, eval a LeRobot
ACT in a simulated task."""

import json
from pathlib import Path

from aloha_bench.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lerobot"
LEROBOT_FLAGS = ["--calibration", str(FIXTURES / "calibration"), "--camera-map", "top=overhead"]
TINY = [
    "dim_model=32",
    "n_heads=2",
    "dim_feedforward=64",
    "n_encoder_layers=1",
    "n_vae_encoder_layers=1",
    "latent_dim=8",
    "chunk_size=5",
    "n_action_steps=5",
    "batch_size=2",
    "val_every=2",
    "val_batches=1",
    "image_size=48x64",
    "cameras=top",
    "image_norm=dataset",
]


def test_convert_both_ways(tmp_path, capsys):
    source = str(FIXTURES / "dataset_v21")
    assert main(["convert", source, "--to", "zarr", "--out", str(tmp_path / "a.zarr")]) == 2
    assert "--units degrees" in capsys.readouterr().err
    args = ["--units", "degrees", *LEROBOT_FLAGS]
    out = ["--out", str(tmp_path / "a.zarr")]
    assert main(["convert", source, "--to", "zarr", *out, *args]) == 2  # which of our tasks?
    assert "--task" in capsys.readouterr().err
    args += ["--task", "transfer_cube"]
    assert main(["convert", source, "--to", "zarr", *out, *args]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 2
    back = str(tmp_path / "b")
    assert main(["convert", str(tmp_path / "a.zarr"), "--to", "lerobot", "--out", back]) == 0
    assert (tmp_path / "b" / "meta" / "info.json").is_file()


def test_train_on_a_lerobot_folder_then_export_it(tmp_path, capsys):
    run = tmp_path / "run"
    dataset = str(FIXTURES / "dataset_v30")
    set_args = [item for value in TINY for item in ("--set", value)]
    args = ["train", "--dataset", dataset, "--out", str(run), "--steps", "2", "--threads", "1"]
    lerobot = ["--lerobot-units", "degrees", "--lerobot-task", "transfer_cube", *LEROBOT_FLAGS]
    assert main([*args, *set_args, *lerobot]) == 0
    assert "converted to" in capsys.readouterr().err
    assert (tmp_path / "run.dataset.zarr" / "zarr.json").is_file()
    out = tmp_path / "exported"
    assert main(["export-policy", str(run), "--to", "lerobot", "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["features"] == [
        "observation.state",
        "observation.images.top",
    ]


def test_eval_runs_a_lerobot_trained_act_in_a_sim_task(tmp_path, capsys):
    args = ["eval", "--run", str(FIXTURES / "act_state"), "--task", "transfer_cube"]
    args += ["--episodes", "1", "--max-steps", "10", "--no-seed-check", "--json"]
    assert main(args) == 2  # its joint units are not recorded anywhere
    assert "--lerobot-units" in capsys.readouterr().err
    assert main([*args, "--lerobot-units", "radians"]) == 0
    summary = json.loads(capsys.readouterr().out)[0]
    assert summary["episodes"] == 1
