"""Environments (L2): one env class, and a Gymnasium id per task folder.

Importing ``aloha_bench`` registers ``AlohaBench/<TaskName>-v0`` for every ``tasks/<task_id>/``, so
``gymnasium.make("AlohaBench/TransferCube-v0", obs_mode="state")`` works anywhere.
"""

from __future__ import annotations

import gymnasium as gym

from aloha_bench.sim.task_spec import available_tasks, load_task_spec

__all__ = ["ENTRY_POINT", "available_tasks", "load_task_spec", "make", "register_all"]

ENTRY_POINT = "aloha_bench.envs.aloha_env:AlohaEnv"
# The real rig, for `gym.make(REAL_RIG_ID, robot_config="rig.toml")`; only a string here, so the
# robot drivers are imported only when it is made. Real joints never repeat exactly: registered
# as nondeterministic, so Gymnasium's checker does not demand identical rollouts.
REAL_RIG_ID = "AlohaBench/RealRig-v0"
REAL_RIG_ENTRY_POINT = "aloha_bench.robots.real_env:from_rig_toml"


def register_all() -> dict[str, str]:
    """Register every task folder with Gymnasium; returns {task_id: gym_id}. Idempotent."""
    ids = {}
    for task_id in available_tasks():
        spec = load_task_spec(task_id)
        if spec.gym_id not in gym.registry:
            gym.register(id=spec.gym_id, entry_point=ENTRY_POINT, kwargs={"task": task_id})
        ids[task_id] = spec.gym_id
    if REAL_RIG_ID not in gym.registry:
        gym.register(id=REAL_RIG_ID, entry_point=REAL_RIG_ENTRY_POINT, nondeterministic=True)
    return ids


def make(task: str, **kwargs):
    """Build the env of ``task`` (a task id like ``transfer_cube`` or a Gymnasium id).

    Raises:
        ValueError: the task is unknown; the message lists the valid task ids and Gymnasium ids.
    """
    ids = register_all()
    if task in ids:
        task = ids[task]
    if task not in ids.values():
        listing = ", ".join(f"{t} ({g})" for t, g in ids.items())
        raise ValueError(f"unknown task {task!r}; valid tasks: {listing}")
    return gym.make(task, **kwargs)
