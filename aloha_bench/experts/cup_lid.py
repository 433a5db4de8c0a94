"""Scripted expert for cup_lid: the left arm holds the cup, the right arm pulls its lid off.

Both grippers grasp straight down. The left jaws close across the cup's handle bar and keep the cup
on the table while the right arm waits back from the cup. Once the cup is held (pinching the tab
earlier would only turn or drag the unheld cup), the right jaws close across the lid's pull tab,
slowly at the end so the lid is not shoved sideways, then pull the tab up: the press-fit weld
passes its breakaway force and the lid comes away, lifted almost straight up or peeled back
towards the right arm.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from aloha_bench.experts.base import (
    GRIPPER_CLOSED_RAD,
    Keyframe,
    ScriptedExpert,
    check_pace,
    grasp_point,
    raised_within_reach,
)

DOWN = np.pi / 2
HANDLE_HALF_M = 0.008  # half width of the handle bar across the jaws (scene.xml)
HANDLE_TOP_M = 0.01  # handle top above its centre site
TAB_HALF_M = 0.003  # half thickness of the pull tab across the jaws
LID_TOP_BELOW_TAB_SITE_M = 0.0075  # the tab site sits 7.5 mm above the lid's top face
# The fixed jaw lands this close beside each fin: a wider gap lets the moving jaw shove the
# cup or twist the lid before the fin meets the fixed jaw.
CLEARANCE_M = 0.001
# The jaw tips are 18 mm below the tool centre; keep them this far above the lid's top face.
TIP_M = 0.018
TIP_CLEARANCE_M = 0.003
# The right arm waits 10-16 cm from its base with its tool centre 107 mm up, where straight down
# reaches only 96-101 mm (base.top_down_ceiling_m): plan v1 waited there with the tool upright and
# the IK missed by 7-12 mm for two seconds. Tilted to this pitch the arm reaches 115-133 mm there;
# it comes upright on its way to the tab.
WAIT_PITCH = 1.35
# The tool comes down onto the tab from this high straight above it, or lower where the arm cannot
# reach that high pointing down (tabs beyond ~17 cm from the right base), keeping this margin under
# the ceiling (base.raised_within_reach). Plan v1's 20 mm put the farthest tab of 300 seeds
# (18.7 cm out) 4 mm above the ceiling; a tab 17.8 cm out was missed by 1.2 mm (seed 11). At
# 18.7 cm 12 mm remain, the jaw tips level with the tab's top, reached from higher up and 3 cm back.
ABOVE_TAB_M = 0.02


@dataclasses.dataclass(frozen=True)
class CupLidStyle:
    """How the demonstrator moves.

    Attributes:
        speed: time scale of the whole script (1.0 = default, 1.25 = 25% faster).
        pause_s: hesitation over the handle and the tab before closing each gripper.
        lift_m: how high the tab is pulled above where it was seated.
        peel_m: horizontal travel of the tab towards the right arm during the pull: 0 lifts the
            lid straight up, a few centimetres peel it back off the rim.
        handle_depth_m: how far below the handle's top the left tool centre grips.
        pull_pitch_rad: approach pitch the right gripper tilts to while pulling (pi/2 stays
            vertical); tilting lets the arm reach higher above the cup (SO-101 wrist range).
    """

    speed: float = 1.0
    # What `varied` draws the speed from: the plan is made for these paces (the human operator
    # never drives it slower than the low end, experts.human.slowest_speed).
    SPEED_RANGE: ClassVar[tuple[float, float]] = (0.85, 1.2)
    pause_s: float = 0.0
    lift_m: float = 0.035
    peel_m: float = 0.015
    handle_depth_m: float = 0.003
    pull_pitch_rad: float = 1.3

    def __post_init__(self) -> None:
        check_pace(self.speed, self.pause_s)
        if not 0.03 <= self.lift_m <= 0.06:
            raise ValueError(f"lift_m {self.lift_m} out of range; use 0.03..0.06 m")
        if not 0.0 <= self.peel_m <= 0.04:
            raise ValueError(f"peel_m {self.peel_m} out of range; use 0..0.04 m")
        if not 0.0 <= self.handle_depth_m <= 0.006:
            raise ValueError(f"handle_depth_m {self.handle_depth_m} out of range; use 0..0.006 m")
        if not 1.0 <= self.pull_pitch_rad <= DOWN:
            raise ValueError(f"pull_pitch_rad {self.pull_pitch_rad} out of range; use 1.0..pi/2")

    @staticmethod
    def varied(rng: np.random.Generator) -> CupLidStyle:
        """A random style: speed, pause, a near-vertical pull or a peel back (half each), lift
        height, grip height on the handle and wrist tilt during the pull."""
        peel = rng.uniform() < 0.5
        return CupLidStyle(
            speed=float(rng.uniform(*CupLidStyle.SPEED_RANGE)),
            pause_s=float(rng.choice([0.0, rng.uniform(0.1, 0.4)])),
            lift_m=float(rng.uniform(0.03, 0.04)),
            peel_m=float(rng.uniform(0.025, 0.04)) if peel else float(rng.uniform(0.01, 0.015)),
            handle_depth_m=float(rng.uniform(0.0, 0.006)),
            pull_pitch_rad=float(rng.uniform(1.2, 1.4)),
        )


def _toward(axis: np.ndarray, preferred: np.ndarray) -> np.ndarray:
    """``axis`` made horizontal, unit length and turned to the side of ``preferred``."""
    flat = np.array([axis[0], axis[1], 0.0])
    flat /= np.linalg.norm(flat)
    return flat if flat @ preferred >= 0 else -flat


def _back(env, point: np.ndarray) -> np.ndarray:
    """Horizontal unit vector from ``point`` towards the right arm's base (as the rig places it)."""
    back = env.data.xpos[env.model.body("right/base").id] - point
    back[2] = 0.0
    return back / np.linalg.norm(back)


class CupLidExpert(ScriptedExpert):
    """Left arm pinches the cup's handle, right arm pinches the lid's tab and pulls it off."""

    style_cls = CupLidStyle

    def plan(self, env) -> dict[str, list[Keyframe]]:
        st = self.style
        k = 1.0 / st.speed
        model, data = env.model, env.data
        cup_rot = data.xmat[model.body("cup").id].reshape(3, 3)
        lid_rot = data.xmat[model.body("lid").id].reshape(3, 3)
        handle = data.site_xpos[model.site("cup_handle").id].copy()
        # Jaws close across the handle and the tab (along their thin axis, the body's y), turned
        # so each wrist rolls little: unrolled, the left tool's +y is world +y, the right's -y.
        left_jaw = tuple(_toward(cup_rot[:, 1], np.array([0.0, 1.0, 0.0])))
        right_jaw = tuple(_toward(lid_rot[:, 1], np.array([0.0, -1.0, 0.0])))

        handle_grasp = grasp_point(handle, left_jaw, HANDLE_HALF_M)
        handle_grasp[2] += HANDLE_TOP_M - st.handle_depth_m

        def tab_grasp(env) -> np.ndarray:
            # Where the tab is once the cup is held: closing on the handle nudges the cup.
            tab = env.data.site_xpos[env.model.site("lid_tab").id]
            grasp = grasp_point(tab, right_jaw, TAB_HALF_M, clearance_m=CLEARANCE_M)
            grasp[2] += TIP_M + TIP_CLEARANCE_M - LID_TOP_BELOW_TAB_SITE_M
            return grasp

        def above_tab(env) -> np.ndarray:
            return raised_within_reach(env, "right", tab_grasp(env), ABOVE_TAB_M)

        def pulled(env) -> np.ndarray:
            # Up, and back along the line to the right arm's base by peel_m.
            tcp = env.data.site_xpos[env.index.tcp_sites["right"]].copy()
            return tcp + _back(env, tcp) * st.peel_m + [0.0, 0.0, st.lift_m]

        t_above, t_down = 1.0 * k, 1.6 * k
        t_left_closed = t_down + st.pause_s + 0.4
        t_right_above = t_left_closed + 0.3 * k
        t_right_down = t_right_above + 0.5 * k
        # Close fast until the jaws are just wider than the tab, then slowly, so the moving jaw
        # meets the tab gently instead of shoving the lid sideways against its press fit.
        t_right_near = t_right_down + st.pause_s + 0.15
        t_right_closed = t_right_near + 0.5
        t_pulled = t_right_closed + 0.2 + 1.0 * k
        open_left, open_right, near_right = 1.0, 0.45, 0.16
        left = [
            Keyframe(t_above, handle_grasp + [0, 0, 0.035], DOWN, left_jaw, open_left),
            Keyframe(t_down, handle_grasp, DOWN, left_jaw, open_left),
            Keyframe(t_down + st.pause_s, handle_grasp, DOWN, left_jaw, open_left),
            Keyframe(t_left_closed, handle_grasp, DOWN, left_jaw, GRIPPER_CLOSED_RAD),
        ]
        # While the left arm takes the cup, the right waits higher and nearer its own base, its
        # tool tilted (WAIT_PITCH), clear of a cup nudged by the grasp.
        start = tab_grasp(env)
        wait = start + _back(env, start) * 0.03 + [0.0, 0.0, 0.035]
        right = [
            Keyframe(t_above, wait, WAIT_PITCH, right_jaw, open_right),
            Keyframe(t_left_closed, wait, WAIT_PITCH, right_jaw, open_right),
            Keyframe(t_right_above, above_tab, DOWN, right_jaw, open_right),
            Keyframe(t_right_down, tab_grasp, DOWN, right_jaw, open_right),
            Keyframe(t_right_down + st.pause_s, tab_grasp, DOWN, right_jaw, open_right),
            Keyframe(t_right_near, tab_grasp, DOWN, right_jaw, near_right),
            Keyframe(t_right_closed, tab_grasp, DOWN, right_jaw, GRIPPER_CLOSED_RAD),
            Keyframe(t_right_closed + 0.2, tab_grasp, DOWN, right_jaw, GRIPPER_CLOSED_RAD),
            Keyframe(t_pulled, pulled, st.pull_pitch_rad, right_jaw, GRIPPER_CLOSED_RAD),
        ]
        return {"left": left, "right": right}
