"""The bimanual SO-ARM101 embodiment: joint names, order, units, limits, home pose, rates.

Defined once here; the simulator (``sim``), the real rig (``robots``) and every dataset use these
names and this order, so a policy never learns which backend produced its data.

Conventions (shared by sim and real):
  * Order: the left arm's six joints, then the right arm's six joints; per arm
    shoulder_pan, shoulder_lift, elbow_flex, wrist_flex, wrist_roll, gripper (Feetech ids 1..6).
  * Units: radians for every joint, the gripper included (the moving jaw's angle).
  * Zero: mid-range, as LeRobot's degree mode calibrates the SO-101. At zero the upper arm points
    straight up, the forearm, wrist and gripper point straight forward (towards the other arm).
  * Directions, seen in each arm's own frame (x forward, z up, right-handed):
    shoulder_pan  +  turns the arm to its left (about +z);
    shoulder_lift +  tilts the upper arm forward (about +y);
    elbow_flex    +  bends the forearm down (about +y);
    wrist_flex    +  bends the gripper down (about +y);
    wrist_roll    +  rolls the gripper about its approach axis (+x);
    gripper       +  opens; 0 is jaws touching, negative squeezes (how a servo grips).

Only the standard library and numpy may be imported here (layer L0).
"""

from __future__ import annotations

import math

import numpy as np

ARMS: tuple[str, ...] = ("left", "right")
ARM_JOINTS: tuple[str, ...] = (
    "shoulder_pan",
    "shoulder_lift",
    "elbow_flex",
    "wrist_flex",
    "wrist_roll",
    "gripper",
)
# Feetech bus ids of each arm's servos: motor i+1 drives ARM_JOINTS[i] (LeRobot's SO-101 layout).
MOTOR_IDS: dict[str, int] = {name: i + 1 for i, name in enumerate(ARM_JOINTS)}

JOINTS_PER_ARM = len(ARM_JOINTS)
STATE_DIM = len(ARMS) * JOINTS_PER_ARM
ACTION_DIM = STATE_DIM
# Names of the 12 entries of observation.state and action, e.g. "left_shoulder_pan".
STATE_NAMES: tuple[str, ...] = tuple(f"{arm}_{joint}" for arm in ARMS for joint in ARM_JOINTS)
GRIPPER_INDICES: tuple[int, ...] = tuple(
    i for i, name in enumerate(STATE_NAMES) if name.endswith("_gripper")
)

# Joint ranges of the SO-ARM101 (public spec, mid-range zero), in degrees for readability.
_LIMITS_DEG: dict[str, tuple[float, float]] = {
    "shoulder_pan": (-110.0, 110.0),
    "shoulder_lift": (-100.0, 100.0),
    "elbow_flex": (-97.0, 97.0),
    "wrist_flex": (-95.0, 95.0),
    "wrist_roll": (-157.0, 163.0),
    "gripper": (-10.0, 100.0),
}
ARM_LIMITS_RAD: dict[str, tuple[float, float]] = {
    name: (math.radians(lo), math.radians(hi)) for name, (lo, hi) in _LIMITS_DEG.items()
}
STATE_LOW_RAD = np.array([ARM_LIMITS_RAD[j][0] for _ in ARMS for j in ARM_JOINTS])
STATE_HIGH_RAD = np.array([ARM_LIMITS_RAD[j][1] for _ in ARMS for j in ARM_JOINTS])

# Folded "sleep" pose both arms start from: upper arm tilted back, forearm folded up over it,
# gripper pointing forward-down and closed. Two arms facing each other would collide at the
# all-zero pose, so the rig never rests there.
ARM_HOME_RAD: dict[str, float] = {
    "shoulder_pan": 0.0,
    "shoulder_lift": -0.6,
    "elbow_flex": 0.4,
    "wrist_flex": 1.0,
    "wrist_roll": 0.0,
    "gripper": 0.0,
}
HOME_STATE_RAD = np.array([ARM_HOME_RAD[j] for _ in ARMS for j in ARM_JOINTS])

CONTROL_RATE_HZ = 50.0
CONTROL_DT_S = 1.0 / CONTROL_RATE_HZ
PHYSICS_DT_S = 0.002
SUBSTEPS_PER_CONTROL = round(CONTROL_DT_S / PHYSICS_DT_S)

# STS3215 magnetic encoder resolution, used by the real driver and the quantization model.
SERVO_TICKS_PER_TURN = 4096
# STS3215 stall torque at 7.4 V (datasheet ~30 kg.cm); the gripper is limited lower, as LeRobot
# does on the real arm (Max_Torque_Limit 500 of 1000) to keep it from overheating while squeezing.
SERVO_STALL_TORQUE_NM = 2.94
GRIPPER_TORQUE_FRACTION = 0.5


def state_index(arm: str, joint: str) -> int:
    """Index of ``arm``'s ``joint`` in observation.state and action vectors."""
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; expected one of {ARMS}")
    if joint not in ARM_JOINTS:
        raise ValueError(f"unknown joint {joint!r}; expected one of {ARM_JOINTS}")
    return ARMS.index(arm) * JOINTS_PER_ARM + ARM_JOINTS.index(joint)


def arm_slice(arm: str) -> slice:
    """Slice of ``arm``'s six entries in a 12-D state or action vector."""
    start = state_index(arm, ARM_JOINTS[0])
    return slice(start, start + JOINTS_PER_ARM)


def clip_to_limits(q_rad: np.ndarray) -> np.ndarray:
    """Clip a (..., 12) joint vector to the joint ranges (the env's documented action clipping)."""
    return np.clip(q_rad, STATE_LOW_RAD, STATE_HIGH_RAD)
