"""bench_bus against the emulator."""

import math

import pytest

from aloha_bench.robots.bench_bus import bench_bus, exchange_bytes
from aloha_bench.robots.emulator import ServoEmulator
from aloha_bench.robots.feetech import PortError


def test_wire_bytes_of_one_exchange():
    # SYNC_READ request 8 + 6 ids, six 8-byte replies, SYNC_WRITE 8 + 6 x 3.
    assert exchange_bytes(6) == 14 + 48 + 26


def test_bench_bus_on_the_emulator():
    result = bench_bus(n=50)
    assert result["emulated"] and result["n"] == 50 and result["errors"] == 0
    assert result["wire_ms"] == pytest.approx(0.88)
    # ~0.3 ms median unloaded on 2 cores; the bounds leave room for a busy CI machine.
    assert 0 < result["round_trip_ms"] <= result["round_trip_p90_ms"]
    assert result["round_trip_ms"] < 10.0 and result["round_trip_p90_ms"] < 100.0


def test_bench_bus_counts_errors_and_reports_lost_ports():
    with ServoEmulator(ids=range(1, 7)) as emu:
        emu.inject(2, corrupt_checksum=True)
        result = bench_bus(emu.port, n=3)
    assert result["errors"] == 3 and not result["emulated"]
    assert math.isnan(result["round_trip_ms"])
    with pytest.raises(PortError):
        bench_bus("/dev/ttyACM_missing", n=1)
    with pytest.raises(ValueError):
        bench_bus(n=0)
