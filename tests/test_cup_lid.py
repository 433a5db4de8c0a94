"""cup_lid's press fit: gravity and light contact leave the lid on, a deliberate pull takes it off.

Forces are applied straight to the props (``xfrc_applied``) while both arms rest at home, so the
checks are about the scene's breakaway weld and masses, not about any expert.
"""

import numpy as np
import pytest

from aloha_bench import embodiment, envs

PULL_OFF_N = 15.0  # tasks/cup_lid/task.toml [[breakaways]] force_n


@pytest.fixture
def env():
    env = envs.make("cup_lid", obs_mode="state")
    env.reset(seed=0)
    yield env.unwrapped
    env.close()


def _run(sim, steps, lid_force=(0, 0, 0), cup_force=(0, 0, 0)):
    """Step with the arms at home while constant forces push the lid and the cup (world frame)."""
    lid, cup = sim.model.body("lid").id, sim.model.body("cup").id
    sim.data.xfrc_applied[lid, :3] = lid_force
    sim.data.xfrc_applied[cup, :3] = cup_force
    for _ in range(steps):
        sim.step(embodiment.HOME_STATE_RAD)
    sim.data.xfrc_applied[:] = 0.0


def _seated(sim) -> bool:
    return bool(sim.data.eq_active[sim.model.equality("lid_press_fit").id])


def _lid_height_over_rim_m(sim) -> float:
    lid = sim.data.site_xpos[sim.model.site("lid_bottom").id]
    rim = sim.data.site_xpos[sim.model.site("cup_top").id]
    return float(lid[2] - rim[2])


def test_lid_stays_on_under_gravity(env):
    _run(env, 200)
    assert _seated(env)
    assert abs(_lid_height_over_rim_m(env)) < 0.001


@pytest.mark.parametrize(
    "push", [(3, 0, 0), (-3, 0, 0), (0, 3, 0), (0, -3, 0), (0, 0, -5), (0, 0, 2)]
)
def test_light_contact_leaves_the_lid_on(env, push):
    # A few newtons for 0.2 s shove the whole light cup around (or lift it) but never pop the lid.
    _run(env, 10, lid_force=push)
    assert _seated(env)
    assert abs(_lid_height_over_rim_m(env)) < 0.001


def test_deliberate_pull_on_a_held_cup_takes_the_lid_off(env):
    # The cup pressed onto the table stands in for the holding gripper. Once the lid lets go the
    # pull drops to a gentle 1 N (a free 24 g lid under 20 N would fly away), which lifts it
    # clear of the rim.
    lid, cup = env.model.body("lid").id, env.model.body("cup").id
    env.data.xfrc_applied[cup, 2] = -(PULL_OFF_N + 15)
    env.data.xfrc_applied[lid, 2] = PULL_OFF_N + 5
    for _ in range(10):
        env.step(embodiment.HOME_STATE_RAD)
        if not _seated(env):
            break
    env.data.xfrc_applied[:] = 0.0
    assert not _seated(env)
    env.data.xfrc_applied[lid, 2] = 1.0
    for _ in range(5):
        env.step(embodiment.HOME_STATE_RAD)
    assert _lid_height_over_rim_m(env) > 0.005


def test_unheld_cup_comes_up_with_its_lid(env):
    # A pull under the breakaway force lifts the whole 50 g cup: holding it is part of the task.
    cup = env.model.body("cup").id
    z0 = env.data.xpos[cup][2]
    _run(env, 15, lid_force=(0, 0, 3))
    assert _seated(env)
    assert env.data.xpos[cup][2] > z0 + 0.01


def test_unheld_cup_slides_or_tips_when_its_tab_is_tugged(env):
    cup = env.model.body("cup").id
    start = env.data.xpos[cup].copy()
    _run(env, 25, lid_force=(1.5, 0, 0))
    tilt = np.degrees(np.arccos(np.clip(env.data.xmat[cup][8], -1, 1)))
    assert np.linalg.norm(env.data.xpos[cup][:2] - start[:2]) > 0.01 or tilt > 10
    assert _seated(env)
