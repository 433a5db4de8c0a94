"""Tables and plots from crafted summary rows (aloha_bench.report): no simulator, no training."""

import subprocess
import sys

import pandas as pd
import pytest

from aloha_bench import report
from aloha_bench.stats import wilson_interval

STAGES = {
    "transfer_cube": "touched>lifted>transferred",
    "insertion": "grasp>contact>inserted",
    "ziplock": "grasp>pinch>open",
    "battery": "grasp>place>insert",
    "cup_lid": "grasp>grip_tab>open",
}


def row(**overrides) -> dict:
    """One summary row with every column; rates and Wilson intervals follow from the counts."""
    r = {
        "cell": "c",
        "groups": "main",
        "task": "transfer_cube",
        "policy": "act",
        "source": "scripted",
        "obs_mode": "state",
        "train_seed": 0,
        "chunk_size": 100,
        "kl_weight": 10.0,
        "use_vae": True,
        "temporal_ensemble": False,
        "cameras": "",
        "n_cameras": 0,
        "train_randomize": "none",
        "perturbation": "none",
        "perturbation_level": 0,
        "episodes": 50,
        "successes": 25,
        "successes_any": 30,
        "stage_1": 0.9,
        "stage_2": 0.8,
        "stage_3": 0.6,
        "mean_steps": 300.0,
        "mean_return": 1.0,
        "run": "runs/x",
        "records": "runs/x/records.jsonl",
    }
    r.update(overrides)
    r.setdefault("successes_lenient", r["successes_any"])
    r["stages"] = STAGES[r["task"]]
    for suffix in ("", "_any", "_lenient"):
        k, n = r[f"successes{suffix}"], r["episodes"]
        r[f"success_rate{suffix}"] = k / n
        r[f"ci_low{suffix}"], r[f"ci_high{suffix}"] = wilson_interval(k, n)
    return r


def frame(*rows: dict) -> pd.DataFrame:
    df = pd.DataFrame([{**r, "cell": f"c{i}"} for i, r in enumerate(rows)])
    # Optional columns (absent from old summaries) are kept where a row sets them: the lenient
    # rule's, and the training budget's (train_steps, validation L1) for its ablation.
    optional = [c for c in report.OPTIONAL_COLUMNS if c in df.columns]
    return df[list(report.SUMMARY_COLUMNS) + optional]


def test_pool_sums_counts_and_recomputes_wilson():
    df = frame(row(train_seed=0, successes=10), row(train_seed=1, successes=20))
    pooled = report.pool(df, ["task", "policy"])
    assert len(pooled) == 1
    p = pooled.iloc[0]
    assert (p["episodes"], p["successes"], p["n_seeds"]) == (100, 30, 2)
    assert p["success_rate"] == pytest.approx(0.3)
    assert (p["ci_low"], p["ci_high"]) == pytest.approx(wilson_interval(30, 100))
    assert p["seed_std"] == pytest.approx(pd.Series([0.2, 0.4]).std())
    assert p["stage_1"] == pytest.approx(0.9)
    assert (p["stage_1_low"], p["stage_1_high"]) == pytest.approx(wilson_interval(90, 100))


def test_pool_one_seed_has_no_seed_std():
    assert pd.isna(report.pool(frame(row()), ["task"]).iloc[0]["seed_std"])


def test_main_table_places_ours_and_paper_in_the_right_cells():
    df = frame(
        row(successes=43, successes_any=45, successes_lenient=47, episodes=50),
        row(task="insertion", source="human", successes=10),
    )
    text = report.main_table(df, report.load_paper_results())
    header, _, act_scripted, act_human = text.splitlines()[:4]
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert "**transfer_cube: transferred**" in columns
    assert "insertion: grasp" in columns
    cells = [c.strip() for c in act_scripted.strip("|").split("|")]
    low, high = wilson_interval(43, 50)
    low_any, high_any = wilson_interval(45, 50)
    low_len, high_len = wilson_interval(47, 50)
    # The final stage shows the three rules; the paper's figure (its code's lenient rule)
    # follows them.
    expected = (
        f"end 86% [{100 * low:.0f}, {100 * high:.0f}] · "
        f"any 90% [{100 * low_any:.0f}, {100 * high_any:.0f}] · "
        f"lenient 94% [{100 * low_len:.0f}, {100 * high_len:.0f}] (paper 86)"
    )
    assert cells[columns.index("**transfer_cube: transferred**")] == expected
    assert cells[columns.index("transfer_cube: touched")].endswith("(paper 97)")
    # Insertion was run only with human data: the scripted row shows "not run".
    assert cells[columns.index("**insertion: inserted**")] == "—"
    human = [c.strip() for c in act_human.strip("|").split("|")]
    assert human[columns.index("**insertion: inserted**")].endswith("(paper 20)")
    assert human[columns.index("transfer_cube: touched")] == "—"
    assert "50 episodes per cell" in text and "obs state" in text


def test_main_table_final_stage_shows_end_and_any_step():
    text = report.main_table(frame(row(successes=0, successes_any=49)))
    header, _, act = text.splitlines()[:3]
    columns = [c.strip() for c in header.strip("|").split("|")]
    cells = [c.strip() for c in act.strip("|").split("|")]
    final = cells[columns.index("**transfer_cube: transferred**")]
    assert final.startswith("end 0% [0, ") and " · any 98% [" in final
    assert final.endswith("(paper 86)")
    # Earlier stages stay a single any-step rate.
    assert cells[columns.index("transfer_cube: touched")].startswith("90% [")
    assert "compares with our `lenient`" in text


def test_main_table_leaves_unmapped_paper_columns_alone():
    text = report.main_table(frame(row(task="cup_lid", source="human")))
    assert "(paper 84)" in text  # paper "open lid" -> our "open"
    assert "(paper 96)" not in text and "(paper 100)" not in text  # tip-over / grasp differ


def test_success_table_shows_end_and_any_step():
    text = report.success_table(frame(row(successes=25, successes_any=30)))
    assert "transfer_cube (end)" in text and "transfer_cube (any step)" in text
    assert "| 50% [" in text and "| 60% [" in text


def test_tasks_table_has_a_row_per_task_and_a_table_per_source():
    df = frame(
        *(row(train_seed=i, successes=k, successes_lenient=40) for i, k in enumerate((10, 20))),
        row(policy="single_step", successes=0, successes_any=1, successes_lenient=1),
        row(task="cup_lid", source="human", successes=45, successes_any=46),
    )
    text = report.tasks_table(df)
    scripted, human = text.split("**human demonstrations")
    assert scripted.startswith("**scripted demonstrations, state observations** (50-100 episodes")
    header, _, transfer, cup = [line for line in scripted.splitlines() if line.startswith("|")]
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns == [
        "task",
        "act: end",
        "single_step: end",
        "act: any step",
        "act: ACT code's rule",
        "paper ACT",
    ]
    cells = dict(zip(columns, (c.strip() for c in transfer.strip("|").split("|")), strict=True))
    low, high = wilson_interval(30, 100)
    assert cells["act: end"] == f"30% [{100 * low:.0f}, {100 * high:.0f}] (seeds 20-40)"
    assert cells["act: ACT code's rule"].startswith("80% [")
    assert cells["single_step: end"].startswith("0% [0, ") and cells["paper ACT"] == "86"
    # cup_lid ran on human demos only: not run with scripted ones, and the paper's real-robot
    # figure (human demonstrations) sits in the human table alone.
    assert cup.split("|")[2].strip() == "—" and cup.rstrip(" |").endswith("—")
    human_cup = next(line for line in human.splitlines() if line.startswith("| cup_lid"))
    assert human_cup.startswith("| cup_lid | 90% [") and human_cup.endswith("| 84 |")


def test_missing_column_is_named():
    df = frame(row()).drop(columns=["successes_any"])
    with pytest.raises(ValueError, match="successes_any") as err:
        report.validate_summary(df, "study/summary.csv")
    assert "study/summary.csv" in str(err.value)


def test_read_summary_names_the_file(tmp_path):
    path = tmp_path / "summary.csv"
    frame(row()).drop(columns=["stage_2"]).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"summary\.csv.*stage_2"):
        report.read_summary(path)


def test_paper_data_file():
    paper = report.load_paper_results()
    assert paper["citation"]["arxiv"] == "2304.13705"
    assert report.paper_value(paper, "transfer_cube", "scripted", "transferred") == 86
    assert report.paper_value(paper, "transfer_cube", "human", "transferred") == 50
    assert report.paper_value(paper, "insertion", "scripted", "inserted") == 32
    assert report.paper_value(paper, "ziplock", "human", "open") == 88
    assert report.paper_value(paper, "cup_lid", "human", "grasp") is None
    assert report.paper_value(paper, "ziplock", "scripted", "open") is None
    assert report.paper_value(paper, "transfer_cube", "scripted", "lifted", "no_cvae") is None


def _ablation_rows() -> pd.DataFrame:
    rows = [row(groups="main;chunk_size", chunk_size=100, successes=22)]
    rows += [row(groups="chunk_size", chunk_size=k, successes=s) for k, s in ((1, 1), (10, 9))]
    rows += [
        row(groups="temporal_ensembling", temporal_ensemble=te, successes=s)
        for te, s in ((False, 20), (True, 24))
    ]
    rows += [
        row(groups="cvae", source=src, use_vae=vae, policy="act" if vae else "no_cvae", successes=s)
        for src, vae, s in (
            ("scripted", True, 30),
            ("scripted", False, 29),
            ("human", True, 17),
            ("human", False, 4),
        )
    ]
    rows += [
        row(groups="beta", kl_weight=b, successes=s) for b, s in ((0.0, 5), (1.0, 15), (10, 25))
    ]
    rows += [
        row(groups="train_steps", train_steps=n, successes=s, val_l1_best=v, val_l1_last=v)
        for n, s, v in ((3000, 20, 0.05), (8000, 40, 0.03))
    ]
    rows += [
        row(groups="demos", demos=n, successes=s, val_l1_best=v, val_l1_last=v)
        for n, s, v in ((50, 15, 0.056), (200, 26, 0.051))
    ]
    rows += [
        row(groups="cameras", obs_mode="pixels", cameras=c, n_cameras=n, successes=s)
        for c, n, s in (("top", 1, 12), ("top+left_wrist", 2, 18))
    ]
    rows += [
        row(
            groups="robustness",
            train_randomize=tr,
            perturbation=p,
            perturbation_level=lvl,
            successes=s,
        )
        for tr, p, lvl, s in (
            ("none", "none", 0, 30),
            ("none", "lighting", 1, 10),
            ("strong", "none", 0, 28),
            ("strong", "lighting", 1, 25),
        )
    ]
    return frame(*rows)


PLOTS = {
    "chunk_size": (report.plot_chunk_size, "chunk_size"),
    "temporal_ensembling": (report.plot_temporal_ensembling, "temporal_ensembling"),
    "cvae": (report.plot_cvae, "cvae"),
    "beta": (report.plot_beta, "beta"),
    "cameras": (report.plot_cameras, "cameras"),
    "train_steps": (report.plot_train_steps, "train_steps"),
    "demos": (report.plot_demos, "demos"),
    "task_bars": (report.plot_task_bars, "main"),
    "robustness_bars": (report.plot_robustness, "robustness"),
}


@pytest.mark.parametrize("name", sorted(PLOTS))
def test_plot_writes_png_md_csv_with_the_input_numbers(name, tmp_path):
    plot, group = PLOTS[name]
    df = _ablation_rows()
    artifact = plot(df, tmp_path)
    assert [p.suffix for p in artifact.paths] == [".png", ".md", ".csv"]
    assert all(p.stat().st_size > 0 for p in artifact.paths)
    assert "episodes per point" in artifact.note
    data = pd.read_csv(artifact.paths[2])
    ours = data[data["who"] == "ours"]
    rows = report.group_rows(df, group)
    # One seed per point and (except cvae, pooled over tasks with one task here) one row each:
    # the plotted numbers are exactly the rows' own.
    assert sorted(ours["success_rate"]) == pytest.approx(sorted(rows["success_rate"]))
    assert sorted(ours["ci_low"]) == pytest.approx(sorted(rows["ci_low"]))
    assert sorted(ours["ci_high"]) == pytest.approx(sorted(rows["ci_high"]))
    assert f"{ours['success_rate'].iloc[0]:.4g}" in artifact.paths[1].read_text()


def test_training_budget_plot_carries_the_runs_validation_l1(tmp_path):
    """The train_steps ablation's CSV keeps each budget's validation L1 beside its success, the
    open-loop half of the convergence question."""
    data = pd.read_csv(report.plot_train_steps(_ablation_rows(), tmp_path).paths[2])
    assert list(data["train_steps"]) == [3000, 8000]
    assert list(data["val_l1_best"]) == pytest.approx([0.05, 0.03])
    assert list(data["success_rate"]) == pytest.approx([0.4, 0.8])


def test_paper_overlays_are_in_the_csv(tmp_path):
    df = _ablation_rows()
    chunk = pd.read_csv(report.plot_chunk_size(df, tmp_path).paths[2])
    paper = chunk[chunk["who"] == "paper"]
    assert list(paper["chunk_size"]) == [1, 10, 100, 200, 400]
    assert list(paper["success_rate"]) == pytest.approx([0.01, 0.21, 0.44, 0.42, 0.41])
    cvae = pd.read_csv(report.plot_cvae(df, tmp_path).paths[2])
    assert sorted(cvae.loc[cvae["who"] == "paper", "success_rate"]) == pytest.approx(
        [0.02, 0.353, 0.58, 0.59]
    )


def test_cvae_bars_pool_only_cells_run_with_and_without_the_cvae(tmp_path):
    """With the CVAE on two tasks and without it on one, the bars compare that one task: a
    bar over both tasks beside one over a single task would compare the tasks, not the CVAE."""
    df = frame(
        row(groups="cvae", policy="act", use_vae=True, successes=40),
        row(groups="cvae", policy="no_cvae", use_vae=False, successes=30),
        row(groups="cvae", policy="act", use_vae=True, task="insertion", successes=2),
        row(groups="cvae", policy="act", use_vae=True, train_seed=1, successes=10),  # no pair
    )
    data = pd.read_csv(report.plot_cvae(df, tmp_path).paths[2])
    ours = data[data["who"] == "ours"].set_index("cvae")
    assert ours.loc["with CVAE", "episodes"] == 50 and ours.loc["without CVAE", "episodes"] == 50
    assert ours.loc["with CVAE", "success_rate"] == pytest.approx(0.8)
    assert set(ours["tasks"]) == {"transfer_cube"}
    alone = frame(row(groups="cvae", policy="act", use_vae=True, successes=40))
    assert "plot skipped" in report.plot_cvae(alone, tmp_path).note


def _with_any_step(df: pd.DataFrame, successes_any=None) -> pd.DataFrame:
    """``df`` with new any-step successes (default: differing from the end ones row by row), rate
    and Wilson interval recomputed."""
    df = df.copy()
    if successes_any is None:
        successes_any = (df["successes"] + 7 + df.index % 5).clip(upper=df["episodes"])
    df["successes_any"] = successes_any
    df["success_rate_any"] = df["successes_any"] / df["episodes"]
    counts = zip(df["successes_any"], df["episodes"], strict=True)
    bounds = [wilson_interval(k, n) for k, n in counts]
    df["ci_low_any"] = [low for low, _ in bounds]
    df["ci_high_any"] = [high for _, high in bounds]
    return df


@pytest.mark.parametrize("name", sorted(PLOTS))
def test_plot_any_step_writes_any_files_with_the_any_numbers(name, tmp_path):
    plot, group = PLOTS[name]
    df = _with_any_step(_ablation_rows())
    artifact = plot(df, tmp_path, metric="any")
    assert [p.name for p in artifact.paths] == [f"{name}_any.{e}" for e in ("png", "md", "csv")]
    assert artifact.metric == "any"
    assert "at any step" in artifact.note
    data = pd.read_csv(artifact.paths[2])
    ours = data[data["who"] == "ours"]
    rows = report.group_rows(df, group)
    assert set(ours["rule"]) == {"any"}
    for column in ("success_rate_any", "ci_low_any", "ci_high_any"):
        assert sorted(ours[column]) == pytest.approx(sorted(rows[column]))
    assert sorted(ours["successes_any"]) == sorted(rows["successes_any"])
    # The end-of-episode numbers are not what was plotted.
    assert "success_rate" not in data.columns
    assert sorted(ours["success_rate_any"]) != pytest.approx(sorted(rows["success_rate"]))
    md = artifact.paths[1].read_text()
    assert "at any step" in md
    assert f"{ours['success_rate_any'].iloc[0]:.4g}" in md


def test_plot_rejects_an_unknown_metric(tmp_path):
    with pytest.raises(ValueError, match="end.*any"):
        report.plot_beta(_ablation_rows(), tmp_path, metric="final")


def test_paper_overlays_are_like_for_like_on_any_step_plots(tmp_path):
    df = _ablation_rows()
    chunk = pd.read_csv(report.plot_chunk_size(df, tmp_path, metric="any").paths[2])
    paper = chunk[chunk["who"] == "paper"]
    assert set(paper["rule"]) == {"any"}
    assert list(paper["success_rate_any"]) == pytest.approx([0.01, 0.21, 0.44, 0.42, 0.41])
    assert "not like-for-like" not in paper["series"].iloc[0]
    cvae = pd.read_csv(report.plot_cvae(df, tmp_path, metric="any").paths[2])
    assert sorted(cvae.loc[cvae["who"] == "paper", "success_rate_any"]) == pytest.approx(
        [0.02, 0.353, 0.58, 0.59]
    )
    # On the end-of-episode plot the paper's curve is kept but flagged as the any-step rule.
    end = pd.read_csv(report.plot_chunk_size(df, tmp_path).paths[2])
    assert set(end.loc[end["who"] == "paper", "rule"]) == {"any"}
    assert set(end.loc[end["who"] == "ours", "rule"]) == {"end"}
    assert "any-step rule" in end.loc[end["who"] == "paper", "series"].iloc[0]


@pytest.mark.parametrize("name", sorted(PLOTS))
def test_plot_of_an_absent_group_writes_nothing(name, tmp_path):
    plot, group = PLOTS[name]
    artifact = plot(frame(row(groups="something_else")), tmp_path)
    assert artifact.paths == ()
    assert group in artifact.note
    assert not any(tmp_path.iterdir())


def test_robustness_table_orders_perturbations_by_level():
    text = report.robustness_table(_ablation_rows())
    header = text.splitlines()[0]
    assert header.index("none") < header.index("lighting")
    assert "| strong |" in text


def test_robustness_table_has_a_row_per_arm():
    rob = dict(groups="robustness", train_steps=10000)
    pixels = dict(obs_mode="pixels", cameras="top", n_cameras=1)
    df = frame(
        row(**rob, **pixels, perturbation="none", successes=40),
        row(**rob, **pixels, perturbation="camera", perturbation_level=1, successes=20),
        row(**rob, perturbation="none", successes=45),
        row(**rob, train_randomize="strong", perturbation="none", successes=30),
    )
    df["train_steps"] = [10000, 10000, 10000, 10000]
    lines = report.robustness_table(df).splitlines()
    assert lines[0].startswith("| task | policy input | train steps | train randomization | none")
    body = [line for line in lines[2:] if line.startswith("| transfer_cube")]
    assert body[0].startswith("| transfer_cube | pixels (top) | 10000 | none | 80% [")
    assert body[0].split(" | ")[-1].startswith("40% [")
    assert body[1].startswith("| transfer_cube | state | 10000 | none | 90% [")
    assert body[1].endswith("| — |")  # the state arm has no camera cell
    assert body[2].startswith("| transfer_cube | state | 10000 | strong | 60% [")
    # A summary written before train_steps existed still tabulates, the steps unknown.
    old = frame(row(**rob, perturbation="none")).drop(columns="train_steps")
    assert "| transfer_cube | state | ? | none |" in report.robustness_table(old)


def test_robustness_stages_table_shows_every_stage():
    df = frame(
        row(groups="robustness", perturbation="none", stage_1=1.0, stage_2=0.96, stage_3=0.4),
        row(groups="robustness", perturbation="camera", perturbation_level=1, stage_1=0.5),
    )
    lines = report.robustness_stages_table(df).splitlines()
    assert lines[0].endswith("| none | camera |")
    assert lines[2].endswith("| 100 / 96 / 40 | 50 / 80 / 60 |")
    stages = row()["stages"].replace(">", " / ")
    assert f"({stages})" in lines[-1]
    assert "No rows" in report.robustness_stages_table(frame(row()))


def test_robustness_table_any_step_variant():
    df = _ablation_rows()
    df = _with_any_step(df, df["successes_any"].where(df["groups"] != "robustness", 49))  # 98%
    end = report.robustness_table(df)
    any_step = report.robustness_table(df, metric="any")
    assert "98% [" not in end and "60% [" in end  # 30/50 at the end
    assert any_step.count("98% [") == 4 and "60% [" not in any_step
    assert "at any step" in any_step and "at the end of the episode" in end


def test_write_report_links_everything(tmp_path):
    csv = tmp_path / "summary.csv"
    _ablation_rows().to_csv(csv, index=False)
    written = report.write_report(csv, tmp_path / "out")
    names = {p.name for p in written}
    assert {"table_main.md", "table_success.md", "table_main.csv", "REPORT.md"} <= names
    assert {"robustness.md", "robustness.csv", "chunk_size.png", "cvae.csv"} <= names
    assert "robustness_stages.md" in names
    assert {"robustness_any.md", "chunk_size_any.png", "cvae_any.csv"} <= names
    for name in [*PLOTS, "stages"]:
        for suffix in ("", "_any"):
            assert {f"{name}{suffix}.{e}" for e in ("png", "md", "csv")} <= names
    assert written[-1].name == "REPORT.md"
    assert all(p.exists() for p in written)
    text = (tmp_path / "out" / "REPORT.md").read_text()
    assert "(table_main.md)" in text and "(chunk_size.png)" in text
    assert "(chunk_size_any.png)" in text and "(robustness_any.md)" in text
    assert "at any step" in text and "at the end of the episode" in text
    assert "original ACT code's rule" in text
    assert "(paper 86)" in report.report_markdown(report.read_summary(csv))


def test_a_smaller_summary_removes_what_it_no_longer_backs(tmp_path):
    csv, out = tmp_path / "summary.csv", tmp_path / "out"
    _ablation_rows().to_csv(csv, index=False)
    report.write_report(csv, out)
    assert (out / "chunk_size_any.png").exists() and (out / "robustness.md").exists()
    frame(row()).to_csv(csv, index=False)  # the main group only
    written = report.write_report(csv, out)
    left = {p.name for p in out.iterdir()} - {"summary.csv"}
    assert left == {p.name for p in written}
    assert not (out / "chunk_size_any.png").exists() and not (out / "robustness.md").exists()


def test_report_never_imports_mujoco_or_torch():
    code = (
        "import aloha_bench.report, aloha_bench.report_html, sys; "
        "assert 'mujoco' not in sys.modules and 'torch' not in sys.modules, "
        "sorted(m for m in ('mujoco', 'torch') if m in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_rows_scored_before_the_lenient_rule_show_it_as_unknown():
    old = {k: v for k, v in row().items() if "lenient" not in k}
    df = pd.DataFrame([old])[list(report.SUMMARY_COLUMNS)]
    pooled = report.pool(df, ["task"]).iloc[0]
    assert pd.isna(pooled["success_rate_lenient"]) and pooled["success_rate_any"] == 0.6
    assert "lenient —" in report.main_table(df)


def test_main_cells_show_the_spread_across_training_seeds(tmp_path):
    """The paper's protocol (3 seeds): pooled rate and Wilson interval, plus each seed's rate."""
    df = frame(*(row(train_seed=i, successes=k) for i, k in enumerate((10, 20, 15))))
    p = report.pool(df, ["task"]).iloc[0]
    assert (p["seed_min"], p["seed_max"]) == pytest.approx((0.2, 0.4))
    assert p["seed_rates"] == "0:0.200;1:0.400;2:0.300"
    text = report.main_table(df)
    assert "end 30% [" in text and "(seeds 20-40)" in text
    assert "(seeds 20-40)" in report.success_table(df)
    artifact = report.plot_task_bars(df, tmp_path)
    data = pd.read_csv(artifact.paths[2])
    assert data["seed_rates"].iloc[0] == "0:0.200;1:0.400;2:0.300"
    assert "one per training seed" in artifact.note
    # One seed: no range to show.
    assert "(seeds 50-50)" not in report.main_table(frame(row()))


def _bar_labels(ax) -> list[str]:
    """The value labels drawn over the bars of ``ax`` (its texts ending in "%")."""
    return [t.get_text() for t in ax.texts if t.get_text().endswith("%")]


def test_stage_plot_shows_a_zero_final_stage_as_a_measured_zero(tmp_path):
    """ACT reaches every earlier stage but never holds the cube at the end: the final stage is a
    0% bar with its Wilson interval and a "0%" label, not an empty plot."""
    df = frame(
        row(successes=0, successes_any=49, stage_1=1.0, stage_2=0.98, stage_3=0.98),
        row(policy="single_step", successes=0, successes_any=0, stage_1=0.7, stage_2=0.1),
    )
    artifact = report.plot_stages(df, tmp_path)
    assert [p.name for p in artifact.paths] == ["stages.png", "stages.md", "stages.csv"]
    data = pd.read_csv(artifact.paths[2])
    act = data[data["policy"] == "act"].set_index("stage")
    assert list(act.index) == ["touched", "lifted", "transferred"]
    final = act.loc["transferred"]
    # The final stage is end-of-episode success (0/50), not its any-step reach (stage_3 = 98%).
    assert bool(final["final"]) and final["rule"] == "end"
    assert (final["rate"], final["reached"], final["episodes"]) == (0, 0, 50)
    assert (final["ci_low"], final["ci_high"]) == pytest.approx(wilson_interval(0, 50))
    assert act.loc["lifted", "rate"] == pytest.approx(0.98) and act.loc["lifted", "rule"] == "any"
    assert (act.loc["lifted", "ci_low"], act.loc["lifted", "ci_high"]) == pytest.approx(
        wilson_interval(49, 50)
    )
    # Six bars, each with its value written over it, the two zeros included.
    (ax,) = artifact.figure.axes
    assert sorted(_bar_labels(ax)) == sorted(["100%", "98%", "0%", "70%", "10%", "0%"])
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks[-1].startswith("transferred") and "end of episode" in ticks[-1]
    assert "0%" in _bar_labels(ax) and "episodes per bar" in artifact.note
    # On the any-step rule the final bar is the any-step success.
    any_step = pd.read_csv(report.plot_stages(df, tmp_path, metric="any").paths[2])
    final_any = any_step[(any_step["policy"] == "act") & any_step["final"]].iloc[0]
    assert (final_any["rate"], final_any["rule"]) == (pytest.approx(0.98), "any")
    assert (tmp_path / "stages_any.png").stat().st_size > 0


def test_stage_plot_has_a_panel_per_task_with_its_own_stages(tmp_path):
    df = frame(
        row(successes=40),
        row(task="insertion", successes=10),
        row(task="insertion", policy="single_step", successes=0, stage_2=0.0, stage_3=0.0),
    )
    artifact = report.plot_stages(df, tmp_path)
    panels = [ax for ax in artifact.figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["transfer_cube", "insertion"]
    insertion_ticks = [t.get_text().split("\n")[0] for t in panels[1].get_xticklabels()]
    assert insertion_ticks == ["grasp", "contact", "inserted"]
    # transfer_cube ran one policy (3 bars), insertion two (6 bars); every bar is labelled.
    assert _bar_labels(panels[0]) == ["90%", "80%", "80%"]
    assert sorted(_bar_labels(panels[1])) == sorted(["90%", "80%", "20%", "90%", "0%", "0%"])


def test_stage_plot_of_an_absent_main_group_writes_nothing(tmp_path):
    artifact = report.plot_stages(frame(row(groups="chunk_size")), tmp_path)
    assert artifact.paths == () and "main" in artifact.note
    assert not any(tmp_path.iterdir())


def test_task_bars_label_every_bar_with_its_rate(tmp_path):
    df = frame(row(successes=0), row(policy="single_step", successes=47))
    (ax,) = report.plot_task_bars(df, tmp_path).figure.axes
    assert sorted(_bar_labels(ax)) == ["0%", "94%"]
    # Labels sit above the Wilson interval, inside the axes.
    top = max(t.xy[1] for t in ax.texts)
    assert top == pytest.approx(wilson_interval(47, 50)[1]) and ax.get_ylim()[1] > 1


def _with_videos(results, tmp_path):
    """A summary in ``results`` whose cells were filmed into ``tmp_path/work`` the way
    ``study.run_eval_cell`` records it (paths relative to the results folder)."""
    videos = tmp_path / "work" / "videos"
    videos.mkdir(parents=True)
    paths = {}
    for name in ("act_success", "act_failure", "all_success", "none_failure"):
        paths[name] = videos / f"{name}.mp4"
        paths[name].write_bytes(b"mp4")
    df = frame(
        row(successes=30),
        row(policy="single_step", successes=50),
        row(policy="no_cvae", successes=0),
        row(task="insertion", successes=20),
    )
    rel = {k: str(p.relative_to(tmp_path).as_posix()) for k, p in paths.items()}
    df["video_success"] = [f"../{rel['act_success']}", f"../{rel['all_success']}", "", ""]
    df["video_failure"] = [f"../{rel['act_failure']}", "", f"../{rel['none_failure']}", ""]
    results.mkdir(parents=True, exist_ok=True)
    df.to_csv(results / "summary.csv", index=False)
    return paths


def test_report_links_each_cell_to_its_success_and_failure_videos(tmp_path):
    results = tmp_path / "results"
    paths = _with_videos(results, tmp_path)
    report.write_report(results / "summary.csv", results)
    text = (results / "REPORT.md").read_text()
    section = text.split("## Example rollouts")[1]
    lines = {line.split(" (")[0][2:]: line for line in section.splitlines() if line[:2] == "- "}
    act = lines["act / scripted / state / transfer_cube"]
    assert "[success video](../work/videos/act_success.mp4)" in act
    assert "[failure video](../work/videos/act_failure.mp4)" in act
    assert "(30/50 successes" in act
    every = lines["single_step / scripted / state / transfer_cube"]
    assert "[success video](../work/videos/all_success.mp4)" in every
    assert "no failure (all 50 episodes succeeded)" in every and "failure video" not in every
    none = lines["no_cvae / scripted / state / transfer_cube"]
    assert "no success (0 of 50 episodes succeeded)" in none
    assert "[failure video](../work/videos/none_failure.mp4)" in none
    # 20/50 with neither film: not filmed, neither "no success" nor "no failure".
    unfilmed = lines["act / scripted / state / insertion"]
    assert "success: not filmed" in unfilmed and "failure: not filmed" in unfilmed
    assert "(stages.png)" in text and "(stages_any.png)" in text
    # Written elsewhere (report --out), each link still reaches its file from REPORT.md's folder.
    site = tmp_path / "site" / "deep"
    report.write_report(results / "summary.csv", site)
    text = (site / "REPORT.md").read_text()
    assert "[success video](../../work/videos/act_success.mp4)" in text
    assert (site / "../../work/videos/act_success.mp4").resolve() == paths["act_success"]
    # A film that is gone is still linked (copied folders may lack it) but flagged.
    paths["act_failure"].unlink()
    report.write_report(results / "summary.csv", results)
    act = next(
        line
        for line in (results / "REPORT.md").read_text().splitlines()
        if line.startswith("- act / scripted / state / transfer_cube")
    )
    assert "act_failure.mp4) (file not on this machine)" in act


def test_report_without_videos_says_how_to_get_them(tmp_path):
    csv = tmp_path / "summary.csv"
    frame(row()).to_csv(csv, index=False)
    report.write_report(csv, tmp_path)
    section = (tmp_path / "REPORT.md").read_text().split("## Example rollouts")[1]
    assert "No example videos" in section and "example_videos = true" in section
    assert "video](" not in section


def test_a_single_series_bar_plot_keeps_its_legend_label():
    """seaborn leaves a lone hue level unlabelled: the robustness plot of one training arm had
    an empty legend box, so the reader could not tell what the bar was trained on."""
    import seaborn as sns
    from matplotlib.figure import Figure

    ours = pd.DataFrame(
        {"x": ["none"], "h": ["none / state"], "success_rate": [0.5], "ci_low": [0.4],
         "ci_high": [0.6]}
    )  # fmt: skip
    ax = Figure().subplots()
    report._bar_plot(ax, sns, ours, "x", "h", ["none"], ["none / state"], report._rule("end"))
    report._bar_legend(ax, ours, "h", ["none / state"])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["none / state"]


def test_chunk_size_plot_draws_single_step_as_acts_k1_point(tmp_path):
    """The study trains the chunk-size group's K = 1 once, as `single_step` (ACT with K = 1): its
    row must land on ACT's curve, not start a series of its own."""
    df = frame(
        row(groups="main;chunk_size", policy="single_step", chunk_size=1, successes=1),
        row(groups="chunk_size", chunk_size=10, successes=40),
        row(groups="main;chunk_size", chunk_size=100, successes=35),
        row(groups="main", policy="no_cvae", use_vae=False, successes=30),
    )
    table = pd.read_csv(report.plot_chunk_size(df, tmp_path, paper={}).paths[2])
    assert table["series"].nunique() == 1
    assert list(table["chunk_size"]) == [1, 10, 100]
    assert list(table["success_rate"]) == [0.02, 0.8, 0.7]


def test_tasks_table_puts_the_state_grid_before_pixel_rows():
    """The state tables are the full grid; ACT in pixels stands beside them (issue 14), so its
    table comes after them whatever the names' alphabetical order."""
    df = frame(
        row(obs_mode="pixels", cameras="top+left_wrist", n_cameras=2),
        row(source="human"),
        row(),
    )
    text = report.tasks_table(df, paper={})
    titles = [line for line in text.splitlines() if line.startswith("**")]
    assert [t.split("**")[1] for t in titles] == [
        "scripted demonstrations, state observations",
        "human demonstrations, state observations",
        "scripted demonstrations, pixels observations",
    ]
    rows = report.main_table(df, paper={}).splitlines()
    act = [line.split("|")[2:4] for line in rows if line.startswith("| act |")]
    assert [[c.strip() for c in a] for a in act] == [
        ["scripted", "state"],
        ["human", "state"],
        ["scripted", "pixels"],
    ]
