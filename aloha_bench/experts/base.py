"""Scripted experts: Cartesian keyframes for each arm, played through IK as joint-target actions.

An expert reads privileged simulator state (prop poses) to place its keyframes, then on every
control step interpolates the tool target of each arm and solves IK for the 12 joint targets it
returns as the action, exactly what a leader arm would command. Because the env is position
controlled, the recorded actions are what a policy must learn to output.

A keyframe's position (and jaw direction) may be a function of the env: it is then resolved at
the moment the arm starts moving toward it (e.g. grasping a cube where it actually is after a
handover), which keeps the scripts short and robust without any hidden global state.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from aloha_bench import embodiment
from aloha_bench.sim.ik import ArmIK

GRIPPER_CLOSED_RAD = -0.17  # squeeze past contact, as a servo does when it grips
# The fixed jaw's inner face is this far on the tool's -y side of the tool centre (so101.xml).
FIXED_JAW_OFFSET_M = 0.0125
# Highest tool centre (m above the table) an SO-101 reaches pointing straight down, against the
# tool's horizontal distance from its arm's base (m). Measured with ArmIK (either arm, any
# heading: the same figures), 1 mm steps, IK miss < 0.5 mm. The top is ~10 cm at 12-15 cm out;
# at every distance checked (6-23 cm) what stops it is the wrist flex at its +95 degree limit.
# Tilting the tool reaches higher (pitch 1.35: 11.7-13.3 cm over 10-22 cm).
_TOP_DOWN_R_M = np.linspace(0.05, 0.24, 20)
_TOP_DOWN_Z_M = 0.001 * np.array(
    [64, 74, 81, 87, 92, 96, 98, 100, 101, 101, 100, 98, 95, 91, 87, 80, 73, 63, 50, 33]
)


def top_down_ceiling_m(r_m: float) -> float:
    """Highest tool height reachable pointing straight down at ``r_m`` from the arm's base.

    Outside the measured 5-24 cm the nearest end's value is returned, an overestimate there.
    """
    return float(np.interp(r_m, _TOP_DOWN_R_M, _TOP_DOWN_Z_M))


def top_down_ceiling_over(env, arm: str, point: np.ndarray) -> float:
    """``top_down_ceiling_m`` at ``point``'s horizontal distance from ``arm``'s base (m)."""
    base = env.data.xpos[env.model.body(f"{arm}/base").id]
    return top_down_ceiling_m(float(np.linalg.norm(point[:2] - base[:2])))


# Plan targets stay this far below the measured ceiling: the table's IK miss is < 0.5 mm, and 4 mm
# keeps the wrist off its limit where the ceiling's interpolation between 1 cm samples errs high.
REACH_MARGIN_M = 0.004


def capped_at_reach(env, arm: str, point: np.ndarray) -> np.ndarray:
    """``point``, lowered to ``REACH_MARGIN_M`` under the height ``arm`` reaches pointing straight
    down at its distance (``top_down_ceiling_over``); unchanged where it is already below."""
    top = top_down_ceiling_over(env, arm, point) - REACH_MARGIN_M
    return np.array([point[0], point[1], min(point[2], top)])


def raised_within_reach(env, arm: str, point: np.ndarray, rise_m: float) -> np.ndarray:
    """``point`` raised by ``rise_m``, or less where ``arm`` could not reach that high pointing
    straight down (``REACH_MARGIN_M`` under its ceiling), and never lowered below ``point``."""
    top = top_down_ceiling_over(env, arm, point) - REACH_MARGIN_M
    return point + [0.0, 0.0, max(min(rise_m, top - point[2]), 0.0)]


def grasp_point(
    center_m: np.ndarray, jaw_axis: np.ndarray, half_width_m: float, clearance_m: float = 0.003
) -> np.ndarray:
    """Tool target that brings the fixed jaw down ``clearance_m`` beside an object's side.

    ``jaw_axis`` is the tool's +y in the world (from fixed towards moving jaw) and ``half_width_m``
    the object's half width along it. Closing then pushes the object onto the fixed jaw.
    """
    jaw = np.asarray(jaw_axis, dtype=float)
    return np.asarray(center_m, dtype=float) - jaw * (
        half_width_m + clearance_m - FIXED_JAW_OFFSET_M
    )


@dataclasses.dataclass(frozen=True)
class Keyframe:
    """Where one arm's tool should be at time ``t_s`` (seconds from the episode start).

    Between keyframes the tool moves on a straight line with a smooth (min-jerk) time profile.
    ``pos`` is a world position or a function of the env returning one (resolved when the arm
    starts moving to this keyframe, e.g. to grasp an object where it is by then);
    ``pitch_rad`` is the approach axis below horizontal (pi/2 points down); ``jaw_axis`` is the
    world direction of the tool's +y (from the fixed jaw to the moving jaw), or a function of the
    env returning it (resolved like ``pos``); ``gripper_rad`` is the gripper command.
    """

    t_s: float
    pos: Any
    pitch_rad: float
    jaw_axis: Any
    gripper_rad: float


def _min_jerk(s: float) -> float:
    return s**3 * (10 - 15 * s + 6 * s**2)


class ScriptedExpert:
    """Base class: subclasses implement ``plan`` returning keyframes per arm.

    Args:
        style: the subclass's style dataclass (speed, pauses, approach...), recorded with demos.
    """

    style_cls: type = object

    def __init__(self, style: Any) -> None:
        self.style = style
        self._plans: dict[str, list[Keyframe]] = {}
        self._resolved: dict[str, dict[int, np.ndarray]] = {}
        self._ik: dict[str, ArmIK] = {}
        self._q: dict[str, np.ndarray] = {}
        self._model = None
        # Farthest the IK has landed from a planned tool position this episode (metres): a
        # plan within reach keeps it at a few millimetres.
        self.ik_miss_m = 0.0

    def plan(self, env) -> dict[str, list[Keyframe]]:
        """Keyframes per arm (``"left"``, ``"right"``) for the episode just reset in ``env``."""
        raise NotImplementedError(f"{type(self).__name__} must implement plan()")

    def reset(self, env) -> None:
        """Plan the episode from the freshly reset ``env`` (the unwrapped ``AlohaEnv``)."""
        if self._model is not env.model:
            self._model = env.model
            self._ik = {arm: ArmIK(env.model, arm) for arm in embodiment.ARMS}
        state = env.joint_state().astype(float)
        self._q = {arm: state[embodiment.arm_slice(arm)].copy() for arm in embodiment.ARMS}
        self._t0 = env.data.time
        self.ik_miss_m = 0.0
        plans = self.plan(env)
        # Every plan starts where the tool is now, so the first motion is continuous.
        self._plans = {}
        for arm, frames in plans.items():
            pos, rot = self._ik[arm].forward(self._q[arm])
            start = Keyframe(
                t_s=0.0,
                pos=pos,
                pitch_rad=float(np.arcsin(np.clip(-rot[2, 0], -1, 1))),
                jaw_axis=tuple(rot[:, 1]),
                gripper_rad=float(self._q[arm][5]),
            )
            self._plans[arm] = [start, *frames]
        self._resolved = {arm: {0: np.asarray(self._plans[arm][0].pos)} for arm in self._plans}
        self._resolved_jaw: dict[tuple[str, int], np.ndarray] = {}

    def act(self, env, t_s: float | None = None) -> np.ndarray:
        """The 12 joint targets for the current control step of ``env``.

        Args:
            env: the unwrapped env, just reset (first call) or stepped.
            t_s: the script's clock; default: the env's time since reset, one step ahead (the
                target is what the arm should reach by the end of this step). An operator model
                passes its own clock to hesitate or change pace.
        """
        t = env.data.time - self._t0 + embodiment.CONTROL_DT_S if t_s is None else t_s
        action = env.joint_state().astype(float)
        for arm in embodiment.ARMS:
            if arm in self._plans:
                action[embodiment.arm_slice(arm)] = self._arm_target(env, arm, t)
        return action

    def _position(self, env, arm: str, i: int) -> np.ndarray:
        if i not in self._resolved[arm]:
            pos = self._plans[arm][i].pos
            if callable(pos):
                pos = pos(env)
            self._resolved[arm][i] = np.asarray(pos, dtype=float)
        return self._resolved[arm][i]

    def _jaw(self, env, arm: str, i: int) -> np.ndarray:
        key = (arm, i)
        if key not in self._resolved_jaw:
            jaw = self._plans[arm][i].jaw_axis
            self._resolved_jaw[key] = np.asarray(jaw(env) if callable(jaw) else jaw, dtype=float)
        return self._resolved_jaw[key]

    def _arm_target(self, env, arm: str, t: float) -> np.ndarray:
        frames = self._plans[arm]
        i = int(np.searchsorted([f.t_s for f in frames], t, side="right"))
        if i >= len(frames):
            a = b = len(frames) - 1
            s = 1.0
        else:
            a, b = i - 1, i
            span = frames[b].t_s - frames[a].t_s
            s = _min_jerk(min(max((t - frames[a].t_s) / span, 0.0), 1.0)) if span > 0 else 1.0
        fa, fb = frames[a], frames[b]
        pa, pb = self._position(env, arm, a), self._position(env, arm, b)
        pos = (1 - s) * pa + s * pb
        pitch = (1 - s) * fa.pitch_rad + s * fb.pitch_rad
        jaw = (1 - s) * self._jaw(env, arm, a) + s * self._jaw(env, arm, b)
        result = self._ik[arm].solve(self._q[arm], pos, pitch, jaw_axis=jaw)
        self.ik_miss_m = max(self.ik_miss_m, result.position_error_m)
        q = result.q_rad
        q[5] = (1 - s) * fa.gripper_rad + s * fb.gripper_rad
        self._q[arm] = q
        return q


def check_pace(speed: float, pause_s: float) -> None:
    """Validate the two style fields every expert has (shared ranges, one message)."""
    if not 0.5 <= speed <= 2.0:
        raise ValueError(f"speed {speed} out of range; use 0.5..2.0")
    if not 0.0 <= pause_s <= 1.0:
        raise ValueError(f"pause_s {pause_s} out of range; use 0..1 s")


def strategy_of(style: Any) -> str:
    """A short label of a style's discrete choices, for dataset metadata and ``inspect``.

    A style may define ``strategy()``; otherwise its bool and str fields make the label.
    """
    if hasattr(style, "strategy"):
        return style.strategy()
    parts = [
        f"{f.name}={getattr(style, f.name)}"
        for f in dataclasses.fields(style)
        if isinstance(getattr(style, f.name), (bool, str))
    ]
    return ",".join(parts) or "default"


def style_from(cls: type, overrides: dict[str, Any] | None) -> Any:
    """Build a style dataclass from ``overrides``, naming unknown fields and valid ones."""
    overrides = overrides or {}
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(overrides) - names
    if unknown:
        raise ValueError(f"unknown style fields {sorted(unknown)}; valid: {sorted(names)}")
    return cls(**overrides)
