"""Inverse kinematics for one SO-ARM101: damped least squares with ``mj_jacSite``.

A 5-DOF arm cannot take arbitrary orientations: its approach axis always lies in the vertical plane
through the shoulder-pan axis (SIM_NOTES.md). So a target is (tool position, pitch of the approach
axis below horizontal, direction the jaws close along) instead of a full pose. Because the tool
point sits on the wrist-roll axis, roll moves neither the position nor the pitch: four joints (pan,
lift, elbow, wrist flex) solve position + pitch (a square 4x4 system), and the roll is then set in
closed form to line the jaws up. Targets that break the 5-DOF constraint are thus impossible to
state, instead of stalling the solver.
"""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np

from aloha_bench import embodiment

_SOLVE_JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex")
# Pitch error (radians) is weighted like 0.1 m of position error, so neither dominates.
_PITCH_WEIGHT_M = 0.1


@dataclasses.dataclass(frozen=True)
class IKResult:
    """Joint solution for one arm (6 values, embodiment order) and its residual errors."""

    q_rad: np.ndarray
    position_error_m: float
    pitch_error_rad: float
    iterations: int


class ArmIK:
    """IK for one follower arm of a compiled rig model, on a private scratch ``MjData``.

    Args:
        model: the compiled rig model (``aloha_bench.sim.rig.build_model``).
        arm: ``"left"`` or ``"right"``.
    """

    def __init__(self, model: mujoco.MjModel, arm: str, damping: float = 1e-3) -> None:
        self.model = model
        self.data = mujoco.MjData(model)
        self.arm = arm
        joints = [model.joint(f"{arm}/{j}") for j in embodiment.ARM_JOINTS]
        self._qpos = np.array([model.jnt_qposadr[j.id] for j in joints])
        self._dof = np.array([model.jnt_dofadr[j.id] for j in joints])
        self._low = np.array([model.jnt_range[j.id][0] for j in joints])
        self._high = np.array([model.jnt_range[j.id][1] for j in joints])
        self._site = model.site(f"{arm}/tcp").id
        self._base = model.body(f"{arm}/base").id
        mujoco.mj_kinematics(model, self.data)  # the base never moves: its position is fixed
        self._damping = damping
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))

    def _set(self, q: np.ndarray) -> None:
        self.data.qpos[self._qpos] = q
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)

    def forward(self, q_rad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tool position (3,) and tool rotation matrix (3, 3; columns x=approach, y=jaw closing)."""
        self._set(np.asarray(q_rad, dtype=float))
        return (
            self.data.site_xpos[self._site].copy(),
            self.data.site_xmat[self._site].reshape(3, 3).copy(),
        )

    def solve(
        self,
        q_init_rad: np.ndarray,
        target_pos_m: np.ndarray,
        pitch_rad: float,
        jaw_axis: np.ndarray | None = None,
        max_iterations: int = 50,
        tolerance_m: float = 1e-4,
    ) -> IKResult:
        """Joint angles that put the tool at ``target_pos_m`` with the given approach pitch.

        Args:
            q_init_rad: (6,) starting joints (warm start; the gripper value is passed through).
            target_pos_m: (3,) world position of the tool centre point.
            pitch_rad: approach axis below horizontal; pi/2 points straight down.
            jaw_axis: (3,) world direction the jaws should close along; it is projected onto the
                plane normal to the approach axis. ``None`` keeps the wrist roll of ``q_init_rad``.
            max_iterations: cap on damped least-squares iterations.
            tolerance_m: stop once the weighted error norm is below this.
        """
        q = np.clip(np.asarray(q_init_rad, dtype=float).copy(), self._low, self._high)
        target = np.asarray(target_pos_m, dtype=float)
        # The wanted approach axis lies in the vertical plane through the pan axis and the target.
        radial = target - self.data.xpos[self._base]
        radial[2] = 0.0
        radial /= max(np.linalg.norm(radial), 1e-9)
        want = np.cos(pitch_rad) * radial - np.sin(pitch_rad) * np.array([0.0, 0.0, 1.0])
        normal = np.cross(np.array([0.0, 0.0, 1.0]), radial)  # pitch rotates about this axis
        solve = slice(0, len(_SOLVE_JOINTS))
        dofs = self._dof[solve]
        error = np.zeros(4)
        jac = np.empty((4, len(dofs)))
        iterations = 0
        for iterations in range(1, max_iterations + 1):  # noqa: B007 (reported below)
            self._set(q)
            approach = self.data.site_xmat[self._site].reshape(3, 3)[:, 0]
            error[:3] = target - self.data.site_xpos[self._site]
            # Angle from the approach axis to the wanted one, about the plane's normal.
            error[3] = _PITCH_WEIGHT_M * (np.cross(approach, want) @ normal)
            if np.linalg.norm(error) < tolerance_m:
                break
            mujoco.mj_jacSite(self.model, self.data, self._jacp, self._jacr, self._site)
            jac[:3] = self._jacp[:, dofs]  # (3, 4) d tool position / dq
            jac[3] = _PITCH_WEIGHT_M * (normal @ self._jacr[:, dofs])  # (4,) rotation about normal
            lhs = jac @ jac.T + self._damping**2 * np.eye(4)
            q[solve] += jac.T @ np.linalg.solve(lhs, error)
            q = np.clip(q, self._low, self._high)
        if jaw_axis is not None:
            q[4] = self._roll_for(q, np.asarray(jaw_axis, dtype=float))
        self._set(q)
        approach = self.data.site_xmat[self._site].reshape(3, 3)[:, 0]
        return IKResult(
            q_rad=q,
            position_error_m=float(np.linalg.norm(target - self.data.site_xpos[self._site])),
            pitch_error_rad=float(abs(np.arcsin(np.clip(-approach[2], -1, 1)) - pitch_rad)),
            iterations=iterations,
        )

    def _roll_for(self, q: np.ndarray, jaw_axis: np.ndarray) -> float:
        """Wrist roll that turns the tool's +y axis (fixed jaw to moving jaw) onto ``jaw_axis``.

        The fixed jaw sits on the tool's -y side, so the direction matters to a grasp plan. If the
        exact roll is past the joint's range, the jaws are turned over (same closing line, jaws
        swapped), the nearest reachable choice.
        """
        q0 = q.copy()
        q0[4] = 0.0
        self._set(q0)
        frame = self.data.site_xmat[self._site].reshape(3, 3)
        y0, z0 = frame[:, 1], frame[:, 2]
        # Rolling by theta about the approach axis maps y0 to cos(theta) y0 + sin(theta) z0.
        theta = float(np.arctan2(jaw_axis @ z0, jaw_axis @ y0))
        for candidate in (theta, theta + 2 * np.pi, theta - 2 * np.pi):
            if self._low[4] <= candidate <= self._high[4]:
                return candidate
        flipped = theta - np.pi if theta > 0 else theta + np.pi
        return float(np.clip(flipped, self._low[4], self._high[4]))
