"""Success predicates: pure functions ``(model, data, **args) -> bool``.

Task stages (``task.toml``) name these functions and their arguments. Each reads only the model and
the current simulation state, keeps no state, and is unit-tested on hand-built states.

Names in arguments may be a body (meaning all of its geoms) or a single geom, so a task can say
``right/gripper`` (the fixed jaw and the gripper housing) or ``rig/table``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import mujoco
import numpy as np


def geom_ids(model: mujoco.MjModel, names: Sequence[str]) -> frozenset[int]:
    """Geom ids named by ``names``: each a geom name, or a body name standing for its geoms.

    Raises:
        ValueError: a name is neither a body nor a geom of the model.
    """
    ids: set[int] = set()
    for name in names:
        body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name)
        if body >= 0:
            ids.update(np.flatnonzero(model.geom_bodyid == body).tolist())
            continue
        geom = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, name)
        if geom < 0:
            raise ValueError(f"{name!r} is neither a body nor a geom of the model; check task.toml")
        ids.add(geom)
    return frozenset(ids)


def _contact_pairs(data: mujoco.MjData) -> np.ndarray:
    """(ncon, 2) geom pairs of the active contacts (distance <= 0: touching, not just in margin)."""
    contacts = data.contact
    active = contacts.dist[: data.ncon] <= 0.0
    return contacts.geom[: data.ncon][active]


def touching(
    model: mujoco.MjModel, data: mujoco.MjData, a: Sequence[str], b: Sequence[str]
) -> bool:
    """True when any geom of ``a`` is in contact with any geom of ``b``."""
    set_a, set_b = geom_ids(model, a), geom_ids(model, b)
    for g1, g2 in _contact_pairs(data):
        if (g1 in set_a and g2 in set_b) or (g1 in set_b and g2 in set_a):
            return True
    return False


def not_touching(
    model: mujoco.MjModel, data: mujoco.MjData, a: Sequence[str], b: Sequence[str]
) -> bool:
    """True when no geom of ``a`` touches a geom of ``b`` (e.g. a prop held off the table)."""
    return not touching(model, data, a, b)


def height_above(model: mujoco.MjModel, data: mujoco.MjData, body: str, min_z_m: float) -> bool:
    """True when ``body``'s origin is higher than ``min_z_m`` (table top is z = 0)."""
    return bool(data.xpos[model.body(body).id][2] > min_z_m)


def within(
    model: mujoco.MjModel,
    data: mujoco.MjData,
    site_a: str,
    site_b: str,
    max_distance_m: float,
) -> bool:
    """True when sites ``site_a`` and ``site_b`` are at most ``max_distance_m`` apart."""
    pa = data.site_xpos[model.site(site_a).id]
    pb = data.site_xpos[model.site(site_b).id]
    return bool(np.linalg.norm(pa - pb) <= max_distance_m)


def aligned(
    model: mujoco.MjModel,
    data: mujoco.MjData,
    body_a: str,
    body_b: str,
    axis: Sequence[float],
    min_cos: float,
) -> bool:
    """True when ``axis`` (in each body's frame) of the two bodies point the same way.

    ``min_cos`` is the least cosine of the angle between them (0.95 is about 18 degrees).
    """
    local = np.asarray(axis, dtype=float)
    wa = data.xmat[model.body(body_a).id].reshape(3, 3) @ local
    wb = data.xmat[model.body(body_b).id].reshape(3, 3) @ local
    return bool(wa @ wb / (np.linalg.norm(wa) * np.linalg.norm(wb)) >= min_cos)


def joint_at_least(model: mujoco.MjModel, data: mujoco.MjData, joint: str, fraction: float) -> bool:
    """True when ``joint`` has travelled at least ``fraction`` of its range (from its lower end)."""
    j = model.joint(joint)
    low, high = model.jnt_range[j.id]
    value = data.qpos[model.jnt_qposadr[j.id]]
    return bool((value - low) >= fraction * (high - low))


PREDICATES: dict[str, Callable[..., bool]] = {
    fn.__name__: fn
    for fn in (touching, not_touching, height_above, within, aligned, joint_at_least)
}


def resolve(name: str) -> Callable[..., bool]:
    """The predicate called ``name``, or a ValueError listing the valid names."""
    try:
        return PREDICATES[name]
    except KeyError:
        raise ValueError(
            f"unknown predicate {name!r}; valid predicates: {', '.join(sorted(PREDICATES))}"
        ) from None


def above(
    model: mujoco.MjModel,
    data: mujoco.MjData,
    site: str,
    over: str,
    max_offset_m: float,
    min_height_m: float,
    max_height_m: float,
) -> bool:
    """True when ``site`` hangs over ``over``: horizontally within ``max_offset_m`` of it and
    between ``min_height_m`` and ``max_height_m`` higher (e.g. a part lined up over its slot).
    """
    pa = data.site_xpos[model.site(site).id]
    pb = data.site_xpos[model.site(over).id]
    height = pa[2] - pb[2]
    return bool(
        np.linalg.norm(pa[:2] - pb[:2]) <= max_offset_m and min_height_m <= height <= max_height_m
    )


# Registered here, after the table above, so tasks appending predicates never edit one line.
PREDICATES[above.__name__] = above
