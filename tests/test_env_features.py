"""Generic env features on a hand-made task folder: randomized prop joints, breakaway welds."""

import numpy as np
import pytest

from aloha_bench.envs.aloha_env import AlohaEnv
from aloha_bench.sim import rig, task_spec

SCENE = """
<mujoco model="demo">
  <compiler angle="radian"/>
  <worldbody>
    <body name="base" pos="0 0 0.02">
      <freejoint/>
      <geom type="box" size="0.03 0.03 0.02" mass="0.05"/>
      <body name="drawer" pos="0 0 0.03">
        <joint name="slide" type="slide" axis="1 0 0" range="0 0.05"/>
        <geom type="box" size="0.01 0.01 0.01" mass="0.01"/>
      </body>
    </body>
    <body name="lid" pos="0 0 0.1">
      <freejoint/>
      <geom type="box" size="0.02 0.02 0.005" mass="0.02"/>
    </body>
  </worldbody>
  <equality>
    <weld name="lid_weld" body1="lid" body2="base"/>
  </equality>
</mujoco>
"""

TOML = """
id = "demo"
name = "Demo"
version = 1
episode_steps = 20
cameras = ["top"]
state_joints = ["slide"]
[[objects]]
body = "base"
x_m = [-0.05, 0.05]
y_m = 0.0
z_m = 0.02
[[joints]]
joint = "slide"
range = [0.01, 0.04]
[[breakaways]]
equality = "lid_weld"
force_n = 3.0
[[stages]]
name = "lid_off"
all = [{ fn = "height_above", body = "lid", min_z_m = 0.2 }]
"""


@pytest.fixture
def demo_env(tmp_path, monkeypatch):
    folder = tmp_path / "tasks" / "demo"
    folder.mkdir(parents=True)
    (folder / "scene.xml").write_text(SCENE)
    (folder / "task.toml").write_text(TOML)
    monkeypatch.setattr(task_spec.paths, "tasks_dir", lambda: tmp_path / "tasks")
    rig._compiled_xml.cache_clear()
    env = AlohaEnv("demo", obs_mode="state")
    yield env
    env.close()
    rig._compiled_xml.cache_clear()


def test_prop_joint_start_is_drawn_in_range_and_reported(demo_env):
    starts = []
    for seed in range(5):
        obs, info = demo_env.reset(seed=seed)
        slide = info["observation.environment_state"][-1]
        assert 0.01 <= slide <= 0.04
        starts.append(slide)
    assert len(set(np.round(starts, 6))) > 1


def test_weld_holds_under_gravity_and_breaks_under_a_pull(demo_env):
    env = demo_env
    env.reset(seed=0)
    lid = env.model.body("lid").id
    weld = env.model.equality("lid_weld").id
    for _ in range(20):
        env.step(env.joint_state())
    assert env.data.eq_active[weld] == 1, "gravity alone must not release the lid"
    # A 10 N upward pull on the lid, applied as an external force, snaps the weld.
    env.data.xfrc_applied[lid, 2] = 10.0
    for _ in range(5):
        env.step(env.joint_state())
    assert env.data.eq_active[weld] == 0
    env.data.xfrc_applied[lid, 2] = 0.0
    env.reset(seed=1)
    assert env.data.eq_active[weld] == 1, "reset re-arms the weld"
