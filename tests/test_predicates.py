"""Predicates on hand-built states: a box resting on or floating above a plane, a hinge."""

import mujoco
import numpy as np
import pytest

from aloha_bench.sim import predicates

XML = """
<mujoco>
  <compiler angle="radian"/>
  <worldbody>
    <geom name="floor" type="plane" size="1 1 0.1"/>
    <body name="box" pos="0 0 0.05">
      <freejoint/>
      <geom name="box_geom" type="box" size="0.05 0.05 0.05"/>
      <site name="box_site"/>
    </body>
    <body name="other" pos="0.5 0 0.05">
      <freejoint/>
      <geom type="box" size="0.05 0.05 0.05"/>
      <site name="other_site"/>
    </body>
    <body name="door" pos="0 0.5 0.2">
      <joint name="hinge" type="hinge" range="0 2"/>
      <geom type="box" size="0.01 0.1 0.1"/>
    </body>
  </worldbody>
</mujoco>
"""


@pytest.fixture
def sim():
    model = mujoco.MjModel.from_xml_string(XML)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    return model, data


def _lift(model, data, height):
    data.qpos[2] = height
    mujoco.mj_forward(model, data)


def test_touching_by_body_or_geom(sim):
    model, data = sim
    assert predicates.touching(model, data, ["box"], ["floor"])
    assert predicates.touching(model, data, ["box_geom"], ["floor"])
    assert not predicates.not_touching(model, data, ["floor"], ["box"])
    assert not predicates.touching(model, data, ["box"], ["other"])
    _lift(model, data, 0.3)
    assert not predicates.touching(model, data, ["box"], ["floor"])
    assert predicates.not_touching(model, data, ["box"], ["floor"])


def test_unknown_name_is_a_clear_error(sim):
    model, data = sim
    with pytest.raises(ValueError, match="'cube' is neither a body nor a geom"):
        predicates.touching(model, data, ["cube"], ["floor"])


def test_height_above(sim):
    model, data = sim
    assert not predicates.height_above(model, data, "box", 0.1)
    _lift(model, data, 0.3)
    assert predicates.height_above(model, data, "box", 0.1)


def test_within(sim):
    model, data = sim
    assert predicates.within(model, data, "box_site", "other_site", 0.51)
    assert not predicates.within(model, data, "box_site", "other_site", 0.49)


def test_aligned(sim):
    model, data = sim
    assert predicates.aligned(model, data, "box", "other", [1, 0, 0], 0.99)
    half_turn = np.array([0.0, 0.0, 0.0, 1.0])  # 180 degrees about z
    data.qpos[3:7] = half_turn
    mujoco.mj_forward(model, data)
    assert not predicates.aligned(model, data, "box", "other", [1, 0, 0], 0.0)
    assert predicates.aligned(model, data, "box", "other", [0, 0, 1], 0.99)


def test_joint_at_least(sim):
    model, data = sim
    hinge = model.jnt_qposadr[model.joint("hinge").id]
    data.qpos[hinge] = 1.7
    assert predicates.joint_at_least(model, data, "hinge", 0.8)
    data.qpos[hinge] = 1.5
    assert not predicates.joint_at_least(model, data, "hinge", 0.8)


def test_resolve_lists_valid_names():
    assert predicates.resolve("touching") is predicates.touching
    with pytest.raises(ValueError, match="valid predicates: .*touching"):
        predicates.resolve("grasped")
