"""Replay a dataset's recorded actions on a backend and measure how well the joints track them.

``replay`` plays each episode's ``action`` rows open loop from the episode's recorded initial joint
state and compares the ``observation.state`` the backend reports with the recorded one, per joint.
Uses:

* a simulated dataset replayed in simulation with the same settings must give zero error (the
  simulator is deterministic, props are restored from the episode's seed): a regression check;
* a real dataset replayed in simulation (or a simulated one on the real rig) measures the
  sim-to-real gap of the arm alone: servo stiffness, backlash, calibration offsets, latency.
  Fit ``RandomizationConfig`` / ``LatencyConfig`` ranges so that this error covers what you see.

Row ``t`` of an episode pairs the observation with the action then sent (``data/store.py``), so the
replayed observation after ``t`` actions is compared with recorded row ``t``.

Reporting is separate and pure: :func:`report_markdown`, :func:`report_csv`, :func:`plot_report`
(a PNG drawn with Pillow, which imageio already depends on); :func:`save_report` writes them all.

Layer L4.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aloha_bench import embodiment, keys
from aloha_bench.backends import make_env
from aloha_bench.data.store import EpisodeStore

# How fast the real rig is moved to an episode's first pose before replaying (rad/s): slow, as
# the rig's own reset ramp (rig.toml's reset_speed_rad_s defaults to 0.5).
REAL_START_SPEED_RAD_S = 0.5
# Extra ticks holding the start pose so the joints settle before the replay starts.
REAL_SETTLE_STEPS = 25
# A recorded start pose this close to the simulator's reset pose is the reset pose itself, only
# rounded to float32 by the store: keep the exact pose so a sim dataset replays bit for bit.
_FLOAT32_TOLERANCE_RAD = 1e-6


def _joint_errors(replayed: np.ndarray, recorded: np.ndarray) -> dict[str, dict[str, float]]:
    """Per-joint RMSE and max absolute error of (T, 12) arrays, in radians and degrees."""
    error = replayed.astype(np.float64) - recorded.astype(np.float64)
    rmse = np.sqrt(np.mean(error**2, axis=0))
    worst = np.max(np.abs(error), axis=0)
    return {
        name: {
            "rmse_rad": float(rmse[j]),
            "max_rad": float(worst[j]),
            "rmse_deg": math.degrees(rmse[j]),
            "max_deg": math.degrees(worst[j]),
        }
        for j, name in enumerate(embodiment.STATE_NAMES)
    }


def _ramp_real_rig_to(env: Any, target: np.ndarray, state: np.ndarray) -> np.ndarray:
    """Step the real rig linearly from ``state`` to ``target``, then hold it; return the state.

    Uses only ``env.step``, so every goal passes the rig's safety limits and step cap.
    """
    distance = float(np.max(np.abs(target - state)))
    ticks = max(1, math.ceil(distance / REAL_START_SPEED_RAD_S / embodiment.CONTROL_DT_S))
    for k in range(1, ticks + REAL_SETTLE_STEPS + 1):
        goal = state + (target - state) * min(1.0, k / ticks)
        obs, *_ = env.step(goal.astype(np.float32))
    return obs[keys.STATE]


def replay(
    store_path: str | Path,
    backend: str = "sim",
    episodes: Sequence[int] | None = None,
    robot_config: str | Path | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Replay recorded actions open loop and report joint tracking errors.

    Args:
        store_path: an episode store (``aloha-bench generate`` / ``teleop`` output).
        backend: ``"sim"`` or ``"real"``.
        episodes: episode indices to replay; default all.
        robot_config: ``rig.toml`` for ``backend="real"``.
        env_kwargs: extra env arguments, e.g. ``{"randomize": "light", "latency": "real"}`` in
            simulation, or ``{"capture_factory": ...}`` for the real rig. In simulation the env
            runs in ``obs_mode="state"`` unless given (images do not change the physics).

    Returns:
        A JSON-able report: ``store``, ``backend``, ``task``, ``env_kwargs`` (names only),
        ``episodes`` (one entry per episode: ``episode``, ``seed``, ``steps``, ``joints`` with
        per-joint ``rmse_rad``, ``max_rad``, ``rmse_deg``, ``max_deg``, and ``start_error_rad``,
        the largest joint distance from the recorded start pose when the replay began) and
        ``joints``, the same errors over all replayed steps.
    """
    store = EpisodeStore.open(store_path)
    task = store.attrs["task_id"]
    chosen = list(range(store.n_episodes)) if episodes is None else [int(i) for i in episodes]
    for i in chosen:
        store.episode_slice(i)  # range check before any motion
    kwargs = dict(env_kwargs or {})
    if backend == "sim":
        kwargs.setdefault("obs_mode", "state")
    env = make_env(task, backend=backend, robot_config=robot_config, **kwargs)
    per_episode, replayed_all, recorded_all = [], [], []
    try:
        for i in chosen:
            data = store.episode(i, keys=[keys.ACTION, keys.STATE])
            actions, recorded = data[keys.ACTION], data[keys.STATE]
            seed = int(store.episode_meta(i)["seed"])
            start = recorded[0].astype(np.float64)
            if backend == "sim":
                # The seed restores the props (and any randomization draw) of the episode.
                obs, _ = env.reset(seed=seed)
                if np.max(np.abs(obs[keys.STATE] - start)) > _FLOAT32_TOLERANCE_RAD:
                    obs, _ = env.reset(seed=seed, options={"joint_state": start})
                state = obs[keys.STATE]
            else:
                obs, _ = env.reset(seed=seed)
                state = _ramp_real_rig_to(env, start, obs[keys.STATE].astype(np.float64))
            states = [np.asarray(state, dtype=np.float32)]
            for action in actions:
                obs, *_ = env.step(np.asarray(action, dtype=np.float32))
                states.append(obs[keys.STATE])
            # The observation after the last action is not in the store (row convention).
            replayed = np.stack(states[: len(recorded)])
            per_episode.append(
                {
                    "episode": i,
                    "seed": seed,
                    "steps": len(recorded),
                    "start_error_rad": float(np.max(np.abs(states[0] - start))),
                    "joints": _joint_errors(replayed, recorded),
                }
            )
            replayed_all.append(replayed)
            recorded_all.append(recorded)
    finally:
        env.close()
    return {
        "store": str(store_path),
        "backend": backend,
        "task": task,
        "env_kwargs": sorted(kwargs),
        "episodes": per_episode,
        "joints": _joint_errors(np.concatenate(replayed_all), np.concatenate(recorded_all))
        if per_episode
        else {},
    }


def report_markdown(report: dict[str, Any]) -> str:
    """The report's overall per-joint errors as a markdown table (degrees and radians)."""
    lines = [
        f"Replay of `{report['store']}` on `{report['backend']}` ({report['task']}, "
        f"{len(report['episodes'])} episodes, "
        f"{sum(e['steps'] for e in report['episodes'])} steps)",
        "",
        "| joint | RMSE (deg) | max (deg) | RMSE (rad) | max (rad) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, err in report["joints"].items():
        lines.append(
            f"| {name} | {err['rmse_deg']:.3f} | {err['max_deg']:.3f} | "
            f"{err['rmse_rad']:.2e} | {err['max_rad']:.2e} |"
        )
    return "\n".join(lines) + "\n"


def report_csv(report: dict[str, Any]) -> str:
    """One CSV row per (episode, joint), plus ``all`` rows for the overall errors."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["episode", "joint", "rmse_rad", "max_rad", "rmse_deg", "max_deg"])
    rows = [(e["episode"], e["joints"]) for e in report["episodes"]]
    for episode, joints in [*rows, ("all", report["joints"])]:
        for name, err in joints.items():
            writer.writerow(
                [
                    episode,
                    name,
                    *(f"{err[k]:.6g}" for k in ("rmse_rad", "max_rad", "rmse_deg", "max_deg")),
                ]
            )
    return buffer.getvalue()


def plot_report(report: dict[str, Any], width: int = 720, height: int = 360) -> np.ndarray:
    """A bar chart of per-joint RMSE (filled) and max error (outline) in degrees, (H, W, 3) uint8.

    Drawn with Pillow's built-in bitmap font, so it needs no plotting library.
    """
    from PIL import Image, ImageDraw  # imageio's own dependency

    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    joints = report["joints"]
    names = list(joints)
    left, right, top, bottom = 56, width - 10, 30, height - 70
    draw.text(
        (left, 8),
        f"joint tracking error, replay on {report['backend']} (deg): RMSE filled, max outlined",
        fill="black",
    )
    peak = max([err["max_deg"] for err in joints.values()] + [1e-3])
    scale = (bottom - top) / peak
    draw.line([(left, top), (left, bottom), (right, bottom)], fill="black")
    for frac in (0.0, 0.5, 1.0):
        y = bottom - frac * (bottom - top)
        draw.line([(left - 4, y), (left, y)], fill="black")
        draw.text((4, y - 6), f"{frac * peak:.3g}", fill="black")
    slot = (right - left) / max(1, len(names))
    for j, name in enumerate(names):
        err = joints[name]
        x0, x1 = left + j * slot + 0.2 * slot, left + (j + 0.8) * slot
        draw.rectangle([x0, bottom - err["max_deg"] * scale, x1, bottom], outline=(200, 60, 40))
        draw.rectangle(
            [x0 + 2, bottom - err["rmse_deg"] * scale, x1 - 2, bottom], fill=(60, 110, 190)
        )
        arm, joint = name.split("_", 1)
        draw.text((x0, bottom + 4), arm[0].upper(), fill="black")
        for row, part in enumerate(joint.split("_")):
            draw.text((x0, bottom + 16 + 12 * row), part[:8], fill="black")
    return np.asarray(image)


def save_report(report: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write ``replay.json``, ``replay.md``, ``replay.csv`` and ``replay.png`` into ``out_dir``."""
    import imageio.v3 as iio

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {ext: out / f"replay.{ext}" for ext in ("json", "md", "csv", "png")}
    paths["json"].write_text(json.dumps(report, indent=2) + "\n")
    paths["md"].write_text(report_markdown(report))
    paths["csv"].write_text(report_csv(report))
    iio.imwrite(paths["png"], plot_report(report))
    return paths
