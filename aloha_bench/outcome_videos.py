"""Example rollouts of an evaluation: one success and one failure per cell, filmed after the fact.

Filming every episode would render four cameras at every other step of 100 episodes to keep two
of them. Episode ``i`` of an evaluation depends only on its seed (``aloha_bench.evaluate``), so
once the records say which episodes succeeded, the first success and the first failure are played
again with rendering on and written as mp4 (``eval --videos`` writes the same kind of file). The
replay's outcome is checked against the record; a mismatch is reported, never hidden.

Layer L4 (uses ``evaluate.EpisodeRunner``); the results browser (``report_html``) only reads
the paths this writes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

OUTCOMES = ("success", "failure")


def pick_outcomes(records: Sequence[Mapping[str, Any]]) -> dict[str, int | None]:
    """Episode index of the first end-of-episode success and of the first failure (None when the
    evaluation has none of that outcome)."""
    picks: dict[str, int | None] = dict.fromkeys(OUTCOMES)
    for r in sorted(records, key=lambda r: r["episode"]):
        outcome = "success" if r["success_end"] else "failure"
        if picks[outcome] is None:
            picks[outcome] = int(r["episode"])
    return picks


def film_outcomes(
    settings, records: Sequence[Mapping[str, Any]], video_dir: str | Path
) -> dict[str, str | None]:
    """Replay and film one successful and one failed episode of an evaluation.

    Args:
        settings: the ``EvalSettings`` the records came from (sim backend).
        records: that evaluation's per-episode records.
        video_dir: where the mp4 files go (outside git: videos are not committed).

    Returns:
        ``{"success": path or None, "failure": path or None}``.

    Raises:
        RuntimeError: a replayed episode ended differently from its record (the evaluation was
            not deterministic, so the film would show another episode).
    """
    from aloha_bench.evaluate import EpisodeRunner

    picks = pick_outcomes(records)
    chosen = [i for i in picks.values() if i is not None]
    out: dict[str, str | None] = dict.fromkeys(OUTCOMES)
    if not chosen:
        return out
    # EpisodeRunner films episodes with an index below `videos`; only the chosen ones are run.
    filming = dataclasses.replace(
        settings, videos=max(chosen) + 1, video_dir=str(video_dir), check_seeds=False
    )
    runner = EpisodeRunner(filming)
    try:
        by_index = {int(r["episode"]): r for r in records}
        for outcome, index in picks.items():
            if index is None:
                continue
            replay = runner.run(index)
            if bool(replay["success_end"]) != bool(by_index[index]["success_end"]):
                raise RuntimeError(
                    f"episode {index} (seed {replay['seed']}) replayed with another outcome than "
                    "its record; the evaluation is not deterministic, so no video is written"
                )
            out[outcome] = replay["video"]
    finally:
        runner.close()
    return out
