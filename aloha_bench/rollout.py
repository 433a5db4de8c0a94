"""Running scripted experts in the simulator (L4): per-episode records and their summary.

Library functions return data; the CLI prints it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from aloha_bench import embodiment, envs, keys
from aloha_bench.experts import make_expert

# The ten arm joints of the two followers: grippers open and close in a step by design.
ARM_JOINTS = [i for i in range(len(embodiment.STATE_NAMES)) if i not in embodiment.GRIPPER_INDICES]


@dataclasses.dataclass(frozen=True)
class EpisodeRecord:
    """What one episode reached. ``success_end``: final stage holds at the last step;
    ``success_any``: it held at some step; ``success_lenient``: the original ACT code's rule, the
    final stage without its let-go checks at some step (a cube still held by the giving gripper
    counts), kept for comparison with the paper."""

    seed: int
    max_stage: int
    final_stage: int
    success_end: bool
    success_any: bool
    steps: int
    style: dict
    success_lenient: bool = False
    # How well the plan fits the arm: the IK's largest miss of a planned tool position (m) and
    # the largest change of an arm joint's target in one control step (rad, grippers excluded).
    ik_miss_m: float = 0.0
    joint_step_rad: float = 0.0

    @classmethod
    def from_info(
        cls, seed: int, info: dict, n_stages: int, steps: int, style: dict
    ) -> EpisodeRecord:
        """The record of an episode from the env's ``info`` at its last step."""
        return cls(
            seed=seed,
            max_stage=int(info["max_stage"]),
            final_stage=int(info["stage"]),
            success_end=bool(info["is_success"]),
            success_any=int(info["max_stage"]) == n_stages,
            steps=steps,
            style=style,
            # Backends without the lenient rule (the real rig scores no stages) fall back to the
            # any-step rule, which it equals wherever the final stage has no let-go check.
            success_lenient=bool(info.get("success_lenient", int(info["max_stage"]) == n_stages)),
        )


@dataclasses.dataclass(frozen=True)
class ExpertReport:
    """Success of a scripted expert over several seeds."""

    task: str
    style_mode: str
    episodes: int
    stage_names: tuple[str, ...]
    records: tuple[EpisodeRecord, ...]

    @property
    def success_rate(self) -> float:
        """End-of-episode success rate (the strict rule this benchmark reports first)."""
        return float(np.mean([r.success_end for r in self.records]))

    @property
    def success_rate_any_step(self) -> float:
        return float(np.mean([r.success_any for r in self.records]))

    @property
    def success_rate_lenient(self) -> float:
        """The original ACT code's rule (no let-go needed, any step), for the paper's figures."""
        return float(np.mean([r.success_lenient for r in self.records]))

    @property
    def stage_rates(self) -> dict[str, float]:
        """Fraction of episodes that reached each stage at some step."""
        return {
            name: float(np.mean([r.max_stage >= i for r in self.records]))
            for i, name in enumerate(self.stage_names, start=1)
        }

    def to_dict(self) -> dict:
        return {
            "task": self.task,
            "style": self.style_mode,
            "episodes": self.episodes,
            "success_rate": self.success_rate,
            "success_rate_any_step": self.success_rate_any_step,
            "success_rate_lenient": self.success_rate_lenient,
            "stage_rates": self.stage_rates,
            "failed_seeds": [r.seed for r in self.records if not r.success_end],
            "ik_miss_mm_max": 1000.0 * max(r.ik_miss_m for r in self.records),
            "joint_step_rad_max": max(r.joint_step_rad for r in self.records),
        }


def _play(
    env, seed: int, style: str, render: bool
) -> Iterator[tuple[dict, np.ndarray | None, Any]]:
    """Reset ``env`` to ``seed`` and play its expert; yields (info, frame or None, expert,
    action)."""
    sim = env.unwrapped
    env.reset(seed=seed)
    expert = make_expert(sim.task.task_id, style, rng=np.random.default_rng(seed))
    expert.reset(sim)
    truncated = False
    while not truncated:
        action = expert.act(sim)
        _, _, _, truncated, info = env.step(action)
        yield info, (env.render() if render else None), expert, action


def run_expert(
    task: str,
    episodes: int,
    seed: int = 0,
    style: str = "default",
    progress: Callable[[int, EpisodeRecord], None] | None = None,
) -> ExpertReport:
    """Run the scripted expert of ``task`` on seeds ``seed .. seed + episodes - 1``.

    Args:
        task: task id.
        episodes: number of episodes.
        seed: first seed; episode i uses ``seed + i`` for the env and the style draw.
        style: ``"default"`` or ``"varied"`` (a style drawn per episode).
        progress: called after each episode with (index, record).
    """
    if episodes <= 0:
        raise ValueError(f"episodes must be positive, got {episodes}")
    env = envs.make(task, obs_mode="state")
    stage_names = env.unwrapped.stage_names
    records = []
    try:
        for i in range(episodes):
            steps, jump, previous = 0, 0.0, None
            for info, _, expert, action in _play(env, seed + i, style, render=False):  # noqa: B007
                steps += 1
                if previous is not None:
                    jump = max(jump, float(np.abs(action - previous)[ARM_JOINTS].max()))
                previous = action
            record = dataclasses.replace(
                EpisodeRecord.from_info(
                    seed + i, info, len(stage_names), steps, dataclasses.asdict(expert.style)
                ),
                ik_miss_m=expert.ik_miss_m,
                joint_step_rad=jump,
            )
            records.append(record)
            if progress is not None:
                progress(i, record)
    finally:
        env.close()
    return ExpertReport(
        task=env.unwrapped.task.task_id,
        style_mode=style,
        episodes=episodes,
        stage_names=stage_names,
        records=tuple(records),
    )


def write_expert_video(task: str, out: Path, seed: int = 0, style: str = "default") -> Path:
    """Render one expert episode, all four cameras side by side, to ``out`` (mp4 via imageio).

    Real time at ``data.video.VIDEO_FPS`` (every second 50 Hz step), each camera named and
    every frame captioned with the step and the stage reached at it.
    """
    import imageio.v2 as imageio

    from aloha_bench.data.video import FRAME_STRIDE, VIDEO_FPS, labeled_frame, stage_text

    out.parent.mkdir(parents=True, exist_ok=True)
    env = envs.make(task, obs_mode="state", render_mode="rgb_array")
    names = env.unwrapped.stage_names
    try:
        with imageio.get_writer(out, fps=VIDEO_FPS, macro_block_size=1) as writer:
            for step, (info, frame, *_) in enumerate(_play(env, seed, style, render=True), 1):
                if step % FRAME_STRIDE == 0:
                    panels = np.split(frame, len(keys.CAMERAS), axis=1)  # render()'s order
                    caption = f"{task} expert seed {seed}  step {step}  " + stage_text(
                        info["stage"], names
                    )
                    writer.append_data(labeled_frame(panels, keys.CAMERAS, caption))
    finally:
        env.close()
    return out


def write_expert_frame(
    task: str, out: Path, seed: int = 0, style: str = "default", step: int = 150
) -> Path:
    """Save one frame (all four cameras, leaders shown) of an expert episode as a PNG."""
    import imageio.v2 as imageio

    out.parent.mkdir(parents=True, exist_ok=True)
    env = envs.make(task, obs_mode="state", render_mode="rgb_array")
    try:
        for i, _ in enumerate(_play(env, seed, style, render=False)):
            if i + 1 == step:
                break
        imageio.imwrite(out, env.render())
    finally:
        env.close()
    return out


def view_expert(task: str, seed: int = 0, style: str = "default") -> None:
    """Play the expert in MuJoCo's interactive viewer (needs a display), in real time."""
    import os
    import sys
    import time

    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        # MuJoCo's viewer would exit the process from inside GLFW; say what to do instead.
        raise ValueError(
            "no display for the viewer (DISPLAY is unset); write a video instead: "
            f"aloha-bench view --task {task} --video {task}.mp4"
        )

    env = envs.make(task, obs_mode="state", render_mode="human")
    try:
        for _ in _play(env, seed, style, render=False):
            time.sleep(embodiment.CONTROL_DT_S)
    finally:
        env.close()


def expert_table(reports: list[dict]) -> str:
    """A markdown table of expert reports (``ExpertReport.to_dict()`` JSON), one row per task.

    Columns: each style's end-of-episode success with the any-step rate in brackets, and the
    per-stage rates of the default style.
    """
    by_task: dict[str, dict[str, dict]] = {}
    for report in reports:
        by_task.setdefault(report["task"], {})[report["style"]] = report
    lines = [
        "| task | episodes | default style | varied style | stages reached (default) |",
        "|---|---|---|---|---|",
    ]

    def cell(report: dict | None) -> str:
        if report is None:
            return "not run"
        return f"{report['success_rate']:.1%} ({report['success_rate_any_step']:.1%})"

    for task in sorted(by_task):
        styles = by_task[task]
        first = styles.get("default") or next(iter(styles.values()))
        stages = " / ".join(f"{name} {rate:.1%}" for name, rate in first["stage_rates"].items())
        lines.append(
            f"| {task} | {first['episodes']} | {cell(styles.get('default'))} | "
            f"{cell(styles.get('varied'))} | {stages} |"
        )
    return "\n".join(lines) + "\n"
