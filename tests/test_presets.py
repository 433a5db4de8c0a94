"""Level names and tables of a level plus overrides, for both sim-to-real configs."""

import pytest

from aloha_bench.envs.latency import LatencyConfig
from aloha_bench.sim.randomize import RandomizationConfig


def test_a_table_starts_from_its_level_and_overrides_fields():
    config = RandomizationConfig.resolve({"level": "light", "camera_position_m": 0.03})
    assert config == RandomizationConfig.from_level("light").replace(camera_position_m=0.03)
    assert RandomizationConfig.resolve({"mass_scale": 0.2}) == RandomizationConfig(mass_scale=0.2)
    latency = LatencyConfig.resolve({"level": "real", "action_delay_steps": 3})
    assert latency.action_delay_steps == 3 and latency.quantize
    same = LatencyConfig.resolve(latency)
    assert same is latency


def test_bad_tables_name_the_option_and_the_valid_fields():
    with pytest.raises(ValueError, match=r"unknown randomize fields \['camera_zoom'\]"):
        RandomizationConfig.resolve({"camera_zoom": 2.0})
    with pytest.raises(ValueError, match="unknown latency level"):
        LatencyConfig.resolve({"level": "awful"})
    with pytest.raises(ValueError, match="action_delay_steps"):  # validated again
        LatencyConfig.resolve({"action_delay_steps": 99})
    with pytest.raises(TypeError, match="latency must be"):
        LatencyConfig.resolve(3)
