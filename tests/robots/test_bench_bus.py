"""bench_bus against the emulator."""

import json

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
    assert result["errors_by_servo"] == {"2": {"corrupt": 3}}
    # No exchange succeeded: no timing, as JSON null (NaN is not JSON).
    assert result["round_trip_ms"] is None and result["succeeded"] == 0
    json.dumps(result, allow_nan=False)
    with pytest.raises(PortError):
        bench_bus("/dev/ttyACM_missing", n=1)
    with pytest.raises(ValueError):
        bench_bus(n=0)


@pytest.mark.parametrize(
    ("fault", "kind", "retried"),
    [("silent", "timeout", True), ("corrupt", "corrupt", True), ("overload", "hardware", False)],
)
def test_bench_bus_names_the_faulty_servo_the_fault_and_the_retries(fault, kind, retried):
    result = bench_bus(n=4, faults={4: fault})
    # Servo 4 fails every exchange, and is the one blamed (a silent servo is a timeout of that
    # servo, not a corrupt packet of the next one).
    assert result["errors"] == 4 and result["errors_by_servo"] == {"4": {kind: 4}}
    # Timeouts and corrupt replies are retried (3 retries per exchange); hardware errors are not.
    assert result["retries_by_servo"] == ({"4": {kind: 12}} if retried else {})
    assert result["retries"] == (12 if retried else 0)
    assert result["faults_injected"] == {"4": fault}
    json.dumps(result, allow_nan=False)


def test_bench_bus_faults_need_the_emulator():
    with pytest.raises(ValueError, match="emulator"):
        bench_bus("/dev/ttyACM0", n=1, faults={1: "silent"})
    with pytest.raises(ValueError, match="unknown fault"):
        bench_bus(n=1, faults={1: "melted"})
