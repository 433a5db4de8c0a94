"""Expert reports: records to rates, rates to a table."""

from aloha_bench.rollout import EpisodeRecord, ExpertReport, expert_table


def _record(seed, max_stage, final_stage):
    return EpisodeRecord(seed, max_stage, final_stage, final_stage == 2, max_stage == 2, 400, {})


def test_rates_separate_end_of_episode_from_any_step():
    report = ExpertReport(
        task="demo",
        style_mode="default",
        episodes=4,
        stage_names=("grasp", "lift"),
        records=(_record(0, 2, 2), _record(1, 2, 0), _record(2, 1, 1), _record(3, 0, 0)),
    )
    assert report.success_rate == 0.25
    assert report.success_rate_any_step == 0.5
    assert report.stage_rates == {"grasp": 0.75, "lift": 0.5}
    assert report.to_dict()["failed_seeds"] == [1, 2, 3]


def test_table_has_one_row_per_task_with_both_styles():
    base = {"episodes": 200, "stage_rates": {"a": 1.0, "b": 0.5}, "success_rate_any_step": 0.6}
    reports = [
        {**base, "task": "t1", "style": "default", "success_rate": 0.5},
        {**base, "task": "t1", "style": "varied", "success_rate": 0.25},
        {**base, "task": "t0", "style": "default", "success_rate": 1.0},
    ]
    rows = expert_table(reports).splitlines()
    assert rows[2] == "| t0 | 200 | 100.0% (60.0%) | not run | a 100.0% / b 50.0% |"
    assert rows[3] == "| t1 | 200 | 50.0% (60.0%) | 25.0% (60.0%) | a 100.0% / b 50.0% |"


def test_expert_run_reports_how_well_the_plan_fits_the_arm():
    from aloha_bench.rollout import run_expert

    summary = run_expert("transfer_cube", 1).to_dict()
    # Plan v2 in its default style: every target within reach, no leap of a joint target
    # (plan v1 missed its retreat by 19 cm and leapt 3.5 rad there).
    assert 0.0 < summary["ik_miss_mm_max"] < 5.0
    assert 0.0 < summary["joint_step_rad_max"] < 0.3
