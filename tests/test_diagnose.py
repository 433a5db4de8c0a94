"""The handover diagnosis: the expert's left grasp holds the cube at its nominal point and
fails when a jaw is driven onto the cube."""

import pytest

from aloha_bench import diagnose
from aloha_bench.experts.transfer_cube import LEFT_GRASP_CLEARANCE_M


def test_grasp_tolerance_holds_at_the_nominal_grasp_and_not_on_the_cube():
    # -24 mm: the fixed jaw stays clear and the moving jaw comes down on the cube's top.
    rows = diagnose.grasp_tolerance([0.0, -24.0], axis="jaw", episodes=1)
    assert [r["offset_mm"] for r in rows] == [0.0, -24.0]
    assert rows[0]["success_end"] == 1.0 and rows[0]["left_clearance_mm"] == pytest.approx(
        1000 * LEFT_GRASP_CLEARANCE_M
    )
    assert rows[1]["success_end"] == 0.0


def test_unknown_axis_is_named():
    with pytest.raises(ValueError, match="unknown axis 'x'"):
        diagnose.grasp_tolerance([0.0], axis="x", episodes=1)


def test_report_files(tmp_path):
    tolerance = [
        {
            "axis": "jaw",
            "offset_mm": o,
            "left_clearance_mm": 8.5,
            "episodes": 1,
            "success_end": s,
            "success_any": 1.0,
        }
        for o, s in ((0.0, 1.0), (8.0, 0.0))
    ]
    errors = [
        {
            "seed": 1000,
            "close_step": 210,
            "jaw_mm": 2.0,
            "across_mm": 1.0,
            "z_mm": 3.0,
            "success_end": True,
            "success_any": True,
        }
    ]
    written = diagnose.write_handover_report(tmp_path, tolerance, errors, "test scale")
    assert {p.name for p in written} == {
        "tolerance.csv",
        "grasp_errors.csv",
        "handover.png",
        "handover.json",
    }
