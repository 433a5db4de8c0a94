"""Paper-style tables and ablation plots from an evaluation study's summary table.

Rendering is a separate, pure step (ARCHITECTURE.md "Style habits"): every function here takes the
summary DataFrame (one row per evaluated cell, columns ``SUMMARY_COLUMNS``) and returns text, a
DataFrame or the paths it wrote. Nothing here imports mujoco or torch, so a report can be rebuilt
on any machine from ``summary.csv`` alone.

Rates are pooled over training seeds by summing episodes and successes (``pool``), and every rate
carries a 95% Wilson interval (``aloha_bench.stats``), because the evaluations are small enough
that a bare percentage hides how much it could move. The paper's numbers come from
``paper_results.toml`` (Zhao et al., RSS 2023, arXiv 2304.13705) and are printed beside ours only
where a paper column has a real counterpart in our task.

Two success rules are carried side by side: end-of-episode success (``success_rate``, ``ci_low``,
``ci_high``: the final stage holds at the last step) and any-step success (the ``_any`` columns: the
final stage held at some step). Every plot and the robustness table take ``metric="end"``
(default) or ``metric="any"``; the ``any`` variant writes files suffixed ``_any``. The tables add a
third, the original ACT code's rule (``_lenient`` columns: any step, and a hand-off counts while the
giving gripper still holds), which is how the paper scored: its numbers compare like-for-like with
``lenient``, and with ``any`` on every task whose final stage has no let-go check (``task.toml``).
"""

from __future__ import annotations

import math
import os
import textwrap
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aloha_bench.stats import wilson_interval

__all__ = [
    "METRICS",
    "SUMMARY_COLUMNS",
    "Artifact",
    "group_rows",
    "load_paper_results",
    "main_frame",
    "main_table",
    "paper_value",
    "plot_beta",
    "plot_cameras",
    "plot_chunk_size",
    "plot_cvae",
    "plot_robustness",
    "plot_stages",
    "plot_task_bars",
    "plot_temporal_ensembling",
    "plot_train_steps",
    "plot_demos",
    "pool",
    "read_summary",
    "report_markdown",
    "robustness_frame",
    "robustness_stages_table",
    "robustness_table",
    "success_table",
    "validate_summary",
    "video_lines",
    "write_report",
]

SUMMARY_COLUMNS = (
    "cell",
    "groups",
    "task",
    "policy",
    "source",
    "obs_mode",
    "train_seed",
    "chunk_size",
    "kl_weight",
    "use_vae",
    "temporal_ensemble",
    "cameras",
    "n_cameras",
    "train_randomize",
    "perturbation",
    "perturbation_level",
    "episodes",
    "successes",
    "success_rate",
    "ci_low",
    "ci_high",
    "successes_any",
    "success_rate_any",
    "ci_low_any",
    "ci_high_any",
    "stages",
    "stage_1",
    "stage_2",
    "stage_3",
    "mean_steps",
    "mean_return",
    "run",
    "records",
)
# Columns a summary may lack (written by earlier versions of the study); read as unknown.
OPTIONAL_COLUMNS = (
    "train_steps",
    "demos",
    "successes_lenient",
    "success_rate_lenient",
    "ci_low_lenient",
    "ci_high_lenient",
    "task_version",
    "val_l1_best",
    "val_best_step",
    "val_l1_last",
)
STAGE_COLUMNS = ("stage_1", "stage_2", "stage_3")
# Display orders; values not listed sort after these, alphabetically.
TASK_ORDER = ("transfer_cube", "insertion", "ziplock", "battery", "cup_lid")
POLICY_ORDER = ("act", "no_cvae", "single_step")
SOURCE_ORDER = ("scripted", "human")
# The state grid is the study's complete main table; pixel rows stand beside it (issue 14).
OBS_ORDER = ("state", "pixels")
RANDOMIZE_ORDER = ("none", "light", "strong")
PAPER_FILE = "paper_results.toml"
MISSING = "—"
# The success rules a table or plot can show: "end" of the episode, or "any" step (the paper's).
METRICS = ("end", "any")


@dataclass(frozen=True)
class _Rule:
    """The columns, file suffix and wording of one success rule (``METRICS``)."""

    metric: str
    suffix: str  # of the summary columns and of the output files: "" (end) or "_any"
    rule: str  # "success <rule>" reads as a sentence

    @property
    def rate(self) -> str:
        return f"success_rate{self.suffix}"

    @property
    def low(self) -> str:
        return f"ci_low{self.suffix}"

    @property
    def high(self) -> str:
        return f"ci_high{self.suffix}"

    @property
    def successes(self) -> str:
        return f"successes{self.suffix}"

    @property
    def seed_std(self) -> str:
        return f"seed_std{self.suffix}"

    @property
    def seed_min(self) -> str:
        return f"seed_min{self.suffix}"

    @property
    def seed_max(self) -> str:
        return f"seed_max{self.suffix}"

    @property
    def seed_rates(self) -> str:
        return f"seed_rates{self.suffix}"


_RULES = {
    "end": _Rule("end", "", "at the end of the episode"),
    "any": _Rule("any", "_any", "at any step"),
    # The original ACT code's rule: any step, and a hand-off counts while the giving gripper
    # still holds (the final stage without its `release` checks). Tables only.
    "lenient": _Rule("lenient", "_lenient", "by the original ACT code's rule (the paper's)"),
}
# Rules the tables show side by side; plots draw METRICS.
TABLE_METRICS = ("end", "any", "lenient")


def _rule(metric: str) -> _Rule:
    """The ``_Rule`` of ``metric``; ValueError naming ``METRICS`` for anything else."""
    if metric not in _RULES:
        raise ValueError(f"metric must be one of {list(METRICS)}, got {metric!r}")
    return _RULES[metric]


@dataclass(frozen=True)
class Artifact:
    """What one plot function produced.

    Attributes:
        name: short id of the plot (``chunk_size``, ``cvae``...).
        paths: files written (png, md, csv), empty when nothing could be drawn.
        note: the caption with the scale (episodes per point, seeds, obs mode, tasks) when written,
            else the reason nothing was written (e.g. the study has no rows in that group).
        metric: the success rule plotted, "end" or "any" (``METRICS``).
        figure: the matplotlib ``Figure`` the PNG was saved from (None when nothing was drawn),
            kept so what was drawn (bars, value labels) can be inspected without reading pixels.
    """

    name: str
    paths: tuple[Path, ...]
    note: str
    metric: str = "end"
    figure: Any = field(default=None, compare=False, repr=False)


# --- input ---------------------------------------------------------------------------------------


def validate_summary(df: pd.DataFrame, source: str = "summary") -> None:
    """Raise ValueError naming ``source`` and every missing column of ``SUMMARY_COLUMNS``."""
    missing = [c for c in SUMMARY_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"{source}: missing summary column(s) {missing}; "
            f"expected all of {list(SUMMARY_COLUMNS)}"
        )


def read_summary(path: Path) -> pd.DataFrame:
    """Read and validate ``summary.csv``.

    CSV turns empty strings into NaN; ``groups`` and ``cameras`` are legitimately empty (a cell in
    no group, state observations), so they are read back as "".
    """
    df = pd.read_csv(path)
    validate_summary(df, str(path))
    for column in OPTIONAL_COLUMNS:
        if column not in df.columns:
            df[column] = np.nan
    for column in ("groups", "cameras", "perturbation", "train_randomize"):
        df[column] = df[column].astype(object).where(df[column].notna(), "").astype(str)
    return df


def group_rows(df: pd.DataFrame, group: str) -> pd.DataFrame:
    """Rows of ``df`` whose ";"-joined ``groups`` contains ``group`` (a row can be in several)."""
    member = df["groups"].fillna("").astype(str).map(lambda g: group in g.split(";"))
    return df[member.astype(bool)]


# --- pooling -------------------------------------------------------------------------------------


def _wilson(successes: float, trials: float) -> tuple[float, float]:
    return wilson_interval(int(successes), int(trials))


def _pool_one(rows: pd.DataFrame) -> dict:
    episodes = int(rows["episodes"].sum())
    out: dict = {"cells": len(rows), "episodes": episodes}
    for suffix in ("", "_any", "_lenient"):
        column = rows.get(f"successes{suffix}")
        if column is None or column.isna().any() or not episodes:
            # A row scored before this rule existed: the pooled rate is unknown.
            out[f"successes{suffix}"] = math.nan
            out[f"success_rate{suffix}"] = math.nan
            out[f"ci_low{suffix}"], out[f"ci_high{suffix}"] = math.nan, math.nan
            continue
        successes = int(column.sum())
        low, high = _wilson(successes, episodes)
        out[f"successes{suffix}"] = successes
        out[f"success_rate{suffix}"] = successes / episodes
        out[f"ci_low{suffix}"], out[f"ci_high{suffix}"] = low, high
    out["stages"] = ";".join(sorted(set(rows["stages"].fillna("").astype(str)) - {""}))
    for column in STAGE_COLUMNS:
        known = rows[column].notna()
        n = int(rows.loc[known, "episodes"].sum())
        if n == 0:
            out[column], out[f"{column}_low"], out[f"{column}_high"] = math.nan, math.nan, math.nan
            continue
        reached = float((rows.loc[known, column] * rows.loc[known, "episodes"]).sum())
        out[column] = reached / n
        out[f"{column}_low"], out[f"{column}_high"] = _wilson(round(reached), n)
    for column in ("mean_steps", "mean_return"):
        known = rows[column].notna()
        n = rows.loc[known, "episodes"].sum()
        weighted = (rows.loc[known, column] * rows.loc[known, "episodes"]).sum()
        out[column] = float(weighted / n) if n else math.nan
    per_seed = rows.groupby("train_seed")[["successes", "successes_any", "episodes"]].sum()
    out["n_seeds"] = len(per_seed)
    for suffix in ("", "_any"):
        seed_rates = per_seed[f"successes{suffix}"] / per_seed["episodes"].replace(0, np.nan)
        std = float(seed_rates.std(ddof=1)) if len(per_seed) > 1 else math.nan
        out[f"seed_std{suffix}"] = std
        # The paper's protocol trains 3 seeds: their spread is the variance the Wilson interval
        # (one binomial sample of all episodes) leaves out.
        out[f"seed_min{suffix}"] = float(seed_rates.min())
        out[f"seed_max{suffix}"] = float(seed_rates.max())
        out[f"seed_rates{suffix}"] = ";".join(
            f"{seed}:{rate:.3f}" for seed, rate in seed_rates.items()
        )
    return out


def pool(df: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Pool rows that share the ``by`` columns (over training seeds and every unlisted column).

    Episodes, end-of-episode successes and any-step successes are summed and the rates and Wilson
    intervals recomputed on the pooled counts. Stage rates are episode-weighted means, with a Wilson
    interval on ``round(rate * episodes)``. Pooling treats all seeds' episodes as one binomial
    sample, so the intervals do NOT include seed-to-seed variance of training; ``n_seeds`` and
    ``seed_std`` (sample std of the per-seed success rate, NaN with one seed), ``seed_min`` and
    ``seed_max`` (the lowest and highest per-seed rate) and ``seed_rates`` (``"seed:rate;..."``)
    are reported so a reader can see it (``_any`` the same for the any-step rate). Unlisted columns
    are dropped, so list every column that must not be mixed (e.g. ``obs_mode``).

    Returns:
        One row per distinct ``by`` combination, in order of first appearance, with ``by`` then
        cells, episodes, successes, success_rate, ci_low, ci_high, the ``_any`` equivalents,
        stages, stage_i with stage_i_low/high, mean_steps, mean_return, n_seeds, and per rule
        (plain and ``_any``) seed_std, seed_min, seed_max, seed_rates.
    """
    by = list(by)
    if df.empty:
        return pd.DataFrame(columns=by)
    records = []
    for key, rows in df.groupby(by, sort=False, dropna=False):
        values = key if isinstance(key, tuple) else (key,)
        records.append({**dict(zip(by, values, strict=True)), **_pool_one(rows)})
    return pd.DataFrame.from_records(records)


# --- paper numbers -------------------------------------------------------------------------------


def load_paper_results() -> dict:
    """The paper's numbers from ``paper_results.toml``, beside this module (in the wheel)."""
    with Path(__file__).with_name(PAPER_FILE).open("rb") as f:
        return tomllib.load(f)


def paper_value(
    paper: dict, task: str, source: str, stage: str, policy: str = "act"
) -> float | None:
    """The paper's success % for our (task, source, stage, policy), or None if it has no such cell.

    ``stage`` is our stage name; it is translated through the task's ``stage_map``, so paper
    columns with no counterpart in our task (e.g. the cup's "tip-over") are never matched.
    """
    spec = paper.get("tasks", {}).get(task)
    if spec is None:
        return None
    ours_to_paper = {ours: theirs for theirs, ours in spec.get("stage_map", {}).items()}
    if stage not in ours_to_paper:
        return None
    index = spec["paper_stages"].index(ours_to_paper[stage])
    methods = [m for m, p in paper.get("policy_map", {}).items() if p == policy]
    by_method = spec.get(source, {})
    for method in methods:
        if method in by_method:
            return float(by_method[method][index])
    return None


# --- formatting helpers --------------------------------------------------------------------------


def _rank(value, order: Sequence[str]) -> tuple[int, str]:
    return (order.index(value) if value in order else len(order), str(value))


def cell_rank(policy: str, source: str, obs_mode: str) -> tuple:
    """Sort key of a main cell's rows in every table, video list and GIF choice: the paper's
    order of policies (ACT first), then state before pixels (the study's full grid first), then
    scripted before human demonstrations."""
    return (
        _rank(policy, POLICY_ORDER),
        _rank(obs_mode, OBS_ORDER),
        _rank(source, SOURCE_ORDER),
    )


def video_cell_rank(key: Sequence[str]) -> tuple:
    """Sort key of a (policy, source, obs_mode, task) cell in REPORT.md's and index.html's
    rollout lists: :func:`cell_rank`, then the tasks in the paper's order."""
    policy, source, obs_mode, task = key
    return (*cell_rank(policy, source, obs_mode), _rank(task, TASK_ORDER))


def _ordered(values, order: Sequence[str]) -> list:
    """Distinct ``values`` in ``order`` first, the rest alphabetically."""
    return sorted(dict.fromkeys(values), key=lambda v: _rank(v, order))


def _fmt_rate(rate: float, low: float, high: float) -> str:
    if rate is None or not np.isfinite(rate):
        return MISSING
    return f"{100 * rate:.0f}% [{100 * low:.0f}, {100 * high:.0f}]"


def _fmt_seeds(r, m: _Rule) -> str:
    """`` (seeds 74-86)``: the range of the per-seed rates, where more than one seed ran."""
    if r.get("n_seeds", 1) < 2 or not np.isfinite(r.get(m.seed_min, math.nan)):
        return ""
    return f" (seeds {100 * r[m.seed_min]:.0f}-{100 * r[m.seed_max]:.0f})"


def _fmt_paper(value: float) -> str:
    return f"{value:g}"


def _markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _frame_markdown(df: pd.DataFrame) -> str:
    def cell(v) -> str:
        if isinstance(v, float):
            return "" if not np.isfinite(v) else f"{v:.4g}"
        return str(v)

    return _markdown([str(c) for c in df.columns], [[cell(v) for v in r] for r in df.to_numpy()])


def _span(values) -> str:
    values = sorted({int(v) for v in values})
    if not values:
        return "0"
    return str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}"


def _obs(rows: pd.DataFrame) -> str:
    return ", ".join(_ordered(rows["obs_mode"], ()))


def _scale(pooled: pd.DataFrame, rows: pd.DataFrame, unit: str = "point") -> str:
    """One line of scale: episodes per point (or cell), seeds, obs mode(s), task(s)."""
    tasks = ", ".join(_ordered(rows["task"], TASK_ORDER))
    return (
        f"{_span(pooled['episodes'])} episodes per {unit}, {_span(pooled['n_seeds'])} seed(s), "
        f"obs {_obs(rows)}, task(s) {tasks}"
    )


def _stage_names(rows: pd.DataFrame) -> list[str]:
    names = next((s for s in rows["stages"].fillna("").astype(str) if s), "")
    return names.split(">") if names else []


# --- tables --------------------------------------------------------------------------------------

MAIN_KEYS = ("policy", "source", "obs_mode", "task")


def main_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The main group pooled over seeds, one row per (policy, source, obs_mode, task): the CSV."""
    return pool(group_rows(df, "main"), MAIN_KEYS)


NO_MAIN_ROWS = "No rows in group `main`: nothing to tabulate."


def _main_cells(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, list[str]] | None:
    """The main group's rows, them pooled per ``MAIN_KEYS`` and their tasks in the paper's
    order, or None when the study has no main cell: what every main table starts from."""
    rows = group_rows(df, "main")
    if rows.empty:
        return None
    pooled = pool(rows, MAIN_KEYS)
    return rows, pooled, _ordered(pooled["task"], TASK_ORDER)


def main_table(df: pd.DataFrame, paper: dict | None = None) -> str:
    """The main results in the shape of the paper's Tables I/II, as markdown.

    Rows are (policy, source) (plus obs_mode when the study mixes several); columns are task x stage
    with the final stage in bold. The final stage shows the three success rules,
    ``end 80% [67, 89] · any 85% [73, 92] · lenient 90% [79, 96] (paper 86)``: success at the end
    of the episode, at any step, and by the original ACT code's rule (the paper's, so
    ``(paper 86)`` compares with ``lenient``). Earlier stages show the
    fraction of episodes that reached them at any step, ``90% [79, 96] (paper 97)``. Intervals are
    95% Wilson on episodes pooled over seeds; ``(paper x)`` follows where the paper has the same
    cell. "—" marks a (row, task) that was not run.
    """
    paper = load_paper_results() if paper is None else paper
    cells = _main_cells(df)
    if cells is None:
        return NO_MAIN_ROWS
    rows, pooled, tasks = cells
    stages = {t: _stage_names(rows[rows["task"] == t]) for t in tasks}
    several_obs = pooled["obs_mode"].nunique() > 1
    headers = ["policy", "source"] + (["obs"] if several_obs else [])
    for task in tasks:
        names = stages[task]
        headers += [
            f"**{task}: {s}**" if i == len(names) - 1 else f"{task}: {s}"
            for i, s in enumerate(names)
        ]
    lines = []
    for policy, source, obs in _row_keys(pooled):
        line = [policy, source] + ([obs] if several_obs else [])
        for task in tasks:
            match = _lookup(pooled, policy, source, obs, task)
            for i, stage in enumerate(stages[task]):
                if match.empty:
                    line.append(MISSING)
                    continue
                r = match.iloc[0]
                if i == len(stages[task]) - 1:
                    text = " · ".join(
                        f"{m.metric} {_fmt_rate(r[m.rate], r[m.low], r[m.high])}"
                        + (_fmt_seeds(r, m) if m.metric == "end" else "")
                        for m in map(_rule, TABLE_METRICS)
                    )
                else:
                    column = STAGE_COLUMNS[i]
                    text = _fmt_rate(r[column], r[f"{column}_low"], r[f"{column}_high"])
                theirs = paper_value(paper, task, source, stage, policy)
                if theirs is not None:
                    text += f" (paper {_fmt_paper(theirs)})"
                line.append(text)
        lines.append(line)
    return _markdown(headers, lines) + "\n\n" + _main_footer(pooled, rows, paper)


def _row_keys(pooled: pd.DataFrame) -> list[tuple]:
    """(policy, source, obs_mode) table rows in the paper's order (ACT first), state before
    pixels (the study's full grid first), scripted before human."""
    keys = set(map(tuple, pooled[["policy", "source", "obs_mode"]].to_numpy()))
    return sorted(keys, key=lambda k: cell_rank(*k))


def _lookup(pooled: pd.DataFrame, policy: str, source: str, obs: str, task: str) -> pd.DataFrame:
    return pooled[
        (pooled["policy"] == policy)
        & (pooled["source"] == source)
        & (pooled["obs_mode"] == obs)
        & (pooled["task"] == task)
    ]


def _main_footer(pooled: pd.DataFrame, rows: pd.DataFrame, paper: dict) -> str:
    sim = paper.get("scale", {}).get("sim", {})
    real = paper.get("scale", {}).get("real", {})
    real_tasks = [t for t, s in paper.get("tasks", {}).items() if s.get("setting") == "real"]
    return (
        f"Ours: {_span(pooled['episodes'])} episodes per cell pooled over "
        f"{_span(pooled['n_seeds'])} training seed(s), obs {_obs(rows)}; "
        "bold (final) stage = success at the end of the episode (end), at any step (any) and by "
        "the original ACT code's rule (lenient: any step, a hand-off counted while the giving "
        "gripper still holds), earlier stages = reached at any step; [95% Wilson interval]; "
        "intervals exclude seed-to-seed variance: (seeds a-b) is the lowest and highest "
        "per-seed rate at the end of the episode where several training seeds ran. "
        f"{MISSING} = not run. Paper: Zhao et al., RSS 2023 (arXiv 2304.13705), Tables I-II, "
        f"sim {sim.get('seeds', '?')} seeds x {sim.get('rollouts_per_seed', '?')} rollouts, "
        f"real-robot tasks ({', '.join(real_tasks)}) {real.get('seeds', '?')} x "
        f"{real.get('rollouts_per_seed', '?')} with human demonstrations; the paper counted "
        "success if reached at any step, without a let-go, so its final-stage figure compares "
        "with our `lenient`, not with `end`."
    )


def success_table(df: pd.DataFrame) -> str:
    """Compact markdown: rows policy + source, per task final-stage success at the end, at any
    step and by the original ACT code's rule.

    End and any step differ when a policy reaches the goal and then undoes it (drops the cube);
    the ACT code's rule also counts a hand-off the giving gripper never let go of. The paper used
    that rule, so all three are shown.
    """
    cells = _main_cells(df)
    if cells is None:
        return NO_MAIN_ROWS
    rows, pooled, tasks = cells
    several_obs = pooled["obs_mode"].nunique() > 1
    headers = ["policy", "source"] + (["obs"] if several_obs else [])
    for task in tasks:
        headers += [f"{task} (end)", f"{task} (any step)", f"{task} (ACT code's rule)"]
    lines = []
    for policy, source, obs in _row_keys(pooled):
        line = [policy, source] + ([obs] if several_obs else [])
        for task in tasks:
            match = _lookup(pooled, policy, source, obs, task)
            if match.empty:
                line += [MISSING] * len(TABLE_METRICS)
                continue
            r = match.iloc[0]
            line += [
                _fmt_rate(r[m.rate], r[m.low], r[m.high]) + _fmt_seeds(r, m)
                for m in map(_rule, TABLE_METRICS)
            ]
        lines.append(line)
    footer = (
        f"{_span(pooled['episodes'])} episodes per cell, {_span(pooled['n_seeds'])} seed(s), "
        f"obs {_obs(rows)}; [95% Wilson interval on episodes pooled over seeds]; (seeds a-b) = "
        f"lowest and highest per-seed rate; {MISSING} = not run."
    )
    return _markdown(headers, lines) + "\n\n" + footer


def tasks_table(df: pd.DataFrame, paper: dict | None = None) -> str:
    """The main results with tasks as rows, one table per (source, obs mode), state tables
    first (the full grid), then pixels, scripted before human in each: the shape that reads on a
    page (the README), where ``main_table`` and ``success_table`` put tasks in columns.

    Columns: each policy's final-stage success at the end of the episode with its per-seed range,
    ACT's at any step and by the original ACT code's rule, and the paper's ACT figure for the same
    task and source (its rule: the ``lenient`` column's). Intervals are 95% Wilson on episodes
    pooled over seeds; "—" marks a cell not run.
    """
    paper = load_paper_results() if paper is None else paper
    cells = _main_cells(df)
    if cells is None:
        return NO_MAIN_ROWS
    rows, pooled, tasks = cells
    policies = _ordered(pooled["policy"], POLICY_ORDER)
    end, any_step, lenient = map(_rule, ("end", "any", "lenient"))
    blocks = []
    pairs = sorted(
        set(map(tuple, pooled[["source", "obs_mode"]].to_numpy())),
        key=lambda k: (_rank(k[1], OBS_ORDER), _rank(k[0], SOURCE_ORDER)),
    )
    for source, obs in pairs:
        part = pooled[(pooled["source"] == source) & (pooled["obs_mode"] == obs)]
        headers = ["task"] + [f"{p}: end" for p in policies]
        extra = "act" in policies
        if extra:
            headers += ["act: any step", "act: ACT code's rule", "paper ACT"]
        lines = []
        for task in tasks:
            line = [task]
            for policy in policies:
                match = _lookup(part, policy, source, obs, task)
                r = None if match.empty else match.iloc[0]
                line.append(
                    MISSING
                    if r is None
                    else _fmt_rate(r[end.rate], r[end.low], r[end.high]) + _fmt_seeds(r, end)
                )
            if extra:
                match = _lookup(part, "act", source, obs, task)
                r = None if match.empty else match.iloc[0]
                for m in (any_step, lenient):
                    line.append(MISSING if r is None else _fmt_rate(r[m.rate], r[m.low], r[m.high]))
                stages = _stage_names(rows[rows["task"] == task])
                theirs = paper_value(paper, task, source, stages[-1], "act") if stages else None
                line.append(MISSING if theirs is None else _fmt_paper(theirs))
            lines.append(line)
        part_rows = rows[(rows["source"] == source) & (rows["obs_mode"] == obs)]
        blocks.append(
            f"**{source} demonstrations, {obs} observations** "
            f"({_span(part['episodes'])} episodes per cell over {_span(part['n_seeds'])} "
            f"training seed(s), {len(part_rows)} evaluations)\n\n" + _markdown(headers, lines)
        )
    footer = (
        "end = the final stage holds at the last step of the episode; any step = it held at some "
        "step; ACT code's rule = any step, a hand-off counted while the giving gripper still holds "
        "(the paper's rule, so `paper ACT` compares with it); [95% Wilson interval on episodes "
        "pooled over seeds]; (seeds a-b) = lowest and highest per-seed rate at the end of the "
        f"episode; {MISSING} = not run, or no paper figure for that task and source. Paper: Zhao "
        "et al., RSS 2023, Tables I-II (sim tasks 3 seeds x 50 rollouts; real-robot tasks 1 x 25, "
        "human demonstrations)."
    )
    return "\n\n".join(blocks) + "\n\n" + footer


def _perturbation_order(pooled: pd.DataFrame) -> list[str]:
    level = pooled.groupby("perturbation")["perturbation_level"].min()
    return sorted(level.index, key=lambda p: (level[p], str(p)))


ROBUSTNESS_ARM = ("task", "policy_input", "train_steps", "train_randomize")


def _policy_input(rows: pd.DataFrame) -> pd.Series:
    """What the policy sees: "state", or "pixels (top+front)"."""
    cameras = rows["cameras"].fillna("").astype(str)
    pixels = "pixels (" + cameras + ")"
    return rows["obs_mode"].astype(str).where(rows["obs_mode"] != "pixels", pixels)


def _steps_text(value) -> str:
    return "?" if pd.isna(value) else str(int(value))


def robustness_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The robustness group pooled per arm (task, policy input, training steps, training
    randomization) and evaluation perturbation (with its level)."""
    rows = group_rows(df, "robustness")
    if "train_steps" not in rows.columns:
        rows = rows.assign(train_steps=np.nan)
    rows = rows.assign(policy_input=_policy_input(rows))
    return pool(rows, (*ROBUSTNESS_ARM, "perturbation", "perturbation_level", "obs_mode"))


def robustness_table(df: pd.DataFrame, metric: str = "end") -> str:
    """Markdown: rows train_randomize (per task if several), columns perturbation by level.

    ``metric`` picks the success rule of the cells: "end" of the episode or "any" step.
    """
    m = _rule(metric)
    pooled = robustness_frame(df)
    if pooled.empty:
        return "No rows in group `robustness`: nothing to tabulate."
    headers, lines = _robustness_grid(
        pooled,
        lambda cell: _fmt_rate(cell[m.rate].iloc[0], cell[m.low].iloc[0], cell[m.high].iloc[0]),
    )
    rows = group_rows(df, "robustness")
    return (
        _markdown(headers, lines)
        + f"\n\nSuccess {m.rule} [95% Wilson interval]; evaluation perturbations ordered by "
        f"level; {_scale(pooled, rows, 'cell')}; {MISSING} = not run."
    )


def _robustness_grid(pooled: pd.DataFrame, fmt) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of a robustness table: one row per arm, one column per perturbation
    (ordered by level), each cell ``fmt(rows of that cell)`` or MISSING."""
    perturbations = _perturbation_order(pooled)
    headers = ["task", "policy input", "train steps", "train randomization"] + perturbations
    lines = []
    for arm, sel in pooled.groupby(list(ROBUSTNESS_ARM), sort=False, dropna=False):
        task, policy_input, steps, randomize = arm
        line = [task, policy_input, _steps_text(steps), randomize]
        for p in perturbations:
            cell = sel[sel["perturbation"] == p]
            line.append(MISSING if cell.empty else fmt(cell))
        lines.append(line)
    # Rows: tasks in the usual order, pixels before state, then by training randomization.
    lines.sort(
        key=lambda line: (
            _rank(line[0], TASK_ORDER),
            not line[1].startswith("pixels"),
            line[1],
            line[2],
            _rank(line[3], RANDOMIZE_ORDER),
        )
    )
    return headers, lines


def robustness_stages_table(df: pd.DataFrame) -> str:
    """Markdown: the robustness grid with every stage's rate (reached at any step) per cell.

    Where a policy rarely completes the task, the earlier stages (touched, lifted...) are what
    still shows how much a perturbation costs it.
    """
    pooled = robustness_frame(df)
    if pooled.empty:
        return "No rows in group `robustness`: nothing to tabulate."
    n_stages = sum(pooled[c].notna().any() for c in STAGE_COLUMNS)

    def fmt(cell: pd.DataFrame) -> str:
        rates = [cell[c].iloc[0] for c in STAGE_COLUMNS[:n_stages]]
        return " / ".join(MISSING if pd.isna(r) else f"{100 * r:.0f}" for r in rates)

    headers, lines = _robustness_grid(pooled, fmt)
    rows = group_rows(df, "robustness")
    names = " / ".join(_stage_names(rows)) or "stages"
    return (
        _markdown(headers, lines)
        + f"\n\nPercent of episodes reaching each stage at any step ({names}); evaluation "
        f"perturbations ordered by level; {_scale(pooled, rows, 'cell')}; {MISSING} = not run."
    )


# --- plots ---------------------------------------------------------------------------------------

PAPER_CITE = "Zhao et al. 2023"


def _values(m: _Rule) -> list[str]:
    """What each plot's CSV keeps besides its keys: the plotted numbers in the rule's own columns
    (``success_rate_any``... for "any") and the counts behind them; ``rule`` says which rule a
    row's numbers follow (paper rows are always "any")."""
    return [
        "who",
        "rule",
        m.rate,
        m.low,
        m.high,
        m.successes,
        "episodes",
        "n_seeds",
        m.seed_std,
        m.seed_min,
        m.seed_max,
        m.seed_rates,
    ]


def _paper_label(m: _Rule, what: str) -> str:
    """Legend label of a paper overlay: like-for-like on ``any`` plots (exactly so where the
    final stage has no let-go check; the tables' ``lenient`` column is exact), flagged on ``end``
    plots."""
    if m.metric == "any":
        return f"paper ACT ({PAPER_CITE}), {what}"
    return f"paper ACT ({PAPER_CITE}, any-step rule: not like-for-like), {what}"


def _label(pooled: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """ " / "-joined values of the ``columns`` that vary (the first column when none varies)."""
    varying = [c for c in columns if pooled[c].astype(str).nunique() > 1] or list(columns[:1])
    return pooled[varying].astype(str).agg(" / ".join, axis=1)


def _skipped(name: str, group: str, m: _Rule) -> Artifact:
    return Artifact(name, (), f"no rows in group `{group}` of the summary: plot skipped", m.metric)


def _with_values(pooled: pd.DataFrame, keys: Sequence[str], m: _Rule) -> pd.DataFrame:
    return pooled.assign(who="ours", rule=m.metric)[list(keys) + _values(m)]


def _paper_rows(rows: pd.DataFrame, m: _Rule) -> pd.DataFrame:
    """Paper overlay rows (``success_rate`` in [0, 1], any-step) in the plotted rule's columns."""
    return rows.rename(columns={"success_rate": m.rate}).assign(who="paper", rule="any")


def _save(
    name: str,
    out_dir: Path,
    data: pd.DataFrame,
    title: str,
    caption: str,
    xlabel: str,
    draw,
    m: _Rule,
    *,
    grid: tuple[int, int] | None = None,
    ylabel: str | None = None,
    explain: str | None = None,
    ytop: float = 1.05,
) -> Artifact:
    """Draw with ``draw(ax, sns)`` and write <name><suffix>.png/.md/.csv of ``data``.

    The suffix is the rule's ("" for end, "_any"); the title and the returned note name the rule.
    A bare ``matplotlib.figure.Figure`` renders with the Agg canvas without pyplot, so no global
    backend or figure registry is touched and it works headless; seaborn's style is applied only
    inside this call (``axes_style`` context).

    Args:
        grid: (rows, columns) of panels sharing the y axis; ``draw`` then gets the flat list of
            axes (row by row) instead of one, and titles the panels itself. None: one axes.
        ylabel: the y axis label (default: the rule's success rate).
        explain: what the .md says after the caption about the numbers (default: the rule's
            Wilson interval and seed spread columns).
        ytop: the top of the y axis; above 1 to leave room for value labels over 100% bars.
    """
    import seaborn as sns
    from matplotlib.figure import Figure

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{name}{m.suffix}"
    png, md, csv = (out_dir / f"{stem}.{ext}" for ext in ("png", "md", "csv"))
    heading = f"{title}, success {m.rule}\n{textwrap.fill(caption, 110)}"
    with sns.axes_style("whitegrid"):
        if grid is None:
            fig = Figure(figsize=(8, 4.8), layout="constrained")
            axes = [fig.subplots()]
            draw(axes[0], sns)
            axes[0].set_title(heading, fontsize=9)
        else:
            rows, cols = grid
            # Panels about 4.6 x 3.4 in: wide enough for three stages of three bars each, with
            # a value label over every bar.
            fig = Figure(figsize=(max(8.0, 4.6 * cols), 1.6 + 3.4 * rows), layout="constrained")
            axes = list(fig.subplots(rows, cols, sharey=True, squeeze=False).flat)
            draw(axes, sns)
            fig.suptitle(heading, fontsize=9)
        for i, ax in enumerate(axes):
            ax.set_ylim(0, ytop)
            ax.set_xlabel(xlabel)
            if i % (grid[1] if grid else 1) == 0:
                ax.set_ylabel(ylabel or f"success rate {m.rule}", fontsize=9)
        fig.savefig(png, dpi=110)
    data.to_csv(csv, index=False)
    if explain is None:
        explain = (
            f"Success {m.rule}: [{m.low}, {m.high}] = 95% Wilson interval on episodes pooled over "
            f"training seeds (excludes seed-to-seed variance; {m.seed_std} is the std of "
            "per-seed rates). Paper rows (who = paper) follow the paper's any-step rule "
            "(rule = any)."
        )
    md.write_text(
        f"# {title}, success {m.rule}\n\n![{stem}]({png.name})\n\n{caption}. {explain}\n\n"
        f"{_frame_markdown(data)}\n"
    )
    return Artifact(name, (png, md, csv), f"success {m.rule}; {caption}", m.metric, fig)


def _palette(sns, labels: Sequence[str]) -> dict[str, tuple]:
    return dict(zip(labels, sns.color_palette("colorblind", len(labels)), strict=True))


def _line_plot(ax, sns, ours: pd.DataFrame, x: str, m: _Rule) -> None:
    """One line per ``series`` through the exact points (no estimator), Wilson bars from the CI."""
    labels = list(dict.fromkeys(ours["series"]))
    palette = _palette(sns, labels)
    sns.lineplot(
        data=ours,
        x=x,
        y=m.rate,
        hue="series",
        hue_order=labels,
        palette=palette,
        marker="o",
        estimator=None,
        errorbar=None,
        sort=True,
        ax=ax,
    )
    for label in labels:
        s = ours[ours["series"] == label]
        ax.errorbar(
            s[x],
            s[m.rate],
            yerr=[(s[m.rate] - s[m.low]).clip(lower=0), (s[m.high] - s[m.rate]).clip(lower=0)],
            fmt="none",
            ecolor=palette[label],
            capsize=3,
        )


def _bar_legend(
    ax, ours: pd.DataFrame, hue: str, hue_order: list, extra=(), below: bool = False, **kwargs
) -> None:
    """A legend with one patch per hue level ``_bar_plot`` drew (seaborn leaves a lone level
    without a label, which gave an empty legend box), then ``extra`` handles (paper markers),
    outside the axes where it cannot cover a bar or an error bar: on the right, or ``below``
    (for long labels, which on the right would squeeze the axes)."""
    from matplotlib.container import BarContainer
    from matplotlib.patches import Patch

    levels = [h for h in hue_order if h in set(ours[hue])]
    bars = [c for c in ax.containers if isinstance(c, BarContainer) and len(c.patches)]
    handles = [
        Patch(facecolor=c.patches[0].get_facecolor(), label=str(level))
        for level, c in zip(levels, bars, strict=False)
    ]
    place = (
        {"loc": "upper center", "bbox_to_anchor": (0.5, -0.14)}
        if below
        else {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0)}
    )
    ax.legend(handles=[*handles, *extra], fontsize=8, **place, **kwargs)


def _bar_plot(
    ax,
    sns,
    ours: pd.DataFrame,
    x: str,
    hue: str,
    order: list,
    hue_order: list,
    m: _Rule,
    *,
    columns: tuple[str, str, str] | None = None,
    palette: dict[str, tuple] | None = None,
    value_labels: bool = False,
) -> dict[tuple, float]:
    """Bars of the rule's success rate with asymmetric Wilson error bars; (x, hue) -> centre.

    Args:
        columns: the (rate, low, high) columns drawn (default: the rule's success columns).
        palette: hue level -> colour, to keep colours fixed across panels that lack some levels
            (default: a palette over the levels present).
        value_labels: write each bar's rate over it (``_value_labels``).
    """
    rate, low, high = columns or (m.rate, m.low, m.high)
    hue_order = [h for h in hue_order if h in set(ours[hue])]
    sns.barplot(
        data=ours,
        x=x,
        y=rate,
        hue=hue,
        order=order,
        hue_order=hue_order,
        palette=palette or _palette(sns, hue_order),
        errorbar=None,
        ax=ax,
    )
    # seaborn draws one container per present hue level, in hue_order; a bar's centre rounds to
    # its category index because dodging stays within +/-0.4 of it.
    centres = {}
    for level, container in zip(hue_order, ax.containers, strict=False):
        for bar in container:
            centre = bar.get_x() + bar.get_width() / 2
            centres[(order[round(centre)], level)] = centre
    for _, r in ours.iterrows():
        centre = centres.get((r[x], r[hue]))
        if centre is None:
            continue
        ax.errorbar(
            [centre],
            [r[rate]],
            yerr=[[max(r[rate] - r[low], 0.0)], [max(r[high] - r[rate], 0.0)]],
            fmt="none",
            ecolor="black",
            capsize=3,
        )
    if value_labels:
        _value_labels(ax, ours, centres, x, hue, rate, high)
    # The error bars re-autoscale x to the bars drawn: where the last category has only its
    # first hue level, its centre (and tick label) fell outside the axes.
    ax.set_xlim(-0.5, len(order) - 0.5)
    return centres


def _value_labels(
    ax, ours: pd.DataFrame, centres: dict, x: str, hue: str, rate: str, high: str
) -> None:
    """Each bar's rate as text ("0%", "95%") just above its Wilson interval.

    A 0% bar has no height, so without its label it looks like a cell that was never run;
    above the interval the text clears the error bar's cap.
    """
    for _, r in ours.iterrows():
        centre = centres.get((r[x], r[hue]))
        if centre is None:
            continue
        value = r[rate]
        known = value is not None and np.isfinite(value)
        top = max(value, r[high]) if known and np.isfinite(r[high]) else (value if known else 0)
        ax.annotate(
            f"{100 * value:.0f}%" if known else "n/a",
            (centre, top),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=7,
        )


def _log_x(ax, values) -> None:
    values = sorted(set(float(v) for v in values))
    positive = [v for v in values if v > 0]
    if len(positive) < len(values):
        # kl_weight 0 (or chunk 0) has no log: linear near zero, log beyond.
        ax.set_xscale("symlog", linthresh=min(positive) if positive else 1.0)
    else:
        ax.set_xscale("log")
    ax.set_xticks(values, [f"{v:g}" for v in values])
    ax.minorticks_off()


def plot_chunk_size(
    df: pd.DataFrame, out_dir: Path, paper: dict | None = None, *, metric: str = "end"
) -> Artifact:
    """Success vs action chunk size k (log x), the paper's ablation curve dashed on top.

    The paper's curve (k = 1/10/100/200/400 -> 1/21/44/42/41%) is ACT without temporal
    ensembling averaged over its sim settings, so it is labelled as such rather than per task. It
    is any-step success: like-for-like with ``metric="any"``, labelled as not so on "end".
    """
    m = _rule(metric)
    rows = group_rows(df, "chunk_size")
    if rows.empty:
        return _skipped("chunk_size", "chunk_size", m)
    # Every point is ACT at some K; the K = 1 point is the `single_step` run (that baseline is
    # ACT with K = 1, so the study trains it once), which would otherwise start its own series.
    rows = rows.assign(policy="act")
    paper = load_paper_results() if paper is None else paper
    keys = ["task", "source", "policy", "obs_mode", "temporal_ensemble", "chunk_size"]
    pooled = pool(rows, keys).sort_values("chunk_size", kind="stable")
    ours = _with_values(pooled, keys, m).assign(series=_label(pooled, keys[:-1]).to_numpy())
    ablation = paper.get("ablations", {}).get("chunk_size", {})
    theirs = _paper_rows(
        pd.DataFrame(
            {
                "chunk_size": ablation.get("chunk_size", []),
                "success_rate": [v / 100 for v in ablation.get("success", [])],
            }
        ),
        m,
    ).assign(series=_paper_label(m, "mean of its sim settings"))
    data = pd.concat([ours, theirs], ignore_index=True)

    def draw(ax, sns):
        _line_plot(ax, sns, ours, "chunk_size", m)
        if not theirs.empty:
            ax.plot(
                theirs["chunk_size"],
                theirs[m.rate],
                "k--",
                marker="x",
                label=theirs["series"].iloc[0],
            )
        _log_x(ax, data["chunk_size"])
        ax.legend(fontsize=8)

    caption = f"chunk size ablation: {_scale(pooled, rows)}"
    return _save(
        "chunk_size", out_dir, data, "Success vs action chunk size k", caption, "k", draw, m
    )


def plot_temporal_ensembling(df: pd.DataFrame, out_dir: Path, *, metric: str = "end") -> Artifact:
    """Bars with / without temporal ensembling per task (paper: 44% -> 47.3%, sim average)."""
    m = _rule(metric)
    rows = group_rows(df, "temporal_ensembling")
    if rows.empty:
        return _skipped("temporal_ensembling", "temporal_ensembling", m)
    keys = ["task", "source", "policy", "obs_mode", "chunk_size", "temporal_ensemble"]
    pooled = pool(rows, keys)
    pooled = pooled.iloc[
        sorted(range(len(pooled)), key=lambda i: _rank(pooled["task"].iloc[i], TASK_ORDER))
    ]
    ours = _with_values(pooled, keys, m).assign(
        setting=_label(pooled, keys[:-1]).to_numpy(),
        ensembling=np.where(pooled["temporal_ensemble"].astype(bool), "with TE", "without TE"),
    )

    def draw(ax, sns):
        order = list(dict.fromkeys(ours["setting"]))
        _bar_plot(ax, sns, ours, "setting", "ensembling", order, ["without TE", "with TE"], m)
        ax.legend(fontsize=8)

    paper_note = "44% -> 47.3%, mean of its sim settings"
    caption = f"temporal ensembling: {_scale(pooled, rows)}; {_paper_label(m, paper_note)}"
    return _save(
        "temporal_ensembling", out_dir, ours, "Temporal ensembling", caption, "setting", draw, m
    )


def plot_cvae(
    df: pd.DataFrame, out_dir: Path, paper: dict | None = None, *, metric: str = "end"
) -> Artifact:
    """Bars with / without the CVAE by data source, pooled over tasks; paper values as markers.

    The paper's CVAE ablation averages its two sim tasks per data source (scripted 59 vs 58,
    human 35.3 vs 2), so ours are pooled over the tasks in the group to match. Only paired cells
    are pooled: a (task, training seed) run both with and without the CVAE on the same source;
    otherwise a bar over five tasks would stand beside one over the easiest task alone. The
    paper's values are any-step success: like-for-like with ``metric="any"``, labelled as not so
    on "end".
    """
    m = _rule(metric)
    rows = group_rows(df, "cvae")
    if not rows.empty:
        pair = ["obs_mode", "source", "task", "train_seed"]
        paired = rows.groupby(pair)["use_vae"].transform(lambda v: v.astype(bool).nunique() == 2)
        rows = rows[paired.astype(bool)]
    if rows.empty:
        return Artifact(
            "cvae",
            (),
            "no task and training seed of group `cvae` ran both with and without the CVAE "
            "on the same source yet: plot skipped",
            m.metric,
        )
    paper = load_paper_results() if paper is None else paper
    keys = ["obs_mode", "source", "use_vae"]
    pooled = pool(rows, keys)
    setting = _label(pooled, ["source", "obs_mode"]).to_numpy()
    tasks_of = {
        (mode, source): ", ".join(_ordered(part["task"], TASK_ORDER))
        for (mode, source), part in rows.groupby(["obs_mode", "source"])
    }
    ours = _with_values(pooled, keys, m).assign(
        setting=setting,
        cvae=np.where(pooled["use_vae"].astype(bool), "with CVAE", "without CVAE"),
        tasks=[tasks_of[pair] for pair in zip(pooled["obs_mode"], pooled["source"], strict=True)],
    )
    ours = ours.iloc[
        sorted(range(len(ours)), key=lambda i: _rank(ours["source"].iloc[i], SOURCE_ORDER))
    ]
    ablation = paper.get("ablations", {}).get("cvae", {})
    theirs = _paper_rows(
        pd.DataFrame(
            [
                {
                    "source": r["source"],
                    "setting": r["setting"],
                    "cvae": r["cvae"],
                    "success_rate": ablation[r["source"]][
                        "with" if r["cvae"] == "with CVAE" else "without"
                    ]
                    / 100,
                }
                for _, r in ours.iterrows()
                if r["source"] in ablation
            ]
        ),
        m,
    )
    data = pd.concat([ours, theirs], ignore_index=True)

    def draw(ax, sns):
        order = list(dict.fromkeys(ours["setting"]))
        centres = _bar_plot(
            ax, sns, ours, "setting", "cvae", order, ["with CVAE", "without CVAE"], m
        )
        extra = []
        if not theirs.empty:
            xs = [centres[(r["setting"], r["cvae"])] for _, r in theirs.iterrows()]
            extra.append(
                ax.scatter(
                    xs,
                    theirs[m.rate],
                    marker="D",
                    color="black",
                    zorder=5,
                    label=_paper_label(m, "mean of its 2 sim tasks, transfer_cube and insertion"),
                )
            )
        _bar_legend(ax, ours, "cvae", ["with CVAE", "without CVAE"], extra, below=True)

    caption = (
        "CVAE ablation, cells run both with and without it (same task, seed, source) pooled: "
        f"{_scale(pooled, rows)}"
    )
    return _save("cvae", out_dir, data, "With vs without the CVAE", caption, "data source", draw, m)


def _line_ablation(
    df: pd.DataFrame,
    out_dir: Path,
    name: str,
    x: str,
    title: str,
    xlabel: str,
    log: bool,
    m: _Rule,
    means: Sequence[str] = (),
) -> Artifact:
    rows = group_rows(df, name)
    if rows.empty:
        return _skipped(name, name, m)
    keys = ["task", "source", "policy", "obs_mode", x]
    pooled = pool(rows, keys).sort_values(x, kind="stable")
    ours = _with_values(pooled, keys, m).assign(series=_label(pooled, keys[:-1]).to_numpy())
    if means:
        # Per-point means over seeds of run-level figures (e.g. validation L1) for the CSV.
        averaged = rows.groupby(keys, sort=False, dropna=False)[list(means)].mean().reset_index()
        ours = ours.merge(averaged, on=keys, how="left")

    def draw(ax, sns):
        _line_plot(ax, sns, ours, x, m)
        if log:
            _log_x(ax, ours[x])
        else:
            ax.set_xticks(sorted(set(ours[x])))
        ax.legend(fontsize=8)

    caption = f"{name}: {_scale(pooled, rows)}"
    return _save(name, out_dir, ours, title, caption, xlabel, draw, m)


def plot_beta(df: pd.DataFrame, out_dir: Path, *, metric: str = "end") -> Artifact:
    """Success vs the KL weight beta (log x; the paper trains with beta = 10)."""
    title = "Success vs KL weight beta"
    return _line_ablation(
        df, out_dir, "beta", "kl_weight", title, "kl_weight", log=True, m=_rule(metric)
    )


def plot_train_steps(df: pd.DataFrame, out_dir: Path, *, metric: str = "end") -> Artifact:
    """Success vs the training budget, one line per task: each point is its own run with its own
    cosine schedule, so a line that stops rising says the study's budget converged. The CSV also
    carries each run's validation L1 (best and last), the open-loop view of the same question."""
    title = "Success vs training steps"
    return _line_ablation(
        df,
        out_dir,
        "train_steps",
        "train_steps",
        title,
        "training steps",
        log=False,
        m=_rule(metric),
        means=("val_l1_best", "val_l1_last"),
    )


def plot_demos(df: pd.DataFrame, out_dir: Path, *, metric: str = "end") -> Artifact:
    """Success vs the number of demonstrations, one line per task (the same act recipe on seeds
    0..N-1): a line still rising says the task is data-bound at the study's count. The CSV also
    carries each run's validation L1 (best and last; each on its own held-out demos)."""
    return _line_ablation(
        df,
        out_dir,
        "demos",
        "demos",
        "Success vs number of demonstrations",
        "demonstrations",
        log=False,
        m=_rule(metric),
        means=("val_l1_best", "val_l1_last"),
    )


def plot_cameras(df: pd.DataFrame, out_dir: Path, *, metric: str = "end") -> Artifact:
    """Success vs number of cameras (the camera names of each point are in the CSV)."""
    m = _rule(metric)
    rows = group_rows(df, "cameras")
    if rows.empty:
        return _skipped("cameras", "cameras", m)
    keys = ["task", "source", "policy", "obs_mode", "n_cameras", "cameras"]
    pooled = pool(rows, keys).sort_values("n_cameras", kind="stable")
    ours = _with_values(pooled, keys, m).assign(series=_label(pooled, keys[:-2]).to_numpy())

    def draw(ax, sns):
        _line_plot(ax, sns, ours, "n_cameras", m)
        for _, r in ours.iterrows():
            ax.annotate(
                r["cameras"] or "(none)",
                (r["n_cameras"], r[m.rate]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
            )
        ax.set_xticks(sorted(set(ours["n_cameras"])))
        ax.legend(fontsize=8)

    caption = f"cameras: {_scale(pooled, rows)}"
    return _save(
        "cameras", out_dir, ours, "Success vs number of cameras", caption, "n_cameras", draw, m
    )


def _main_pooled(rows: pd.DataFrame) -> pd.DataFrame:
    """The main group's rows pooled per ``MAIN_KEYS``, in the paper's order (ACT first, scripted
    first), with ``variant``: the policy / source / obs mode label of a bar, naming only what
    varies."""
    pooled = pool(rows, MAIN_KEYS)
    ranked = sorted(
        range(len(pooled)),
        key=lambda i: (
            _rank(pooled["policy"].iloc[i], POLICY_ORDER),
            _rank(pooled["source"].iloc[i], SOURCE_ORDER),
        ),
    )
    pooled = pooled.iloc[ranked].reset_index(drop=True)
    return pooled.assign(variant=_label(pooled, ["policy", "source", "obs_mode"]).to_numpy())


def plot_task_bars(df: pd.DataFrame, out_dir: Path, *, metric: str = "end") -> Artifact:
    """Per-task success bars for each policy (and source) of the main group, each bar labelled
    with its rate."""
    m = _rule(metric)
    rows = group_rows(df, "main")
    if rows.empty:
        return _skipped("task_bars", "main", m)
    keys = list(MAIN_KEYS)
    pooled = _main_pooled(rows)
    ours = _with_values(pooled, keys, m).assign(variant=pooled["variant"].to_numpy())

    def draw(ax, sns):
        order = _ordered(ours["task"], TASK_ORDER)
        variants = list(dict.fromkeys(ours["variant"]))
        centres = _bar_plot(ax, sns, ours, "task", "variant", order, variants, m, value_labels=True)
        _seed_dots(ax, ours, centres, "task", "variant", m)
        ax.legend(fontsize=8)

    caption = f"main results: {_scale(pooled, rows)}; dots: one per training seed"
    return _save(
        "task_bars",
        out_dir,
        ours,
        "Success per task and policy",
        caption,
        "task",
        draw,
        m,
        ytop=LABELLED_YTOP,
    )


# Room above 100% for a bar's value label over its error bar.
LABELLED_YTOP = 1.14
# Panels per row of the stage plot; more tasks wrap to further rows.
STAGE_PANELS_PER_ROW = 3


def _stages_frame(rows: pd.DataFrame, m: _Rule) -> pd.DataFrame:
    """One row per (main cell, stage of its task): the rate, Wilson bounds and count drawn.

    Earlier stages are the fraction of episodes that reached them at any step (``stage_i``);
    the final stage is success by the rule ``m`` (its ``stage_i`` column is the any-step reach,
    which on tasks with a let-go check is not success).
    """
    pooled = _main_pooled(rows)
    records = []
    for _, r in pooled.iterrows():
        # A summary without stage names still has its success rate: one bar for it.
        names = _stage_names(rows[rows["task"] == r["task"]]) or ["success"]
        for i, stage in enumerate(names):
            final = i == len(names) - 1
            if final:
                rate, low, high, rule = r[m.rate], r[m.low], r[m.high], m.metric
            elif i < len(STAGE_COLUMNS):
                c = STAGE_COLUMNS[i]
                rate, low, high, rule = r[c], r[f"{c}_low"], r[f"{c}_high"], "any"
            else:  # more stages than the summary has columns for: not measured
                rate, low, high, rule = math.nan, math.nan, math.nan, "any"
            records.append(
                {
                    **{k: r[k] for k in MAIN_KEYS},
                    "variant": r["variant"],
                    "who": "ours",
                    "stage_index": i + 1,
                    "stage": stage,
                    "final": final,
                    "rule": rule,
                    "rate": rate,
                    "ci_low": low,
                    "ci_high": high,
                    # Earlier stages are stored as rates: their counts are rate x episodes.
                    "reached": round(rate * r["episodes"]) if np.isfinite(rate) else math.nan,
                    "episodes": r["episodes"],
                    "n_seeds": r["n_seeds"],
                }
            )
    return pd.DataFrame.from_records(records)


def _stage_tick(stage: str, final: bool, m: _Rule) -> str:
    if not final:
        return f"{stage}\n(reached, any step)"
    return f"{stage}\n(final: {'end of episode' if m.metric == 'end' else 'any step'})"


def plot_stages(df: pd.DataFrame, out_dir: Path, *, metric: str = "end") -> Artifact:
    """Every stage's rate per task and policy of the main group, each bar labelled with its rate.

    One panel per task (tasks name their stages differently), one bar per policy / source per
    stage, with Wilson error bars. Earlier stages are the fraction of episodes that reached them
    at any step; the final stage is success by ``metric``. A final stage at 0% still shows its
    "0%" label and its interval, so it reads as a measured zero, not a missing bar; the earlier
    stages say how far a policy that never succeeds gets.
    """
    m = _rule(metric)
    rows = group_rows(df, "main")
    if rows.empty:
        return _skipped("stages", "main", m)
    data = _stages_frame(rows, m)
    tasks = _ordered(data["task"], TASK_ORDER)
    variants = list(dict.fromkeys(data["variant"]))
    cols = min(len(tasks), STAGE_PANELS_PER_ROW)
    grid = (math.ceil(len(tasks) / cols), cols)

    def draw(axes, sns):
        from matplotlib.patches import Patch

        palette = _palette(sns, variants)
        for ax, task in zip(axes, tasks, strict=False):
            sub = data[data["task"] == task]
            order = list(dict.fromkeys(sub.sort_values("stage_index")["stage"]))
            finals = set(sub.loc[sub["final"], "stage"])
            _bar_plot(
                ax,
                sns,
                sub,
                "stage",
                "variant",
                order,
                variants,
                m,
                columns=("rate", "ci_low", "ci_high"),
                palette=palette,
                value_labels=True,
            )
            ax.set_xticks(range(len(order)), [_stage_tick(s, s in finals, m) for s in order])
            ax.tick_params(axis="x", labelsize=8)
            ax.set_title(task, fontsize=9)
            if ax.get_legend() is not None:
                ax.get_legend().remove()
        for ax in axes[len(tasks) :]:
            ax.set_visible(False)
        # One legend for all panels, below them: inside a panel it would cover the bars that
        # reach 100%, and the colours are the same in every panel.
        axes[0].figure.legend(
            handles=[Patch(color=palette[v], label=v) for v in variants],
            loc="outside lower center",
            ncols=min(len(variants), 4),
            fontsize=8,
        )

    caption = (
        f"every stage of the main results, the final one by this rule, earlier ones reached at "
        f"any step: {_scale(data, rows, 'bar')}"
    )
    explain = (
        f"Earlier stages (rule = any): fraction of episodes that reached the stage at any step; "
        f"final stage (final = True, rule = {m.metric}): success {m.rule}. [ci_low, ci_high] = "
        "95% Wilson interval on episodes pooled over training seeds (earlier stages: on "
        "reached = round(rate x episodes)); it excludes seed-to-seed variance."
    )
    return _save(
        "stages",
        out_dir,
        data,
        "Every stage per task and policy",
        caption,
        "stage",
        draw,
        m,
        grid=grid,
        ylabel="fraction of episodes",
        explain=explain,
        ytop=LABELLED_YTOP,
    )


def _seed_dots(ax, ours: pd.DataFrame, centres: dict, x: str, hue: str, m: _Rule) -> None:
    """Each training seed's own rate as a hollow dot on its bar (``seed_rates``), so the spread
    the pooled Wilson interval leaves out is visible; one label for the legend."""
    labelled = False
    for _, r in ours.iterrows():
        centre = centres.get((r[x], r[hue]))
        if centre is None or r["n_seeds"] < 2:
            continue
        rates = [float(part.split(":")[1]) for part in str(r[m.seed_rates]).split(";")]
        ax.scatter(
            [centre] * len(rates),
            rates,
            s=14,
            facecolors="none",
            edgecolors="black",
            linewidths=0.8,
            zorder=6,
            label=None if labelled else "per training seed",
        )
        labelled = True


def plot_robustness(df: pd.DataFrame, out_dir: Path, *, metric: str = "end") -> Artifact:
    """Success under each evaluation perturbation (by level), one bar per training randomization."""
    m = _rule(metric)
    pooled = robustness_frame(df)
    if pooled.empty:
        return _skipped("robustness_bars", "robustness", m)
    rows = group_rows(df, "robustness")
    keys = [*ROBUSTNESS_ARM, "perturbation", "perturbation_level", "obs_mode"]
    ranked = sorted(
        range(len(pooled)), key=lambda i: _rank(pooled["train_randomize"].iloc[i], RANDOMIZE_ORDER)
    )
    pooled = pooled.iloc[ranked]
    ours = _with_values(pooled, keys, m).assign(
        trained=_label(pooled, ["train_randomize", "policy_input", "task"]).to_numpy()
    )

    def draw(ax, sns):
        order = _perturbation_order(pooled)
        trained = list(dict.fromkeys(ours["trained"]))
        _bar_plot(ax, sns, ours, "perturbation", "trained", order, trained, m)
        # Outside the axes: with several arms the legend would cover the tallest bars.
        _bar_legend(
            ax, ours, "trained", trained, title="trained (randomization / input)", title_fontsize=8
        )
        ax.tick_params(axis="x", labelrotation=30)

    caption = f"robustness: {_scale(pooled, rows)}"
    return _save(
        "robustness_bars",
        out_dir,
        ours,
        "Success under evaluation perturbations",
        caption,
        "evaluation perturbation (by level)",
        draw,
        m,
    )


# --- the whole report ----------------------------------------------------------------------------


def report_markdown(df: pd.DataFrame, paper: dict | None = None) -> str:
    """The main table and the compact success table, for a CLI to print."""
    return (
        "## Main results\n\n"
        + main_table(df, paper)
        + "\n\n## Final-stage success\n\n"
        + success_table(df)
        + "\n"
    )


_PLOTS = (
    plot_task_bars,
    plot_stages,
    plot_chunk_size,
    plot_temporal_ensembling,
    plot_cvae,
    plot_beta,
    plot_train_steps,
    plot_demos,
    plot_cameras,
    plot_robustness,
)


def _md_link(text: str, target: str) -> str:
    # Angle brackets keep a target with spaces or parentheses one link (CommonMark).
    if any(c in target for c in " ()<>"):
        target = f"<{target}>"
    return f"[{text}]({target})"


def video_lines(df: pd.DataFrame, summary_dir: Path, out_dir: Path) -> list[str]:
    """Markdown list items: per main cell, a link to its success video and to its failure video.

    The videos are the ones the results browser shows (``report_html.example_videos``: the
    summary's ``video_success`` / ``video_failure`` columns, relative to ``summary_dir``, else
    the records' ``video`` fields). Links are relative to ``out_dir``, where REPORT.md is
    written, so they keep working when the results and work folders are copied together. A cell
    without one of the two says why: no failure (every episode succeeded), no success (none
    did), or not filmed; a linked file missing on this machine is flagged.

    Args:
        df: the summary.
        summary_dir: the folder of its summary.csv.
        out_dir: the folder of the REPORT.md the lines go into.

    Returns:
        One line per main cell, or one line saying that the summary has no videos (the study
        file does not set ``example_videos = true``) or no main cells.
    """
    from aloha_bench.report_html import CELL_KEYS, example_videos

    rows = group_rows(df, "main")
    if rows.empty:
        return ["- No rows in group `main`: no example videos."]
    videos = example_videos(df, Path(summary_dir).resolve())
    if not any(path for cell in videos.values() for path in cell.values()):
        return [
            "- No example videos in this summary: a study file with `example_videos = true` "
            "films one success and one failure per evaluated cell."
        ]
    counts = pool(rows, CELL_KEYS).set_index(list(CELL_KEYS))
    out_dir = Path(out_dir).resolve()
    lines = []
    for key in sorted(videos, key=video_cell_rank):
        episodes, successes = (int(counts.loc[key, c]) for c in ("episodes", "successes"))
        links = []
        for outcome in ("success", "failure"):
            path = videos[key][outcome]
            if path is None:
                # Films are of end-of-episode outcomes (outcome_videos.pick_outcomes), so the
                # end-rule counts say whether there was any such episode to film.
                if outcome == "failure" and successes == episodes:
                    links.append(f"no failure (all {episodes} episodes succeeded)")
                elif outcome == "success" and successes == 0:
                    links.append(f"no success (0 of {episodes} episodes succeeded)")
                else:
                    links.append(f"{outcome}: not filmed")
                continue
            link = _md_link(f"{outcome} video", os.path.relpath(path, out_dir))
            absent = "" if Path(path).is_file() else " (file not on this machine)"
            links.append(link + absent)
        label = " / ".join(str(k) for k in key)
        lines.append(
            f"- {label} ({successes}/{episodes} successes at the end of the episode): "
            + " · ".join(links)
        )
    return lines


def write_report(summary_csv: Path, out_dir: Path) -> list[Path]:
    """Write every table and plot of a study from its ``summary.csv`` into ``out_dir``.

    Writes table_main.md/.csv, table_success.md, table_tasks.md, robustness.md and
    robustness_any.md (end-of-episode and any-step success) with robustness.csv (both rules'
    columns) when the study has that group, each plot with its .md/.csv twice, ``<plot>.*`` at
    the end of the episode and ``<plot>_any.*`` at any step (the paper's rule), and REPORT.md
    linking them with a line of scale each and the rule each uses. Groups without rows are
    listed in REPORT.md as skipped, with the reason.
    The plots include ``stages``: every stage of every main cell, not only the final one.
    REPORT.md ends with links to each main cell's example success and failure videos
    (``video_lines``), relative to ``out_dir``.

    Also writes ``index.html`` (``aloha_bench.report_html``): the main table, every plot and
    example rollout videos, for a browser; and ``gifs/`` (``aloha_bench.task_gifs``): one filmed
    success per task as a small GIF, for the README.

    Returns:
        The paths written, REPORT.md last.
    """
    summary_csv, out_dir = Path(summary_csv), Path(out_dir)
    df = read_summary(summary_csv)
    paper = load_paper_results()
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    lines = [
        "# aloha-bench report",
        "",
        f"From `{summary_csv}` ({len(df)} evaluated cells). Paper numbers: Zhao et al., "
        '"Learning Fine-Grained Bimanual Manipulation with Low-Cost Hardware", RSS 2023, '
        "arXiv 2304.13705.",
        "",
        "Success has three rules here: *end* = the final stage holds at the last step of the "
        "episode; *any step* = it held at some step; *lenient* (tables only) = the original ACT "
        "code's rule, any step and a hand-off counted while the giving gripper still holds "
        "(transfer_cube, battery). Paper numbers compare like-for-like with *lenient*, and with "
        "the any-step plots on tasks without a let-go check.",
        "",
        "## Tables",
        "",
    ]

    def text(name: str, content: str) -> Path:
        path = out_dir / name
        path.write_text(content + "\n")
        written.append(path)
        return path

    main = main_frame(df)
    if main.empty:
        lines.append("- Main tables: skipped (no rows in group `main`).")
        for name in ("table_main.md", "table_main.csv", "table_success.md", "table_tasks.md"):
            (out_dir / name).unlink(missing_ok=True)
    else:
        text("table_main.md", main_table(df, paper))
        text("table_success.md", success_table(df))
        text("table_tasks.md", tasks_table(df, paper))
        main.to_csv(out_dir / "table_main.csv", index=False)
        written.append(out_dir / "table_main.csv")
        scale = _scale(main, group_rows(df, "main"), "cell")
        lines.append(
            f"- [Main table](table_main.md) ([csv](table_main.csv)), final stage at the end of "
            f"the episode and at any step (the paper's rule), earlier stages at any step: {scale}"
        )
        lines.append(f"- [Final-stage success, end vs any step](table_success.md): {scale}")
        lines.append(
            f"- [Tasks as rows, one table per source](table_tasks.md) (the README's): {scale}"
        )
    robustness = robustness_frame(df)
    if robustness.empty:
        lines.append("- Robustness tables: skipped (no rows in group `robustness`).")
        for name in (
            "robustness.md",
            "robustness_any.md",
            "robustness_stages.md",
            "robustness.csv",
        ):
            (out_dir / name).unlink(missing_ok=True)
    else:
        robustness.to_csv(out_dir / "robustness.csv", index=False)
        scale = _scale(robustness, group_rows(df, "robustness"), "cell")
        for m in map(_rule, METRICS):
            name = f"robustness{m.suffix}.md"
            text(name, robustness_table(df, m.metric))
            lines.append(
                f"- [Robustness table, success {m.rule}]({name}) "
                f"([csv, both rules](robustness.csv)): {scale}"
            )
        text("robustness_stages.md", robustness_stages_table(df))
        lines.append(f"- [Robustness table, every stage](robustness_stages.md): {scale}")
        written.append(out_dir / "robustness.csv")
    lines += ["", "## Plots", ""]
    figures = []  # for the results browser
    for plot in _PLOTS:
        kwargs = {"paper": paper} if plot in (plot_chunk_size, plot_cvae) else {}
        artifacts = [plot(df, out_dir, metric=metric, **kwargs) for metric in METRICS]
        if not artifacts[0].paths:
            lines.append(f"- {artifacts[0].name} plot: {artifacts[0].note}")
            # A plot an earlier, larger summary drew would otherwise outlive its data.
            for m in map(_rule, METRICS):
                for ext in ("png", "md", "csv"):
                    (out_dir / f"{artifacts[0].name}{m.suffix}.{ext}").unlink(missing_ok=True)
            continue
        for artifact in artifacts:
            written += artifact.paths
            png, md, csv = (p.name for p in artifact.paths)
            figures.append(
                {
                    "name": artifact.name,
                    "metric": artifact.metric,
                    "png": png,
                    "note": artifact.note,
                }
            )
            lines.append(
                f"- [{artifact.name} plot, {artifact.metric}]({png}) ([numbers]({md}), "
                f"[csv]({csv})): {artifact.note}"
            )
    from aloha_bench.report_html import INDEX_FILE, write_index

    main_md = main_table(df, paper) if not main.empty else "No rows in group `main`."
    tasks_md = tasks_table(df, paper) if not main.empty else None
    written.append(
        write_index(
            df, out_dir, main_md, figures, summary_dir=summary_csv.parent, tasks_markdown=tasks_md
        )
    )
    lines += ["", "## Example rollouts", ""]
    lines += [
        "Per main cell, one filmed success and one filmed failure (at the end of the episode) "
        "from its evaluations; the counts are pooled over training seeds. All four cameras side "
        "by side, 25 fps.",
        "",
    ]
    lines += video_lines(df, summary_csv.parent, out_dir)
    from aloha_bench.task_gifs import GIF_DIR, GIF_INDEX, write_task_gifs

    written += write_task_gifs(df, summary_csv.parent, out_dir)
    if (out_dir / GIF_DIR / GIF_INDEX).is_file():
        lines += [
            "",
            f"One filmed success per task as a small GIF (for pages that cannot play mp4): "
            f"[{GIF_DIR}/{GIF_INDEX}]({GIF_DIR}/{GIF_INDEX}), each with the cell it shows.",
        ]
    lines += ["", f"Results browser: [{INDEX_FILE}]({INDEX_FILE}) (table, plots, example videos)."]
    text("REPORT.md", "\n".join(lines))
    return written
