"""Compose the four-arm SO-ARM101 rig and a task's props into one MuJoCo model (dm-control mjcf).

The task's ``scene.xml`` is the root, so its free props stay top-level bodies (MuJoCo only allows
free joints there) under their own names (``cube``, ``peg``). Onto it we attach ``assets/rig.xml``
(table, lights, cameras: ``rig/...``) and ``assets/so101.xml`` four times, at the rig's mount sites:
followers ``left/``, ``right/`` and leaders ``left_leader/``, ``right_leader/``.

Leaders are kinematic mirrors of the action: no actuators, no collisions, gravity compensated, in
geom group 3 (hidden from policy cameras), their joints written directly by the env each step.
"""

from __future__ import annotations

import dataclasses
import functools

import mujoco
import numpy as np
from dm_control import mjcf

from aloha_bench import embodiment, keys, paths
from aloha_bench.sim.task_spec import TaskSpec, load_task_spec

FOLLOWERS = tuple(embodiment.ARMS)
LEADERS = tuple(f"{arm}_leader" for arm in embodiment.ARMS)
LEADER_GEOM_GROUP = 3
# MuJoCo camera names of the policy cameras.
CAMERA_MJCF_NAMES: dict[str, str] = {
    "top": "rig/top",
    "front": "rig/front",
    "left_wrist": "left/wrist_camera",
    "right_wrist": "right/wrist_camera",
}
# Contact bitmasks. An arm never collides with itself (a 5-DOF arm folding through its own links
# is prevented by its joint ranges, and self-contacts only cost speed); arms do collide with each
# other, the table and every prop. Collision needs (contype_a & conaffinity_b) or the converse.
_WORLD_BIT, _LEFT_BIT, _RIGHT_BIT = 1, 2, 4
_CONTACT_BITS: dict[str, tuple[int, int]] = {
    "left": (_LEFT_BIT, _WORLD_BIT | _RIGHT_BIT),
    "right": (_RIGHT_BIT, _WORLD_BIT | _LEFT_BIT),
}
_PROP_BITS = (_WORLD_BIT, _WORLD_BIT | _LEFT_BIT | _RIGHT_BIT)


def _strip_to_leader(arm: mjcf.RootElement) -> None:
    """Turn a follower model into a kinematic, non-colliding, hidden-from-policy mirror."""
    for actuator in list(arm.actuator.all_children()):
        actuator.remove()
    for camera in arm.find_all("camera"):
        camera.remove()
    for site in arm.find_all("site"):
        site.remove()
    for geom in arm.find_all("geom"):
        geom.contype = 0
        geom.conaffinity = 0
        geom.group = LEADER_GEOM_GROUP
        geom.rgba = (0.35, 0.55, 0.85, 1.0)
    for body in arm.find_all("body"):
        body.gravcomp = 1
    for joint in arm.find_all("joint"):
        joint.frictionloss = 0


def build_mjcf(spec: TaskSpec) -> mjcf.RootElement:
    """The whole scene of ``spec`` as an mjcf tree (to inspect or extend before compiling)."""
    root = mjcf.from_path(str(spec.scene_path))
    root.model = spec.task_id
    # Global settings belong to the root; set them here, once, for every task.
    root.compiler.angle = "radian"
    root.option.timestep = embodiment.PHYSICS_DT_S
    # implicitfast integrates the stiff servo gains (kp ~ 1000) stably at 2 ms.
    root.option.integrator = "implicitfast"
    root.option.cone = "elliptic"
    # Higher impratio makes frictional grasps stick instead of slowly slipping (MuJoCo docs).
    root.option.impratio = 10
    root.visual.quality.shadowsize = 0
    root.visual.quality.offsamples = 0
    root.visual.__getattr__("global").offwidth = 640
    root.visual.__getattr__("global").offheight = 480
    root.visual.map.znear = 0.01

    for geom in root.find_all("geom"):
        geom.contype, geom.conaffinity = _PROP_BITS

    rig = mjcf.from_path(str(paths.assets_dir() / "rig.xml"))
    root.attach(rig)

    arm_path = str(paths.assets_dir() / "so101.xml")
    for name in FOLLOWERS + LEADERS:
        arm = mjcf.from_path(arm_path)
        arm.model = name
        # embodiment.py is the one source of joint ranges (the real driver clamps to the same).
        for joint, (low, high) in embodiment.ARM_LIMITS_RAD.items():
            arm.find("joint", joint).range = (low, high)
            actuator = arm.find("actuator", joint)
            if actuator is not None:
                actuator.ctrlrange = (low, high)
        if name in LEADERS:
            _strip_to_leader(arm)
        else:
            contype, conaffinity = _CONTACT_BITS[name]
            for geom in arm.find_all("geom"):
                geom.contype, geom.conaffinity = contype, conaffinity
        # Attach at the root (not to the rig's site) so names read `left/elbow_flex`, not
        # `rig/left/elbow_flex`; the rig sits at the world origin, so the poses agree.
        mount = rig.find("site", f"{name}_mount")
        frame = root.attach(arm)
        frame.pos = mount.pos
        frame.euler = mount.euler
    return root


@functools.lru_cache(maxsize=16)
def _compiled_xml(task_id: str) -> tuple[str, tuple[tuple[str, bytes], ...]]:
    root = build_mjcf(load_task_spec(task_id))
    return root.to_xml_string(), tuple(root.get_assets().items())


def build_model(spec: TaskSpec) -> mujoco.MjModel:
    """Compile the task's scene to a fresh ``MjModel`` (the XML is built once per process)."""
    xml, assets = _compiled_xml(spec.task_id)
    return mujoco.MjModel.from_xml_string(xml, dict(assets))


@dataclasses.dataclass(frozen=True)
class RigIndex:
    """Integer addresses of the rig's joints, actuators and sites in one compiled model.

    Looked up once so the per-step path indexes arrays instead of searching names.
    """

    follower_qpos: np.ndarray  # (12,) qpos addresses, embodiment order
    follower_dof: np.ndarray  # (12,) dof addresses
    follower_actuators: np.ndarray  # (12,) actuator ids
    leader_qpos: np.ndarray  # (12,)
    leader_dof: np.ndarray  # (12,)
    tcp_sites: dict[str, int]  # arm -> id of the tool-centre-point site
    cameras: dict[str, int]  # policy camera name -> camera id

    @classmethod
    def from_model(cls, model: mujoco.MjModel) -> RigIndex:
        def joint_ids(arm: str) -> list[int]:
            return [model.joint(f"{arm}/{j}").id for j in embodiment.ARM_JOINTS]

        follower = [j for arm in FOLLOWERS for j in joint_ids(arm)]
        leader = [j for arm in LEADERS for j in joint_ids(arm)]
        actuators = [
            model.actuator(f"{arm}/{j}").id for arm in FOLLOWERS for j in embodiment.ARM_JOINTS
        ]
        return cls(
            follower_qpos=model.jnt_qposadr[follower].copy(),
            follower_dof=model.jnt_dofadr[follower].copy(),
            follower_actuators=np.array(actuators),
            leader_qpos=model.jnt_qposadr[leader].copy(),
            leader_dof=model.jnt_dofadr[leader].copy(),
            tcp_sites={arm: model.site(f"{arm}/tcp").id for arm in FOLLOWERS},
            cameras={cam: model.camera(CAMERA_MJCF_NAMES[cam]).id for cam in keys.CAMERAS},
        )
