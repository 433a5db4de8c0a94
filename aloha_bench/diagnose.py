"""Why a transfer_cube policy loses the cube after the handover (L4): two measurements.

1. :func:`grasp_tolerance`: the scripted expert with its left grasp shifted by a few millimetres
   (along the jaw axis, across it, or in height): how far off can the left gripper close and
   still hold the cube to the end of the episode? This is the margin a learned policy has.
2. :func:`handover_grasp_errors`: a trained policy's left-arm target at the moment it closes the
   left gripper, against where the expert would grasp the cube at that moment (the cube's pose,
   the same grasp rule): is the policy inside that margin?

Both return plain records; :func:`write_handover_report` draws the tables and the plot that
``aloha-bench diagnose-handover`` writes (results/handover/).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aloha_bench import embodiment, envs
from aloha_bench.experts.base import grasp_point
from aloha_bench.experts.transfer_cube import CUBE_HALF_M, TransferCubeExpert, TransferCubeStyle

# torch before any MuJoCo context: triton's LLVM (loaded with torchvision) crashes once Mesa's
# has loaded (README, "The environment").
from aloha_bench.policies import load
from aloha_bench.sim.ik import ArmIK

TASK = "transfer_cube"
AXES = ("jaw", "across", "z")
# The left gripper counts as closing when its target passes halfway between the demos' open
# (0.8 rad) and closed (-0.17 rad) commands; the demos close it after step 150.
CLOSING_RAD = 0.3
CLOSE_AFTER_STEP = 150
# Keyframes of the left arm's plan that hold the grasp point (descend, close).
_LEFT_GRASP_KEYFRAMES = (2, 3)


def _cube_jaw_axis(sim) -> np.ndarray:
    """The expert's left jaw axis: the cube face normal closest to world +y, horizontal."""
    frame = sim.data.xmat[sim.model.body("cube").id].reshape(3, 3)
    best = int(np.argmax(np.abs(frame[1])))
    normal = frame[:, best] * np.sign(frame[1, best])
    normal[2] = 0.0
    return normal / np.linalg.norm(normal)


def _offset_world(sim, axis: str, offset_m: float) -> np.ndarray:
    jaw = _cube_jaw_axis(sim)
    direction = {"jaw": jaw, "across": np.array([-jaw[1], jaw[0], 0.0]), "z": np.eye(3)[2]}[axis]
    return offset_m * direction


class _ShiftedExpert(TransferCubeExpert):
    """The expert, with its left grasp point moved by ``offset_m`` along ``axis``."""

    def __init__(self, style: TransferCubeStyle, axis: str, offset_m: float) -> None:
        super().__init__(style)
        self.axis, self.offset_m = axis, offset_m

    def plan(self, env) -> dict:
        plans = super().plan(env)
        left = list(plans["left"])
        for i in _LEFT_GRASP_KEYFRAMES:
            target = left[i].pos
            left[i] = dataclasses.replace(
                left[i], pos=lambda e, t=target: t(e) + _offset_world(e, self.axis, self.offset_m)
            )
        plans["left"] = left
        return plans


def grasp_tolerance(
    offsets_mm: Sequence[float],
    axis: str = "jaw",
    episodes: int = 10,
    left_clearance_m: float | None = None,
) -> list[dict[str, Any]]:
    """Expert success with the left grasp shifted, one record per offset.

    Args:
        offsets_mm: shifts of the left grasp point, millimetres (+ jaw: towards the moving jaw).
        axis: ``"jaw"`` (the axis the jaws close along), ``"across"`` (horizontal, across it) or
            ``"z"`` (up).
        episodes: seeds 0..episodes-1 per offset.
        left_clearance_m: the style's gap between the left fixed jaw and the cube (None: the
            default style's).

    Returns:
        ``{"axis", "offset_mm", "left_clearance_mm", "episodes", "success_end", "success_any"}``
        with the rates as fractions.
    """
    if axis not in AXES:
        raise ValueError(f"unknown axis {axis!r}; choose one of {AXES}")
    style = TransferCubeStyle()
    if left_clearance_m is not None:
        style = dataclasses.replace(style, left_clearance_m=left_clearance_m)
    env = envs.make(TASK, obs_mode="state")
    rows = []
    try:
        for offset in offsets_mm:
            end = anywhere = 0
            for seed in range(episodes):
                env.reset(seed=seed)
                expert = _ShiftedExpert(style, axis, offset / 1000.0)
                expert.reset(env.unwrapped)
                reached = False
                for _ in range(env.unwrapped.task.episode_steps):
                    *_, info = env.step(expert.act(env.unwrapped))
                    reached |= bool(info["is_success"])
                end += bool(info["is_success"])
                anywhere += reached
            rows.append(
                {
                    "axis": axis,
                    "offset_mm": float(offset),
                    "left_clearance_mm": 1000.0 * style.left_clearance_m,
                    "episodes": episodes,
                    "success_end": end / episodes,
                    "success_any": anywhere / episodes,
                }
            )
    finally:
        env.close()
    return rows


def handover_grasp_errors(run: str | Path, episodes: int = 20, seed: int = 1000) -> list[dict]:
    """Where a trained policy closes the left gripper, against the expert's grasp point.

    Args:
        run: a state- or pixels-mode transfer_cube run folder (``train``'s output).
        episodes: evaluation seeds ``seed .. seed + episodes - 1``.

    Returns:
        One record per episode: ``seed``, ``close_step`` (None if the left gripper never
        closed), the target's error from the expert's grasp point along the jaw axis, across
        it and in height (mm), ``success_end`` and ``success_any``.
    """
    policy = load(run)
    config = policy.config
    env = envs.make(
        TASK,
        obs_mode=config.obs_mode,
        cameras=list(config.cameras) or None,
        image_size=tuple(config.image_size),
    )
    sim = env.unwrapped
    ik = ArmIK(sim.model, "left")
    left = embodiment.arm_slice("left")
    clearance = TransferCubeStyle().left_clearance_m
    rows = []
    try:
        for episode_seed in range(seed, seed + episodes):
            obs, _ = env.reset(seed=episode_seed)
            policy.reset()
            row: dict[str, Any] = {"seed": episode_seed, "close_step": None}
            previous, reached = None, False
            for step in range(sim.task.episode_steps):
                action = policy.select_action(obs)
                gripper = float(action[left][5])
                closing = previous is not None and previous > CLOSING_RAD >= gripper
                if row["close_step"] is None and closing and step > CLOSE_AFTER_STEP:
                    tool, _ = ik.forward(np.asarray(action[left], dtype=float))
                    cube = sim.data.xpos[sim.model.body("cube").id]
                    jaw = _cube_jaw_axis(sim)
                    want = grasp_point(cube, jaw, CUBE_HALF_M, clearance_m=clearance)
                    error = tool - (want + np.array([0.0, 0.0, 0.004]))
                    across = np.array([-jaw[1], jaw[0], 0.0])
                    row.update(
                        close_step=step,
                        jaw_mm=1000.0 * float(error @ jaw),
                        across_mm=1000.0 * float(error @ across),
                        z_mm=1000.0 * float(error[2]),
                    )
                previous = gripper
                obs, _, _, _, info = env.step(action)
                reached |= bool(info["is_success"])
            rows.append({**row, "success_end": bool(info["is_success"]), "success_any": reached})
    finally:
        env.close()
    return rows


def write_handover_report(
    out: str | Path, tolerance: list[dict], errors: list[dict] | None, scale: str
) -> list[Path]:
    """``tolerance.csv``, ``grasp_errors.csv`` (with a run), ``handover.png`` and a summary."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "tolerance.csv"]
    tol = pd.DataFrame(tolerance)
    tol.to_csv(written[0], index=False)
    fig, axes = plt.subplots(1, 2 if errors else 1, figsize=(11 if errors else 6, 4), dpi=110)
    axes = np.atleast_1d(axes)
    for (axis, clearance), part in tol.groupby(["axis", "left_clearance_mm"]):
        axes[0].plot(
            part["offset_mm"],
            100 * part["success_end"],
            "o-",
            label=f"{axis} axis, clearance {clearance:.1f} mm",
        )
    axes[0].set_xlabel("left grasp shifted by (mm)")
    axes[0].set_ylabel("expert success at episode end (%)")
    axes[0].set_title("How far off can the left gripper close?")
    axes[0].grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if errors:
        written.append(out / "grasp_errors.csv")
        err = pd.DataFrame(errors)
        err.to_csv(written[-1], index=False)
        closed = err.dropna(subset=["jaw_mm"])
        for outcome, colour in ((True, "tab:green"), (False, "tab:red")):
            part = closed[closed["success_end"] == outcome]
            axes[1].scatter(
                part["jaw_mm"],
                part["z_mm"],
                c=colour,
                label="held at the end" if outcome else "lost or never held",
            )
        axes[1].set_xlabel("policy's left target - expert grasp, along the jaws (mm)")
        axes[1].set_ylabel("... in height (mm)")
        axes[1].set_title("Where the policy closes the left gripper")
        axes[1].grid(alpha=0.3)
        axes[1].legend(fontsize=8)
    fig.suptitle(scale, fontsize=8)
    fig.tight_layout()
    written.append(out / "handover.png")
    fig.savefig(written[-1])
    plt.close(fig)
    summary = {"scale": scale, "tolerance": tolerance, "errors": errors}
    written.append(out / "handover.json")
    written[-1].write_text(json.dumps(summary, indent=2) + "\n")
    return written
