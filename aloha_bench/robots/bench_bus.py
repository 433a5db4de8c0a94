"""Measure the control loop's bus cost: a SYNC_READ of six positions plus a SYNC_WRITE of goals.

Every control tick of a follower does this exchange, so its latency bounds the control rate. The
wire time (bytes x 10 bits per byte in 8N1 framing / baud) is the floor any adapter can reach;
the measured round trip adds USB latency, the servos' return delay and host overhead.
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from aloha_bench.robots.control_table import Entry
from aloha_bench.robots.emulator import ServoEmulator
from aloha_bench.robots.feetech import DEFAULT_BAUDRATE, FeetechBus, PortError, ServoCommError

BITS_PER_BYTE = 10  # 8N1: start bit, 8 data bits, stop bit
# Bytes around a packet's parameters: FF FF id len instr|error ... chk.
PACKET_OVERHEAD_BYTES = 6


def exchange_bytes(n_servos: int, data_size: int = Entry.Present_Position.size) -> int:
    """Bytes on the wire for one SYNC_READ (request + replies) plus one SYNC_WRITE."""
    sync_read_request = PACKET_OVERHEAD_BYTES + 2 + n_servos  # params: addr, len, ids
    replies = n_servos * (PACKET_OVERHEAD_BYTES + data_size)
    sync_write = PACKET_OVERHEAD_BYTES + 2 + n_servos * (1 + data_size)  # addr, len, (id, data)*
    return sync_read_request + replies + sync_write


# Faults ``bench_bus`` can inject into the emulator, as ``ServoEmulator.inject`` arguments.
EMULATED_FAULTS: dict[str, dict[str, Any]] = {
    "silent": {"silent": True},  # a broken cable or a wrong id: no reply at all
    "corrupt": {"corrupt_checksum": True},  # a loose contact: replies fail their checksum
    "overload": {"error_bits": 0x20},  # a blocked joint: replies carry the overload bit
}


def _by_servo(counts: Mapping[tuple[int | None, str], int]) -> dict[str, dict[str, int]]:
    """{(servo id or None, fault): n} -> {"<id>" or "bus": {fault: n}} (JSON keys are text)."""
    out: dict[str, dict[str, int]] = {}
    for (servo_id, fault), n in sorted(counts.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        out.setdefault("bus" if servo_id is None else str(servo_id), {})[fault] = n
    return out


def bench_bus(
    port: str | None = None,
    n: int = 200,
    motor_ids: Sequence[int] = (1, 2, 3, 4, 5, 6),
    baudrate: int = DEFAULT_BAUDRATE,
    faults: Mapping[int, str] | None = None,
) -> dict[str, Any]:
    """Time ``n`` sync-read + sync-write round trips on six servos.

    Against a real port the goals written are the positions just read, and torque is not
    enabled, so nothing moves. Torque is switched off when the bus closes.

    Args:
        port: serial port of a real arm; ``None`` runs against a :class:`ServoEmulator`.
        n: number of round trips.
        motor_ids: servos to address.
        baudrate: bus speed.
        faults: emulator only: ``{servo id: fault}`` with faults from ``EMULATED_FAULTS``
            (``silent``, ``corrupt``, ``overload``), to see how the bus reports them.

    Returns:
        ``round_trip_ms`` (median) and ``round_trip_p90_ms`` over successful exchanges (None
        when none succeeded, so the JSON stays valid), ``succeeded``, ``errors`` (exchanges
        that raised :class:`ServoCommError`), ``errors_by_servo`` (``{"<id>": {fault: n}}``,
        faults as :class:`ServoCommError.fault` names them, ``"bus"`` when no single servo is to
        blame), ``retries`` and ``retries_by_servo`` (failed attempts the driver tried again,
        including those that then succeeded), ``wire_ms`` (protocol bytes x 10 bits / baud),
        ``n``, ``port``, ``emulated``, ``baudrate``, ``n_servos`` and ``wire_bytes``.

    Raises:
        PortError: the port is missing or vanished.
        ValueError: ``n`` < 1, faults with a real port, or an unknown fault or servo id.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    ids = tuple(motor_ids)
    faults = dict(faults or {})
    if faults and port is not None:
        raise ValueError("faults are injected into the servo emulator; drop --port to use them")
    for servo_id, fault in faults.items():
        if fault not in EMULATED_FAULTS:
            raise ValueError(f"unknown fault {fault!r}; choose from {sorted(EMULATED_FAULTS)}")
        if servo_id not in ids:
            raise ValueError(f"fault on servo {servo_id}, but the bus has servos {list(ids)}")
    emulated = port is None
    durations_s = []
    errors: collections.Counter[tuple[int | None, str]] = collections.Counter()
    with contextlib.ExitStack() as stack:
        if port is None:
            emulator = stack.enter_context(ServoEmulator(ids=ids))
            for servo_id, fault in faults.items():
                emulator.inject(servo_id, **EMULATED_FAULTS[fault])
            port = emulator.port
        bus = FeetechBus(port, ids, baudrate=baudrate)
        # No ping check on connect: a flaky servo should show up in ``errors``, not abort.
        bus.connect(check_motors=False)
        stack.callback(bus.disconnect)
        for _ in range(n):
            start_s = time.perf_counter()
            try:
                positions = bus.sync_read(Entry.Present_Position)
                bus.sync_write(Entry.Goal_Position, positions)
            except PortError:
                raise
            except ServoCommError as err:
                errors[(err.servo_id, err.fault)] += 1
                continue
            durations_s.append(time.perf_counter() - start_s)
        retries = collections.Counter(bus.retry_counts)
    wire_bytes = exchange_bytes(len(ids))
    durations_ms = np.array(durations_s) * 1e3
    return {
        "round_trip_ms": float(np.median(durations_ms)) if durations_s else None,
        "round_trip_p90_ms": float(np.percentile(durations_ms, 90)) if durations_s else None,
        "succeeded": len(durations_s),
        "wire_ms": wire_bytes * BITS_PER_BYTE / baudrate * 1e3,
        "wire_bytes": wire_bytes,
        "errors": sum(errors.values()),
        "errors_by_servo": _by_servo(errors),
        "retries": sum(retries.values()),
        "retries_by_servo": _by_servo(retries),
        "faults_injected": {str(k): v for k, v in sorted(faults.items())},
        "n": n,
        "n_servos": len(ids),
        "port": port,
        "emulated": emulated,
        "baudrate": baudrate,
    }
