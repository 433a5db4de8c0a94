"""`bench train`: the figures are printed, never asserted; here only that each is produced."""

import math

from aloha_bench import bench_train
from tests.policies.conftest import tiny_config


def test_train_loop_is_timed_on_a_synthetic_store_of_the_configs_inputs():
    for config in (tiny_config(obs_mode="state"), tiny_config(cameras=["top", "front"])):
        rate = bench_train._train_loop_samples_per_s(config, steps=2)
        assert math.isfinite(rate) and rate > 0


def test_a_configuration_row_has_the_bare_step_and_the_loop(monkeypatch):
    monkeypatch.setattr(bench_train, "LOOP_WINDOW_S", 0.0)  # the loop then runs train_steps
    row = bench_train.bench_config(
        "tiny", tiny_config(obs_mode="state"), train_steps=1, inferences=1
    )
    for key in ("train_samples_per_s", "train_loop_samples_per_s", "train_loop_vs_bare"):
        assert math.isfinite(row[key]) and row[key] > 0, key
    assert row["train_loop_steps"] == 1
    assert set(bench_train._configs()) >= {"cpu_state", "cpu_pixels_2cam"}
    assert bench_train._configs()["cpu_pixels_2cam"].cameras == ("top", "right_wrist")
