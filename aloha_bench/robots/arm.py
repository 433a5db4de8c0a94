"""One SO-ARM101 arm (six STS3215 servos on one bus) in the embodiment's radians.

A *follower* holds torque and takes joint goals, each through :func:`safety.safe_goal`; a *leader*
is moved by hand, so its torque stays off and it is only read. Whatever happens -- normal exit,
exception, Ctrl-C -- torque is switched off when the arm is left (LeRobot's
``disable_torque_on_disconnect``), so no servo keeps fighting a stale goal.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Literal

import numpy as np

from aloha_bench import embodiment
from aloha_bench.robots import safety
from aloha_bench.robots.calibration import (
    ArmCalibration,
    joint_limits_rad,
    load_calibration,
    rad_to_ticks,
    ticks_to_rad,
)
from aloha_bench.robots.control_table import POSITION_MODE, Entry
from aloha_bench.robots.feetech import FeetechBus, ServoCommError

logger = logging.getLogger(__name__)

Role = Literal["follower", "leader"]
ROLES: tuple[str, ...] = ("follower", "leader")
MOTOR_IDS: tuple[int, ...] = tuple(embodiment.MOTOR_IDS[j] for j in embodiment.ARM_JOINTS)
GRIPPER_ID = embodiment.MOTOR_IDS["gripper"]

# Position-loop gains and acceleration LeRobot uses on the SO-101 follower: the factory P of 32
# makes the arm shake; D 32 damps it.
FOLLOWER_REGISTERS: dict[Entry, int] = {
    Entry.P_Coefficient: 16,
    Entry.I_Coefficient: 0,
    Entry.D_Coefficient: 32,
    Entry.Acceleration: 254,
}
# LeRobot's gripper protection: torque limited (see safety.torque_limit_register), current and
# overload thresholds lowered so a squeezing gripper does not overheat.
GRIPPER_REGISTERS: dict[Entry, int] = {
    Entry.Max_Torque_Limit: safety.torque_limit_register(),
    Entry.Torque_Limit: safety.torque_limit_register(),
    Entry.Protection_Current: 250,
    Entry.Overload_Torque: 25,
}


class ArmFaultError(RuntimeError):
    """A follower was sent a goal while its torque is off after a fault (the fault latches)."""


class SO101Arm:
    """An SO-101 arm as a leader or follower, reading and commanding joints in radians.

    The arm owns its bus: :meth:`connect` opens it and configures the servos, :meth:`disconnect`
    turns torque off and closes it. Use it as a context manager.

    Faults latch: after any error switched the torque off (:meth:`torque_off_on_error`), a
    follower refuses goals with :class:`ArmFaultError` until :meth:`enable_torque` powers it
    again from its present pose. Goals sent to a limp arm would otherwise "succeed" while the arm
    hangs unpowered, and re-enabling torque by a goal write would snap it to a stale target.

    Args:
        bus: a :class:`FeetechBus` for servos 1..6, or a serial port to build one on.
        calibration: the arm's calibration, or the path of its JSON file.
        role: ``"follower"`` (torque on, takes goals) or ``"leader"`` (torque off, read only).
        max_relative_target_rad: largest distance a goal may lead the present position per
            write (LeRobot's ``max_relative_target``); ``None`` disables the cap.
        name: label used in messages, e.g. ``"left follower"``.
    """

    def __init__(
        self,
        bus: FeetechBus | str,
        calibration: ArmCalibration | str | Path,
        role: Role = "follower",
        max_relative_target_rad: float | None = None,
        name: str | None = None,
    ) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        if max_relative_target_rad is not None and not (
            max_relative_target_rad > 0 and math.isfinite(max_relative_target_rad)
        ):
            raise ValueError(
                f"max_relative_target_rad must be positive or None, got {max_relative_target_rad}"
            )
        self.bus = FeetechBus(bus, MOTOR_IDS) if isinstance(bus, str) else bus
        if not isinstance(calibration, ArmCalibration):
            calibration = load_calibration(calibration)
        self.calibration = calibration
        self.role = role
        self.max_relative_target_rad = max_relative_target_rad
        self.name = name or f"{role} on {self.bus.port}"
        self.limits_rad = joint_limits_rad(calibration)
        # Why the torque is off after an error ("TypeName: message"), None while healthy.
        self.fault: str | None = None

    @property
    def is_connected(self) -> bool:
        """Whether the bus is open."""
        return self.bus.is_connected

    def connect(self) -> None:
        """Open the bus, write calibration and settings, and (follower) hold the present pose.

        Raises:
            ServoCommError: a servo is missing, faulty or not an STS3215 (the bus is closed,
                torque off, before this propagates).
        """
        self.bus.connect()
        try:
            self._configure()
        except BaseException:
            self.disconnect()
            raise

    def disconnect(self) -> None:
        """Turn torque off and close the bus (safe to call twice)."""
        self.bus.disconnect()

    def __enter__(self) -> SO101Arm:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.disconnect()

    @contextlib.contextmanager
    def torque_off_on_error(self) -> Iterator[None]:
        """Context in which any exception, Ctrl-C included, first switches torque off."""
        try:
            yield
        except BaseException as exc:
            self.torque_off(reason=f"{type(exc).__name__}: {exc}".rstrip(": "))
            raise

    def enable_torque(self) -> None:
        """Power a follower from where it stands: goal = present position first, then torque on.

        Clears a latched fault. Writing the present pose first matters: Goal_Position may still
        hold the target sent before the fault (or the arm sagged since), and enabling torque
        would make every joint jump to it.

        Raises:
            ServoCommError: the bus failed (torque is switched off again; the fault stays).
        """
        if self.role != "follower":
            raise RuntimeError(f"{self.name} is a leader arm; its torque stays off")
        with self.torque_off_on_error():
            self.bus.sync_write(Entry.Goal_Position, self.bus.sync_read(Entry.Present_Position))
            self.bus.sync_write(Entry.Torque_Enable, dict.fromkeys(MOTOR_IDS, 1))
        self.fault = None

    def torque_off(self, reason: str = "torque_off() was called") -> None:
        """Switch torque off on all six servos; a failure (port gone) is logged, not raised.

        Latches ``reason`` in :attr:`fault` (the first one is kept): goals are refused until
        :meth:`enable_torque`.
        """
        if self.fault is None:
            self.fault = reason
        if not self.is_connected:
            return
        try:
            self.bus.sync_write(Entry.Torque_Enable, dict.fromkeys(MOTOR_IDS, 0))
        except ServoCommError as exc:
            logger.warning("%s: could not switch torque off: %s", self.name, exc)

    def _configure(self) -> None:
        bus = self.bus
        # Torque must be off, and Lock 0, for the EPROM registers below to be stored.
        bus.sync_write(Entry.Torque_Enable, dict.fromkeys(MOTOR_IDS, 0))
        bus.sync_write(Entry.Lock, dict.fromkeys(MOTOR_IDS, 0))
        self._write_calibration()
        for motor_id in MOTOR_IDS:
            bus.write(Entry.Return_Delay_Time, motor_id, 0)
            bus.write(Entry.Operating_Mode, motor_id, POSITION_MODE)
            if self.role == "follower":
                for entry, value in FOLLOWER_REGISTERS.items():
                    bus.write(entry, motor_id, value)
        if self.role == "follower":
            for entry, value in GRIPPER_REGISTERS.items():
                bus.write(entry, GRIPPER_ID, value)
            # Goal_Position may hold a stale target from an earlier session.
            self.enable_torque()
        for motor_id in MOTOR_IDS:
            bus.write(Entry.Lock, motor_id, 1)

    def _write_calibration(self) -> None:
        """Make the servos' homing offsets and limits match the file (the file wins)."""
        wanted = {
            Entry.Homing_Offset: {m.id: m.homing_offset for m in self.calibration.motors.values()},
            Entry.Min_Position_Limit: {m.id: m.range_min for m in self.calibration.motors.values()},
            Entry.Max_Position_Limit: {m.id: m.range_max for m in self.calibration.motors.values()},
        }
        for entry, values in wanted.items():
            present = self.bus.sync_read(entry)
            for motor_id, value in values.items():
                if present[motor_id] != value:
                    logger.info(
                        "%s: servo %d %s %d -> %d (from calibration)",
                        self.name,
                        motor_id,
                        entry.name,
                        present[motor_id],
                        value,
                    )
                    self.bus.write(entry, motor_id, value)

    def read_rad(self) -> np.ndarray:
        """Present joint positions, shape (6,), radians, embodiment order."""
        with self.torque_off_on_error():
            ticks = self.bus.sync_read(Entry.Present_Position)
        return ticks_to_rad([ticks[i] for i in MOTOR_IDS], self.calibration)

    def write_goal_rad(
        self, goal_rad: np.ndarray, present_rad: np.ndarray | None = None
    ) -> np.ndarray:
        """Send joint goals (follower only) after the safety clamps; return what was sent.

        Args:
            goal_rad: shape (6,) joint goals in radians, embodiment order.
            present_rad: the present positions if just read; read from the servos when needed
                and not given.

        Raises:
            ValueError: wrong shape or non-finite goal (torque is switched off first).
            ServoCommError: the bus failed (torque is switched off first, where possible).
            ArmFaultError: an earlier error switched torque off; call :meth:`enable_torque`.
        """
        if self.role != "follower":
            raise RuntimeError(f"{self.name} is a leader arm; only followers take goals")
        if self.fault is not None:
            raise ArmFaultError(
                f"{self.name}: torque is off since a fault ({self.fault}); goals are refused "
                "until enable_torque() (RealRigEnv.reset()) powers the arm from its present pose"
            )
        with self.torque_off_on_error():
            goal_rad = np.asarray(goal_rad, dtype=np.float64)
            if goal_rad.shape != (embodiment.JOINTS_PER_ARM,):
                raise ValueError(
                    f"{self.name}: goal must have shape ({embodiment.JOINTS_PER_ARM},), "
                    f"got {goal_rad.shape}"
                )
            step_cap = self.max_relative_target_rad
            if present_rad is None and step_cap is not None:
                present_rad = self.read_rad()
            sent = safety.safe_goal(goal_rad, present_rad, *self.limits_rad, step_cap)
            ticks = rad_to_ticks(sent, self.calibration)
            self.bus.sync_write(
                Entry.Goal_Position, {i: int(t) for i, t in zip(MOTOR_IDS, ticks, strict=True)}
            )
        return sent
