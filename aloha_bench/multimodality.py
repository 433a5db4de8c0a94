"""How multimodal a demonstration source is: the measure behind the CVAE question (L4).

The paper's CVAE ablation (Zhao et al. 2023, Sec. VI: 35.3% with vs 2% without on human data,
59 vs 58 on scripted) rests on human demos being multimodal: a policy trained to regress the mean
action lands between two ways of doing the task. Two measures make that checkable here, both on
the actions (the leader arms' 12 joint targets, radians), for ``human`` against ``scripted`` demos
played from the same seeds (so the props start in the same places):

* **Strategies**: how many distinct named strategies the demos use and their entropy (bits).
* **Phase-aligned spread**: each demo's motion (start to the step it settles into its end pose) is
  resampled onto ``PHASES`` points, so a slow and a quick operator are compared at the same point
  of the task. At each phase: the mean pairwise distance between demos (RMS over joints), and the
  **averaging gap**: the distance from the demos' mean action to the nearest demo, divided by
  the typical distance from a demo to its nearest other demo. A gap well above 1 means the mean
  is a motion nobody demonstrated (what averaging policies output); near or below 1 it is a
  typical demo. Demos played from the same seed (``modes --per-strategy`` plays every seed once
  per strategy) share the props and every operator draw, so they coincide until their strategies
  part: they are not compared with each other. As each other's nearest demo they made the
  nearest-demo distance ~0 until then, and the gap's maximum read 138 on human insertion and 82
  on cup_lid (3.1 and 0.9 without them), where a dataset has one demo per seed.

``collect`` plays the episodes (state observations, no rendering) and also returns each one's
success, so the same run gives the per-strategy success of the operator model.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

PHASES = 50
SMOOTH_STEPS = 25  # 0.5 s at 50 Hz
SETTLED_RAD = 0.03  # a smoothed action this close to its final value has arrived
# One count of the STS3215's 12-bit encoder (4096 per turn): distances below it cannot be told
# apart on the rig, so the averaging gap's denominator never falls below it. Where demos coincide
# (every episode starts from the same rest pose) the gap is then ~0 instead of noise over ~0.
RESOLUTION_RAD = 2 * math.pi / 4096


@dataclasses.dataclass(frozen=True)
class Demo:
    """One played episode: its actions (T, 12) in radians, strategy label and outcome."""

    seed: int
    strategy: str
    actions: np.ndarray
    success: bool


def collect(
    task: str,
    source: str,
    episodes: int,
    seed: int = 0,
    strategy: str | None = None,
) -> list[Demo]:
    """Play ``episodes`` demonstrations of ``task`` from seeds ``seed..`` without recording them.

    Args:
        task: task id.
        source: ``"scripted"`` (the expert's default style, as ``generate`` records it) or
            ``"human"`` (the operator model, ``aloha_bench.experts.human``).
        episodes: how many.
        seed: first seed (env reset and the operator's draws, as in ``generate``).
        strategy: force one of the operator's strategies (human only).
    """
    from aloha_bench import envs
    from aloha_bench.experts import make_expert
    from aloha_bench.experts.base import strategy_of
    from aloha_bench.experts.human import HumanOperator, HumanOperatorConfig

    if source not in ("scripted", "human"):
        raise ValueError(f"unknown source {source!r}; use 'scripted' or 'human'")
    if strategy is not None and source != "human":
        raise ValueError("a strategy can only be forced on the human operator (--source human)")
    env = envs.make(task, obs_mode="state")
    sim = env.unwrapped
    demos = []
    try:
        for s in range(seed, seed + episodes):
            env.reset(seed=s)
            rng = np.random.default_rng(s)
            if source == "human":
                agent = HumanOperator(task, HumanOperatorConfig(), rng, strategy=strategy)
                label = agent.strategy
            else:
                agent = make_expert(task, "default")
                label = strategy_of(agent.style)
            agent.reset(sim)
            actions, truncated = [], False
            while not truncated:
                action = np.asarray(agent.act(sim), dtype=np.float64)
                actions.append(action)
                _, _, _, truncated, info = env.step(action)
            demos.append(Demo(s, label, np.stack(actions), bool(info["is_success"])))
    finally:
        env.close()
    return demos


def phase_resample(actions: np.ndarray, phases: int = PHASES) -> np.ndarray:
    """(T, D) actions -> (phases, D): the motion from the first step to the last step whose
    action still changes, resampled linearly onto evenly spaced phases."""
    motion = phase_resample_end(actions)
    t = np.linspace(0.0, len(motion) - 1, phases)
    index = np.arange(len(motion))
    return np.stack([np.interp(t, index, motion[:, j]) for j in range(actions.shape[1])], 1)


def _rms(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(((a - b) ** 2).mean(axis=-1))


def phase_measures(
    aligned: np.ndarray, seeds: Sequence[int] | None = None
) -> dict[str, np.ndarray]:
    """Per phase, from (N, P, D) phase-aligned actions of N >= 2 demos:
    ``pairwise_rad`` (mean RMS distance over demo pairs), ``mean_to_nearest_rad`` (the mean
    action's distance to the nearest demo), ``nearest_neighbour_rad`` (median distance of a demo
    to its nearest other demo) and ``averaging_gap`` (their ratio).

    Args:
        aligned: (N, P, D) phase-aligned actions.
        seeds: each demo's seed (default: all different). Demos of the same seed are neither
            each other's pair nor nearest neighbour (see the module docstring).
    """
    n = aligned.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 demos to compare, got {n}")
    seeds = np.arange(n) if seeds is None else np.asarray(seeds)
    if seeds.shape != (n,):
        raise ValueError(f"need one seed per demo: {n} demos, {seeds.size} seeds")
    if len(np.unique(seeds)) < 2:
        raise ValueError("need demos of at least 2 seeds to compare")
    # (N, N, P): RMS distance between demos i and j at each phase.
    pair = _rms(aligned[:, None], aligned[None, :])
    twins = seeds[:, None] == seeds[None, :]  # includes each demo itself
    upper = np.triu_indices(n, 1)
    apart = ~twins[upper]
    pairwise = pair[upper][apart].mean(axis=0)
    nearest = np.where(twins[..., None], np.inf, pair).min(axis=1)  # (N, P)
    nn = np.median(nearest, axis=0)
    mean = aligned.mean(axis=0)  # (P, D)
    to_nearest = _rms(aligned, mean[None]).min(axis=0)
    return {
        "pairwise_rad": pairwise,
        "mean_to_nearest_rad": to_nearest,
        "nearest_neighbour_rad": nn,
        "averaging_gap": to_nearest / np.maximum(nn, RESOLUTION_RAD),
    }


def measure(demos: Sequence[Demo]) -> dict[str, Any]:
    """The multimodality of a set of demos (see the module docstring), JSON-able."""
    counts = Counter(d.strategy for d in demos)
    total = sum(counts.values())
    entropy = max(0.0, -sum(c / total * math.log2(c / total) for c in counts.values()))
    aligned = np.stack([phase_resample(d.actions) for d in demos])
    per_phase = phase_measures(aligned, [d.seed for d in demos])
    lengths = np.array([len(phase_resample_end(d.actions)) for d in demos])
    return {
        "episodes": total,
        "strategies": dict(sorted(counts.items())),
        "n_strategies": len(counts),
        "strategy_entropy_bits": entropy,
        "success_rate": float(np.mean([d.success for d in demos])),
        "motion_steps_mean": float(lengths.mean()),
        "motion_steps_cv": float(lengths.std() / lengths.mean()),
        "pairwise_rad_mean": float(per_phase["pairwise_rad"].mean()),
        "averaging_gap_mean": float(per_phase["averaging_gap"].mean()),
        "averaging_gap_max": float(per_phase["averaging_gap"].max()),
        "per_phase": {k: [float(x) for x in v] for k, v in per_phase.items()},
    }


def phase_resample_end(actions: np.ndarray) -> np.ndarray:
    """The motion part of ``actions`` (the steps ``phase_resample`` stretches): up to the last
    step at which the smoothed action (0.5 s moving average, which the operator's small
    corrective wander does not move) is still farther than ``SETTLED_RAD`` from where it ends."""
    window = SMOOTH_STEPS
    kernel = np.ones(window) / window
    padded = np.pad(actions, ((window // 2, window - 1 - window // 2), (0, 0)), mode="edge")
    smooth = np.stack(
        [np.convolve(padded[:, j], kernel, mode="valid") for j in range(actions.shape[1])], 1
    )
    away = np.flatnonzero(np.abs(smooth - smooth[-1]).max(axis=1) > SETTLED_RAD)
    end = int(away[-1]) + 2 if away.size else len(actions)
    return actions[: max(end, 2)]


def per_strategy_success(demos: Sequence[Demo]) -> dict[str, dict[str, float]]:
    """Success per strategy (the part before ``/``, tempo pooled): episodes, successes, rate."""
    out: dict[str, dict[str, float]] = {}
    for d in demos:
        key = d.strategy.split("/")[0]
        entry = out.setdefault(key, {"episodes": 0, "successes": 0})
        entry["episodes"] += 1
        entry["successes"] += int(d.success)
    for entry in out.values():
        entry["rate"] = entry["successes"] / entry["episodes"]
    return out


def write_results(
    task: str, results: dict[str, dict[str, Any]], out_dir: Path, command: str
) -> list[Path]:
    """``<task>.json`` (every measure), ``<task>.md`` (table with scale and command) and
    ``<task>.png`` (pairwise spread and averaging gap per phase, one line per source)."""
    from matplotlib.figure import Figure

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path, png_path = (out_dir / f"{task}.{e}" for e in ("json", "md", "png"))
    json_path.write_text(json.dumps({"task": task, "command": command, **results}, indent=2))
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    for source, r in results.items():
        phases = np.linspace(0, 1, len(r["per_phase"]["pairwise_rad"]))
        left.plot(phases, r["per_phase"]["pairwise_rad"], label=f"{source} ({r['episodes']} ep)")
        right.plot(phases, r["per_phase"]["averaging_gap"], label=source)
    left.set(xlabel="phase of the motion", ylabel="mean pairwise distance (rad, RMS)")
    right.set(xlabel="phase of the motion", ylabel="mean-to-nearest-demo / nearest-neighbour")
    right.axhline(1.0, color="grey", lw=0.8, ls="--")
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    fig.suptitle(f"{task}: how far demos are apart at the same phase", fontsize=10)
    fig.savefig(png_path, dpi=100)
    lines = [
        f"# {task}: multimodality of the demonstrations",
        "",
        f"`{command}` (seeds from 0, state observations, 2-core CPU machine).",
        "",
        f"![{task}]({png_path.name})",
        "",
        "| source | episodes | strategies (count) | entropy (bits) | pairwise distance (rad) "
        "| averaging gap mean / max | motion length CV | demo success |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for source, r in results.items():
        strategies = ", ".join(f"{k} {v}" for k, v in r["strategies"].items())
        lines.append(
            f"| {source} | {r['episodes']} | {strategies} | {r['strategy_entropy_bits']:.2f} "
            f"| {r['pairwise_rad_mean']:.3f} | {r['averaging_gap_mean']:.2f} / "
            f"{r['averaging_gap_max']:.2f} | {r['motion_steps_cv']:.2f} | "
            f"{100 * r['success_rate']:.0f}% |"
        )
        if "per_strategy" in r:
            for name, e in r["per_strategy"].items():
                lines.append(
                    f"| {source}: {name} | {e['episodes']} | success {e['successes']}/"
                    f"{e['episodes']} = {100 * e['rate']:.0f}% | | | | | |"
                )
    lines += [
        "",
        "Averaging gap: distance from the demos' mean action to the nearest demo over the median "
        "distance from a demo to its nearest other demo, at the same phase (motion start to its "
        "settling step, 50 phases). Above 1 the mean is a motion nobody demonstrated.",
    ]
    md_path.write_text("\n".join(lines) + "\n")
    return [json_path, md_path, png_path]


def write_overview(out_dir: Path) -> Path:
    """``README.md`` of ``out_dir``: one row per task and source from every ``<task>.json``
    there, with the command that wrote each, and per-strategy success of the operator."""
    out_dir = Path(out_dir)
    lines = [
        "# Multimodality of the demonstrations: human operator model vs scripted expert",
        "",
        "Written by `aloha-bench modes` (one run per task, commands below; state observations, "
        "seeds from 0, the 2-core CPU machine). Averaging gap: the demos' mean action's distance "
        "to the nearest demo over the median nearest-neighbour distance, at the same phase of the "
        "motion (above 1: the average is a motion nobody demonstrated).",
        "",
        "| task | source | episodes | strategies | entropy (bits) | pairwise distance (rad) "
        "| averaging gap mean / max | per-strategy success |",
        "|---|---|---|---|---|---|---|---|",
    ]
    commands = []
    for path in sorted(out_dir.glob("*.json")):
        data = json.loads(path.read_text())
        commands.append(f"- [{data['task']}]({data['task']}.md): `{data['command']}`")
        for source in ("scripted", "human"):
            r = data.get(source)
            if r is None:
                continue
            per = ", ".join(
                f"{name} {e['successes']}/{e['episodes']}"
                for name, e in r.get("per_strategy", {}).items()
            )
            lines.append(
                f"| {data['task']} | {source} | {r['episodes']} | {r['n_strategies']} "
                f"| {r['strategy_entropy_bits']:.2f} | {r['pairwise_rad_mean']:.3f} "
                f"| {r['averaging_gap_mean']:.2f} / {r['averaging_gap_max']:.2f} | {per} |"
            )
    path = out_dir / "README.md"
    path.write_text("\n".join(lines + ["", *commands]) + "\n")
    return path
