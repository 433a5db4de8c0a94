"""How precise must a policy be on each task? Two measurements side by side (L4).

1. :func:`expert_tolerance`: the scripted expert (the demonstrations' source, default style) with
   an error added to its ten arm-joint targets: per joint a normal draw of standard deviation
   sigma (rad), held for ``hold_steps`` control steps and then drawn again. ``hold_steps = 100``
   is one chunk of ACT (K = 100 actions executed open loop, Zhao et al. 2023, Sec. III-A): a
   chunk's error is mostly a slow offset over its 2 s, not a per-step jitter. The same standard
   normals are scaled for every sigma (common random numbers), so success against sigma is not
   blurred by a fresh draw per point. Grippers are left alone: the demos close them past
   contact, so a gripper target error of this size changes no grasp.
2. :func:`policy_action_error`: a trained policy's error against the held-out demonstrations
   of its run (the validation episodes of ``split.json``), open loop at z = 0: every
   ``stride``-th frame, the predicted chunk against the demo's next K actions, in radians on the
   same ten joints. Its RMS is comparable to sigma above (both are per-joint standard deviations);
   its chunk-mean part (the error averaged over each chunk) is the slow offset that
   ``hold_steps = K`` models.

Where a task's success falls steeply at a sigma smaller than ACT's error on it, the task asks for
more precision than the policy learned from 50 demos: the policy misses there for lack of
precision, not for lack of the right strategy. ``aloha-bench tolerance`` writes the table and
plot (results/tolerance/).
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from aloha_bench import embodiment, envs
from aloha_bench.experts import make_expert

# torch before any MuJoCo context: triton's LLVM (loaded with torchvision) crashes once Mesa's
# has loaded (README, "The environment").
from aloha_bench.policies import load
from aloha_bench.stats import wilson_interval

# The ten arm joints of the two followers (grippers excluded, see the module docstring).
ARM_JOINTS = np.array(
    [i for i in range(len(embodiment.STATE_NAMES)) if i not in embodiment.GRIPPER_INDICES]
)
DEFAULT_SIGMAS_MRAD = (0.0, 2.0, 4.0, 8.0, 16.0, 32.0)
# Offsets the per-episode error streams from the env's seed, so the error never shares a stream
# with the scene's randomization.
_ERROR_SEED_OFFSET = 7_919


def joint_error_normals(seed: int, steps: int, hold_steps: int) -> np.ndarray:
    """Standard normal errors (steps, 10) for the arm joints, redrawn every ``hold_steps``.

    The draw depends only on ``seed``, ``steps`` and ``hold_steps``, so every sigma of one
    episode scales the same numbers.
    """
    if hold_steps < 1:
        raise ValueError(f"hold_steps must be at least 1, got {hold_steps}")
    blocks = -(-steps // hold_steps)
    rng = np.random.default_rng([_ERROR_SEED_OFFSET, seed])
    draws = rng.standard_normal((blocks, len(ARM_JOINTS)))
    return np.repeat(draws, hold_steps, axis=0)[:steps]


def _episode(env, task: str, seed: int, sigma_rad: float, hold_steps: int) -> dict:
    sim = env.unwrapped
    env.reset(seed=seed)
    expert = make_expert(task, "default")
    expert.reset(sim)
    steps = sim.task.episode_steps
    errors = sigma_rad * joint_error_normals(seed, steps, hold_steps)
    low, high = embodiment.STATE_LOW_RAD, embodiment.STATE_HIGH_RAD
    truncated, step, info = False, 0, {}
    while not truncated:
        action = np.asarray(expert.act(sim), dtype=np.float64).copy()
        action[ARM_JOINTS] += errors[min(step, steps - 1)]
        _, _, _, truncated, info = env.step(np.clip(action, low, high))
        step += 1
    n_stages = len(sim.stage_names)
    return {
        "seed": seed,
        "max_stage": int(info["max_stage"]),
        "final_stage": int(info["stage"]),
        "success_end": bool(info["is_success"]),
        "success_any": int(info["max_stage"]) == n_stages,
    }


def expert_tolerance(
    task: str,
    sigmas_mrad: Sequence[float] = DEFAULT_SIGMAS_MRAD,
    episodes: int = 20,
    seed: int = 0,
    hold_steps: int = 100,
    progress: Callable[[float, int], None] | None = None,
) -> list[dict]:
    """Success of ``task``'s scripted expert with joint-target errors of each sigma.

    Args:
        task: task id.
        sigmas_mrad: standard deviations of the per-joint error (milliradians).
        episodes: seeds ``seed .. seed + episodes - 1`` per sigma (the demos' seeds by default:
            the scenes the expert was recorded on).
        seed: first seed.
        hold_steps: control steps an error draw is held (1: a fresh draw every step; the
            episode's length: one constant offset per episode; 100: one per ACT chunk).
        progress: called after each episode with (sigma_mrad, episodes done at that sigma).

    Returns:
        One row per sigma: ``task``, ``sigma_mrad``, ``hold_steps``, ``episodes``,
        ``successes``, ``success_end`` (rate), ``ci_low``/``ci_high`` (Wilson 95%),
        ``success_any``, ``stage_<name>`` (share of episodes that reached each stage) and
        ``failed_seeds``.

    Raises:
        ValueError: no episodes, a negative sigma or ``hold_steps`` < 1.
    """
    if episodes <= 0:
        raise ValueError(f"episodes must be positive, got {episodes}")
    if any(s < 0 or not np.isfinite(s) for s in sigmas_mrad):
        raise ValueError(f"sigmas must be finite and >= 0 mrad, got {list(sigmas_mrad)}")
    if hold_steps < 1:
        raise ValueError(f"hold_steps must be at least 1, got {hold_steps}")
    env = envs.make(task, obs_mode="state")
    stage_names = env.unwrapped.stage_names
    rows = []
    try:
        for sigma in sigmas_mrad:
            records = []
            for i in range(episodes):
                records.append(_episode(env, task, seed + i, sigma / 1000.0, hold_steps))
                if progress is not None:
                    progress(float(sigma), i + 1)
            wins = sum(r["success_end"] for r in records)
            low, high = wilson_interval(wins, episodes)
            row = {
                "task": task,
                "sigma_mrad": float(sigma),
                "hold_steps": hold_steps,
                "episodes": episodes,
                "successes": wins,
                "success_end": wins / episodes,
                "ci_low": low,
                "ci_high": high,
                "success_any": sum(r["success_any"] for r in records) / episodes,
            }
            for k, name in enumerate(stage_names, start=1):
                row[f"stage_{name}"] = sum(r["max_stage"] >= k for r in records) / episodes
            row["failed_seeds"] = [r["seed"] for r in records if not r["success_end"]]
            rows.append(row)
    finally:
        env.close()
    return rows


def policy_action_error(run: str | Path, stride: int = 10, max_frames: int = 2000) -> dict:
    """A trained run's open-loop action error on its validation demos, per arm joint (rad).

    Args:
        run: a ``train`` run folder (its ``best/`` checkpoint, ``split.json`` naming the dataset
            and the validation episodes).
        stride: predict at every ``stride``-th frame of each validation episode.
        max_frames: at most this many predictions (evenly spread).

    Returns:
        ``run``, ``task``, ``frames`` (predictions made), ``rms_mrad`` (over the ten arm joints
        and every real action of each chunk), ``chunk_mean_rms_mrad`` (RMS of each chunk's mean
        error per joint: the slow offset), ``first_rms_mrad`` (the chunk's first action only)
        and ``rms_mrad_per_joint`` (name -> value).

    Raises:
        FileNotFoundError: no ``split.json`` in ``run`` or its dataset is gone.
        ValueError: the run has no validation episodes.
    """
    from aloha_bench.demo_frames import demo_windows, run_split

    run = Path(run)
    purpose = "the policy's error is measured on its held-out demos"
    split = run_split(run, purpose)
    if not split.get("val_episodes"):
        raise ValueError(f"{run} was trained without validation episodes (val_fraction = 0)")
    policy = load(run)
    config = policy.config
    data = demo_windows(run, config.input_keys, config.chunk_size, "val", purpose)
    indices = np.arange(0, len(data), stride)
    if len(indices) > max_frames:
        indices = indices[np.linspace(0, len(indices) - 1, max_frames).astype(int)]
    squared, chunk_means, firsts = [], [], []
    for index in indices:
        sample = data[int(index)]
        real = ~sample["action_is_pad"]
        predicted = policy.predict_chunk(sample)[: len(real)]
        error = (predicted - sample["action"])[real][:, ARM_JOINTS]  # (n, 10) rad
        squared.append(error**2)
        chunk_means.append(error.mean(axis=0))
        firsts.append(error[0])
    squared_all = np.concatenate(squared)
    names = [embodiment.STATE_NAMES[i] for i in ARM_JOINTS]
    return {
        "run": str(run),
        "task": split.get("task"),
        "frames": len(indices),
        "rms_mrad": 1000.0 * float(np.sqrt(squared_all.mean())),
        "chunk_mean_rms_mrad": 1000.0 * float(np.sqrt(np.mean(np.square(chunk_means)))),
        "first_rms_mrad": 1000.0 * float(np.sqrt(np.mean(np.square(firsts)))),
        "rms_mrad_per_joint": dict(
            zip(names, (1000.0 * np.sqrt(squared_all.mean(axis=0))).tolist(), strict=True)
        ),
    }


def write_tolerance_report(
    out: str | Path,
    rows: Sequence[Mapping],
    errors: Sequence[Mapping],
    scale: str,
    policy_success: Mapping[str, float] | None = None,
) -> list[Path]:
    """``tolerance.csv``, ``policy_error.csv`` (with runs), ``tolerance.md``, ``tolerance.png``
    and ``tolerance.json`` in ``out``; returns the paths written.

    ``policy_success`` (a run folder's name -> its end-of-episode success rate, e.g. from a
    study's summary.csv) is printed beside the policy's error when given.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    import pandas as pd

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(list(rows))
    written = [out / "tolerance.csv"]
    table.drop(columns=["failed_seeds"], errors="ignore").to_csv(written[0], index=False)
    err = pd.DataFrame(list(errors))
    if len(err):
        written.append(out / "policy_error.csv")
        err.drop(columns=["rms_mrad_per_joint"]).to_csv(written[-1], index=False)

    tasks = list(dict.fromkeys(table["task"]))
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    colours = dict(zip(tasks, plt.cm.tab10.colors, strict=False))
    # sigma = 0 sits at the left edge of a log axis: plot it at half the smallest positive sigma.
    positive = sorted(s for s in table["sigma_mrad"].unique() if s > 0)
    zero_at = positive[0] / 2 if positive else 1.0
    for task in tasks:
        part = table[table["task"] == task].sort_values("sigma_mrad")
        x = part["sigma_mrad"].where(part["sigma_mrad"] > 0, zero_at)
        rate = 100 * part["success_end"]
        yerr = [
            np.clip(rate - 100 * part["ci_low"], 0, None),
            np.clip(100 * part["ci_high"] - rate, 0, None),
        ]
        ax.errorbar(x, rate, yerr=yerr, fmt="o-", capsize=3, color=colours[task], label=task)
        for _, e in err[err["task"] == task].iterrows() if len(err) else ():
            ax.axvline(e["rms_mrad"], color=colours[task], linestyle=":", alpha=0.9)
    ax.set_xscale("log")
    ticks = [zero_at, *positive]
    ax.set_xticks(ticks)
    ax.set_xticklabels(["0", *(f"{s:g}" for s in positive)])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())  # only the sigmas measured
    # Room for every dotted error line, also one beyond the largest sigma.
    right = max([*ticks, *(err["rms_mrad"] if len(err) else ())])
    ax.set_xlim(zero_at / 1.3, right * 1.3)
    holds = ", ".join(str(h) for h in sorted(table["hold_steps"].unique()))
    ax.set_xlabel(f"joint-target error sigma (mrad), per arm joint, held {holds} steps")
    ax.set_ylabel("expert success at episode end (%)")
    ax.set_ylim(-3, 103)
    ax.set_title("Precision each task asks for (dotted: ACT's RMS error on held-out demos)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    footer = textwrap.wrap(scale, 150)
    fig.text(0.01, 0.01, "\n".join(footer), fontsize=7, va="bottom")
    fig.tight_layout(rect=(0, 0.025 * len(footer) + 0.01, 1, 1))
    written.append(out / "tolerance.png")
    fig.savefig(written[-1])
    plt.close(fig)

    sigmas = sorted(table["sigma_mrad"].unique())
    lines = [
        "# Precision each task asks for",
        "",
        scale,
        "",
        "Expert success at the end of the episode (%) with a joint-target error of sigma per arm "
        "joint (Wilson 95% in brackets):",
        "",
        "| task | " + " | ".join(f"{s:g} mrad" for s in sigmas) + " |",
        "|---|" + "---:|" * len(sigmas),
    ]
    for task in tasks:
        part = table[table["task"] == task].set_index("sigma_mrad")
        cells = []
        for s in sigmas:
            if s not in part.index:
                cells.append("-")
                continue
            r = part.loc[s]
            cells.append(
                f"{100 * r['success_end']:.0f} [{100 * r['ci_low']:.0f}, {100 * r['ci_high']:.0f}]"
            )
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    if len(err):
        lines += [
            "",
            "ACT's open-loop error on the held-out demos of its run (z = 0, mrad over the ten arm "
            "joints):",
            "",
            "| task | run | frames | RMS | chunk-mean RMS | first action RMS |"
            + (" policy success (end) |" if policy_success else ""),
            "|---|---|---:|---:|---:|---:|" + ("---:|" if policy_success else ""),
        ]
        for _, e in err.iterrows():
            extra = ""
            if policy_success:
                rate = policy_success.get(Path(e["run"]).name)
                extra = f" {100 * rate:.0f}% |" if rate is not None else " - |"
            lines.append(
                f"| {e['task']} | `{Path(e['run']).name}` | {e['frames']} | {e['rms_mrad']:.1f} | "
                f"{e['chunk_mean_rms_mrad']:.1f} | {e['first_rms_mrad']:.1f} |{extra}"
            )
    written.append(out / "tolerance.md")
    written[-1].write_text("\n".join(lines) + "\n")
    written.append(out / "tolerance.json")
    written[-1].write_text(
        json.dumps(
            {"scale": scale, "tolerance": list(rows), "policy_error": list(errors)}, indent=2
        )
        + "\n"
    )
    return written
