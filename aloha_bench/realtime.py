"""Compute latency against success and seam smoothness (L4): ``aloha-bench realtime``.

A grid of evaluations of one trained policy in simulation: chunk execution ``sync``, ``async``
and ``async`` with the seam blend, at injected inference delays (0, 50, 100, 200 ms by default),
every cell under the ``real`` timing model (30 fps cameras seen 60 ms late, one tick of action
delay, servo deadband and backlash). Each cell is exactly ``aloha-bench eval --async
--inference-delay-ms D ...`` (the command is written beside the results), so a figure can be
rerun alone. Time is simulated (one 20 ms control period per env step plus the injected delay),
so the figures do not depend on the speed of the machine that made them.

Outputs in ``out``: ``cells/<label>/`` (each cell's ``records.jsonl``, ``summary.json``,
``table.md``), ``summary.csv``, ``table.md``, ``realtime.png`` and ``COMMANDS.md``. A cell
whose ``summary.json`` exists is not run again.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from aloha_bench.evaluate import (
    SUMMARY_FILE,
    EpisodeRunner,
    EvalSettings,
    evaluate,
    summarize,
    write_outputs,
)

DELAYS_MS = (0, 50, 100, 200)
# (mode, smoothing): the paper's execution, async, async with the raised-cosine seam blend.
CONDITIONS = (("sync", "none"), ("async", "none"), ("async", "blend"))
CELLS_DIR = "cells"

# Per worker process: the runners of the cells it is playing (a policy and an env each), so one
# pool serves the whole grid and a worker builds each cell's runner once.
_RUNNERS: dict[str, EpisodeRunner] = {}


def _run_episode(settings: EvalSettings, index: int) -> dict[str, Any]:
    key = repr(settings)
    if key not in _RUNNERS:
        for old in list(_RUNNERS):  # a worker moves on to the next cell: free the last one
            _RUNNERS.pop(old).close()
        os.environ.setdefault("MUJOCO_GL", "egl")
        _RUNNERS[key] = EpisodeRunner(settings)
    return _RUNNERS[key].run(index)


def _evaluate_cells(
    cells: Mapping[str, EvalSettings],
    workers: int,
    progress: Callable[[str, dict[str, Any]], None] | None,
    finished: Callable[[str, list[dict[str, Any]]], None],
) -> None:
    """Every episode of every cell in one spawned process pool (``evaluate`` per cell would
    start a pool, and pay the imports, per cell); ``finished(label, records)`` as soon as a
    cell's episodes are all in, so an interrupted grid keeps its finished cells. Each record is
    what ``evaluate`` returns for that cell and episode: the same ``EpisodeRunner.run``."""
    if workers == 1:
        for label, settings in cells.items():
            finished(label, evaluate(settings, progress=_tagged(label, progress)))
        return
    records: dict[str, list[dict[str, Any]]] = {label: [] for label in cells}
    context = multiprocessing.get_context("spawn")  # never fork after GL (SIM_NOTES.md)
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = {
            pool.submit(_run_episode, settings, i): label
            for label, settings in cells.items()
            for i in range(settings.episodes)
        }
        for future in as_completed(futures):
            label, record = futures[future], future.result()
            records[label].append(record)
            if progress is not None:
                progress(label, record)
            if len(records[label]) == cells[label].episodes:
                finished(label, sorted(records[label], key=lambda r: r["episode"]))


def _tagged(
    label: str, progress: Callable[[str, dict[str, Any]], None] | None
) -> Callable[[dict[str, Any]], None] | None:
    return None if progress is None else (lambda record: progress(label, record))


def cell_label(mode: str, smoothing: str, delay_ms: float) -> str:
    """A cell's name, e.g. ``async_blend_100ms``."""
    blend = "_blend" if smoothing == "blend" else ""
    return f"{mode}{blend}_{delay_ms:g}ms"


def eval_command(
    run: str,
    task: str,
    mode: str,
    smoothing: str,
    delay_ms: float,
    episodes: int,
    workers: int,
    latency: str,
    blend_steps: int,
    runtime: str,
    out: Path,
) -> str:
    """The ``aloha-bench eval`` command that computes one cell."""
    parts = [
        f"aloha-bench eval --run {run} --task {task} --episodes {episodes} --workers {workers}",
        f"--latency {latency} --inference-delay-ms {delay_ms:g}",
    ]
    if mode == "async":
        parts.append("--async")
    if smoothing != "none":
        parts.append(f"--smoothing {smoothing} --blend-steps {blend_steps}")
    if runtime != "torch":
        parts.append(f"--runtime {runtime}")
    label = cell_label(mode, smoothing, delay_ms)
    parts.append(f"--label {label} --out {out / CELLS_DIR / label}")
    return " ".join(parts)


def run_realtime(
    run: str,
    task: str,
    out: str | Path,
    episodes: int = 50,
    workers: int = 2,
    delays_ms: Sequence[float] = DELAYS_MS,
    conditions: Sequence[tuple[str, str]] = CONDITIONS,
    latency: str = "real",
    blend_steps: int = 10,
    runtime: str = "torch",
    seed: int = 1000,
    threads: int = 1,
    progress: Callable[[str, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Evaluate every (condition, delay) cell and write the table, plot and commands.

    Returns:
        One summary per cell (``evaluate.summarize`` plus ``cell``, ``mode``, ``smoothing``,
        ``inference_delay_ms``), in grid order.
    """
    from aloha_bench.evaluate import _check_execution, check_seed_overlap

    out = Path(out)
    grid, commands, todo = [], [], {}
    for mode, smoothing in conditions:
        for delay_ms in delays_ms:
            label = cell_label(mode, smoothing, delay_ms)
            grid.append((label, mode, smoothing, delay_ms))
            done = out / CELLS_DIR / label / SUMMARY_FILE
            # A finished cell keeps its own episode count (an earlier run may have used another).
            cell_episodes = (
                json.loads(done.read_text())[0]["episodes"] if done.is_file() else episodes
            )
            commands.append(
                eval_command(
                    run, task, mode, smoothing, delay_ms, cell_episodes, workers, latency,
                    blend_steps, runtime, out,
                )
            )  # fmt: skip
            if done.is_file():
                continue
            todo[label] = EvalSettings(
                run=run,
                task=task,
                episodes=episodes,
                seed=seed,
                label=label,
                latency=latency,
                threads=threads,
                runtime=runtime,
                execution={
                    "mode": mode,
                    "smoothing": smoothing,
                    "blend_steps": blend_steps,
                    "inference_delay_s": delay_ms / 1e3,
                },
            )
    for settings in todo.values():  # refuse bad settings before any episode runs
        _check_execution(settings)
    if todo:
        check_seed_overlap(run, task, list(range(seed, seed + episodes)))

    def finished(label: str, records: list[dict[str, Any]]) -> None:
        write_outputs(out / CELLS_DIR / label, records, [summarize(records)])

    _evaluate_cells(todo, workers, progress, finished)
    summaries = []
    for label, mode, smoothing, delay_ms in grid:
        summary = json.loads((out / CELLS_DIR / label / SUMMARY_FILE).read_text())[0]
        summaries.append(
            {
                **summary,
                "cell": label,
                "mode": mode,
                "smoothing": smoothing,
                "inference_delay_ms": delay_ms,
            }
        )
    write_report(out, summaries, commands)
    return summaries


# Columns of summary.csv, in order.
CSV_FIELDS = (
    "cell",
    "mode",
    "smoothing",
    "inference_delay_ms",
    "episodes",
    "success_rate",
    "ci_low",
    "ci_high",
    "success_rate_any",
    "ci_low_any",
    "ci_high_any",
    "seams_seam_jump_mean",
    "seams_seam_accel_mean",
    "seams_joint_seam_accel_mean",
    "seams_interior_accel_p99",
    "stall_ticks_mean",
    "skipped_mean",
    "mean_return",
)


def _pct(rate: float, low: float, high: float) -> str:
    return f"{100 * rate:.0f}% [{100 * low:.0f}, {100 * high:.0f}]"


def _num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _stages(summary: Mapping[str, Any]) -> str:
    return " / ".join(f"{name} {100 * v['rate']:.0f}%" for name, v in summary["stages"].items())


def realtime_table(summaries: Sequence[Mapping[str, Any]]) -> str:
    """Markdown: one row per cell, success and seam figures."""
    first = summaries[0]
    lines = [
        "| execution | inference delay | episodes | success (end) | success (any step) "
        "| stages reached (any step) | seam jump (rad) "
        "| seam peak accel, commanded (rad/s²) | seam peak accel, joints (rad/s²) "
        "| stalled ticks / episode | actions skipped / chunk |",
        "|---|---:|---:|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        name = s["mode"] + (" + blend" if s["smoothing"] == "blend" else "")
        lines.append(
            f"| {name} | {s['inference_delay_ms']:g} ms | {s['episodes']} "
            f"| {_pct(s['success_rate'], s['ci_low'], s['ci_high'])} "
            f"| {_pct(s['success_rate_any'], s['ci_low_any'], s['ci_high_any'])} "
            f"| {_stages(s)} "
            f"| {_num(s.get('seams_seam_jump_mean'), 3)} "
            f"| {_num(s.get('seams_seam_accel_mean'), 1)} "
            f"| {_num(s.get('seams_joint_seam_accel_mean'), 1)} "
            f"| {_num(s.get('stall_ticks_mean'), 1)} | {_num(s.get('skipped_mean'), 1)} |"
        )
    blend_steps = next(
        (s["execution"]["blend_steps"] for s in summaries if s["smoothing"] == "blend"), None
    )
    lines += [
        "",
        f"Scale: {first['task']}, episodes per cell as listed (seeds from "
        f"{first['seeds'][0]}), policy `{first['run']}`, latency model "
        f"`{first['latency']}`, simulated time (20 ms per step plus the injected delay). "
        "Success: Wilson 95% intervals; 'end' = final stage holds at the last step, 'any step' = "
        "it held at some step (the paper's rule). Seam figures are means over episodes of the "
        "per-episode mean over chunk switches (the first chunk is no seam): the largest joint "
        "change across the switch tick, and the peak |second difference| / dt² over joints from "
        "2 ticks before to 12 after the switch, of the actions sent (commanded) and of the "
        "measured joint positions."
        + (f" Blend: raised-cosine crossfade over {blend_steps} ticks." if blend_steps else ""),
    ]
    return "\n".join(lines) + "\n"


def write_report(
    out: str | Path, summaries: Sequence[Mapping[str, Any]], commands: Sequence[str]
) -> dict[str, Path]:
    """``summary.csv``, ``table.md``, ``realtime.png`` and ``COMMANDS.md`` in ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": out / "summary.csv",
        "table": out / "table.md",
        "plot": out / "realtime.png",
        "commands": out / "COMMANDS.md",
    }
    with paths["csv"].open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for s in summaries:
            writer.writerow({k: s.get(k) for k in CSV_FIELDS})
    paths["table"].write_text(realtime_table(summaries))
    paths["commands"].write_text(
        "# Commands that made these results\n\n"
        "Each cell (run from the repository root; `aloha-bench realtime` runs them all and "
        "writes this folder):\n\n```bash\n" + "\n".join(commands) + "\n```\n"
    )

    fig, (ax_success, ax_seam) = plt.subplots(1, 2, figsize=(10, 3.8))
    for (mode, smoothing), marker in zip(
        dict.fromkeys((s["mode"], s["smoothing"]) for s in summaries), "osd^v", strict=False
    ):
        cells = [s for s in summaries if (s["mode"], s["smoothing"]) == (mode, smoothing)]
        delays = [s["inference_delay_ms"] for s in cells]
        name = mode + (" + blend" if smoothing == "blend" else "")
        (line,) = ax_success.plot(
            delays, [100 * s["success_rate_any"] for s in cells], marker=marker, label=name
        )
        ax_success.fill_between(
            delays,
            [100 * s["ci_low_any"] for s in cells],
            [100 * s["ci_high_any"] for s in cells],
            color=line.get_color(),
            alpha=0.12,
        )
        ax_success.plot(
            delays,
            [100 * s["success_rate"] for s in cells],
            marker=marker,
            linestyle=":",
            color=line.get_color(),
        )
        ax_seam.plot(
            delays,
            [s.get("seams_seam_accel_mean") or float("nan") for s in cells],
            marker=marker,
            color=line.get_color(),
            label=name,
        )
    first = summaries[0]
    ax_success.set(
        xlabel="inference delay (ms)",
        ylabel="success (%)",
        ylim=(-3, 103),
        title="success: any step (solid, 95% CI), end (dotted)",
    )
    ax_seam.set(
        xlabel="inference delay (ms)",
        ylabel="rad/s²",
        yscale="log",
        title="seam peak joint acceleration (commanded)",
    )
    ax_success.legend(loc="lower left")
    fig.suptitle(
        f"{first['task']}, {min(s['episodes'] for s in summaries)}-"
        f"{max(s['episodes'] for s in summaries)} episodes per point, latency model "
        f"'{first['latency']}', simulated time",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(paths["plot"], dpi=120)
    plt.close(fig)
    return paths
