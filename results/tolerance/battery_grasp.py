"""Battery: a trained policy's right wrist roll when its right gripper closes on the battery,
against the scripted expert's on the same seed (the grasp that decides the task: see README.md).

    python results/tolerance/battery_grasp.py RUN [--episodes 40] [--seed 1000] [--out FILE.json]

Per seed: the step at which each closes the right gripper (the first step past 40 with the
gripper target 0.3 rad below its opening), both wrist rolls there, their difference, and whether
the policy's episode ended in success. Prints one line per seed and the RMS difference over the
seeds where it ended in success and where it failed. The policy runs as in `aloha-bench eval`
(sync chunks, no timing model); the expert with its default style, as the study's demos.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from aloha_bench import embodiment, envs
from aloha_bench.evaluate import (
    EpisodeRunner,
    EvalSettings,
    SimClock,
    check_seed_overlap,
    training_task,
)
from aloha_bench.rollout import _play

ROLL = embodiment.STATE_NAMES.index("right_wrist_roll")
# Mid-closing: the gripper target is then well on its way, the jaws near the battery.
AFTER_CLOSE_STEPS = 8
# The jaws' room across the 14 mm battery: about the tolerance study's 16 mrad at the arm's reach.
ACROSS_MM = 4.0


def tool_in_battery_frame(sim) -> np.ndarray:
    """The right tool centre minus the battery's centre, in mm, along the battery's axis, across
    it (horizontal) and up."""
    data, model = sim.data, sim.model
    offset = (
        data.site_xpos[model.site("right/tcp").id] - data.site_xpos[model.site("battery_center").id]
    )
    axis = data.xmat[model.body("battery").id].reshape(3, 3)[:, 0].copy()
    axis[2] = 0.0
    axis /= np.linalg.norm(axis)
    across = np.array([-axis[1], axis[0], 0.0])
    return 1000.0 * np.array([offset @ axis, offset @ across, offset[2]])


GRIP = embodiment.STATE_NAMES.index("right_gripper")


def close_step(actions: np.ndarray) -> int | None:
    """First step after 40 where the right gripper target is 0.3 rad below its early maximum."""
    grip = actions[:, GRIP]
    below = np.flatnonzero((np.arange(len(grip)) > 40) & (grip < grip[:60].max() - 0.3))
    return int(below[0]) if len(below) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a battery `train` run folder (its best/ checkpoint)")
    parser.add_argument("--episodes", type=int, default=40, help="seeds to play (default: 40)")
    parser.add_argument("--seed", type=int, default=1000, help="first seed (default: 1000)")
    parser.add_argument("--out", help="write the per-seed rows and the summary to this JSON")
    args = parser.parse_args()
    try:  # unseen scenes of battery only, as `aloha-bench eval`; a missing run is named
        settings = EvalSettings(
            run=args.run, task="battery", episodes=args.episodes, seed=args.seed
        )
        trained = training_task(args.run)
        if trained not in (None, "battery"):
            raise ValueError(f"{args.run} was trained on {trained!r}; give a battery run")
        check_seed_overlap(settings.run, "battery", range(args.seed, args.seed + args.episodes))
        runner = EpisodeRunner(settings)
    except (OSError, ValueError) as error:
        raise SystemExit(f"battery_grasp.py: {error}") from None
    expert_env = envs.make("battery", obs_mode="state")
    rows = []
    for index in range(args.episodes):
        seed = args.seed + index
        obs, info = runner.env.reset(seed=seed)
        runner.executor.reset()
        actions, truncated, tool = [], False, []
        while not truncated and len(actions) < runner.limit:
            tool.append(tool_in_battery_frame(runner.env.unwrapped))
            actions.append(runner.executor.act(obs))
            obs, _, _, truncated, info = runner.env.step(actions[-1])
            if isinstance(runner.clock, SimClock):
                runner.clock.advance(embodiment.CONTROL_DT_S)
        policy = np.array(actions)
        expert, expert_tool = [], []
        for _, _, _, action in _play(expert_env, seed, "default", render=False):
            expert.append(action)
            expert_tool.append(tool_in_battery_frame(expert_env.unwrapped))
        expert = np.array(expert)
        p, e = close_step(policy), close_step(expert)
        row = {
            "seed": seed,
            "success_end": bool(info["is_success"]),
            "max_stage": int(info["max_stage"]),
            "close_step_policy": p,
            "close_step_expert": e,
            "roll_expert_rad": float(expert[e, ROLL]),
        }
        if p is not None:
            row["roll_policy_rad"] = float(policy[p, ROLL])
            row["roll_diff_mrad"] = 1000.0 * (row["roll_policy_rad"] - row["roll_expert_rad"])
            row["tool_mm_policy"] = tool[p + AFTER_CLOSE_STEPS].round(1).tolist()
        row["tool_mm_expert"] = expert_tool[e + AFTER_CLOSE_STEPS].round(1).tolist()
        rows.append(row)
        diff = f"{row['roll_diff_mrad']:+5.0f} mrad" if p is not None else "never closes"
        print(
            f"seed {seed}: {'success' if row['success_end'] else 'failure'} (stage "
            f"{row['max_stage']}), closes at step {p} (expert {e}), wrist roll {diff}, tool "
            f"(along, across, up) mm {row.get('tool_mm_policy')} (expert {row['tool_mm_expert']})",
            flush=True,
        )
    runner.close()
    expert_env.close()
    summary = {"run": args.run, "episodes": args.episodes, "first_seed": args.seed}
    for label, wanted in (("success", True), ("failure", False), ("all", None)):
        episodes = [r for r in rows if wanted is None or r["success_end"] == wanted]
        diffs = [
            r["roll_diff_mrad"]
            for r in rows
            if "roll_diff_mrad" in r and (wanted is None or r["success_end"] == wanted)
        ]
        summary[f"roll_rms_mrad_{label}"] = (
            float(np.sqrt(np.mean(np.square(diffs)))) if diffs else None
        )
        summary[f"n_{label}"] = len(episodes)
        summary[f"n_{label}_closed"] = len(diffs)  # the policy closed its gripper
        offsets = [
            np.subtract(r["tool_mm_policy"], r["tool_mm_expert"])
            for r in rows
            if "tool_mm_policy" in r and (wanted is None or r["success_end"] == wanted)
        ]
        # Medians: a knocked battery puts a few episodes centimetres off and would swamp a mean.
        summary[f"tool_offset_median_abs_mm_{label}"] = (
            np.median(np.abs(offsets), axis=0).round(1).tolist() if offsets else None
        )
        summary[f"share_across_over_{ACROSS_MM:g}mm_{label}"] = (
            float(np.mean(np.abs(np.array(offsets)[:, 1]) > ACROSS_MM)) if offsets else None
        )
        roll = summary[f"roll_rms_mrad_{label}"]
        share = summary[f"share_across_over_{ACROSS_MM:g}mm_{label}"]
        print(
            f"{label}: {len(episodes)} episodes, {len(diffs)} with the gripper closed; wrist roll "
            f"at the grasp off the expert's by {'n/a' if roll is None else f'{roll:.0f}'} mrad "
            f"RMS; the tool {AFTER_CLOSE_STEPS} steps later off the expert's by (along, across, "
            f"up) {summary[f'tool_offset_median_abs_mm_{label}'] or 'n/a'} mm (median of "
            f"absolute values), more than {ACROSS_MM:g} mm across in "
            f"{'n/a' if share is None else f'{share:.0%}'}"
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"summary": summary, "episodes": rows}, f, indent=1)


if __name__ == "__main__":
    main()
