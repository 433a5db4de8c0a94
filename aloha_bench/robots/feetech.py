"""Feetech STS3215 bus driver on top of ``scservo_sdk`` (feetech-servo-sdk 1.x).

:class:`FeetechBus` wraps the SDK's ``PortHandler``, ``PacketHandler(0)`` (little-endian STS
protocol), ``GroupSyncRead`` and ``GroupSyncWrite`` with what an arm needs on a real rig:

* retries on ``COMM_RX_TIMEOUT`` (no status packet) and ``COMM_RX_CORRUPT`` (bad status packet),
  the two faults SO-101 users hit most on sync reads, after flushing the input so a late reply
  to the failed attempt cannot be mistaken for the answer to the next one;
* one exception family, :class:`ServoCommError`, whose message names the port, the servo id and
  the fault, with hardware-error bits decoded (:class:`ServoHardwareError`) and a missing or
  unplugged port reported with its fix (:class:`PortError`);
* torque off on every disconnect.

Two SDK behaviours are adjusted, each in a small subclass: ``PortHandler.readPort`` spins on a
non-blocking read while awaiting a reply (a full CPU core and the GIL for the whole wait), so
:class:`_WaitingPortHandler` sleeps in ``select`` until bytes arrive or the packet times out;
and ``GroupSyncRead.rxPacket`` drops each reply's error byte, so :class:`_CheckedSyncRead` keeps it.
"""

from __future__ import annotations

import collections
import logging
import select
import threading
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

from scservo_sdk import (
    COMM_RX_CORRUPT,
    COMM_RX_TIMEOUT,
    COMM_SUCCESS,
    PKT_ERROR,
    PKT_ID,
    PKT_PARAMETER0,
    GroupSyncRead,
    GroupSyncWrite,
    PacketHandler,
    PortHandler,
)

from aloha_bench.robots import control_table as ct
from aloha_bench.robots.control_table import Entry

try:
    import termios

    _PORT_ERRORS: tuple[type[BaseException], ...] = (OSError, termios.error)
except ImportError:  # Windows has no termios; pyserial raises OSError subclasses there.
    _PORT_ERRORS = (OSError,)

logger = logging.getLogger(__name__)

DEFAULT_BAUDRATE = 1_000_000
_RETRYABLE = {
    COMM_RX_TIMEOUT: "timeout (no status packet)",
    COMM_RX_CORRUPT: "corrupt status packet",
}
_PORT_FIX = (
    "check that the arm's USB cable is plugged in and its power supply is on; list ports with "
    "`ls /dev/ttyACM* /dev/ttyUSB*` (or /dev/serial/by-id/) and put the right one in rig.toml; "
    "'permission denied' means adding your user to the 'dialout' group"
)
_FAULT_FIXES = {
    "timeout": "check the servo's 3-pin cable and the daisy chain up to it, the power supply, "
    "and that its id matches (motors are ids 1..6)",
    "corrupt": "check the cable for loose contacts and that every servo runs at 1 Mbps",
}


class ServoCommError(RuntimeError):
    """A transfer with a servo failed after all retries.

    Attributes:
        port: serial port of the bus.
        servo_id: id of the servo that failed (``None`` for the whole port).
        fault: ``"timeout"`` (no reply), ``"corrupt"`` (bad reply), ``"hardware"`` (error bits),
            ``"port"`` (serial port missing or gone), ``"model"`` (not an STS3215) or
            ``"protocol"`` (any other scservo_sdk failure).
    """

    def __init__(self, message: str, *, port: str, servo_id: int | None, fault: str) -> None:
        super().__init__(message)
        self.port = port
        self.servo_id = servo_id
        self.fault = fault


class ServoHardwareError(ServoCommError):
    """A servo answered with hardware-error bits set (voltage, angle sensor, overheat, ...).

    Attributes:
        error_bits: the status packet's error byte.
    """

    def __init__(self, message: str, *, port: str, servo_id: int, error_bits: int) -> None:
        super().__init__(message, port=port, servo_id=servo_id, fault="hardware")
        self.error_bits = error_bits


class PortError(ServoCommError):
    """The serial port is missing, cannot be opened, or vanished (USB unplugged)."""

    def __init__(self, message: str, *, port: str) -> None:
        super().__init__(message, port=port, servo_id=None, fault="port")


class _WaitingPortHandler(PortHandler):
    """``PortHandler`` that blocks in ``select`` for reply bytes instead of busy-polling.

    The SDK's ``rxPacket`` loop calls ``readPort`` until the packet is complete or
    ``isPacketTimeout`` fires; waiting at most until that timeout keeps its semantics.
    """

    def readPort(self, length: int) -> bytes:  # noqa: N802 (SDK method name)
        data = self.ser.read(length)
        if data or not hasattr(self.ser, "fileno"):
            return data
        remaining_ms = self.packet_timeout - self.getTimeSinceStart()
        if remaining_ms > 0:
            select.select([self.ser.fileno()], [], [], remaining_ms / 1000.0)
        return self.ser.read(length)


class _CheckedSyncRead(GroupSyncRead):
    """``GroupSyncRead`` that keeps every reply's error byte and which servo failed."""

    def __init__(self, port: PortHandler, ph: PacketHandler, address: int, length: int) -> None:
        super().__init__(port, ph, address, length)
        self.errors: dict[int, int] = {}
        self.failed_id: int | None = None

    def rxPacket(self) -> int:  # noqa: N802 (SDK method name)
        self.errors = {}
        self.failed_id = None
        # Servos answer a SYNC_READ one after another in the order of the request.
        for scs_id in self.data_dict:
            # The SDK's readRx, keeping track of replies from other servos: one that arrives
            # while this servo's is awaited means this servo let its turn pass in silence, so
            # the failure is a timeout of this servo even if the wait ends mid-packet (which the
            # SDK reports as a corrupt packet).
            overtaken = False
            while True:
                packet, result = self.ph.rxPacket(self.port)
                if result != COMM_SUCCESS or packet[PKT_ID] == scs_id:
                    break
                overtaken = True
            if result != COMM_SUCCESS:
                self.failed_id = scs_id
                return COMM_RX_TIMEOUT if overtaken else result
            start = PKT_PARAMETER0
            self.data_dict[scs_id] = list(packet[start : start + self.data_length])
            self.errors[scs_id] = packet[PKT_ERROR]
        return COMM_SUCCESS


class FeetechBus:
    """One serial bus of Feetech STS3215 servos (one SO-101 arm).

    Use as a context manager, or call :meth:`connect` and :meth:`disconnect`. Values are the
    decoded register values (sign-magnitude registers come back signed). Thread-safe: one
    transfer at a time.

    Args:
        port: serial device, e.g. ``/dev/ttyACM0`` (or an emulator's pty).
        motor_ids: ids of the servos on this bus.
        baudrate: bus speed; STS3215 servos ship at 1 Mbps.
        retries: extra attempts after a timeout or corrupt reply.
    """

    def __init__(
        self,
        port: str,
        motor_ids: Iterable[int],
        baudrate: int = DEFAULT_BAUDRATE,
        retries: int = 3,
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.port = port
        self.motor_ids = tuple(motor_ids)
        self.baudrate = baudrate
        self.retries = retries
        # Failed attempts that were tried again, by (servo id or None, fault): a retry that then
        # succeeds raises nothing, so benchmarks and health checks read them here.
        self.retry_counts: collections.Counter[tuple[int | None, str]] = collections.Counter()
        self._port_handler: _WaitingPortHandler | None = None
        self._packet_handler = PacketHandler(0)
        self._lock = threading.Lock()

    @property
    def is_connected(self) -> bool:
        """Whether the serial port is open."""
        return self._port_handler is not None

    def connect(self, check_motors: bool = True) -> None:
        """Open the port and, by default, ping every servo and check it is an STS3215.

        Raises:
            PortError: the port does not exist, cannot be opened or rejects the baud rate.
            ServoCommError: a servo does not answer or is not an STS3215.
        """
        if self.is_connected:
            return
        handler = _WaitingPortHandler(self.port)
        try:
            opened = handler.setBaudRate(self.baudrate)
        except _PORT_ERRORS as exc:
            raise PortError(
                f"cannot open serial port {self.port!r}: {exc}. Fix: {_PORT_FIX}", port=self.port
            ) from exc
        if not opened:
            raise PortError(
                f"serial port {self.port!r}: baud rate {self.baudrate} is not supported by "
                "scservo_sdk; STS3215 servos use 1000000",
                port=self.port,
            )
        self._port_handler = handler
        if check_motors:
            try:
                for motor_id in self.motor_ids:
                    model = self.ping(motor_id)
                    if model != ct.STS3215_MODEL_NUMBER:
                        raise ServoCommError(
                            f"servo {motor_id} on {self.port} reports model number {model}, "
                            f"expected {ct.STS3215_MODEL_NUMBER} (STS3215)",
                            port=self.port,
                            servo_id=motor_id,
                            fault="model",
                        )
            except BaseException:
                self._close_port()
                raise

    def disconnect(self) -> None:
        """Turn torque off on every servo, then close the port.

        Torque off is one SYNC_WRITE, which needs no reply, so it reaches every servo that still
        listens even if one has stopped answering. If the port itself is gone the servos are
        unpowered or unreachable anyway; the failure is logged and the port closed.
        """
        if not self.is_connected:
            return
        try:
            self.sync_write(Entry.Torque_Enable, dict.fromkeys(self.motor_ids, 0))
        except ServoCommError as exc:
            logger.warning("could not turn torque off on %s: %s", self.port, exc)
        finally:
            self._close_port()

    def _close_port(self) -> None:
        handler, self._port_handler = self._port_handler, None
        if handler is not None:
            try:
                # Let the last packet (torque off) leave the adapter before the port closes.
                handler.ser.flush()
                handler.closePort()
            except _PORT_ERRORS as exc:
                logger.warning("closing %s failed: %s", self.port, exc)

    def __enter__(self) -> FeetechBus:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.disconnect()

    # --- transfers ---

    def ping(self, motor_id: int) -> int:
        """PING one servo and return its model number (777 for an STS3215)."""
        return self._transfer("ping", motor_id, lambda h: self._packet_handler.ping(h, motor_id))

    def read(self, entry: Entry, motor_id: int) -> int:
        """READ one register of one servo."""
        readers = {1: self._packet_handler.read1ByteTxRx, 2: self._packet_handler.read2ByteTxRx}
        raw = self._transfer(
            f"read {entry.name}",
            motor_id,
            lambda h: readers[entry.size](h, motor_id, entry.address),
        )
        return ct.decode(entry, raw)

    def write(self, entry: Entry, motor_id: int, value: int) -> None:
        """WRITE one register of one servo and wait for its acknowledgement."""
        data = ct.to_bytes(entry, ct.encode(entry, value))

        def attempt(handler: PortHandler) -> tuple[None, int, int]:
            result, error = self._packet_handler.writeTxRx(
                handler, motor_id, entry.address, entry.size, data
            )
            return None, result, error

        self._transfer(f"write {entry.name}={value}", motor_id, attempt)

    def sync_read(self, entry: Entry, motor_ids: Iterable[int] | None = None) -> dict[int, int]:
        """SYNC_READ one register from several servos (default: all) in one exchange."""
        ids = tuple(self.motor_ids if motor_ids is None else motor_ids)
        with self._lock:
            handler = self._handler()
            group = _CheckedSyncRead(handler, self._packet_handler, entry.address, entry.size)
            for motor_id in ids:
                group.addParam(motor_id)
            for attempt in range(self.retries + 1):
                result = self._guarded(handler, group.txRxPacket)
                if result not in _RETRYABLE:
                    break
                if attempt < self.retries:
                    self._count_retry(group.failed_id, result)
            if result != COMM_SUCCESS:
                raise self._comm_error(f"sync read {entry.name}", group.failed_id, result)
            for motor_id, error in group.errors.items():
                if error:
                    raise self._hardware_error(f"sync read {entry.name}", motor_id, error)
            return {i: ct.decode(entry, group.getData(i, entry.address, entry.size)) for i in ids}

    def sync_write(self, entry: Entry, values: Mapping[int, int]) -> None:
        """SYNC_WRITE one register of several servos in one packet (no reply, per protocol)."""
        with self._lock:
            handler = self._handler()
            group = GroupSyncWrite(handler, self._packet_handler, entry.address, entry.size)
            for motor_id, value in values.items():
                group.addParam(motor_id, ct.to_bytes(entry, ct.encode(entry, value)))
            result = self._guarded(handler, group.txPacket)
            if result != COMM_SUCCESS:
                raise self._comm_error(f"sync write {entry.name}", None, result)

    # --- internals ---

    def _handler(self) -> _WaitingPortHandler:
        if self._port_handler is None:
            raise PortError(
                f"bus on {self.port} is not connected; call connect() or use it in a with block",
                port=self.port,
            )
        return self._port_handler

    def _guarded(self, handler: PortHandler, transfer: Callable[[], Any]) -> Any:
        """Run one SDK transfer with a clean input buffer, turning OS errors into PortError."""
        try:
            # Drop bytes left from an earlier failed exchange (e.g. a reply that came after the
            # timeout), which the SDK would otherwise parse as this exchange's answer.
            handler.ser.reset_input_buffer()
            return transfer()
        except _PORT_ERRORS as exc:
            # The SDK marks the port busy before writing and never clears it on an exception.
            handler.is_using = False
            raise PortError(
                f"lost the serial port {self.port}: {exc}. The USB adapter was probably unplugged "
                f"or lost power. Fix: {_PORT_FIX}",
                port=self.port,
            ) from exc

    def _transfer(
        self,
        what: str,
        motor_id: int,
        attempt: Callable[[PortHandler], tuple[Any, int, int]],
    ) -> Any:
        """Run a single-servo exchange with retries; return its payload."""
        with self._lock:
            handler = self._handler()
            for tries in range(self.retries + 1):
                payload, result, error = self._guarded(handler, lambda: attempt(handler))
                if result not in _RETRYABLE:
                    break
                if tries < self.retries:
                    self._count_retry(motor_id, result)
            if result != COMM_SUCCESS:
                raise self._comm_error(what, motor_id, result)
            if error:
                raise self._hardware_error(what, motor_id, error)
            return payload

    def _count_retry(self, motor_id: int | None, result: int) -> None:
        fault = "timeout" if result == COMM_RX_TIMEOUT else "corrupt"
        self.retry_counts[(motor_id, fault)] += 1
        logger.debug("port %s, servo %s: %s, retrying", self.port, motor_id, _RETRYABLE[result])

    def _comm_error(self, what: str, motor_id: int | None, result: int) -> ServoCommError:
        servo = f"servo {motor_id}" if motor_id is not None else "servos"
        if result in _RETRYABLE:
            fault = "timeout" if result == COMM_RX_TIMEOUT else "corrupt"
            return ServoCommError(
                f"{what} failed on port {self.port}, {servo}: {_RETRYABLE[result]} after "
                f"{self.retries + 1} attempts. Fix: {_FAULT_FIXES[fault]}",
                port=self.port,
                servo_id=motor_id,
                fault=fault,
            )
        return ServoCommError(
            f"{what} failed on port {self.port}, {servo}: "
            f"{self._packet_handler.getTxRxResult(result)} (scservo_sdk result {result})",
            port=self.port,
            servo_id=motor_id,
            fault="protocol",
        )

    def _hardware_error(self, what: str, motor_id: int, error: int) -> ServoHardwareError:
        return ServoHardwareError(
            f"{what} on port {self.port}: servo {motor_id} reports hardware error 0x{error:02X} "
            f"({ct.describe_error_bits(error)}). Fix: check for a blocked joint or a squeezed "
            "gripper (overload), the supply voltage, and let a hot servo cool; power-cycle the "
            "arm to clear the error",
            port=self.port,
            servo_id=motor_id,
            error_bits=error,
        )
