"""Scripted expert for battery: the left arm holds the remote, the right arm slots the battery in.

The left arm presses its closed gripper onto the remote's button end and keeps it there. The right
arm grasps the battery top-down with its jaws across the cylinder, lifts it, turns it about the
vertical until its + end points at the bay's + terminal, lines its centre up over the bay's seat
(measured from where the battery actually sits in the jaws), lowers it into the bay (the jaws
reach down through the finger notch in the bay's side walls), sets it on the floor and lets go.

Which way the wrist turns depends on the battery's polarity: the battery lies along y either way
round, so half the episodes turn the wrist clockwise and half counter-clockwise (the jaws also land
on opposite sides). The plan picks the grasp side and turning direction whose wrist roll stays
inside its joint range all the way, checked through IK before anything moves.
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
)

DOWN = np.pi / 2
BATTERY_RADIUS_M = 0.007
# Tool centre above the battery's axis when grasping: the jaw tips (18 mm below the tool centre)
# end 0.5 mm above the table, so the flat pads hold the cylinder over most of its height; the
# wedge of the hinged jaw pushes a cylinder held only near the tips out of the grasp.
GRASP_ABOVE_AXIS_M = 0.0115
JAW_TIP_BELOW_TCP_M = 0.018
# Bay walls stand this far above the seat site (scene.xml: walls top at z = 8 mm, seat at 2 mm).
WALL_TOP_ABOVE_SEAT_M = 0.006
# The battery is let go this far above its seat; the jaws reach down through the bay's notch.
RELEASE_ABOVE_SEAT_M = 0.001
OPEN_RAD = 0.7
# Largest wrist turn per keyframe segment: keyframes interpolate the jaw direction as a vector,
# which stays well defined (and turns the short way) for turns well below pi.
_MAX_TURN_PER_SEGMENT_RAD = 1.0


@dataclasses.dataclass(frozen=True)
class BatteryStyle:
    """How the demonstrator moves.

    Attributes:
        speed: time scale of the whole script (1.0 = default, 1.2 = 20% faster).
        pause_s: hesitation over the battery before closing the gripper.
        lift_height_m: height of the tool centre while carrying the battery.
        hover_m: gap between the battery's underside and the bay's walls when lined up.
        turn_early: turn the battery while lifting and carrying it (True) or only once it hangs
            over the bay (False).
        hold_offset_m: where the left gripper presses along the remote's button end (+ towards
            the bay, from the middle of the button end).
    """

    speed: float = 1.0
    # What `varied` draws the speed from: the plan is made for these paces (the human operator
    # never drives it slower than the low end, experts.human.slowest_speed).
    SPEED_RANGE: ClassVar[tuple[float, float]] = (0.9, 1.2)
    pause_s: float = 0.0
    lift_height_m: float = 0.07
    hover_m: float = 0.015
    turn_early: bool = True
    hold_offset_m: float = 0.0

    def __post_init__(self) -> None:
        check_pace(self.speed, self.pause_s)
        if not 0.05 <= self.lift_height_m <= 0.09:
            raise ValueError(
                f"lift_height_m {self.lift_height_m} out of range; use 0.05..0.09 m (higher is "
                "out of the right arm's reach over the bay)"
            )
        if not 0.005 <= self.hover_m <= 0.03:
            raise ValueError(f"hover_m {self.hover_m} out of range; use 0.005..0.03 m")
        if not -0.02 <= self.hold_offset_m <= 0.02:
            raise ValueError(
                f"hold_offset_m {self.hold_offset_m} out of range; use -0.02..0.02 m (the button "
                "end is 8.8 cm long)"
            )

    @staticmethod
    def varied(rng: np.random.Generator) -> BatteryStyle:
        """A random style: speed, pause, carry height, hover gap, when to turn, where to hold."""
        return BatteryStyle(
            speed=float(rng.uniform(*BatteryStyle.SPEED_RANGE)),
            pause_s=float(rng.choice([0.0, rng.uniform(0.1, 0.3)])),
            lift_height_m=float(rng.uniform(0.06, 0.08)),
            hover_m=float(rng.uniform(0.01, 0.025)),
            turn_early=bool(rng.integers(2)),
            hold_offset_m=float(rng.choice([-0.015, 0.0, 0.015]) + rng.uniform(-0.003, 0.003)),
        )


def _site(env, name: str) -> np.ndarray:
    return env.data.site_xpos[env.model.site(name).id].copy()


def _from_tcp(offset_m):
    """A keyframe position ``offset_m`` away from where the right tool is when the move starts."""
    return lambda env: _site(env, "right/tcp") + np.asarray(offset_m, dtype=float)


def _axis_x(env, body: str) -> np.ndarray:
    """The body's x axis in the world, flattened onto the table plane and normalized."""
    axis = env.data.xmat[env.model.body(body).id].reshape(3, 3)[:, 0].copy()
    axis[2] = 0.0
    return axis / np.linalg.norm(axis)


def _turn(vector: np.ndarray, angle_rad: float) -> np.ndarray:
    """``vector`` turned by ``angle_rad`` about world z (counter-clockwise seen from above)."""
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    x, y, z = vector
    return np.array([c * x - s * y, s * x + c * y, z])


def _lifted(pos: np.ndarray, height_m: float) -> np.ndarray:
    """``pos`` raised to the tool height ``height_m``."""
    return np.array([pos[0], pos[1], height_m])


def _wrap(angle_rad: float) -> float:
    return float((angle_rad + np.pi) % (2 * np.pi) - np.pi)


class BatteryExpert(ScriptedExpert):
    """Left arm holds the remote; right arm grasps, lifts, turns, lines up, sets the battery in."""

    style_cls = BatteryStyle

    def _wrist_path_ok(
        self, start_q: np.ndarray, points: list[tuple[np.ndarray, np.ndarray]]
    ) -> bool:
        """Whether the right arm reaches each (tool position, jaw direction) of a path in turn
        without the wrist roll leaving its range (IK would then swap the jaws, turning the
        battery round) or jumping between neighbouring points."""
        ik = self._ik["right"]
        q = start_q.copy()
        for i, (pos, jaw) in enumerate(points):
            result = ik.solve(q, pos, DOWN, jaw_axis=jaw, max_iterations=200)
            _, rot = ik.forward(result.q_rad)
            jumped = i > 0 and abs(result.q_rad[4] - q[4]) > 1.2
            if result.position_error_m > 0.002 or rot[:, 1] @ jaw < 0.99 or jumped:
                return False
            q = result.q_rad
        return True

    def _choose_turn(
        self, plus_dir: np.ndarray, bay_dir: np.ndarray, grasp_at, over_bay: np.ndarray
    ) -> tuple[np.ndarray, float]:
        """Grasp jaw direction and signed turn (radians, about z) that bring the battery's + end
        onto the bay's + direction with the wrist roll in range all the way."""
        needed = _wrap(np.arctan2(bay_dir[1], bay_dir[0]) - np.arctan2(plus_dir[1], plus_dir[0]))
        other_way = needed - np.copysign(2 * np.pi, needed)
        candidates = []
        for side in (1.0, -1.0):
            jaw = side * _turn(plus_dir, np.pi / 2)  # across the battery
            for turn in (needed, other_way):
                candidates.append((abs(turn), side, jaw, turn))
        candidates.sort(key=lambda c: c[:2])
        start_q = self._q["right"]
        for _, _, jaw, turn in candidates:
            grasp = grasp_at(jaw)
            path = [(grasp, jaw)]
            for s in np.linspace(0.0, 1.0, 9):
                pos = (1 - s) * _lifted(grasp, self.style.lift_height_m) + s * over_bay
                path.append((pos, _turn(jaw, s * turn)))
            if self._wrist_path_ok(start_q, path):
                return jaw, turn
        raise RuntimeError("no wrist roll path turns this battery into the bay; check task.toml")

    def plan(self, env) -> dict[str, list[Keyframe]]:
        st = self.style
        k = 1.0 / st.speed
        battery = env.data.xpos[env.model.body("battery").id].copy()
        plus_dir = _axis_x(env, "battery")
        bay_dir = _axis_x(env, "remote")
        seat = _site(env, "bay_seat")

        def grasp_at(jaw: np.ndarray) -> np.ndarray:
            return grasp_point(battery, jaw, BATTERY_RADIUS_M) + [0.0, 0.0, GRASP_ABOVE_AXIS_M]

        # Rough tool position over the bay (the battery sits against the fixed jaw); the exact one
        # is measured once the battery hangs there.
        hover_above_seat = WALL_TOP_ABOVE_SEAT_M + BATTERY_RADIUS_M + st.hover_m
        over_bay = seat + [0.0, 0.0, hover_above_seat + GRASP_ABOVE_AXIS_M]
        jaw, turn = self._choose_turn(plus_dir, bay_dir, grasp_at, over_bay)
        jaw_final = _turn(jaw, turn)
        grasp = grasp_at(jaw)

        def over_seat(height_m: float):
            # Tool target that puts the battery's centre height_m above the seat, from where the
            # battery sits in the jaws when this move starts.
            def target(env) -> np.ndarray:
                held = _site(env, "right/tcp") - _site(env, "battery_center")
                return _site(env, "bay_seat") + [0.0, 0.0, height_m] + held

            return target

        t_above, t_down = 1.0 * k, 1.6 * k
        t_closed = t_down + st.pause_s + 0.4
        t_lifted = t_closed + 0.6 * k
        t_carried = t_lifted + 0.9 * k
        right = [
            Keyframe(t_above, grasp + [0.0, 0.0, 0.05], DOWN, tuple(jaw), OPEN_RAD),
            Keyframe(t_down, grasp, DOWN, tuple(jaw), OPEN_RAD),
            Keyframe(t_down + st.pause_s, grasp, DOWN, tuple(jaw), OPEN_RAD),
            Keyframe(t_closed, grasp, DOWN, tuple(jaw), GRIPPER_CLOSED_RAD),
            Keyframe(
                t_lifted, _lifted(grasp, st.lift_height_m), DOWN, tuple(jaw), GRIPPER_CLOSED_RAD
            ),
        ]
        if st.turn_early:
            # Turn while carrying, in segments that each turn less than _MAX_TURN_PER_SEGMENT_RAD.
            right += self._turning(
                _lifted(grasp, st.lift_height_m), over_bay, jaw, turn, t_lifted, t_carried
            )
            t_turned = t_carried
        else:
            right.append(Keyframe(t_carried, over_bay, DOWN, tuple(jaw), GRIPPER_CLOSED_RAD))
            t_turned = t_carried + 0.6 * k
            right += self._turning(over_bay, over_bay, jaw, turn, t_carried, t_turned)
        t_aligned = t_turned + 0.6 * k
        t_lowered = t_aligned + 0.5 * k
        t_settled = t_lowered + 0.2
        t_open = t_settled + 0.3
        t_clear = t_open + 0.2 * k
        t_up = t_clear + 0.4 * k
        t_retreat = t_up + 0.4 * k
        jf = tuple(jaw_final)
        release = over_seat(RELEASE_ABOVE_SEAT_M)
        right += [
            Keyframe(t_aligned, over_seat(hover_above_seat), DOWN, jf, GRIPPER_CLOSED_RAD),
            Keyframe(t_lowered, release, DOWN, jf, GRIPPER_CLOSED_RAD),
            Keyframe(t_settled, release, DOWN, jf, GRIPPER_CLOSED_RAD),
            Keyframe(t_open, release, DOWN, jf, OPEN_RAD),
            # Slide the fixed jaw off the battery's side before rising, or its friction can drag
            # the released battery up with it.
            Keyframe(t_clear, _from_tcp(0.003 * jaw_final), DOWN, jf, OPEN_RAD),
            Keyframe(t_up, _from_tcp([0.0, 0.0, 0.03]), DOWN, jf, OPEN_RAD),
            Keyframe(t_retreat, over_bay + [0.03, 0.0, 0.02], DOWN, jf, OPEN_RAD),
        ]

        # Left arm: closed gripper pressed 2 mm into the remote's button end, jaws across it.
        hold = _site(env, "remote_hold") + st.hold_offset_m * bay_dir
        press = hold + [0.0, 0.0, JAW_TIP_BELOW_TCP_M - 0.002]
        jaw_left = tuple(_turn(bay_dir, np.pi / 2))
        left = [
            Keyframe(1.0 * k, press + [0.0, 0.0, 0.05], DOWN, jaw_left, 0.0),
            Keyframe(1.6 * k, press, DOWN, jaw_left, 0.0),
        ]
        return {"left": left, "right": right}

    @staticmethod
    def _turning(
        start: np.ndarray, end: np.ndarray, jaw: np.ndarray, turn: float, t0: float, t1: float
    ) -> list[Keyframe]:
        """Keyframes moving the tool from ``start`` to ``end`` while the jaws turn by ``turn``
        about the vertical, in segments small enough for vector interpolation."""
        n = max(1, int(np.ceil(abs(turn) / _MAX_TURN_PER_SEGMENT_RAD)))
        frames = []
        for i in range(1, n + 1):
            s = i / n
            frames.append(
                Keyframe(
                    t0 + s * (t1 - t0),
                    (1 - s) * start + s * end,
                    DOWN,
                    tuple(_turn(jaw, s * turn)),
                    GRIPPER_CLOSED_RAD,
                )
            )
        return frames
