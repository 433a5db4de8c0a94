"""`reproduce`: profiles, the plan's cells, a tiny study end to end, resume, and Ray."""

import dataclasses
import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from aloha_bench import report, study

# Tiny studies for the default test run: 2 demos, 3 training steps, 2 evaluation episodes.


def _reproduce(*args: str) -> subprocess.CompletedProcess:
    """``aloha-bench reproduce ARGS`` in a fresh interpreter, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "aloha_bench.cli", "reproduce", *args],
        capture_output=True,
        text=True,
    )


def _tiny(tmp_path, **changes):
    text = "\n".join(
        [
            'description = "tiny"',
            'training_profile = "cpu"',
            'obs_mode = "state"',
            "demos = 2",
            "train_steps = 3",
            "eval_episodes = 2",
            "seeds = 1",
            'tasks = ["transfer_cube"]',
            'sources = ["scripted"]',
            'policies = ["act", "single_step"]',
        ]
    )
    path = tmp_path / "tiny.toml"
    path.write_text(text + "\n")
    profile = study.load_profile(path)
    return {**profile, **changes}


def test_shipped_profiles_load_and_plan():
    cpu = study.plan(study.load_profile("cpu"))
    assert {d.task for d in cpu.data} == {
        "transfer_cube",
        "insertion",
        "ziplock",
        "battery",
        "cup_lid",
    }
    main = [e for e in cpu.evals if "main" in e.groups]
    state = [e for e in main if e.train.data.obs_mode == "state"]
    assert len(state) == 5 * 2 * 3 * 3  # tasks x sources x policies x the paper's 3 seeds
    assert all(e.episodes >= 100 for e in main)
    # ACT in pixels on every task joins the main table (and the pixels group), 3 seeds.
    pixels = [e for e in main if e.train.data.obs_mode == "pixels"]
    assert {e.label["task"] for e in pixels} == {d.task for d in cpu.data}
    assert len(pixels) == 5 * 3 and all({"main", "pixels"} <= set(e.groups) for e in pixels)
    cameras = [e for e in cpu.evals if "cameras" in e.groups]
    assert {(e.label["task"], e.label["n_cameras"]) for e in cameras} == {
        (t, n) for t in ("transfer_cube", "battery") for n in (1, 2, 4)
    }
    assert 400 in {e.label["chunk_size"] for e in cpu.evals if "chunk_size" in e.groups}
    # The main table's act run is also the K = 100 point and the TE-off point: one training,
    # one evaluation, several groups. (The cpu robustness arms train longer: their own runs.)
    act_cube = [
        e
        for e in state
        if e.label["policy"] == "act"
        and e.label["task"] == "transfer_cube"
        and e.label["source"] == "scripted"
        and e.label["train_seed"] == 0
    ]
    assert len(act_cube) == 1
    assert {"chunk_size", "temporal_ensembling", "beta"} <= set(act_cube[0].groups)
    assert len({t.id for t in cpu.train}) == len(cpu.train)
    paper = study.plan(study.load_profile("paper"))
    assert all(t.config().obs_mode == "pixels" for t in paper.train)
    paper_main_act = [
        e
        for e in paper.evals
        if "main" in e.groups
        and (e.label["policy"], e.label["task"], e.label["source"], e.label["train_seed"])
        == ("act", "transfer_cube", "scripted", 0)
    ]
    assert "robustness" in paper_main_act[0].groups
    assert study.plan(study.load_profile("cpu"), seeds=3).train[0].train_seed == 0
    assert len(study.plan(study.load_profile("quick")).evals) == 2
    # A group alone brings the cells it needs: cvae is the main table's act and no_cvae cells.
    cvae = study.plan(study.load_profile("cpu"), groups=["cvae"]).evals
    assert len(cvae) == 5 * 2 * 2 * 3 and all(e.groups == ("cvae",) for e in cvae)


def test_robustness_arms_plan_their_own_runs():
    cells = study.plan(study.load_profile("cpu"), groups=["robustness"])
    arms = {(t.data.obs_mode, t.data.cameras, t.data.randomize, t.steps) for t in cells.train}
    assert arms == {
        ("pixels", ("top", "left_wrist"), "none", 10200),
        ("pixels", ("top", "left_wrist"), "strong", 10200),
        ("state", (), "none", 10000),
        ("state", (), "strong", 10000),
    }
    by_arm: dict = {}
    for e in cells.evals:
        key = (e.train.data.obs_mode, e.train.data.randomize)
        by_arm.setdefault(key, set()).add(e.label["perturbation"])
    # Camera and lighting act on a policy that sees images; the state arm leaves them out.
    assert {"camera", "lighting"} <= by_arm[("pixels", "none")]
    assert not {"camera", "lighting"} & by_arm[("state", "none")]
    assert by_arm[("state", "none")] == by_arm[("state", "strong")]
    assert by_arm[("pixels", "none")] == by_arm[("pixels", "strong")]
    assert {e.label["train_steps"] for e in cells.evals} == {10000, 10200}
    camera = next(e for e in cells.evals if e.label["perturbation"] == "camera")
    assert dict(camera.randomize)["camera_position_m"] == 0.03


def test_robustness_arms_inherit_and_are_validated(tmp_path):
    group = {"train_randomize": ["none"], "perturbations": [{"label": "none"}], "train_steps": 7}
    assert study.robustness_arms(group) == [group]
    arms = study.robustness_arms({**group, "arms": [{"obs_mode": "pixels"}, {"train_steps": 9}]})
    assert [a.get("obs_mode", "state") for a in arms] == ["pixels", "state"]
    assert [a["train_steps"] for a in arms] == [7, 9]
    assert all(a["perturbations"] == [{"label": "none"}] for a in arms)
    # An arm may pick the group's perturbations by label.
    two = {**group, "perturbations": [{"label": "none"}, {"label": "gains", "level": 1}]}
    picked = study.robustness_arms({**two, "arms": [{"perturbations": ["gains"]}]})
    assert picked[0]["perturbations"] == [{"label": "gains", "level": 1}]
    with pytest.raises(ValueError, match="'camera' is not one of the group's"):
        study._validate_robustness({**two, "arms": [{"perturbations": ["camera"]}]}, tmp_path)
    for bad, match in (
        ({**group, "arms": [{"camras": ["top"]}]}, "unknown keys \\['camras'\\]"),
        ({**group, "arms": "pixels"}, "arms must be a non-empty list"),
        ({"train_randomize": ["none"], "arms": [{}]}, "needs a non-empty 'perturbations'"),
        ({**group, "perturbations": [{"level": 1}]}, "needs a label"),
        ({**group, "arms": [{"obs_mode": "depth"}]}, "obs_mode must be"),
    ):
        with pytest.raises(ValueError, match=match):
            study._validate_robustness(bad, tmp_path / "p.toml")


def test_bad_profiles_and_arguments_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="available"):
        study.load_profile("no_such_study")
    bad = tmp_path / "bad.toml"
    bad.write_text('training_profile = "cpu"\n')
    with pytest.raises(ValueError, match="missing key 'obs_mode'"):
        study.load_profile(bad)
    profile = _tiny(tmp_path)
    # A misspelt top-level key would otherwise be dropped silently.
    typo = tmp_path / "typo.toml"
    typo.write_text((tmp_path / "tiny.toml").read_text() + "eval_episode = 7\n")
    with pytest.raises(
        ValueError, match="unknown key 'eval_episode' .did you mean 'eval_episodes'"
    ):
        study.load_profile(typo)
    typo.write_text((tmp_path / "tiny.toml").read_text() + "[groups.chunk_size]\nvalue = [1]\n")
    with pytest.raises(
        ValueError, match=r"\[groups.chunk_size\]: unknown key 'value' .did you mean"
    ):
        study.load_profile(typo)
    typo.write_text((tmp_path / "tiny.toml").read_text() + "[groups.beta]\nseeds = 1\n")
    with pytest.raises(ValueError, match=r"\[groups.beta\]: missing key 'values'"):
        study.load_profile(typo)
    with pytest.raises(ValueError, match="not in study"):
        study.plan(profile, tasks=["insertion"])
    with pytest.raises(ValueError, match="unknown groups"):
        study.plan(profile, groups=["main", "vibes"])
    with pytest.raises(ValueError, match="executor"):
        study.run_study(profile, tmp_path / "w", tmp_path / "r", executor="slurm")


def test_training_overrides_reach_every_run_and_bad_ones_are_named(tmp_path):
    _tiny(tmp_path)  # writes tiny.toml
    base = (tmp_path / "tiny.toml").read_text()
    path = tmp_path / "small.toml"
    path.write_text(base + "[groups.chunk_size]\nvalues = [10]\n[training_overrides]\n"
                    "n_decoder_layers = 1\ndim_feedforward = 64\n")  # fmt: skip
    the_plan = study.plan(study.load_profile(path))
    configs = [t.config() for t in the_plan.train]
    assert configs and all(c.n_decoder_layers == 1 and c.dim_feedforward == 64 for c in configs)
    assert {c.chunk_size for c in configs} >= {10, 100}  # a group's own setting still wins
    plain = study.plan(_tiny(tmp_path))
    assert not {t.id for t in the_plan.train} & {t.id for t in plain.train}  # runs of their own
    for table, match in (
        ("n_decoder_layer = 1", "n_decoder_layer"),
        ("steps = 5", "cannot set steps: .*train_steps"),
        ("chunk_size = 50", "cannot set chunk_size: baseline 'act' defines it"),
        ("n_action_steps = 1", "n_action_steps: baseline"),
        ("dropout = 2.0", "dropout"),
    ):
        path.write_text(base + f"[training_overrides]\n{table}\n")
        with pytest.raises(ValueError, match=f"training_overrides.*{match}|{match}.*"):
            study.load_profile(path)
    path.write_text(base + "training_overrides = 3\n")
    with pytest.raises(ValueError, match="must be a table"):
        study.load_profile(path)


def test_a_group_setting_that_is_a_study_policy_is_that_policys_run(tmp_path):
    """The chunk-size group's K = 1 is `single_step` (ACT without chunking): one run, one
    evaluation, in both groups, whichever groups a slice plans; other K stay act runs."""
    profile = {**_tiny(tmp_path), "groups": {"chunk_size": {"values": [1, 10, 100]}}}
    whole = study.plan(profile)
    k1 = [e for e in whole.evals if e.label["chunk_size"] == 1]
    assert len(k1) == 1 and set(k1[0].groups) == {"main", "chunk_size"}
    assert k1[0].train.baseline == "single_step" and k1[0].label["policy"] == "single_step"
    assert len(whole.train) == 3  # act K = 100 (main), single_step (K = 1), act K = 10
    alone = study.plan(profile, groups=["chunk_size"])
    assert {t.id for t in alone.train} <= {t.id for t in whole.train}
    assert {e.id for e in alone.evals} <= {e.id for e in whole.evals}
    k10 = next(t for t in alone.train if t.config().chunk_size == 10)
    assert k10.baseline == "act"
    # --policies filters what was asked for: the group's act points, K = 1 included.
    assert len(study.plan(profile, groups=["chunk_size"], policies=["act"]).evals) == 3
    assert not study.plan(profile, groups=["chunk_size"], policies=["single_step"]).evals


def test_tiny_study_end_to_end_then_resume_skips_finished_cells(tmp_path):
    profile = {**_tiny(tmp_path), "groups": {"chunk_size": {"values": [1, 100]}}}
    work, results = tmp_path / "work", tmp_path / "results"
    lines = []
    first = study.run_study(profile, work, results, log=lines.append)
    the_plan = study.plan(profile)
    assert first["skipped"] == 0 and first["missing"] == []
    summary = pd.read_csv(first["summary"], keep_default_na=False)
    report.validate_summary(summary)
    # act (main + K = 100) and single_step (main + K = 1: the chunk-size group's K = 1 is it)
    assert len(summary) == len(the_plan.evals) == 2
    assert set(summary["policy"]) == {"act", "single_step"}
    assert (summary["episodes"] == 2).all()
    for name in ("table_main.md", "REPORT.md", "task_bars.png", "chunk_size.png", "missing.md"):
        assert (results / name).is_file(), name
    assert "transfer_cube" in (results / "table_main.md").read_text()
    # Every evaluation wrote its episodes, one JSON line each.
    for cell in the_plan.evals:
        assert len(study.Layout(work, results).records(cell).read_text().splitlines()) == 2

    # A second run finds everything done and runs nothing.
    lines.clear()
    second = study.run_study(profile, work, results, log=lines.append)
    assert second["ran"] == 0 and lines == []
    assert pd.read_csv(second["summary"]).equals(pd.read_csv(first["summary"]))


def test_a_killed_study_continues_where_it_stopped(tmp_path):
    profile = _tiny(tmp_path, policies=["act"])
    work, results = tmp_path / "work", tmp_path / "results"
    the_plan = study.plan(profile)
    layout = study.Layout(work, results)
    (data,) = the_plan.data
    (train,) = the_plan.train
    (cell,) = the_plan.evals
    # As if killed after the demos and the training finished but before the evaluation.
    study.run_data_cell(data, layout)
    study.run_train_cell(train, layout, threads=1)
    result = study.run_study(profile, work, results)
    assert result["skipped"] == 2 and result["missing"] == []
    assert study.eval_done(cell, layout)
    # A run killed before its marker resumes from last/ instead of starting over.
    (layout.run(train) / study.DONE_FILE).unlink()
    message = study.run_train_cell(train, layout, threads=1)
    assert "trained 3 steps" in message


def test_recorded_evaluations_are_not_retrained_when_the_work_dir_is_gone(tmp_path):
    """A fresh clone holds results/ (records) but no runs/: finished cells stay finished, and
    only a run with an evaluation still to do trains again (with its dataset)."""
    import shutil

    profile = _tiny(tmp_path, policies=["act"])
    work, results = tmp_path / "work", tmp_path / "results"
    first = study.run_study(profile, work, results)
    assert first["missing"] == []
    shutil.rmtree(work)
    the_plan = study.plan(profile)
    layout = study.Layout(work, results)
    (data,) = the_plan.data
    (train,) = the_plan.train
    assert not study.train_needed(train, the_plan, layout)
    assert not study.data_needed(data, the_plan, layout)
    lines = []
    again = study.run_study(profile, work, results, log=lines.append)
    assert again["ran"] == 0 and lines == [] and not work.joinpath("data").exists()
    assert pd.read_csv(again["summary"]).equals(pd.read_csv(first["summary"]))

    # An evaluation the records lack (here: its record removed) needs the run and its data back.
    (cell,) = the_plan.evals
    layout.row(cell).unlink()
    assert study.train_needed(train, the_plan, layout)
    assert study.data_needed(data, the_plan, layout)
    third = study.run_study(profile, work, results)
    assert third["missing"] == [] and study.train_done(train, layout)


def test_records_of_another_model_of_a_run_are_evaluated_again(tmp_path):
    """A run trained elsewhere (its folder absent here) and trained again for a new evaluation
    gets other weights: its recorded evaluations are redone on the new model, so every record of
    one run id is of one model (a temporal-ensembling point beside its plain one)."""
    import os
    import shutil

    profile = _tiny(tmp_path, policies=["act"])
    work, results = tmp_path / "work", tmp_path / "results"
    study.run_study(profile, work, results)
    layout = study.Layout(work, results)
    (main,) = study.plan(profile).evals
    row = json.loads(layout.row(main).read_text())
    assert row["model_sha256"] == study.model_sha256(layout.run(main.train))
    assert len(row["model_sha256"]) == 64 and not study.eval_stale(main, layout)
    # As if the run had been trained on another machine: its folder is not here, and its
    # record names other weights.
    shutil.rmtree(work)
    layout.row(main).write_text(json.dumps({**row, "model_sha256": "0" * 64}))
    assert not study.eval_stale(main, layout)  # nothing here to compare it with
    with_te = {**profile, "groups": {"temporal_ensembling": {"coeff": 0.01}}}
    lines = []
    result = study.run_study(with_te, work, results, log=lines.append)
    assert result["missing"] == []
    assert any("evaluating again 1 recorded cells of 1 run(s)" in line for line in lines)
    redone = json.loads(layout.row(main).read_text())
    assert redone["model_sha256"] == study.model_sha256(layout.run(main.train))
    the_plan = study.plan(with_te)
    assert {json.loads(layout.row(e).read_text())["model_sha256"] for e in the_plan.evals} == {
        redone["model_sha256"]
    }
    # A row written before rows named their model counts as stale when it is older than the
    # run's finish, and as current when newer; a run without a manifest compares nothing.
    legacy = {k: v for k, v in redone.items() if k != "model_sha256"}
    layout.row(main).write_text(json.dumps(legacy))
    done = layout.run(main.train) / study.DONE_FILE
    os.utime(layout.row(main), (done.stat().st_mtime - 60,) * 2)
    assert study.eval_stale(main, layout) and not study.eval_done(main, layout)
    assert "evaluate 2 episodes again" in study.missing_markdown(the_plan, layout)
    os.utime(layout.row(main), (done.stat().st_mtime + 60,) * 2)
    assert study.eval_done(main, layout)
    layout.row(main).write_text(json.dumps({**legacy, "model_sha256": "1" * 64}))
    for name in ("best", "last"):
        (layout.run(main.train) / name / "manifest.json").unlink(missing_ok=True)
    assert study.model_sha256(layout.run(main.train)) is None
    assert study.eval_done(main, layout)


def test_idle_workers_record_the_same_dataset(tmp_path):
    assert study.generation_workers(1, 2) == 2  # the quick study: one dataset, two cores
    assert study.generation_workers(5, 2) == study.generation_workers(3, 4) == 1
    assert study.generation_workers(2, 8) == 4
    assert study.generation_workers(1, 2, executor="ray") == 1
    # Recording with two processes writes the dataset one process writes.
    from aloha_bench.data.store import EpisodeStore

    profile = _tiny(tmp_path, policies=["act"])
    (cell,) = study.plan(profile).data
    stores = []
    for workers in (1, 2):
        layout = study.Layout(tmp_path / f"w{workers}", tmp_path / "results")
        study.run_data_cell(cell, layout, workers=workers)
        stores.append(EpisodeStore.open(layout.dataset(cell)))
    assert stores[0].n_episodes == stores[1].n_episodes == 2
    for key in ("action", "observation.state"):
        assert (stores[0].episode(0)[key] == stores[1].episode(0)[key]).all(), key


def test_missing_cells_are_listed(tmp_path):
    profile = _tiny(tmp_path, policies=["act"])
    the_plan = study.plan(profile)
    layout = study.Layout(tmp_path / "work", tmp_path / "results")
    result = study.write_summary(the_plan, layout)
    assert result["summary"] is None and len(result["missing"]) == 1
    assert "1 of 1 evaluation cells are missing" in (layout.results / "missing.md").read_text()


def test_plan_slices_by_observation_mode():
    """--obs-modes runs a group's state cells apart from its pixel cells (robustness has both)."""
    cpu = study.load_profile("cpu")
    whole = study.plan(cpu, groups=["robustness"])
    state = study.plan(cpu, groups=["robustness"], obs_modes=["state"])
    pixels = study.plan(cpu, groups=["robustness"], obs_modes=["pixels"])
    assert {e.train.data.obs_mode for e in state.evals} == {"state"}
    assert {e.train.data.obs_mode for e in pixels.evals} == {"pixels"}
    assert {e.id for e in state.evals} | {e.id for e in pixels.evals} == {e.id for e in whole.evals}
    assert not {d.id for d in state.data} & {d.id for d in pixels.data}
    with pytest.raises(ValueError, match=r"obs modes \['rgb'\] are unknown"):
        study.plan(cpu, obs_modes=["rgb"])
    # --sources slices the ablation groups too (their own sources are scripted only).
    human = study.plan(cpu, sources=["human"])
    assert human.evals and {e.label["source"] for e in human.evals} == {"human"}
    assert not study.plan(cpu, groups=["beta"], sources=["human"]).evals


def test_the_cpu_robustness_pixel_arm_is_the_pixel_cells_policy():
    """The `cpu` study's robustness pixel arm, trained without randomization, is the pixel
    cells' run of seed 0 (one model, two groups), and its unperturbed evaluation is that main
    cell: the perturbations are read against the pixel policy the main table reports."""
    cpu = study.load_profile("cpu")
    the_plan = study.plan(cpu, tasks=["transfer_cube"], groups=["pixels", "robustness"], seeds=1)
    pixel_evals = [e for e in the_plan.evals if e.train.data.obs_mode == "pixels"]
    robust = [e for e in pixel_evals if "robustness" in e.groups]
    unrandomized = [e for e in robust if "rand-" not in e.train.data.id]
    assert unrandomized and len({e.train.id for e in unrandomized}) == 1
    unperturbed = next(e for e in unrandomized if e.label["perturbation"] == "none")
    assert "pixels" in unperturbed.groups
    assert {e.train.id for e in robust} - {unperturbed.train.id}  # the randomized run is its own


def test_reproduce_refuses_filters_that_select_nothing():
    result = _reproduce(
        "--profile", "cpu", "--groups", "demos", "--obs-modes", "pixels", "--dry-run"
    )
    assert result.returncode == 2
    assert "no cell of study 'cpu' matches --groups demos --obs-modes pixels" in result.stderr


def test_records_no_cell_owns_are_named_not_read(tmp_path):
    """A record left by an earlier plan (another id for the same setting, an older task
    version...) is not read into summary.csv, and missing.md and the CLI name it."""
    profile = _tiny(tmp_path)
    the_plan = study.plan(profile)
    layout = study.Layout(tmp_path / "work", tmp_path / "results")
    records = layout.results / "records"
    records.mkdir(parents=True)
    owned = the_plan.evals[0].id
    # The owned cell has only its episodes so far (an evaluation that stopped half way).
    for name in (f"{owned}.jsonl", "old_cell_eval_0000.json", "old_cell_eval_0000.jsonl"):
        (records / name).write_text("{}")
    assert study.orphan_records(the_plan, layout) == ["old_cell_eval_0000"]
    result = study.write_summary(the_plan, layout)
    assert result["orphans"] == ["old_cell_eval_0000"] and result["summary"] is None
    text = (layout.results / "missing.md").read_text()
    assert "Records of no cell of this study: 1" in text and "`old_cell_eval_0000`" in text
    (records / "old_cell_eval_0000.json").unlink()
    (records / "old_cell_eval_0000.jsonl").unlink()
    study.write_summary(the_plan, layout)
    assert "Records of no cell" not in (layout.results / "missing.md").read_text()


def test_missing_md_says_what_each_cell_still_needs(tmp_path):
    """missing.md explains every missing cell: its dataset, the steps after its run's last
    checkpoint, its episodes, the group's command and hours; a checkpoint counts in the plan's
    size too (an interrupted run is not counted whole)."""
    profile = _tiny(
        tmp_path,
        train_steps=1000,
        groups={"chunk_size": {"tasks": ["transfer_cube"], "values": [10], "seeds": 1}},
        cost={
            "state_steps_per_s": 1.0,
            "pixels_steps_per_s": 1.0,
            "state_episodes_per_min": 60.0,
            "pixels_episodes_per_min": 60.0,
        },
    )
    the_plan = study.plan(profile)
    layout = study.Layout(tmp_path / "work", tmp_path / "results")
    act = next(e for e in the_plan.evals if e.groups == ("main",) and e.label["policy"] == "act")
    k10 = next(e for e in the_plan.evals if e.groups == ("chunk_size",))
    # The act run stopped after a checkpoint at step 400 (the swap's leftover last.old/ is older).
    for name, step in (("last", 400), ("last.old", 300)):
        (layout.run(act.train) / name).mkdir(parents=True)
        (layout.run(act.train) / name / "manifest.json").write_text(json.dumps({"step": step}))
    assert study.checkpointed_step(act.train, layout) == 400
    assert (
        study.steps_left(act.train, layout) == 600 and study.steps_left(k10.train, layout) == 1000
    )
    size = study.plan_size(the_plan, todo_in=layout)["state"]
    assert size["train_steps"] == sum(t.steps for t in the_plan.train) - 400
    # A garbled manifest is no checkpoint (train verifies it on resume; here it must not fail).
    (layout.run(k10.train) / "last").mkdir(parents=True)
    (layout.run(k10.train) / "last" / "manifest.json").write_text("{")
    assert study.checkpointed_step(k10.train, layout) == 0

    study.write_summary(the_plan, layout)
    text = (layout.results / "missing.md").read_text()
    n = len(the_plan.evals)
    assert f"{n} of {n} evaluation cells are missing" in text
    assert "`aloha-bench reproduce --profile tiny --groups main`" in text
    assert "`aloha-bench reproduce --profile tiny --groups chunk_size`" in text
    rows = {
        line.split("`")[-2]: line
        for line in text.splitlines()
        if line.startswith("| ") and "`" in line
    }
    assert set(rows) == {e.id for e in the_plan.evals}
    assert (
        "record 2 demos (shared by 3 of these cells); train from step 400 (resumes) to 1,000 "
        "(~10 min at the [cost] rate); evaluate 2 episodes" in rows[act.id]
    )
    assert "| K 10 |" in rows[k10.id] and "train 1,000 steps (~17 min" in rows[k10.id]
    # single_step's K = 1 is what the policy is, not a setting of a group.
    single = next(e for e in the_plan.evals if e.label["policy"] == "single_step")
    assert "| as the main cells |" in rows[single.id]
    # Once the dataset is recorded and the act run finished, its cell needs only its episodes.
    (layout.run(act.train) / study.DONE_FILE).write_text("")
    text = study.missing_markdown(the_plan, layout)
    act_row = next(line for line in text.splitlines() if act.id in line)
    assert "| trained; evaluate 2 episodes |" in act_row
    # Nothing missing: the file says so and lists nothing.
    for cell in the_plan.evals:
        layout.row(cell).parent.mkdir(parents=True, exist_ok=True)
        layout.row(cell).write_text("{}")
    assert study.missing_markdown(the_plan, layout).splitlines()[-1] == (
        f"0 of {n} evaluation cells are missing."
    )


def test_ray_executor_runs_the_same_cells(tmp_path):
    ray = pytest.importorskip("ray")
    profile = _tiny(tmp_path, policies=["act"])
    try:
        result = study.run_study(
            profile, tmp_path / "work", tmp_path / "results", executor="ray", workers=1
        )
    finally:
        ray.shutdown()
    assert result["missing"] == [] and result["summary"].is_file()


def test_reproduce_cli_dry_run_lists_cells():
    result = subprocess.run(
        [sys.executable, "-m", "aloha_bench.cli", "reproduce", "--profile", "quick", "--dry-run"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "train     2 cells" in result.stdout and "eval      2 cells" in result.stdout
    assert "whole plan:" in result.stdout and "still to do in runs/quick/:" in result.stdout


def test_report_only_runs_nothing_and_says_what_is_missing(tmp_path):
    result = _reproduce(
        "--profile",
        "quick",
        "--report-only",
        "--work-dir",
        str(tmp_path / "work"),
        "--out",
        str(tmp_path / "results"),
    )
    assert result.returncode == 1 and "no evaluation" in result.stdout
    assert not (tmp_path / "work").exists()  # nothing was generated or trained
    assert "2 of 2 evaluation cells are missing" in (tmp_path / "results/missing.md").read_text()


def test_running_cells_report_counts_rates_and_eta(tmp_path):
    layout = study.Layout(tmp_path / "work", tmp_path / "results")
    cell = study.CellProgress(layout, "transfer_cube_act_s0", "train", 1000, "steps")
    # Before its first report a cell is loading (data, or the checkpoint it resumes from):
    # its count is unknown, not 0.
    assert "train transfer_cube_act_s0: starting (1000 steps in all)" in study.status_line(
        layout, 0, 1, started=0.0
    )
    cell.update(100, force=True, samples_per_s=0.0)  # resumed at 100: no window timed yet
    resumed = study.status_line(layout, 0, 1, started=0.0)
    assert "train transfer_cube_act_s0: 100/1000 steps" in resumed and "samples/s" not in resumed
    cell.state["first"][1] -= 10.0  # 150 steps in the ten seconds since
    cell.update(250, force=True, samples_per_s=200.0)
    demos = study.CellProgress(layout, "cube_scripted", "data", 20, "demos")
    demos.update(5, force=True, failed=1)
    line = study.status_line(layout, finished=3, total=9, started=demos.state["started"] - 65)
    assert line.startswith("[1:05] 3/9 cells finished")
    assert "train transfer_cube_act_s0: 250/1000 steps, 200 samples/s, ETA 0:50" in line
    assert "data cube_scripted: 5/20 demos, 1 failed attempts dropped" in line
    cell.close()
    demos.close()
    assert study.status_line(layout, 9, 9, demos.state["started"]).endswith("9/9 cells finished")


def test_a_second_study_in_the_work_folder_leaves_the_first_ones_progress(tmp_path):
    """Two studies running different slices in one work folder: the one starting removes only
    the progress of processes that are gone, and a progress write whose folder vanished neither
    raises nor stops its cell (a study slice once stopped an hour in when another started)."""
    import subprocess
    import sys

    layout = study.Layout(tmp_path / "work", tmp_path / "results")
    live = study.CellProgress(layout, "live_cell", "train", 100, "steps")
    gone = study.CellProgress(layout, "killed_cell", "train", 100, "steps")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    gone.state["pid"] = int(dead.stdout)
    gone.update(5, force=True)
    legacy = layout.progress("before_writers_were_named")
    legacy.write_text(json.dumps({"id": "x", "kind": "eval", "done": 1, "total": 2}))
    # The status line shows only work that is being done: not the killed study's cell.
    line = study.status_line(layout, 0, 3, started=0.0)
    assert "train live_cell: starting (100 steps in all)" in line and "killed_cell" not in line
    removed = study.clear_stale_progress(layout)
    assert sorted(p.name for p in removed) == [
        "before_writers_were_named.json",
        "killed_cell.json",
    ]
    assert layout.progress("live_cell").is_file()
    # The folder removed under a running cell (as the old start-up cleanup did): it comes back.
    import shutil

    shutil.rmtree(layout.work / "progress")
    live.update(50, force=True)
    assert json.loads(layout.progress("live_cell").read_text())["done"] == 50
    # A folder that cannot be made: one warning, and the cell goes on.
    shutil.rmtree(layout.work / "progress")
    (layout.work / "progress").write_text("not a folder")
    with pytest.warns(RuntimeWarning, match="could not be written"):
        live.update(60, force=True)
    live.update(70, force=True)  # warned once
    assert live.state["done"] == 70


def test_a_cell_runs_in_one_study_at_a_time(tmp_path, monkeypatch, caplog):
    """Two studies in one work folder that reach the same cell: the second waits for the first
    (which could otherwise find a run without its first checkpoint and delete it) and then
    finds the cell done instead of running it again."""
    import threading

    layout = study.Layout(tmp_path / "work", tmp_path / "results")
    cell = study.plan(_tiny(tmp_path, policies=["act"])).data[0]
    monkeypatch.setattr(study, "data_done", lambda c, lay: True)
    order = []

    def second():
        order.append(("second", study.run_data_cell(cell, layout)))

    with study.cell_lock(layout, cell.id) as waited:
        assert not waited
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(0.5)
        order.append(("first", "done"))
    thread.join(10)
    assert order == [("first", "done"), ("second", f"{cell.id}: recorded by another process")]
    # The waiting study said whom it waited for; the released lock leaves no file behind.
    assert f"{cell.id}: waiting for PID {os.getpid()} on " in caplog.text
    assert not (layout.work / "locks" / f"{cell.id}.lock").exists()
    assert study.run_data_cell(cell, layout) == f"{cell.id}: done before"
    with study.cell_lock(layout, "another_cell") as waited:
        assert not waited
    # A filesystem that refuses flock (some network mounts): the cell runs unlocked.
    import fcntl

    def refuse(_f, op):
        if op != fcntl.LOCK_UN:
            raise OSError(37, "No locks available")

    monkeypatch.setattr(fcntl, "flock", refuse)
    caplog.clear()
    with study.cell_lock(layout, cell.id) as waited:
        assert not waited
    assert "running without the lock" in caplog.text


def test_a_study_prints_status_lines_while_cells_run(tmp_path):
    profile = _tiny(tmp_path, policies=["act"])
    lines = []
    study.run_study(
        profile, tmp_path / "work", tmp_path / "results", log=lines.append, status_every_s=0.2
    )
    status = [line for line in lines if "cells finished" in line]
    assert status, lines
    assert any(" steps" in line or " demos" in line or " episodes" in line for line in status)
    assert not (tmp_path / "work" / "progress").exists() or not any(
        (tmp_path / "work" / "progress").iterdir()
    )


def test_steps_seeds_and_episodes_per_task_and_group(tmp_path):
    profile = _tiny(
        tmp_path,
        tasks=["transfer_cube", "insertion"],
        train_steps={"default": 5, "insertion": 9},
        groups={"beta": {"values": [1], "train_steps": {"insertion": 11}, "seeds": 2}},
    )
    cells = study.plan(profile)
    steps = {(e.label["task"], e.groups): e.train.steps for e in cells.evals}
    assert steps[("transfer_cube", ("main",))] == 5 and steps[("insertion", ("main",))] == 9
    # The group's table names insertion only: transfer_cube keeps the profile's default.
    assert steps[("insertion", ("beta",))] == 11 and steps[("transfer_cube", ("beta",))] == 5
    beta_seeds = {e.label["train_seed"] for e in cells.evals if e.groups == ("beta",)}
    assert beta_seeds == {0, 1}
    size = study.plan_size(cells)
    assert size["state"]["train_runs"] == len(cells.train) and size["pixels"]["train_runs"] == 0
    assert size["state"]["eval_episodes"] == 2 * len(cells.evals) and size["hours"] is None
    with_cost = {
        **profile,
        "cost": {
            "state_steps_per_s": 1.0,
            "pixels_steps_per_s": 1.0,
            "state_episodes_per_min": 60.0,
            "pixels_episodes_per_min": 60.0,
        },
    }
    expected_s = sum(t.steps for t in cells.train) + 2 * len(cells.evals)
    assert study.plan_size(study.plan(with_cost))["hours"] == pytest.approx(expected_s / 3600)
    # What is left in a work folder: nothing run yet is the whole plan; one run's evaluations
    # recorded take that run, its evaluations and (here, its only reader) nothing else off it.
    layout = study.Layout(tmp_path / "work", tmp_path / "results")
    assert study.plan_size(cells, todo_in=layout) == size
    first = cells.evals[0]
    for cell in cells.evals_of(first.train):
        layout.row(cell).parent.mkdir(parents=True, exist_ok=True)
        layout.row(cell).write_text("{}")
    left = study.plan_size(cells, todo_in=layout)["state"]
    done = cells.evals_of(first.train)
    assert left["eval_cells"] == len(cells.evals) - len(done)
    assert left["train_runs"] == len(cells.train) - 1
    assert left["train_steps"] == size["state"]["train_steps"] - first.train.steps
    # The hours left at the training rate this machine reached on the finished runs: one act run
    # logged two equal windows at 80 and 120 samples/s (96 overall) at batch 8: 12 steps/s.
    with_cost_plan = study.plan(with_cost)
    run = layout.run(first.train)
    run.mkdir(parents=True)
    (run / study.DONE_FILE).write_text("")
    (run / "config.json").write_text(json.dumps({"batch_size": 8}))
    (run / "losses.csv").write_text("step,samples_per_s\n5,80\n10,120\n11,\n")
    left = study.plan_size(with_cost_plan, todo_in=layout)
    assert left["measured_rates"] == {("state", first.train.baseline): (12.0, 1)}
    # A slice whose own runs have not run (here: one task) takes the whole study's rates.
    rest = {e.label["task"] for e in cells.evals} - {first.label["task"]}
    sliced = study.plan(with_cost, tasks=sorted(rest))
    assert study.plan_size(sliced, todo_in=layout)["hours_measured"] is None
    from_study = study.plan_size(sliced, todo_in=layout, rates_from=with_cost_plan)
    assert from_study["measured_rates"] == left["measured_rates"]
    todo = [t for t in with_cost_plan.train if study.train_needed(t, with_cost_plan, layout)]
    todo_evals = [e for e in with_cost_plan.evals if not study.eval_done(e, layout)]
    expected_s = sum(
        t.steps / (12.0 if t.baseline == first.train.baseline else 1.0) for t in todo
    ) + 2 * len(todo_evals)
    assert left["hours_measured"] == pytest.approx(expected_s / 3600)
    # A damaged run folder gives no rate instead of failing the estimate.
    (run / "config.json").write_text("{")
    assert study.plan_size(with_cost_plan, todo_in=layout)["hours_measured"] is None
    for bad, match in (
        ({"train_steps": {"insertoin": 3}}, "unknown keys \\['insertoin'\\]"),
        ({"train_steps": {"default": 0}}, "must be an integer >= 1"),
        ({"groups": {"beta": {"values": [1], "seeds": 0}}}, "seeds must be an integer"),
        ({"groups": {"train_steps": {"values": [3000, 0]}}}, "list of step counts"),
        ({"groups": {"train_steps": {}}}, "list of step counts"),
        ({"groups": {"demos": {"values": [50, 0]}}}, "list of demonstration counts"),
        ({"groups": {"demos": {"values": "200"}}}, "list of demonstration counts"),
    ):
        path = tmp_path / "bad.toml"
        text = (tmp_path / "tiny.toml").read_text()
        import tomllib

        raw = {**tomllib.loads(text), **bad}
        with pytest.raises(ValueError, match=match):
            study._validate_profile(raw, path)


def test_a_study_films_example_outcomes_for_the_browser(tmp_path):
    """example_videos: after an evaluation, one success and one failure are replayed from their
    seeds and filmed into the work folder; the summary links them, index.html shows them."""
    profile = _tiny(tmp_path, policies=["act"], example_videos=True)
    work, results = tmp_path / "work", tmp_path / "results"
    result = study.run_study(profile, work, results)
    summary = pd.read_csv(result["summary"], keep_default_na=False)
    (row,) = summary.to_dict("records")
    # A 3-step policy fails both episodes: a failure is filmed, no success exists to film.
    assert row["successes"] == 0 and row["video_success"] == ""
    film = (results / row["video_failure"]).resolve()
    assert film.is_file() and film.suffix == ".mp4" and work.resolve() in film.parents
    page = (results / "index.html").read_text()
    assert f'src="{row["video_failure"]}"' in page and "no success filmed" in page
    # REPORT.md links the same film, and says why there is no success video.
    text = (results / "REPORT.md").read_text()
    assert f"[failure video]({row['video_failure']})" in text
    assert f"no success (0 of {row['episodes']} episodes succeeded)" in text


def test_the_training_budget_group_trains_act_at_each_step_count(tmp_path):
    """[groups.train_steps]: act on scripted demos at every listed budget; the budget equal to the
    main cells' is the main run itself (one run, two groups)."""
    profile = _tiny(
        tmp_path,
        tasks=["transfer_cube"],
        train_steps=5,
        groups={"train_steps": {"values": [5, 9]}},
    )
    cells = study.plan(profile)
    budget = [e for e in cells.evals if "train_steps" in e.groups]
    assert sorted(e.train.steps for e in budget) == [5, 9]
    assert all(e.label["policy"] == "act" and e.label["source"] == "scripted" for e in budget)
    shared = next(e for e in budget if e.train.steps == 5)
    assert "main" in shared.groups


def test_the_demos_group_records_more_demos_under_new_ids_and_reuses_the_main_cell(tmp_path):
    """[groups.demos]: act on N scripted demos per listed count; the profile's own count is the
    main cell (same data, run and evaluation), another count gets its own store (d<N> in the
    id), and every cell carries the count as a label."""
    plain = study.plan(_tiny(tmp_path, tasks=["transfer_cube"]))
    profile = _tiny(tmp_path, tasks=["transfer_cube"], groups={"demos": {"values": [2, 5]}})
    cells = study.plan(profile)
    counts = [e for e in cells.evals if "demos" in e.groups]
    assert sorted(e.train.data.episodes for e in counts) == [2, 5]
    shared = next(e for e in counts if e.train.data.episodes == 2)
    assert "main" in shared.groups and "_d" not in shared.train.data.id
    more = next(e for e in counts if e.train.data.episodes == 5)
    assert more.train.data.id.endswith("_d5") or "_d5_" in more.train.data.id
    assert {e.label["demos"] for e in cells.evals} == {2, 5}
    # Adding the group renames nothing that was planned before.
    assert {e.id for e in plain.evals} <= {e.id for e in cells.evals}


def test_validation_l1_reads_the_runs_loss_log(tmp_path):
    (tmp_path / "losses.csv").write_text(
        "step,loss,val_l1_prior\n100,1.0,\n500,0.5,0.20\n1000,0.4,0.10\n1500,0.3,0.12\n"
    )
    assert study.validation_l1(tmp_path) == {
        "val_l1_best": 0.10,
        "val_best_step": 1000,
        "val_l1_last": 0.12,
    }
    empty = study.validation_l1(tmp_path / "missing")
    assert all(v != v for v in empty.values())  # NaN: no validation logged


def test_jobs_are_ordered_longest_first():
    """Longest-processing-time order: the estimate grows with steps, pixels cost more per step,
    and a finished run counts only its evaluations."""
    cpu = study.load_profile("cpu")
    cells = study.plan(cpu, tasks=["transfer_cube"], groups=["main", "pixels"], seeds=1)
    state = next(t for t in cells.train if t.data.obs_mode == "state")
    pixels = next(t for t in cells.train if t.data.obs_mode == "pixels")
    evals = cells.evals_of(state)
    assert study.job_seconds(cpu, pixels) > study.job_seconds(cpu, state)
    assert study.job_seconds(cpu, state, evals, trained=True) < study.job_seconds(cpu, state, evals)
    longer = dataclasses.replace(state, steps=2 * state.steps)
    assert study.job_seconds(cpu, longer) == pytest.approx(2 * study.job_seconds(cpu, state))


def test_a_study_runs_in_slices_of_sources_and_policies():
    """--sources / --policies: the scripted cells can run before the human ones; every group's
    cells obey the slice, and a name the profile lacks is refused with the valid ones."""
    cpu = study.load_profile("cpu")
    scripted = study.plan(cpu, sources=["scripted"])
    assert {e.label["source"] for e in scripted.evals} == {"scripted"}
    assert {d.source for d in scripted.data} == {"scripted"}
    act = study.plan(cpu, groups=["main"], policies=["act"], seeds=1)
    assert {e.label["policy"] for e in act.evals} == {"act"}
    assert len(act.train) == len(cpu["tasks"]) * len(cpu["sources"])  # pixels: its own group
    with pytest.raises(ValueError, match="sources \\['teleop'\\] are not in study"):
        study.plan(cpu, sources=["teleop"])
    with pytest.raises(ValueError, match="policies \\['diffusion'\\] are not in study"):
        study.plan(cpu, policies=["diffusion"])


def test_a_slice_of_the_study_keeps_the_whole_studys_report(tmp_path):
    """Running one group (or task, source, policy, seed count) rewrites summary.csv and the
    report from every finished cell of the study: the other cells' rows and plots stay."""
    profile = {**_tiny(tmp_path), "groups": {"chunk_size": {"values": [1, 100]}}}
    work, results = tmp_path / "work", tmp_path / "results"
    study.run_study(profile, work, results, groups=["chunk_size"])
    assert (results / "chunk_size.png").is_file()
    sliced = study.run_study(profile, work, results, groups=["main"], policies=["single_step"])
    summary = pd.read_csv(sliced["summary"], keep_default_na=False)
    assert set(summary["policy"]) == {"act", "single_step"}
    assert any("chunk_size" in g for g in summary["groups"])
    assert (results / "chunk_size.png").is_file()  # the other group's plot was not deleted
    # missing.md lists the study's missing cells, not the slice's.
    assert sliced["missing"] == [] and "0 of 2" in (results / "missing.md").read_text()


@pytest.mark.parametrize(
    "addition, match",
    [
        ("groups = 3", "groups must be tables"),
        ('groups = ["cvae"]', "groups must be tables"),
        (
            "[groups.chunksize]\nvalues = [1]",
            "unknown group 'chunksize' .did you mean 'chunk_size'",
        ),
        ("[groups.beta]\nvalues = 10", r"\[groups.beta\] values must be a list of KL weights"),
        ("[groups.chunk_size]\nvalues = 10", r"values must be a list of chunk sizes"),
        ('[groups.chunk_size]\nvalues = ["a"]', r"values must be a list of chunk sizes"),
        ('[groups.temporal_ensembling]\ncoeff = "x"', "coeff must be a number > 0"),
        (
            '[groups.cameras]\nsets = [["top", "fornt"]]',
            "unknown camera 'fornt' .did you mean 'front'",
        ),
        ('[groups.chunk_size]\nvalues = [1]\ntasks = ["insertoin"]', "unknown task 'insertoin'"),
        ("image_size = 96", r"image_size must be \[height, width\]"),
        ("cost = 3", "cost must be a table"),
        ("[cost]\nstate_step_per_s = 7.0", "unknown key 'state_step_per_s' .did you mean"),
        ('example_videos = "no"', "example_videos must be true or false"),
        ('eval_seed = "x"', "eval_seed must be an integer"),
        ('cameras = "top"', "cameras must be a list of camera names"),
    ],
)
def test_a_malformed_profile_is_named_not_a_traceback(tmp_path, addition, match):
    _tiny(tmp_path)
    path = tmp_path / "bad.toml"
    path.write_text((tmp_path / "tiny.toml").read_text() + addition + "\n")
    with pytest.raises(ValueError, match=match):
        study.load_profile(path)


@pytest.mark.parametrize(
    "old, new, match",
    [
        (
            'obs_mode = "state"',
            'obs_mode = "pixel"',
            "obs_mode: unknown mode 'pixel' .did you mean",
        ),
        ('training_profile = "cpu"', 'training_profile = "cpuu"', "training_profile: no profile"),
        ('sources = ["scripted"]', 'sources = "scripted"', "sources must be a list"),
    ],
)
def test_a_wrong_required_value_is_named(tmp_path, old, new, match):
    _tiny(tmp_path)
    path = tmp_path / "bad.toml"
    path.write_text((tmp_path / "tiny.toml").read_text().replace(old, new))
    with pytest.raises(ValueError, match=match):
        study.load_profile(path)


def test_an_unknown_policy_gets_the_nearest_name(tmp_path):
    _tiny(tmp_path)
    path = tmp_path / "bad.toml"
    path.write_text((tmp_path / "tiny.toml").read_text().replace('"single_step"', '"single_stp"'))
    with pytest.raises(ValueError, match="policies: unknown policy 'single_stp' .did you mean"):
        study.load_profile(path)
