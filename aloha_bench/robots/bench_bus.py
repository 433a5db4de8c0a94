"""Measure the control loop's bus cost: a SYNC_READ of six positions plus a SYNC_WRITE of goals.

Every control tick of a follower does this exchange, so its latency bounds the control rate. The
wire time (bytes x 10 bits per byte in 8N1 framing / baud) is the floor any adapter can reach;
the measured round trip adds USB latency, the servos' return delay and host overhead.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
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


def bench_bus(
    port: str | None = None,
    n: int = 200,
    motor_ids: Sequence[int] = (1, 2, 3, 4, 5, 6),
    baudrate: int = DEFAULT_BAUDRATE,
) -> dict[str, Any]:
    """Time ``n`` sync-read + sync-write round trips on six servos.

    Against a real port the goals written are the positions just read, and torque is not
    enabled, so nothing moves. Torque is switched off when the bus closes.

    Args:
        port: serial port of a real arm; ``None`` runs against a :class:`ServoEmulator`.
        n: number of round trips.
        motor_ids: servos to address.
        baudrate: bus speed.

    Returns:
        ``round_trip_ms`` (median) and ``round_trip_p90_ms`` over successful exchanges,
        ``wire_ms`` (protocol bytes x 10 bits / baud), ``errors`` (exchanges that raised
        :class:`ServoCommError`), ``n``, ``port``, ``emulated``, ``baudrate``, ``n_servos``
        and ``wire_bytes``.

    Raises:
        PortError: the port is missing or vanished.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    ids = tuple(motor_ids)
    emulated = port is None
    durations_s = []
    errors = 0
    with contextlib.ExitStack() as stack:
        if port is None:
            port = stack.enter_context(ServoEmulator(ids=ids)).port
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
            except ServoCommError:
                errors += 1
                continue
            durations_s.append(time.perf_counter() - start_s)
    wire_bytes = exchange_bytes(len(ids))
    durations_ms = np.array(durations_s) * 1e3
    return {
        "round_trip_ms": float(np.median(durations_ms)) if durations_s else float("nan"),
        "round_trip_p90_ms": float(np.percentile(durations_ms, 90))
        if durations_s
        else float("nan"),
        "wire_ms": wire_bytes * BITS_PER_BYTE / baudrate * 1e3,
        "wire_bytes": wire_bytes,
        "errors": errors,
        "n": n,
        "n_servos": len(ids),
        "port": port,
        "emulated": emulated,
        "baudrate": baudrate,
    }
