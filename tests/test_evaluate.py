"""The evaluation harness: intervals, records, summaries, seed checks, workers and videos."""

import json

import pytest

from aloha_bench.evaluate import (
    EvalSettings,
    SeedOverlapError,
    TaskMismatchError,
    check_observation_shapes,
    check_seed_overlap,
    check_task,
    evaluate,
    read_records,
    summarize,
    summary_table,
    training_task,
    write_outputs,
)
from aloha_bench.stats import wilson_interval, z_score


@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    [
        # The two roots of Wilson's defining equation (p - k/n)^2 = z^2 p (1 - p) / n, solved
        # as a quadratic in p with numpy.roots (the first three are textbook examples).
        (5, 10, 0.236593, 0.763407),
        (0, 10, 0.0, 0.277533),
        (10, 10, 0.722467, 1.0),
        (43, 50, 0.738138, 0.930492),
        (1, 200, 0.000883, 0.027774),
    ],
)
def test_wilson_interval_matches_reference_values(successes, trials, low, high):
    got = wilson_interval(successes, trials)
    assert got == pytest.approx((low, high), abs=2e-6)


def test_wilson_interval_edges_and_errors():
    assert z_score(0.95) == pytest.approx(1.959964, abs=1e-6)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    narrow = wilson_interval(500, 1000)
    wide = wilson_interval(5, 10)
    assert narrow[1] - narrow[0] < wide[1] - wide[0]
    # The interval holds the rate itself at every count: 300 of 300 once gave a high of
    # 1 - 2e-16, under the rate, and the report's error bar went negative.
    for trials in range(1, 401):
        for successes in range(trials + 1):
            low, high = wilson_interval(successes, trials)
            assert 0.0 <= low <= successes / trials <= high <= 1.0, (successes, trials)
    assert wilson_interval(300, 300)[1] == 1.0 and wilson_interval(0, 300)[0] == 0.0
    with pytest.raises(ValueError, match="successes <= trials"):
        wilson_interval(3, 2)
    with pytest.raises(ValueError, match="confidence"):
        z_score(1.5)


def _record(episode, max_stage, final_stage, success_end, label="act", task="transfer_cube"):
    return {
        "run": "runs/act",
        "label": label,
        "task": task,
        "episode": episode,
        "seed": 1000 + episode,
        "success_end": success_end,
        "success_any": max_stage == 3,
        "max_stage": max_stage,
        "final_stage": final_stage,
        "stage_names": ["touched", "lifted", "transferred"],
        "steps": 400,
        "return": float(final_stage * 100),
        "policy": "act",
    }


def test_summary_separates_any_step_from_end_of_episode_success():
    records = [
        _record(0, 3, 3, True),  # transferred and still held at the end
        _record(1, 3, 1, False),  # transferred, then dropped: any-step success only
        _record(2, 2, 2, False),  # lifted, never transferred
        _record(3, 1, 0, False),  # touched only
    ]
    s = summarize(records)
    assert s["episodes"] == 4 and s["seeds"] == [1000, 1003]
    assert s["successes"] == 1 and s["success_rate"] == 0.25
    assert s["successes_any"] == 2 and s["success_rate_any"] == 0.5
    assert (s["ci_low"], s["ci_high"]) == pytest.approx(wilson_interval(1, 4))
    assert (s["ci_low_any"], s["ci_high_any"]) == pytest.approx(wilson_interval(2, 4))
    assert {k: v["reached"] for k, v in s["stages"].items()} == {
        "touched": 4,
        "lifted": 3,
        "transferred": 2,
    }
    assert s["mean_return"] == pytest.approx(150.0)
    table = summary_table([s])
    assert "| act | transfer_cube | 4 | 25% [" in table and "50% [" in table


def test_summary_refuses_mixed_or_empty_records():
    with pytest.raises(ValueError, match="no episode records"):
        summarize([])
    with pytest.raises(ValueError, match="several"):
        summarize([_record(0, 3, 3, True), _record(1, 3, 3, True, label="other")])


def test_outputs_round_trip_and_damaged_records_are_named(tmp_path):
    records = [_record(i, 3, 3, True) for i in range(3)]
    paths = write_outputs(tmp_path, records, [summarize(records)])
    assert read_records(paths["records"]) == records
    assert json.loads(paths["summary"].read_text())[0]["success_rate"] == 1.0
    paths["records"].write_text(paths["records"].read_text() + "{not json\n")
    with pytest.raises(ValueError, match=r"records\.jsonl:4"):
        read_records(paths["records"])


# --- end to end on a tiny trained policy -----------------------------------------------------


def test_training_demo_seeds_are_refused_even_without_the_split_record(tiny_run):
    with pytest.raises(SeedOverlapError, match="--seed 1000"):
        check_seed_overlap(tiny_run, "transfer_cube", [5, 6, 7])
    check_seed_overlap(tiny_run, "transfer_cube", [1000, 1001])
    check_seed_overlap(tiny_run, "insertion", [7])  # other task: other scenes
    # Runs written before the seeds were recorded: the dataset's metadata answers instead.
    split_file = tiny_run / "split.json"
    split = json.loads(split_file.read_text())
    assert split["demo_seeds"] == [7, 8] and split["task"] == "transfer_cube"
    legacy = {k: v for k, v in split.items() if k not in ("demo_seeds", "task")}
    try:
        split_file.write_text(json.dumps(legacy))
        with pytest.raises(SeedOverlapError, match=r"\[8\]"):
            check_seed_overlap(tiny_run, "transfer_cube", [8, 9])
    finally:
        split_file.write_text(json.dumps(split))


def test_workers_give_the_serial_records_and_videos_are_named_by_outcome(tiny_run, tmp_path):
    settings = EvalSettings(
        run=str(tiny_run),
        task="transfer_cube",
        episodes=3,
        max_steps=25,
        videos=1,
        video_dir=str(tmp_path / "videos"),
    )
    seen = []
    serial = evaluate(settings, progress=seen.append)
    parallel = evaluate(settings, workers=2)
    assert len(seen) == 3
    assert [r["seed"] for r in serial] == [1000, 1001, 1002]
    assert serial == parallel  # video paths included: the same file names
    (video,) = list((tmp_path / "videos").iterdir())
    outcome = "success" if serial[0]["success_end"] else "failure"
    assert video.name == f"run_transfer_cube_seed1000_{outcome}.mp4"
    assert serial[0]["video"] == str(video) and serial[1]["video"] is None
    assert all(r["steps"] == 25 for r in serial)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="episodes"):
        EvalSettings(run="r", task="transfer_cube", episodes=0)
    with pytest.raises(ValueError, match="video_dir"):
        EvalSettings(run="r", task="transfer_cube", episodes=1, videos=1)
    with pytest.raises(ValueError, match="unknown task"):
        evaluate(EvalSettings(run="r", task="no_such_task", episodes=1))


def test_summary_reports_the_original_act_rule_beside_the_strict_ones():
    """transfer_cube v2: a handover the right gripper never let go of is no success, but the
    original ACT code's rule (success_lenient) counted it; both are summarized."""
    records = [
        {**_record(0, 2, 2, False), "success_lenient": True},  # both grippers still on the cube
        {**_record(1, 3, 3, True), "success_lenient": True},
        {**_record(2, 1, 0, False), "success_lenient": False},
    ]
    s = summarize(records)
    assert (s["successes"], s["successes_lenient"]) == (1, 2)
    assert (s["ci_low_lenient"], s["ci_high_lenient"]) == pytest.approx(wilson_interval(2, 3))
    assert "ACT code's rule" in summary_table([s]) and "67% [" in summary_table([s])
    # Records written before the rule existed: unknown, not zero.
    old = summarize([_record(0, 3, 3, True)])
    assert old["successes_lenient"] is None and old["success_rate_lenient"] != 0.0


def test_a_run_of_another_task_is_refused_unless_allowed_and_then_recorded(tiny_run):
    # A state policy of transfer_cube on insertion: refused for the task, with the way out.
    settings = EvalSettings(run=str(tiny_run), task="insertion", episodes=1, max_steps=2)
    with pytest.raises(TaskMismatchError, match="trained on task 'transfer_cube'.*--allow-other"):
        evaluate(settings)
    # Allowed, it still cannot run: insertion's props give another environment-state width.
    allowed = EvalSettings(
        run=str(tiny_run), task="insertion", episodes=1, max_steps=2, allow_other_task=True
    )
    with pytest.raises(TaskMismatchError, match=r"environment_state of shape \(7,\).*\(14,\)"):
        evaluate(allowed)
    assert check_task(allowed) == "transfer_cube"


def test_the_training_task_is_recorded_with_every_result(tiny_run):
    settings = EvalSettings(run=str(tiny_run), task="transfer_cube", episodes=1, max_steps=2)
    (record,) = evaluate(settings)
    assert record["trained_task"] == "transfer_cube"
    assert summarize([record])["trained_task"] == "transfer_cube"
    assert training_task(tiny_run / "best") == "transfer_cube"  # a checkpoint folder too


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_observation_shapes_are_checked_key_by_key(runtime):
    import gymnasium as gym
    import torch

    from aloha_bench.envs.spaces import observation_space
    from aloha_bench.policies import make_policy
    from tests.policies.conftest import fake_stats, tiny_config

    if runtime == "onnx":
        pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    policy = make_policy(
        tiny_config(obs_mode="pixels", cameras=["top"], image_size=(96, 128)), fake_stats()
    )
    if runtime == "onnx":
        # The ONNX Runtime twin reads its input shapes from the graph (eval --runtime onnx).
        from aloha_bench.policies.export import OnnxPolicy, onnx_model_bytes

        policy = OnnxPolicy(onnx_model_bytes(policy), policy.config)
    assert policy.input_shapes() == {
        "observation.state": (12,),
        "observation.images.top": (96, 128, 3),
    }
    check_observation_shapes("r", policy, observation_space("pixels", ["top"], (96, 128), 0))
    with pytest.raises(TaskMismatchError, match="observation.images.top"):
        check_observation_shapes("r", policy, observation_space("pixels", ["top"], (48, 64), 0))
    with pytest.raises(TaskMismatchError, match="no such key"):
        check_observation_shapes("r", policy, observation_space("pixels", ["front"], (96, 128), 0))
    assert isinstance(observation_space("state", [], (96, 128), 7), gym.spaces.Dict)


def test_the_table_says_how_each_policy_ran():
    """Rates of a quantized ONNX graph, of re-planning or of ensembling must not read like the
    paper's plain ACT: the table names chunking, execution, runtime and quantization per policy."""
    from aloha_bench.evaluate import how_it_ran, summary_table

    base = {"label": "p", "task": "transfer_cube", "episodes": 1, "mean_steps": 1.0,
            "mean_return": 0.0, "stages": {}, "chunk_size": 100, "n_action_steps": 25,
            "temporal_ensemble_coeff": None}  # fmt: skip
    for key in ("success_rate", "success_rate_any", "success_rate_lenient"):
        base[key] = 1.0
    for suffix in ("", "_any", "_lenient"):
        base[f"ci_low{suffix}"], base[f"ci_high{suffix}"] = 0.2, 1.0
    onnx = {**base, "runtime": "onnx", "onnx_quantize": "int8_static_full",
            "execution": {"mode": "async", "smoothing": "blend"}}  # fmt: skip
    expected = "K = 100, 25 actions per chunk, async + blend, onnx (int8_static_full)"
    assert how_it_ran(onnx) == expected
    ensembled = {**base, "n_action_steps": 1, "temporal_ensemble_coeff": 0.01,
                 "runtime": "torch", "onnx_quantize": None,
                 "execution": {"mode": "sync", "smoothing": "none"}}  # fmt: skip
    assert how_it_ran(ensembled) == "K = 100, temporal ensembling (m = 0.01), sync, torch"
    assert "How each policy ran: p: K = 100, 25 actions per chunk, async" in summary_table([onnx])
    assert how_it_ran({"label": "old record"}) == ""
    # The precision computed in (fp32 where a bf16 run's hardware had no native bf16).
    assert how_it_ran({**ensembled, "precision": "fp32"}).endswith("sync, torch fp32")
