"""The ``above`` predicate on a hand-built state: a site hanging over another one, or not."""

import mujoco
import pytest

from aloha_bench.sim import predicates

XML = """
<mujoco>
  <worldbody>
    <body name="slot" pos="0 0 0">
      <geom type="box" size="0.05 0.05 0.01"/>
      <site name="slot_site" pos="0 0 0.01"/>
    </body>
    <body name="part" pos="0 0 0.03">
      <freejoint/>
      <geom type="box" size="0.01 0.01 0.01"/>
      <site name="part_site"/>
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


def _move(model, data, x, y, z):
    data.qpos[:3] = (x, y, z)
    mujoco.mj_forward(model, data)


def _above(model, data):
    return predicates.above(
        model,
        data,
        site="part_site",
        over="slot_site",
        max_offset_m=0.004,
        min_height_m=0.005,
        max_height_m=0.04,
    )


def test_above_needs_horizontal_alignment_and_a_height_band(sim):
    model, data = sim
    assert _above(model, data)  # 2 cm straight above
    _move(model, data, 0.003, 0.002, 0.03)  # 3.6 mm off: still over it
    assert _above(model, data)
    _move(model, data, 0.004, 0.003, 0.03)  # 5 mm off
    assert not _above(model, data)
    _move(model, data, 0.0, 0.0, 0.012)  # 2 mm above: resting in it, not over it
    assert not _above(model, data)
    _move(model, data, 0.0, 0.0, 0.06)  # 5 cm above: too high
    assert not _above(model, data)
    _move(model, data, 0.0, 0.0, -0.02)  # below
    assert not _above(model, data)


def test_above_is_registered_for_task_specs():
    assert predicates.resolve("above") is predicates.above
