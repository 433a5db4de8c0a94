"""Training: the run folder, overfitting a tiny dataset, bit-for-bit resume, config checks."""

import csv

import numpy as np
import pytest
from safetensors.torch import load_file

from aloha_bench.data.store import DatasetError
from aloha_bench.policies import load
from aloha_bench.train import learning_rate, train
from tests.policies.conftest import make_store, tiny_config


def _rows(run_dir):
    with (run_dir / "losses.csv").open() as f:
        return list(csv.DictReader(f))


def test_tiny_model_overfits_a_tiny_dataset(tmp_path):
    store = make_store(tmp_path / "s.zarr", n_episodes=2, length=10, obs_mode="state")
    config = tiny_config(
        obs_mode="state", use_vae=False, val_fraction=0.0, log_every=10, val_every=200, steps=200
    )
    summary = train(config, store, tmp_path / "run", device="cpu")
    rows = _rows(tmp_path / "run")
    first, last = float(rows[0]["l1"]), float(rows[-1]["l1"])
    assert last < 0.1 and last < first / 5, (first, last)
    assert summary["steps"] == 200 and summary["best_step"] == 200


def test_run_folder_and_loading_without_the_dataset(tmp_path, pixels_store):
    seen = []
    summary = train(
        tiny_config(steps=4, val_every=2), pixels_store, tmp_path / "run", progress=seen.append
    )
    run = tmp_path / "run"
    for name in ("config.json", "split.json", "losses.csv", "last", "best"):
        assert (run / name).exists(), name
    assert (run / "last" / "training_state.pt").is_file()
    assert not (run / "best" / "training_state.pt").exists()
    assert summary["val_episodes"] and summary["train_episodes"]
    # The first report marks the start (after the checks), then one per logged step.
    assert [p["step"] for p in seen] == [0, 1, 2, 3, 4] and seen[0] == {"step": 0, "steps": 4}
    assert {"loss", "kl", "lr", "samples_per_s", "steps"} <= set(seen[1])
    assert "val_l1_prior" in seen[2] and "val_l1_prior" not in seen[1]
    assert _rows(run)[1]["val_loss"] != "" and _rows(run)[0]["val_loss"] == ""
    policy = load(run)
    obs = {
        "observation.state": np.zeros(12, np.float32),
        "observation.images.top": np.zeros((32, 32, 3), np.uint8),
    }
    assert policy.select_action(obs).shape == (12,)


@pytest.mark.parametrize(
    "overrides",
    [
        {"use_vae": False},
        {"chunk_size": 1, "n_action_steps": 1},
        {"precision": "bf16", "warmup_steps": 2},
    ],
    ids=["no_cvae", "single_step", "bf16"],
)
def test_baseline_variants_train(tmp_path, pixels_store, overrides, monkeypatch):
    monkeypatch.setenv("ALOHA_BENCH_BF16", "always")  # the bf16 path also where it is emulated
    summary = train(tiny_config(steps=3, **overrides), pixels_store, tmp_path / "run")
    assert np.isfinite(summary["final_loss"])
    assert summary["precision"] == overrides.get("precision", "fp32")


def test_resume_is_bit_for_bit(tmp_path, state_store):
    # Dropout and the CVAE's sampling draw random numbers: both must resume where they stopped.
    config = tiny_config(obs_mode="state", dropout=0.1, val_every=2, warmup_steps=4)
    train(config, state_store, tmp_path / "straight", steps=6)
    train(config, state_store, tmp_path / "split", steps=3)
    train(config, state_store, tmp_path / "split", steps=6, resume=True)
    straight = load_file(tmp_path / "straight" / "last" / "model.safetensors")
    resumed = load_file(tmp_path / "split" / "last" / "model.safetensors")
    assert straight.keys() == resumed.keys()
    for name, tensor in straight.items():
        assert tensor.equal(resumed[name]), name
    assert [r["step"] for r in _rows(tmp_path / "split")] == [str(s) for s in range(1, 7)]
    losses = [[r["loss"] for r in _rows(tmp_path / run)] for run in ("split", "straight")]
    assert losses[0] == losses[1]


def test_refusals(tmp_path, pixels_store, state_store):
    config = tiny_config(obs_mode="state", steps=1)
    train(config, state_store, tmp_path / "run")
    with pytest.raises(ValueError, match="holds a training run.*continue this run with --resume"):
        train(config, state_store, tmp_path / "run")
    with pytest.raises(ValueError, match="lr: 0.001 -> 0.002"):
        train(tiny_config(obs_mode="state", lr=2e-3), state_store, tmp_path / "run", resume=True)
    with pytest.raises(ValueError, match="no complete checkpoint with training state"):
        train(config, state_store, tmp_path / "fresh", resume=True)
    with pytest.raises(DatasetError, match="image_size=32x32"):
        train(tiny_config(image_size=[64, 64]), pixels_store, tmp_path / "a")
    with pytest.raises(DatasetError, match="obs_mode"):
        train(tiny_config(), state_store, tmp_path / "b")


def test_learning_rate_warms_up_linearly_then_stays():
    assert [learning_rate(s, 1.0, 4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert learning_rate(0, 3e-4, 0) == 3e-4


def test_cosine_schedule_decays_from_the_end_of_warmup_to_its_floor():
    rates = [learning_rate(s, 1.0, 2, "cosine", 12, 0.1) for s in range(14)]
    assert rates[:3] == [0.5, 1.0, 1.0]  # warmup, then the peak
    assert all(a > b for a, b in zip(rates[2:12], rates[3:13], strict=True))  # strictly falling
    assert rates[7] == pytest.approx(0.55)  # half way: the mean of peak and floor
    assert rates[12] == rates[13] == pytest.approx(0.1)  # the floor holds past the last step
    with pytest.raises(ValueError, match="lr_schedule"):
        learning_rate(5, 1.0, 0, "linear", 10)


def test_cosine_schedule_reaches_the_optimizer(tmp_path, state_store):
    run = tmp_path / "run"
    config = tiny_config(obs_mode="state", lr_schedule="cosine", min_lr_ratio=0.25, log_every=1)
    train(config, state_store, run, steps=4)
    lrs = [float(row["lr"]) for row in _rows(run)]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < lrs[0]


def test_optimizer_is_fused_with_the_backbone_in_its_own_group():
    from aloha_bench.policies import make_policy
    from aloha_bench.train import make_optimizer
    from tests.policies.conftest import fake_stats

    config = tiny_config(lr=1e-3, lr_backbone=1e-4)
    policy = make_policy(config, fake_stats())
    optimizer = make_optimizer(policy, config)
    assert all(group["fused"] for group in optimizer.param_groups)
    assert [g["base_lr"] for g in optimizer.param_groups] == [1e-3, 1e-4]
    n_params = sum(len(g["params"]) for g in optimizer.param_groups)
    assert n_params == len(list(policy.parameters()))


def test_tensorboard_gets_the_same_rows_and_a_resume_purges_the_lost_ones(tmp_path, state_store):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = tiny_config(obs_mode="state", val_every=2)
    train(config, state_store, tmp_path / "run", steps=2, tensorboard=True)
    train(config, state_store, tmp_path / "run", steps=4, resume=True, tensorboard=True)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    l1 = [(e.step, e.value) for e in events.Scalars("train/l1")]
    assert [step for step, _ in l1] == [1, 2, 3, 4]
    csv_l1 = [float(r["l1"]) for r in _rows(tmp_path / "run")]
    assert [value for _, value in l1] == pytest.approx(csv_l1)
    assert [e.step for e in events.Scalars("val/val_l1_prior")] == [2, 4]


def test_weight_average_copies_first_then_warms_its_decay_up():
    import torch

    from aloha_bench.train import weight_average

    live = torch.nn.Linear(1, 1, bias=False)
    average = weight_average(live, 0.9)
    assert weight_average(live, 0.0) is None
    expected = []
    for n, value in enumerate([0.0, 1.0, 1.0, 1.0]):
        with torch.no_grad():
            live.weight.fill_(value)
        average.update_parameters(live)
        if n == 0:
            expected.append(value)  # the first update copies
        else:  # decay d = min(0.9, (1 + n) / (10 + n)) after n updates
            d = min(0.9, (1 + n) / (10 + n))
            expected.append(d * expected[-1] + (1 - d) * value)
        assert float(average.module.weight.detach()) == pytest.approx(expected[-1])
    assert expected[1] == pytest.approx(1 - 2 / 11)  # not 0.1: the init fades fast


def test_ema_run_saves_the_average_and_resumes_bit_for_bit(tmp_path, state_store):
    import torch

    config = tiny_config(obs_mode="state", dropout=0.1, val_every=3, ema_decay=0.9)
    train(config, state_store, tmp_path / "straight", steps=6)
    train(config, state_store, tmp_path / "split", steps=3)
    train(config, state_store, tmp_path / "split", steps=6, resume=True)
    for run in ("straight", "split"):
        assert [r["step"] for r in _rows(tmp_path / run)][-1] == "6"
    runs = ("straight", "split")
    saved = [load_file(tmp_path / run / "last" / "model.safetensors") for run in runs]
    states = [
        torch.load(tmp_path / run / "last" / "training_state.pt", weights_only=True) for run in runs
    ]
    for name, tensor in saved[0].items():
        assert tensor.equal(saved[1][name]), name
        assert states[0]["live_model"][name].equal(states[1]["live_model"][name]), name
    # The checkpoint holds the average, not the live weights: they differ after 6 steps.
    assert any(not saved[0][n].equal(states[0]["live_model"][n]) for n in saved[0])
    # The training state keeps the live weights and the count of updates behind the average
    # (the checkpoint's own weights are the average a resume continues from).
    assert states[0]["ema_updates"] == states[1]["ema_updates"] == 6
    # The policy a run produces loads and acts like any other.
    assert load(tmp_path / "straight").config.ema_decay == 0.9


def test_ema_decay_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="ema_decay"):
        tiny_config(obs_mode="state", ema_decay=1.0)
    with pytest.raises(ValueError, match="ema_decay"):
        tiny_config(obs_mode="state", ema_decay=float("nan"))


def test_the_loss_plot_has_axis_titles_and_every_curve(tmp_path, monkeypatch):
    """losses.png: training L1 and KL and the validation L1 (logged every few steps, so rows
    without it are skipped), log loss against gradient steps, with titled axes."""
    import matplotlib.pyplot as plt

    from aloha_bench.train import CSV_COLUMNS, LOSSES_FILE, write_loss_plot

    with (tmp_path / LOSSES_FILE).open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for step in range(1, 101):
            values = {"step": step, "l1": 1.0 / step, "kl": 0.1 / step}
            if step % 25 == 0:
                values["val_l1_prior"] = 2.0 / step
            writer.writerow(values)
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    out = write_loss_plot(tmp_path)
    assert out == tmp_path / "losses.png" and out.stat().st_size > 0
    ax = figures[0].axes[0]
    assert ax.get_xlabel() == "gradient step"
    assert ax.get_ylabel().startswith("loss") and ax.get_yscale() == "log"
    assert ax.get_title() == f"{tmp_path.name}: training curves"
    assert [len(line.get_xdata()) for line in ax.lines] == [100, 100, 4]
    assert [t.get_text() for t in ax.get_legend().get_texts()][2].startswith("validation L1")
