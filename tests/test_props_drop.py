"""Props never tunnel into each other: each prop dropped onto each other prop of its task (and
onto the table) from up to 40 cm comes to rest penetrating by less than a millimetre.

The arms are made non-colliding for the drop: they are not props, and a bounce onto a
position-servoed jaw measures the servo pushing, not the contact model.
"""

import itertools

import mujoco
import numpy as np
import pytest

from aloha_bench import envs
from aloha_bench.sim.task_spec import available_tasks, load_task_spec

HEIGHTS_M = (0.10, 0.25, 0.40)
# Quaternions (w, x, y, z): as placed, turned 90 degrees about y (a long prop's axis vertical),
# 90 degrees about x, and a seeded random orientation.
POSES = {
    "as_placed": (1.0, 0.0, 0.0, 0.0),
    "about_y": (np.cos(np.pi / 4), 0.0, np.sin(np.pi / 4), 0.0),
    "about_x": (np.cos(np.pi / 4), np.sin(np.pi / 4), 0.0, 0.0),
    "random": None,
}
MAX_PENETRATION_M = 0.001
SETTLE_STEPS = 1000  # 2 s at 2 ms
PARKING_XY = ((0.3, 0.25), (-0.3, 0.25), (0.3, -0.25))


def _free_props(model) -> dict[str, int]:
    """Top-level free bodies (every task's props) -> qpos address of their free joint."""
    return {
        model.body(model.jnt_bodyid[j]).name: int(model.jnt_qposadr[j])
        for j in range(model.njnt)
        if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE
    }


def _pairs():
    for task in available_tasks():
        objects = [o.body for o in load_task_spec(task).objects]
        for top in objects:
            for bottom in [*(o for o in objects if o != top), "table"]:
                yield task, top, bottom


def _geoms_of(model, body_name: str) -> set[int]:
    body = model.body(body_name).id
    out = set()
    for g in range(model.ngeom):
        b = int(model.geom_bodyid[g])
        while b and b != body:
            b = int(model.body_parentid[b])
        if b == body:
            out.add(g)
    return out


def _drop(task: str, top: str, bottom: str, height_m: float, pose: str) -> dict:
    """Drop ``top`` from ``height_m`` above ``bottom``'s highest point; its state 2 s later."""
    env = envs.make(task, obs_mode="state")
    try:
        env.reset(seed=0)
        model, data = env.unwrapped.model, env.unwrapped.data
        for g in range(model.ngeom):
            if model.geom(g).name.split("/")[0] in ("left", "right"):
                model.geom_contype[g] = model.geom_conaffinity[g] = 0
        data.eq_active[:] = 0  # press fits released: every part is a loose prop
        props = _free_props(model)
        for k, (name, adr) in enumerate(props.items()):
            if name not in (top, bottom):
                data.qpos[adr : adr + 3] = (*PARKING_XY[k % 3], 0.05)
        if bottom != "table":
            data.qpos[props[bottom] : props[bottom] + 2] = 0.0
        mujoco.mj_forward(model, data)
        below = _geoms_of(model, bottom) if bottom != "table" else set()
        surface_z = max((data.geom_xpos[g][2] + model.geom_rbound[g] for g in below), default=0)
        rng = np.random.default_rng(round(height_m * 100))
        quat = POSES[pose]
        if quat is None:
            quat = rng.normal(size=4)
            quat /= np.linalg.norm(quat)
        adr = props[top]
        reach = max(model.geom_rbound[g] for g in _geoms_of(model, top))
        data.qpos[adr : adr + 3] = (*rng.uniform(-0.015, 0.015, 2), surface_z + reach + height_m)
        data.qpos[adr + 3 : adr + 7] = quat
        data.qvel[:] = 0.0
        for _ in range(SETTLE_STEPS):
            mujoco.mj_step(model, data)
        watched = _geoms_of(model, top) | below
        depth = max(
            (-c.dist for c in data.contact[: data.ncon] if {c.geom1, c.geom2} & watched),
            default=0.0,
        )
        free_dof = model.jnt_dofadr[model.body(top).jntadr[0]]
        rest = {
            "depth_m": depth,
            "speed": float(np.abs(data.qvel[free_dof : free_dof + 6]).max()),
            "top_pos": data.xpos[model.body(top).id].copy(),
        }
        if bottom != "table":
            rest["bottom_pos"] = data.xpos[model.body(bottom).id].copy()
            rest["bottom_rot"] = data.xmat[model.body(bottom).id].reshape(3, 3).copy()
        return rest
    finally:
        env.close()


@pytest.mark.parametrize(("task", "top", "bottom"), list(_pairs()))
def test_dropped_props_rest_without_penetrating(task, top, bottom):
    for height_m, pose in itertools.product(HEIGHTS_M, POSES):
        rest = _drop(task, top, bottom, height_m, pose)
        where = f"{top} dropped {height_m:.2f} m onto {bottom} ({pose})"
        assert rest["speed"] < 0.05, f"{where}: still moving ({rest['speed']:.3f}), not at rest"
        assert rest["depth_m"] < MAX_PENETRATION_M, (
            f"{where}: {rest['depth_m'] * 1e3:.2f} mm deep at rest"
        )
        if (task, top, bottom) == ("insertion", "peg", "socket"):
            # Dropped from above, the peg cannot have entered the bore (|y|, |z| < 15 mm in the
            # socket frame) except by passing through a wall.
            local = rest["bottom_rot"].T @ (rest["top_pos"] - rest["bottom_pos"])
            assert not (abs(local[1]) < 0.015 and abs(local[2]) < 0.015), f"{where}: in the bore"
