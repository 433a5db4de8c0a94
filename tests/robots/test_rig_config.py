"""rig.toml parsing and validation, including the documented example."""

import re
from pathlib import Path

import pytest

from aloha_bench.robots.rig_config import RigConfigError, load_rig_config, rig_config_from_dict

DOC = Path(__file__).resolve().parents[2] / "docs" / "real_robot.md"

MINIMAL = {
    "image_size": [48, 64],
    "arms": {
        "left": {"follower_port": "/dev/a", "follower_calibration": "cal/l.json"},
        "right": {"follower_port": "/dev/b", "follower_calibration": "/abs/r.json"},
    },
    "cameras": {"top": {"device": 0}},
}


def parse(data, base=Path("/rig")):
    return rig_config_from_dict(data, "rig.toml", base)


def test_documented_example_loads(tmp_path):
    example = re.search(r"```toml\n(.*?)```", DOC.read_text(), re.S).group(1)
    path = tmp_path / "rig.toml"
    path.write_text(example)
    config = load_rig_config(path)
    assert config.image_size == (480, 640)
    assert config.camera_names == ("top", "front", "left_wrist", "right_wrist")
    assert config.cameras["top"].capture_size == (480, 640)
    assert config.cameras["front"].device == 2
    assert config.arms["left"].follower_calibration == tmp_path / "calibration/left_follower.json"
    assert config.has_leaders


def test_minimal_config_and_defaults():
    config = parse(MINIMAL)
    assert config.max_relative_target_rad == 0.15 and config.reset_speed_rad_s == 0.5
    assert config.arms["left"].follower_calibration == Path("/rig/cal/l.json")
    assert config.arms["right"].follower_calibration == Path("/abs/r.json")
    assert not config.has_leaders


def with_changes(**changes):
    data = {
        "image_size": MINIMAL["image_size"],
        "arms": {side: dict(arm) for side, arm in MINIMAL["arms"].items()},
        "cameras": {name: dict(cam) for name, cam in MINIMAL["cameras"].items()},
    }
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        table = data
        for key in parents:
            table = table.setdefault(key, {})
        if value is None:
            table.pop(leaf)
        else:
            table[leaf] = value
    return data


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"image_size": None}, r"image_size: missing"),
        ({"image_size": [0, 64]}, r"image_size: must be \[height, width\]"),
        ({"arms__right": None}, r"arms: need exactly \[arms.left\] and \[arms.right\]"),
        ({"arms__left__follower_port": None}, r"arms.left.follower_port: set it"),
        ({"arms__right__follower_port": "/dev/a"}, r"right.follower_port: '/dev/a' is already"),
        ({"arms__left__follower_calibration": None}, r"arms.left.follower_calibration: set it"),
        ({"arms__left__leader_calibration": "x.json"}, r"leader_port is not"),
        ({"arms__left__folower_port": "/dev/c"}, r"arms.left: unknown keys \['folower_port'\]"),
        ({"cameras__side": {"device": 1}}, r"cameras: unknown keys \['side'\]"),
        ({"cameras__top__device": None}, r"cameras.top.device: set it"),
        ({"cameras__front": {"device": 0}}, r"cameras.front.device: 0 is also cameras.top"),
        ({"cameras__top__fps": -5}, r"cameras.top.fps: must be positive"),
        ({"cameras": {}}, r"cameras: add at least one"),
        ({"max_relative_target_rad": 0}, r"max_relative_target_rad: must be a positive"),
        ({"reset_speed_rad_s": "fast"}, r"reset_speed_rad_s: must be a positive"),
        ({"extra": 1}, r"top level: unknown keys \['extra'\]"),
    ],
)
def test_errors_name_the_field(changes, message):
    with pytest.raises(RigConfigError, match=message) as info:
        parse(with_changes(**changes))
    assert str(info.value).startswith("rig.toml: ")


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(RigConfigError, match="not found; copy the example"):
        load_rig_config(tmp_path / "rig.toml")
    (tmp_path / "bad.toml").write_text("image_size = [")
    with pytest.raises(RigConfigError, match="not valid TOML"):
        load_rig_config(tmp_path / "bad.toml")
