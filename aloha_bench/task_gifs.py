"""One small looping GIF per task for the README, cut from a study's filmed example rollouts.

The study films one success and one failure per evaluated cell (``outcome_videos``; the mp4s stay
in the work folder, never in git). For a page that cannot play mp4 inline (a README on a code
host), each task gets one GIF of a *success*: the ``front`` camera with the video's caption bar
(policy, task, seed, step, stage), at a third of the video's frame rate, under one shared
64-colour palette and no dithering, so a 400-step episode is about 250 KB (issue 14: "at most one
small GIF per task").

Which success: the first main cell, in the tables' order (``act`` before ``no_cvae`` before
``single_step``, state before pixel observations, scripted before human demonstrations), whose
success video is on this machine.
A sidecar ``<task>.json`` names that cell, so the README can say what the GIF shows. Where no
success video of a task is on this machine (a fresh clone: videos are not committed), the GIF an
earlier report wrote is kept, sidecar and all: it is still that cell's film.

Layer: reads ``report`` / ``report_html`` outputs only; writes files under the results folder.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from aloha_bench import keys
from aloha_bench.data.video import CAPTION_HEIGHT_PX, VIDEO_FPS

GIF_DIR = "gifs"
GIF_CAMERA = "front"  # the one view that shows both arms and the object whole
GIF_FRAME_STEP = 3  # every 3rd video frame: 25 / 3 = 8.3 fps, smooth enough to follow a grasp
GIF_COLOURS = 64
GIF_INDEX = "README.md"


def gif_frames(video: str | Path, camera: str = GIF_CAMERA, step: int = GIF_FRAME_STEP):
    """The frames of one camera of a filmed rollout, under the video's caption bar.

    Args:
        video: an mp4 written by ``eval --videos`` or the study's example films: the four
            cameras of ``keys.CAMERAS`` side by side, in that order, below a caption bar of
            ``CAPTION_HEIGHT_PX`` rows.
        camera: which panel to keep.
        step: keep every ``step``-th frame.

    Returns:
        A list of (H, W, 3) uint8 frames: the caption bar's left part over the camera's panel.

    Raises:
        FileNotFoundError: ``video`` does not exist (films are not committed).
        ValueError: ``camera`` is not one of ``keys.CAMERAS``, ``step`` is not >= 1, the file
            does not decode, or its width is not four equal panels (not a rollout film).
    """
    import imageio.v3 as iio

    if camera not in keys.CAMERAS:
        raise ValueError(f"camera must be one of {list(keys.CAMERAS)}, got {camera!r}")
    if not isinstance(step, int) or step < 1:
        raise ValueError(f"step must be an integer >= 1 (keep every step-th frame), got {step!r}")
    path = Path(video)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such film. Videos are not committed; `aloha-bench eval --videos` (or a "
            "study with example_videos = true) films them into the work folder"
        )
    try:
        film = np.asarray(iio.imread(path, plugin="pyav"))  # (T, H, W, 3)
    except Exception as err:  # PyAV raises its own types, imageio wraps some in OSError
        raise ValueError(
            f"{path}: not a readable video ({type(err).__name__}: {err}); film it again with "
            "`aloha-bench eval --videos`"
        ) from err
    if film.ndim != 4 or film.shape[2] % len(keys.CAMERAS):
        raise ValueError(
            f"{path}: frames of shape {film.shape[1:]} are not {len(keys.CAMERAS)} camera panels "
            "side by side; pass a rollout film (eval --videos, or a study's example videos)"
        )
    width = film.shape[2] // len(keys.CAMERAS)
    left = keys.CAMERAS.index(camera) * width
    frames = []
    for frame in film[::step]:
        caption = frame[:CAPTION_HEIGHT_PX, :width]  # the text starts at the left edge
        panel = frame[CAPTION_HEIGHT_PX:, left : left + width]
        frames.append(np.ascontiguousarray(np.concatenate([caption, panel], axis=0)))
    return frames


def write_gif(frames, out: str | Path, fps: float, colours: int = GIF_COLOURS) -> Path:
    """Write frames as a looping GIF under one palette taken from a sample of them.

    One shared palette without dithering keeps flat regions identical from frame to frame, which
    GIF's frame differencing then stores almost for free (per-frame palettes with dithering made
    the same clip three times larger).
    """
    from PIL import Image

    if not frames:
        raise ValueError(f"no frames to write to {out}")
    images = [Image.fromarray(f) for f in frames]
    sample = np.concatenate([np.asarray(i) for i in images[:: max(1, len(images) // 8)]], axis=0)
    palette = Image.fromarray(sample).quantize(colors=colours, method=Image.Quantize.MEDIANCUT)
    quantized = [i.quantize(palette=palette, dither=Image.Dither.NONE) for i in images]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    quantized[0].save(
        out,
        save_all=True,
        append_images=quantized[1:],
        duration=round(1000 / fps),
        loop=0,
        optimize=True,
    )
    return out


def _filmed_successes(
    df: pd.DataFrame, results_dir: Path
) -> dict[str, list[tuple[Mapping[str, str], Path]]]:
    """Per task, in table order: (a main cell's keys, its success video) for every main cell
    whose success video is on this machine."""
    from aloha_bench.report import cell_rank
    from aloha_bench.report_html import CELL_KEYS, example_videos

    videos = example_videos(df, results_dir)
    found: dict[str, list[tuple[Mapping[str, str], Path]]] = {}
    order = sorted(videos, key=lambda k: cell_rank(k[0], k[1], k[2]))
    for key in order:
        cell = dict(zip(CELL_KEYS, key, strict=True))
        path = videos[key]["success"]
        if path is not None and Path(path).is_file():
            found.setdefault(cell["task"], []).append((cell, Path(path)))
    return found


def _first_readable(candidates):
    """(cell, video, frames) of the first candidate film that decodes, else None."""
    for cell, video in candidates:
        try:
            return cell, video, gif_frames(video)
        except (OSError, ValueError, RuntimeError) as err:
            # A truncated or foreign file must not cost the report: the next cell's film (or the
            # GIF an earlier report made) stands in.
            warnings.warn(
                f"{video}: not a readable rollout film, no GIF from it ({err})", stacklevel=3
            )
    return None


def write_task_gifs(df: pd.DataFrame, results_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Write ``<out_dir>/gifs/<task>.gif`` (+ ``<task>.json``) per task with a filmed success on
    this machine, and ``gifs/README.md`` listing every GIF in the folder with the cell it shows.

    Args:
        df: the study's summary (``report.read_summary``).
        results_dir: the summary's folder (its video columns are relative to it).
        out_dir: the report's folder.

    Returns:
        The GIFs and sidecars written this time, then the index (empty when the folder holds no
        GIF at all).
    """
    from aloha_bench.report import MAIN_KEYS, TASK_ORDER, _lookup, _ordered, group_rows, pool

    results_dir, gif_dir = Path(results_dir).resolve(), Path(out_dir) / GIF_DIR
    written: list[Path] = []
    main = group_rows(df, "main")
    if main.empty:
        return written
    counts = pool(main, MAIN_KEYS)
    for task, candidates in _filmed_successes(df, results_dir).items():
        readable = _first_readable(candidates)
        if readable is None:
            continue
        cell, video, frames = readable
        gif = write_gif(frames, gif_dir / f"{task}.gif", VIDEO_FPS / GIF_FRAME_STEP)
        sidecar = gif_dir / f"{task}.json"
        sidecar.write_text(
            json.dumps(
                {
                    **cell,
                    "video": video.name,
                    "camera": GIF_CAMERA,
                    "frames": len(frames),
                    "fps": round(VIDEO_FPS / GIF_FRAME_STEP, 2),
                },
                indent=2,
            )
            + "\n"
        )
        written += [gif, sidecar]
    sidecars = {p.stem: json.loads(p.read_text()) for p in sorted(gif_dir.glob("*.json"))}
    shown = [t for t in _ordered(sidecars, TASK_ORDER) if (gif_dir / f"{t}.gif").is_file()]
    if not shown:
        return written
    lines = [
        "# One filmed success per task",
        "",
        "Written by `aloha-bench report` (and `reproduce`) from the study's example films: the "
        f"`{GIF_CAMERA}` camera under the film's caption (policy, task, evaluation seed, step, "
        f"stage), in real time at {VIDEO_FPS / GIF_FRAME_STEP:.1f} frames per second (one "
        f"frame in {GIF_FRAME_STEP} of the {VIDEO_FPS:g} fps film). One success is not a success "
        "rate: each line gives the cell's pooled count.",
        "",
    ]
    for task in shown:
        s = sidecars[task]
        # Counted from today's summary, not when the GIF was cut: a kept GIF's cell may have
        # gained seeds since.
        match = _lookup(counts, s["policy"], s["source"], s["obs_mode"], task)
        if match.empty:
            tally = "the cell is no longer in the summary"
        else:
            k, n, seeds = (int(match[c].iloc[0]) for c in ("successes", "episodes", "n_seeds"))
            tally = (
                f"the cell succeeded at the end of the episode in {k} of {n} episodes "
                f"({seeds} training seed(s))"
            )
        lines.append(
            f"- `{task}`: {s['policy']} on {s['source']} demonstrations, {s['obs_mode']} "
            f"observations; {tally}; film `{s['video']}`. ![{task}]({task}.gif)"
        )
    index = gif_dir / GIF_INDEX
    index.write_text("\n".join(lines) + "\n")
    return [*written, index]
