"""bf16 only where the hardware multiplies it: elsewhere the policy computes in fp32, says so
once, and records it (precision.py; a bf16 `cpu`-profile step took 9 s instead of ~0.1 s on an
AVX2-only CPU)."""

import warnings

import pytest
import torch

from aloha_bench.policies import make_policy
from aloha_bench.policies.act import precision
from aloha_bench.train import train
from tests.policies.conftest import fake_stats, tiny_config


@pytest.fixture
def no_native_bf16(monkeypatch):
    monkeypatch.setattr(precision, "bf16_is_native", lambda device_type: False)
    monkeypatch.delenv(precision.FORCE_ENV, raising=False)
    precision._warn_fallback.cache_clear()


def test_bf16_falls_back_to_fp32_without_native_support_and_says_so(no_native_bf16):
    policy = make_policy(tiny_config(obs_mode="state", precision="bf16"), fake_stats())
    with pytest.warns(precision.PrecisionWarning, match=r'precision = "fp32".*ALOHA_BENCH_BF16'):
        assert policy.precision == "fp32"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process, not per call
        assert policy.precision == "fp32"
        assert policy.inference_model() is policy.model  # no bf16 weight copy
        x = torch.randn(4, 8)
        with policy.autocast():
            assert (x @ x.T).dtype == torch.float32
    # fp32 stays fp32 without a word.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fp32 = make_policy(tiny_config(obs_mode="state"), fake_stats())
        assert fp32.precision == "fp32"


def test_bf16_is_kept_where_native_or_when_forced(monkeypatch, no_native_bf16):
    config = tiny_config(obs_mode="state", precision="bf16")
    monkeypatch.setenv(precision.FORCE_ENV, "always")
    policy = make_policy(config, fake_stats())
    assert policy.precision == "bf16"
    with policy.autocast():
        assert (torch.randn(4, 8) @ torch.randn(8, 4)).dtype == torch.bfloat16
    monkeypatch.delenv(precision.FORCE_ENV)
    monkeypatch.setattr(precision, "bf16_is_native", lambda device_type: True)
    assert make_policy(config, fake_stats()).precision == "bf16"


def test_the_run_summary_records_the_precision_computed_in(tmp_path, state_store, no_native_bf16):
    config = tiny_config(obs_mode="state", precision="bf16", steps=2)
    with pytest.warns(precision.PrecisionWarning):
        summary = train(config, state_store, tmp_path / "run")
    assert summary["precision"] == "fp32"


def test_reproduce_says_it_once_where_bf16_is_not_native(monkeypatch, no_native_bf16):
    from aloha_bench import study

    quick = study.plan(study.load_profile("quick"))  # its training profile asks for bf16
    assert "fp32" in study.precision_note(quick)
    monkeypatch.setattr(precision, "bf16_is_native", lambda device_type: True)
    assert study.precision_note(quick) is None
