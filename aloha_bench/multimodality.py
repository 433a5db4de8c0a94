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


# --- Given the observation: what a policy trained on a recorded dataset has to average ------------
#
# The measures above compare demos at the same *phase*. A policy does not see the phase: it sees
# the joints and (state mode) the objects' poses, and is trained to map them to the next K
# actions. Whether a policy without the CVAE must average distinct motions depends on whether
# demos that look the same to it go on differently. ``given_observation`` asks that of a recorded
# dataset: for sampled frames, the demos from *other* episodes whose observation is nearest, and
# how far apart their next K actions are; as a control, the same with random frames of other
# episodes at the same progress through the episode (what the phase measure sees).

GIVEN_OBS_NEIGHBOURS = 8
GIVEN_OBS_QUERIES = 1000
PROGRESS_BINS = (0.0, 0.1, 0.25, 0.5, 1.0)
PROGRESS_MATCH = 0.025  # the control's frames lie within this fraction of an episode


def _chunk_gap(chunks: np.ndarray) -> tuple[float, float]:
    """(averaging gap, mean pairwise distance in rad) of (k, K, D) action chunks: the RMS distance
    from their mean chunk to the nearest of them over the median distance from one to its
    nearest other (``phase_measures``'s ratio, on whole chunks)."""
    flat = chunks.reshape(len(chunks), -1)
    pair = np.sqrt(((flat[:, None] - flat[None]) ** 2).mean(-1))  # (k, k)
    np.fill_diagonal(pair, np.inf)
    nearest = np.median(pair.min(axis=1))
    to_mean = np.sqrt(((flat - flat.mean(axis=0)) ** 2).mean(-1)).min()
    upper = np.triu_indices(len(flat), 1)
    return float(to_mean / max(nearest, RESOLUTION_RAD)), float(pair[upper].mean())


def given_observation(
    store,
    chunk_size: int = 100,
    queries: int = GIVEN_OBS_QUERIES,
    neighbours: int = GIVEN_OBS_NEIGHBOURS,
    seed: int = 0,
) -> dict[str, Any]:
    """How multimodal a recorded dataset's action chunks are given the policy's observation.

    Args:
        store: an ``EpisodeStore`` (or its path) with ``observation.state`` and, where recorded,
            ``observation.environment_state`` (state mode's object poses).
        chunk_size: K, the actions after each frame that a policy predicts (ACT: 100).
        queries: frames sampled (uniformly over the dataset, seeded).
        neighbours: k, the frames of other episodes compared with each query.
        seed: of the sampling.

    Returns:
        JSON-able: per query set, ``gap_given_obs`` and ``gap_given_progress`` (mean averaging
        gap of the k nearest frames in observation space, each feature scaled by its standard
        deviation, and of k random frames at the same progress), their pairwise chunk spreads
        (rad), ``same_strategy_given_obs`` (share of the observation neighbours recorded with the
        query's strategy; ``same_strategy_chance`` is what random frames give), the neighbours'
        median observation distance (in standard deviations), and the same per progress bin
        (``PROGRESS_BINS``).

    Raises:
        ValueError: fewer than ``neighbours + 1`` episodes, or no state observation.
    """
    from aloha_bench import keys as K
    from aloha_bench.data import EpisodeStore
    from aloha_bench.data.dataset import WindowDataset

    store = store if isinstance(store, EpisodeStore) else EpisodeStore.open(store)
    if store.n_episodes < 2:
        raise ValueError(f"{store.path}: {store.n_episodes} episode(s); need at least 2")
    obs_keys = [k for k in (K.STATE, K.ENVIRONMENT_STATE) if k in store.data_keys]
    if K.STATE not in obs_keys:
        raise ValueError(f"{store.path} has no {K.STATE}; record it with `aloha-bench generate`")
    windows = WindowDataset(store, chunk_size, keys=obs_keys)
    obs = np.concatenate([store.read_all(k) for k in obs_keys], axis=1).astype(np.float64)
    std = obs.std(axis=0)
    obs = obs[:, std > 1e-9] / std[std > 1e-9]  # features that never move tell nothing apart
    ends = store.episode_ends
    lengths = np.diff(np.concatenate([[0], ends]))
    episode = np.repeat(np.arange(store.n_episodes), lengths)
    step = np.arange(len(episode)) - np.repeat(ends - lengths, lengths)
    progress = step / np.repeat(lengths, lengths)
    strategy = np.array([str(store.episode_meta(e)["strategy"]) for e in range(store.n_episodes)])
    shares = np.array(list(Counter(strategy).values())) / store.n_episodes
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(obs), size=min(queries, len(obs)), replace=False))
    norms = (obs**2).sum(-1)
    rows: list[dict[str, float]] = []
    for start in range(0, len(chosen), 100):
        block = chosen[start : start + 100]
        # Squared distances (b, N) by |a|^2 + |b|^2 - 2ab: the (b, N, D) difference would take
        # about a gigabyte for a block of a 40,000-frame dataset.
        distance = np.maximum(
            (obs[block] ** 2).sum(-1)[:, None] + norms[None] - 2 * obs[block] @ obs.T, 0.0
        )
        distance[episode[block][:, None] == episode[None, :]] = np.inf
        for q, dist in zip(block, distance, strict=True):
            near = np.argpartition(dist, neighbours)[:neighbours]
            if not np.isfinite(dist[near]).all():
                raise ValueError(
                    f"{store.path}: too few other episodes for {neighbours} neighbours"
                )
            same_time = np.flatnonzero(
                (episode != episode[q]) & (np.abs(progress - progress[q]) <= PROGRESS_MATCH)
            )
            control = rng.choice(same_time, size=min(neighbours, len(same_time)), replace=False)
            gap_obs, spread_obs = _chunk_gap(windows.sample_batch(near)[K.ACTION])
            gap_time, spread_time = _chunk_gap(windows.sample_batch(control)[K.ACTION])
            rows.append(
                {
                    "progress": float(progress[q]),
                    "gap_given_obs": gap_obs,
                    "gap_given_progress": gap_time,
                    "spread_given_obs_rad": spread_obs,
                    "spread_given_progress_rad": spread_time,
                    "same_strategy_given_obs": float(
                        np.mean(strategy[episode[near]] == strategy[episode[q]])
                    ),
                    "obs_distance_std": float(np.sqrt(np.median(dist[near]))),
                }
            )

    def summary(part: list[dict[str, float]]) -> dict[str, float]:
        return {
            name: float(np.mean([r[name] for r in part])) for name in part[0] if name != "progress"
        } | {"queries": len(part)}

    bins = []
    for low, high in zip(PROGRESS_BINS[:-1], PROGRESS_BINS[1:], strict=True):
        part = [
            r for r in rows if low <= r["progress"] < high or (high == 1.0 and r["progress"] == 1.0)
        ]
        if part:
            bins.append({"from": low, "to": high, **summary(part)})
    return {
        "dataset": Path(str(store.path)).name,
        "task": store.attrs.get("task_id"),
        "episodes": store.n_episodes,
        "strategies": dict(sorted(Counter(strategy).items())),
        "observation": obs_keys,
        "chunk_size": chunk_size,
        "neighbours": neighbours,
        **summary(rows),
        "same_strategy_chance": float((shares**2).sum()),
        "by_progress": bins,
    }


def write_given_observation(results: Sequence[dict[str, Any]], out_dir: Path) -> Path:
    """Write ``<dataset>.json`` per result into ``out_dir`` and ``README.md``: one row per
    dataset there (every JSON in the folder, so runs over several datasets accumulate), with the
    command that measured each."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for r in results:
        stem = r["dataset"].removesuffix(".zarr")
        (out_dir / f"{stem}.json").write_text(json.dumps(r, indent=2) + "\n")
    every = [json.loads(p.read_text()) for p in sorted(out_dir.glob("*.json"))]
    every.sort(key=lambda r: (str(r["task"]), r["dataset"]))
    lines = [
        "# Multimodality given the observation: what a policy without the CVAE has to average",
        "",
        "Written by `aloha-bench modes-given-obs` (commands below) from recorded datasets. For "
        "sampled frames, the k frames of *other* episodes nearest in the policy's observation "
        "(joints and object poses, each feature in standard deviations), and k random frames of "
        "other episodes at the same progress (within 2.5% of the episode) as a control. "
        "Spread: mean pairwise RMS distance between their next K actions (rad). Gap: the distance "
        "from their mean chunk to the nearest of them over the median nearest-neighbour distance "
        "(above 1: the mean is a motion none of them made). Same strategy: share of the "
        "observation neighbours recorded with the query's strategy, beside what chance gives.",
        "",
        "| task | dataset | episodes | strategies | spread given obs (rad) | spread given "
        "progress (rad) | gap given obs | gap given progress | same strategy given obs "
        "(chance) | obs distance (std) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in every:
        lines.append(
            f"| {r['task']} | {r['dataset']} | {r['episodes']} | {len(r['strategies'])} "
            f"| {r['spread_given_obs_rad']:.3f} | {r['spread_given_progress_rad']:.3f} "
            f"| {r['gap_given_obs']:.2f} | {r['gap_given_progress']:.2f} "
            f"| {r['same_strategy_given_obs']:.2f} ({r['same_strategy_chance']:.2f}) "
            f"| {r['obs_distance_std']:.2f} |"
        )
    lines += ["", "Per progress bin (spread given obs / given progress, rad; gap given obs):", ""]
    lines += [
        "| dataset | "
        + " | ".join(
            f"{b:.0%}-{e:.0%}" for b, e in zip(PROGRESS_BINS[:-1], PROGRESS_BINS[1:], strict=True)
        )
        + " |",
        "|---|" + "---|" * (len(PROGRESS_BINS) - 1),
    ]
    for r in every:
        cells = {(b["from"], b["to"]): b for b in r["by_progress"]}
        row = []
        for edges in zip(PROGRESS_BINS[:-1], PROGRESS_BINS[1:], strict=True):
            b = cells.get(edges)
            row.append(
                "—"
                if b is None
                else f"{b['spread_given_obs_rad']:.3f} / {b['spread_given_progress_rad']:.3f}; "
                f"{b['gap_given_obs']:.2f}"
            )
        lines.append(f"| {r['dataset']} | " + " | ".join(row) + " |")
    lines += ["", "Commands:", ""]
    lines += sorted({f"- `{r['command']}`" for r in every})
    path = out_dir / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path
