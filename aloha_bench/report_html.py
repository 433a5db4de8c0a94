"""The results browser: a static ``index.html`` beside REPORT.md.

One page a reader opens without a server: the main table, every plot with its scale, and per
main cell a short rollout video of one success and one failure. Rendering is pure (summary rows,
the report's texts and plot notes in, HTML out; no mujoco, no torch), like the rest of the report.

Videos stay out of git: they are linked relative to the page, never copied, and a video whose file
is absent (another machine, a cleaned work folder) is said to be absent. They come from a study
run with ``example_videos = true`` (``aloha_bench.outcome_videos``: summary columns
``video_success`` / ``video_failure``) or from records written by ``eval --videos``.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

INDEX_FILE = "index.html"
VIDEO_COLUMNS = {"success": "video_success", "failure": "video_failure"}
CELL_KEYS = ("policy", "source", "obs_mode", "task")

_STYLE = """
body { font-family: sans-serif; margin: 1.5em; max-width: 110em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1em; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.5em; vertical-align: top; }
th { background: #eee; }
figure { display: inline-block; margin: 0 1em 1.5em 0; max-width: 48em; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption, .scale { font-size: 0.85em; color: #444; }
video { width: 32em; max-width: 100%; background: #000; display: block; }
.absent { color: #a00; font-size: 0.85em; }
"""


def markdown_table_html(text: str) -> str:
    """A report's markdown (a pipe table, then paragraphs) as HTML; cell text is escaped and
    ``**bold**`` kept."""
    lines = text.strip().splitlines()
    rows = [line for line in lines if line.startswith("|")]
    rest = [line for line in lines if line.strip() and not line.startswith("|")]

    def cells(line: str) -> list[str]:
        return [_inline(c.strip()) for c in line.strip().strip("|").split("|")]

    out = []
    if rows:
        out.append("<table>")
        out.append("<tr>" + "".join(f"<th>{c}</th>" for c in cells(rows[0])) + "</tr>")
        for line in rows[2:]:  # rows[1] is the |---| separator
            out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells(line)) + "</tr>")
        out.append("</table>")
    out += [f'<p class="scale">{_inline(p)}</p>' for p in rest]
    return "\n".join(out)


def markdown_blocks_html(text: str) -> str:
    """Markdown of several pipe tables and paragraphs (``report.tasks_table``) as HTML, in order:
    each run of table lines becomes a table (``markdown_table_html``), each other line a
    paragraph."""
    out: list[str] = []
    block: list[str] = []
    for line in [*text.strip().splitlines(), ""]:
        if line.startswith("|"):
            block.append(line)
            continue
        if block:
            out.append(markdown_table_html("\n".join(block)))
            block = []
        if line.strip():
            out.append(f"<p>{_inline(line.strip())}</p>")
    return "\n".join(out)


def _inline(text: str) -> str:
    """Escaped text with markdown's ``**bold**`` and ```code``` kept."""
    parts = html.escape(text).split("**")
    text = "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))
    parts = text.split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick is text
        return text
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def example_videos(df: pd.DataFrame, results_dir: Path) -> dict[tuple, dict[str, str | None]]:
    """Per main cell (policy, source, obs_mode, task): the absolute path of one success and one
    failure video, from the summary's video columns, else from its records' ``video`` fields.

    ``results_dir`` is the summary's folder: its ``records`` and video columns are relative to it.
    """
    from aloha_bench.report import group_rows

    found: dict[tuple, dict[str, str | None]] = {}
    for _, row in group_rows(df, "main").iterrows():
        key = tuple(row[k] for k in CELL_KEYS)
        videos = found.setdefault(key, dict.fromkeys(VIDEO_COLUMNS))
        for outcome, column in VIDEO_COLUMNS.items():
            value = row.get(column)
            if videos[outcome] is None and isinstance(value, str) and value:
                videos[outcome] = str((results_dir / value).resolve())
        if all(videos.values()):
            continue
        records = results_dir / str(row.get("records", ""))
        if not records.is_file():
            continue
        for line in records.read_text().splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            outcome = "success" if record.get("success_end") else "failure"
            if videos[outcome] is None and record.get("video"):
                # `eval --videos` records the path it wrote, relative to where it ran.
                videos[outcome] = str(Path(record["video"]).resolve())
    return found


def _video_html(path: str | None, outcome: str, page_dir: Path) -> str:
    if path is None:
        return f'<p class="absent">no {outcome} filmed for this cell</p>'
    file = Path(path)
    link = html.escape(os.path.relpath(file, page_dir))
    if not file.is_file():
        return (
            f'<p class="absent">{outcome} video absent: <code>{link}</code> is not on this '
            "machine (videos are not committed; re-run the evaluation to make it)</p>"
        )
    return (
        f'<video controls muted loop preload="metadata" data-outcome="{outcome}" '
        f'src="{link}"></video><a href="{link}">{outcome} ({link})</a>'
    )


def index_html(
    df: pd.DataFrame,
    page_dir: Path,
    main_markdown: str,
    figures: Sequence[Mapping[str, Any]],
    title: str = "aloha-bench results",
    summary_dir: Path | None = None,
    tasks_markdown: str | None = None,
) -> str:
    """The page's HTML.

    Args:
        df: the summary (one row per evaluated cell).
        page_dir: where the page will live (video links are made relative to it).
        main_markdown: the main table as the report writes it (``report.main_table``).
        figures: ``{"name", "metric", "png", "note"}`` per plot, ``png`` relative to the page.
        title: the page's title.
        summary_dir: the summary's folder (default: ``page_dir``).
        tasks_markdown: the main table with tasks as rows (``report.tasks_table``), shown first
            when given; the main table, every stage of every cell, follows it.
    """
    from aloha_bench.report import group_rows

    main = group_rows(df, "main")
    episodes = sorted({int(e) for e in main["episodes"]}) if not main.empty else []
    seeds = main.groupby(list(CELL_KEYS))["train_seed"].nunique() if not main.empty else []
    scale = (
        f"{len(df)} evaluated cells; main cells: {', '.join(map(str, episodes)) or 'none'} "
        f"episodes per training seed, {', '.join(map(str, sorted(set(seeds)))) or 'no'} "
        "training seed(s) per cell."
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="scale">{html.escape(scale)} Paper: Zhao et al., "Learning Fine-Grained '
        'Bimanual Manipulation with Low-Cost Hardware", RSS 2023, arXiv 2304.13705.</p>',
    ]
    if tasks_markdown:
        parts += [
            '<h2 id="tasks">Main table: final stage per task</h2>',
            f'<div id="tasks-table">{markdown_blocks_html(tasks_markdown)}</div>',
            '<h2 id="main">Every stage of every main cell</h2>',
        ]
    else:
        parts.append('<h2 id="main">Main table</h2>')
    parts += [
        f'<div id="main-table">{markdown_table_html(main_markdown)}</div>',
        '<h2 id="plots">Plots</h2>',
    ]
    for fig in figures:
        caption = f"{fig['name']} ({fig['metric']}): {fig['note']}"
        parts.append(
            f'<figure><img src="{html.escape(str(fig["png"]))}" alt="{html.escape(fig["name"])}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    if not figures:
        parts.append("<p>No plots: the summary has no rows for any ablation group.</p>")
    parts.append('<h2 id="rollouts">Example rollouts per main cell</h2>')
    parts.append(
        '<p class="scale">One success and one failure (success at the end of the episode) per '
        "cell, all four cameras side by side, 25 fps (every other step of the 50 Hz episode).</p>"
    )
    videos = example_videos(df, Path(summary_dir or page_dir).resolve())
    if not videos:
        parts.append("<p>No main cells in the summary.</p>")
    from aloha_bench.report import video_cell_rank

    # The order of REPORT.md's rollout list and of every table: ACT first, state before pixels,
    # scripted before human (report.cell_rank).
    for key in sorted(videos, key=video_cell_rank):
        label = " / ".join(str(k) for k in key)
        parts.append(f'<h3>{html.escape(label)}</h3><div class="cell">')
        for outcome in VIDEO_COLUMNS:
            parts.append(_video_html(videos[key][outcome], outcome, page_dir))
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_index(
    df: pd.DataFrame,
    out_dir: Path,
    main_markdown: str,
    figures: Sequence[Mapping[str, Any]],
    summary_dir: Path | None = None,
    tasks_markdown: str | None = None,
) -> Path:
    """Write ``index.html`` into ``out_dir`` (beside REPORT.md) and return its path;
    ``summary_dir`` is the folder of the summary.csv it shows (default: ``out_dir``);
    ``tasks_markdown`` as in ``index_html``."""
    out_dir = Path(out_dir)
    path = out_dir / INDEX_FILE
    tmp = path.with_name(path.name + ".tmp")
    page = index_html(
        df,
        out_dir.resolve(),
        main_markdown,
        figures,
        summary_dir=summary_dir,
        tasks_markdown=tasks_markdown,
    )
    tmp.write_text(page)
    tmp.replace(path)
    return path
