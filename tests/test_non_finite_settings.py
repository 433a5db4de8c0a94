"""Every float setting refuses NaN and infinity, naming the setting (`x < 0` lets NaN through)."""

import dataclasses
import math

import numpy as np
import pytest

from aloha_bench.envs.latency import CameraClock, DeadbandBacklash, LatencyConfig
from aloha_bench.experts.human import HumanOperatorConfig
from aloha_bench.robots import safety
from aloha_bench.robots.arm import SO101Arm
from aloha_bench.sim.randomize import RandomizationConfig

NON_FINITE = [math.nan, math.inf, -math.inf]


def _float_fields(cls):
    return [f.name for f in dataclasses.fields(cls) if "float" in str(f.type)]


@pytest.mark.parametrize("name", _float_fields(HumanOperatorConfig))
@pytest.mark.parametrize("bad", NON_FINITE)
def test_human_operator_config(name, bad):
    value = getattr(HumanOperatorConfig(), name)
    value = (value[0], bad) if isinstance(value, tuple) else bad
    with pytest.raises(ValueError, match=f"human operator {name}"):
        HumanOperatorConfig(**{name: value})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"hesitation_rate_hz": -1.0}, "hesitation_rate_hz must be >= 0"),
        ({"noise_time_s": 0.0}, "noise_time_s must be positive"),
    ],
)
def test_human_operator_config_ranges(fields, message):
    with pytest.raises(ValueError, match=message):
        HumanOperatorConfig(**fields)


@pytest.mark.parametrize("name", _float_fields(RandomizationConfig))
@pytest.mark.parametrize("bad", NON_FINITE)
def test_randomization_config(name, bad):
    with pytest.raises(ValueError, match=name):
        RandomizationConfig(**{name: bad})


@pytest.mark.parametrize("name", _float_fields(LatencyConfig))
@pytest.mark.parametrize("bad", NON_FINITE)
def test_latency_config(name, bad):
    with pytest.raises(ValueError, match=name):
        LatencyConfig(**{name: bad})


@pytest.mark.parametrize("bad", NON_FINITE)
def test_runtime_arguments(bad):
    with pytest.raises(ValueError, match="control_dt_s"):
        CameraClock(bad, None, 0.0)
    with pytest.raises(ValueError, match="deadband_rad"):
        DeadbandBacklash(bad, 0.0)
    with pytest.raises(ValueError, match="period_s"):
        safety.DeadlineWatchdog(bad)
    with pytest.raises(ValueError, match="max_step"):
        safety.limit_relative_step(np.zeros(6), np.zeros(6), bad)
    with pytest.raises(ValueError, match="max_relative_target_rad"):
        SO101Arm("/dev/null", "unused.json", max_relative_target_rad=bad)
