"""The evaluation harness (L4): trained policies -> per-episode records -> summaries with intervals.

``evaluate`` rolls a policy out for ``episodes`` seeds and returns one record (a JSON-able dict)
per episode; ``summarize`` turns records into rates with Wilson 95% intervals; ``write_outputs``
writes ``records.jsonl``, ``summary.json`` and ``table.md``. ``aloha-bench eval`` and the study
(``aloha_bench.study``) both go through these three functions.

Honesty rules built in:

* Evaluation seeds must not be seeds the training demonstrations were recorded from (same task):
  the scene a seed draws would then be one the policy has memorized. ``check_seed_overlap`` reads
  the seeds from the run's ``split.json`` (or the dataset's metadata) and refuses.
* Success is reported at the end of the episode (this benchmark's headline rule), at any step,
  and by the original ACT code's lenient rule (any step, the giving gripper need not have let go:
  ``success_lenient``), so numbers can be compared with either; records carry the task version
  whose rules scored them.
* Episode ``i`` depends only on its seed: the env is reset from ``seed + i``, the policy is reset
  and runs at z = 0 without dropout, and every process runs torch with the same thread count, so
  ``workers=W`` gives the records a serial run gives (tested).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from aloha_bench import embodiment, envs, keys
from aloha_bench.data.video import FRAME_STRIDE, VIDEO_FPS, labeled_frame, stage_text
from aloha_bench.policies.act.config import POLICY_NAME
from aloha_bench.policies.chunking import (
    ChunkExecutor,
    ExecutionConfig,
    SimClock,
    SimulatedInference,
    ThreadedInference,
    WallClock,
    seam_smoothness,
)
from aloha_bench.rollout import EpisodeRecord
from aloha_bench.stats import wilson_interval

EXECUTION_KEYS = ("mode", "smoothing", "blend_steps", "inference_delay_s")
EVAL_SEED_OFFSET = 1000  # LeRobot's convention: evaluation episode i uses seed 1000 + i
RECORDS_FILE = "records.jsonl"
SUMMARY_FILE = "summary.json"
TABLE_FILE = "table.md"
VIDEO_DIR = "videos"


class SeedOverlapError(ValueError):
    """Evaluation seeds include seeds the policy's training demonstrations were recorded from."""


class TaskMismatchError(ValueError):
    """The policy was trained on another task, or reads observations the env does not give."""


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """One policy on one task under one set of conditions.

    Attributes:
        run: run folder written by ``aloha-bench train`` (or a checkpoint folder).
        task: task id.
        episodes: number of episodes; episode ``i`` uses seed ``seed + i``.
        seed: first evaluation seed.
        label: the policy's name in records and tables (default: the run folder's name).
        backend: ``"sim"`` or ``"real"``.
        robot_config: ``rig.toml`` for the real backend.
        max_steps: cut episodes short (default: the task's length).
        randomize: domain randomization: a level name or ``{"level": ..., factor: value}``.
        latency: timing and servo model: a level name or ``{"level": ..., field: value}``.
        policy_overrides: execution settings of the policy, e.g.
            ``{"temporal_ensemble_coeff": 0.01, "n_action_steps": 1}``.
        videos: render the first this many episodes to mp4 (sim only).
        video_dir: where videos go (required when ``videos`` > 0).
        threads: torch threads in every process that runs episodes (the same in serial and
            parallel runs, which keeps their floating point, hence their records, identical).
        check_seeds: refuse seeds the training demos used (see ``check_seed_overlap``).
        allow_other_task: evaluate a run trained on another task (a deliberate transfer test,
            recorded as ``trained_task`` in every record); refused otherwise.
        env_kwargs: more arguments for the env (e.g. the real rig's ``capture_factory``).
        runtime: ``"torch"`` or ``"onnx"`` (``policies.load``'s runtime).
        execution: how chunks are played (``policies.chunking``): ``mode`` (``"sync"`` or
            ``"async"``), ``smoothing`` (``"none"`` or ``"blend"``), ``blend_steps`` and
            ``inference_delay_s`` (simulated compute time in sim; on the rig, added to the real
            one). Empty: the policy's own sync execution, as the paper ran it.
    """

    run: str
    task: str
    episodes: int
    seed: int = EVAL_SEED_OFFSET
    label: str = ""
    backend: str = "sim"
    robot_config: str | None = None
    max_steps: int | None = None
    randomize: str | Mapping[str, Any] = "none"
    latency: str | Mapping[str, Any] = "none"
    policy_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    videos: int = 0
    video_dir: str | None = None
    threads: int = 1
    check_seeds: bool = True
    allow_other_task: bool = False
    env_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    runtime: str = "torch"
    execution: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1 (or None), got {self.max_steps}")
        if self.episodes <= 0:
            raise ValueError(f"episodes must be positive, got {self.episodes}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.videos < 0:
            raise ValueError(f"videos must be >= 0, got {self.videos}")
        if self.videos and self.video_dir is None:
            raise ValueError("videos > 0 needs video_dir (where the mp4 files go)")
        if self.videos and self.backend != "sim":
            raise ValueError("rollout videos are rendered by the simulator: use --backend sim")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        unknown = set(self.execution) - set(EXECUTION_KEYS)
        if unknown:
            raise ValueError(
                f"unknown execution settings {sorted(unknown)}; known {EXECUTION_KEYS}"
            )

    @property
    def name(self) -> str:
        return self.label or Path(self.run).name


# ---------------------------------------------------------------------------------------------
# Seeds


def training_seeds(run_dir: str | Path) -> tuple[str, set[int]]:
    """(task, seeds) of the demonstrations a run was trained and validated on.

    Read from the run's ``split.json`` (``train`` records them), else from the metadata of the
    dataset it names.

    Raises:
        FileNotFoundError: neither the run nor its dataset says which seeds were used.
    """
    from aloha_bench.policies import checkpoint_dir

    run_dir = Path(run_dir)
    candidates = [run_dir / "split.json", checkpoint_dir(run_dir).parent / "split.json"]
    split_file = next((p for p in candidates if p.is_file()), None)
    if split_file is None:
        raise FileNotFoundError(
            f"{run_dir}: no split.json, so the training demos' seeds are unknown; evaluate a run "
            "folder written by `aloha-bench train`, or pass --no-seed-check if you know the "
            "seeds are disjoint"
        )
    split = json.loads(split_file.read_text())
    if "demo_seeds" in split and "task" in split:
        return split["task"], {int(s) for s in split["demo_seeds"]}
    from aloha_bench.data.store import EpisodeStore

    dataset = Path(split["dataset"])
    if not dataset.exists():
        raise FileNotFoundError(
            f"{split_file} names dataset {dataset}, which is gone, and records no demo seeds; "
            "restore the dataset or pass --no-seed-check if you know the seeds are disjoint"
        )
    store = EpisodeStore.open(dataset)
    seeds = {int(store.episode_meta(i)["seed"]) for i in range(store.n_episodes)}
    return str(store.attrs.get("task_id", "")), seeds


def _split_file(run_dir: Path) -> Path | None:
    from aloha_bench.policies import checkpoint_dir

    candidates = [run_dir / "split.json", checkpoint_dir(run_dir).parent / "split.json"]
    return next((p for p in candidates if p.is_file()), None)


def training_task(run_dir: str | Path) -> str | None:
    """The task a run's demonstrations came from (its ``split.json``); None when unrecorded."""
    split_file = _split_file(Path(run_dir))
    if split_file is None:
        return None
    try:
        return json.loads(split_file.read_text()).get("task") or None
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{split_file} is not valid JSON ({err.msg}); restore it from the run that wrote it"
        ) from None


def check_task(settings: EvalSettings) -> str | None:
    """Refuse to evaluate a run trained on another task unless ``settings.allow_other_task``.

    A pixel policy would run silently on any scene and its number would look like a result.

    Returns:
        The run's training task (None when the run does not record it).

    Raises:
        TaskMismatchError: trained on another task, without ``allow_other_task``.
    """
    trained = training_task(settings.run)
    if trained is not None and trained != settings.task and not settings.allow_other_task:
        raise TaskMismatchError(
            f"{settings.run} was trained on task {trained!r}, not {settings.task!r}; evaluate "
            f"it with --task {trained}, or pass --allow-other-task for a deliberate transfer "
            "test (recorded in the results)"
        )
    return trained


def check_observation_shapes(run: str, policy, observation_space) -> None:
    """Refuse an env whose observations do not have the shapes the policy was trained on.

    Raises:
        TaskMismatchError: a key the policy reads is missing or has another shape (state mode:
            another task's props give another ``observation.environment_state`` width).
    """
    # Both runtimes (torch's ACTPolicy, ONNX Runtime's OnnxPolicy) report their input shapes.
    shapes = policy.input_shapes()
    for key in policy.config.input_keys:
        expected = shapes[key]
        space = observation_space.spaces.get(key)
        if space is None or tuple(space.shape) != expected:
            got = "no such key" if space is None else f"shape {tuple(space.shape)}"
            raise TaskMismatchError(
                f"{run} reads {key} of shape {expected}, but this env gives {got}: the policy "
                "was trained on another task or observation layout and cannot run here; "
                "evaluate it on the task it was trained on"
            )


def check_seed_overlap(run_dir: str | Path, task: str, seeds: Sequence[int]) -> None:
    """Raise ``SeedOverlapError`` if ``seeds`` include a training demo's seed of ``task``.

    A run trained on another task shares no scenes with ``task``, so its seeds never clash.
    """
    demo_task, demo_seeds = training_seeds(run_dir)
    if demo_task and demo_task != task:
        return
    clash = sorted(demo_seeds.intersection(seeds))
    if clash:
        first_free = max(demo_seeds) + 1
        raise SeedOverlapError(
            f"{run_dir}: evaluation seeds {clash[:5]}{'...' if len(clash) > 5 else ''} "
            f"({len(clash)} of {len(seeds)}) were used to record its training demos of {task}; "
            f"evaluate on unseen scenes with --seed {max(first_free, EVAL_SEED_OFFSET)}"
        )


# ---------------------------------------------------------------------------------------------
# Episodes


# What a record keeps of the policy's configuration (enough to group results by).
POLICY_KEYS = (
    "policy",
    "obs_mode",
    "cameras",
    "chunk_size",
    "n_action_steps",
    "use_vae",
    "kl_weight",
    "temporal_ensemble_coeff",
    # > 0: trained with the auxiliary object-pose loss, an extension beyond the paper's ACT
    "aux_state_weight",
)


def _policy_summary(config) -> dict[str, Any]:
    """The ``POLICY_KEYS`` of a policy's configuration."""
    return {
        "policy": POLICY_NAME,
        "obs_mode": config.obs_mode,
        "cameras": list(config.cameras) if config.obs_mode == "pixels" else [],
        "chunk_size": config.chunk_size,
        "n_action_steps": config.n_action_steps,
        "use_vae": config.use_vae,
        "kl_weight": config.kl_weight,
        "temporal_ensemble_coeff": config.temporal_ensemble_coeff,
        "aux_state_weight": config.aux_state_weight,
    }


class EpisodeRunner:
    """A policy and an env, built once per process, that play episodes by index.

    The policy is loaded before the env creates its GL context: triton's LLVM (loaded with torch)
    crashes when Mesa's is already in the process.
    """

    def __init__(self, settings: EvalSettings) -> None:
        import torch

        from aloha_bench import policies
        from aloha_bench.backends import make_env

        torch.set_num_threads(settings.threads)
        self.settings = settings
        self.policy = policies.load(
            settings.run,
            overrides=dict(settings.policy_overrides),
            runtime=settings.runtime,
            threads=settings.threads,
        )
        config = self.policy.config
        self.executor, self.clock = _make_executor(self.policy, settings)
        pixels = config.obs_mode == "pixels"
        self.spec = envs.load_task_spec(settings.task)
        self.limit = settings.max_steps or self.spec.episode_steps
        kwargs: dict[str, Any] = dict(settings.env_kwargs)
        if settings.backend == "real":
            kwargs["max_episode_steps"] = self.limit
        else:
            kwargs["randomize"] = settings.randomize
            kwargs["latency"] = settings.latency
            if settings.videos:
                kwargs["render_mode"] = "rgb_array"
        self.env = make_env(
            settings.task,
            backend=settings.backend,
            robot_config=settings.robot_config,
            obs_mode=config.obs_mode,
            cameras=list(config.cameras) if pixels else None,
            image_size=tuple(config.image_size),
            **kwargs,
        )
        self.policy_info = _policy_summary(config)
        check_observation_shapes(settings.run, self.policy, self.env.observation_space)
        self.trained_task = training_task(settings.run)

    def run(self, index: int) -> dict[str, Any]:
        """Play episode ``index`` (seed ``settings.seed + index``) and return its record."""
        settings = self.settings
        seed = settings.seed + index
        filming = index < settings.videos
        frames: list[np.ndarray] = []
        obs, info = self.env.reset(seed=seed)
        self.executor.reset()
        truncated, steps, total = False, 0, 0.0
        sent, measured = [], []
        while not truncated and steps < self.limit:
            action = self.executor.act(obs)
            sent.append(action)
            measured.append(obs[keys.STATE])
            obs, reward, _, truncated, info = self.env.step(action)
            if isinstance(self.clock, SimClock):
                self.clock.advance(embodiment.CONTROL_DT_S)
            total += float(reward)
            steps += 1
            if filming and steps % FRAME_STRIDE == 0:
                frames.append(self._labeled(self.env.render(), seed, steps, info))
        reached = EpisodeRecord.from_info(seed, info, len(self.spec.stage_names), steps, {})
        record: dict[str, Any] = {
            "run": str(settings.run),
            "label": settings.name,
            "task": self.spec.task_id,
            "task_version": self.spec.version,
            "episode": index,
            **{k: v for k, v in dataclasses.asdict(reached).items() if k != "style"},
            "stage_names": list(self.spec.stage_names),
            "return": total,
            "backend": settings.backend,
            "randomize": settings.randomize,
            "latency": settings.latency,
            **self.policy_info,
            "runtime": settings.runtime,
            # The precision the products ran in (an ONNX graph is fp32; a bf16 policy computes in
            # fp32 where bf16 is not native), so a figure is never read as bf16 that was not.
            "precision": getattr(self.policy, "precision", "fp32"),
            # An ONNX export's quantization changes actions: results must say which graph ran.
            "onnx_quantize": getattr(self.policy, "info", {}).get("quantize", "none")
            if settings.runtime == "onnx"
            else None,
            "execution": _execution_summary(self.executor, settings),
            "chunking": self.executor.summary(),
            "seams": seam_smoothness(np.array(sent), self.executor.switch_ticks),
            "seams_joint": seam_smoothness(np.array(measured), self.executor.switch_ticks),
            "trained_task": self.trained_task,
            "video": None,
        }
        if filming:
            record["video"] = str(self._write_video(frames, record))
        return record

    def _labeled(self, frame: np.ndarray, seed: int, step: int, info: Mapping) -> np.ndarray:
        panels = np.split(frame, len(keys.CAMERAS), axis=1)  # render()'s camera order
        caption = f"{self.settings.name} on {self.spec.task_id} seed {seed}  step {step}  "
        return labeled_frame(
            panels, keys.CAMERAS, caption + stage_text(info["stage"], self.spec.stage_names)
        )

    def _write_video(self, frames: list[np.ndarray], record: Mapping[str, Any]) -> Path:
        import imageio.v2 as imageio

        outcome = "success" if record["success_end"] else "failure"
        directory = Path(self.settings.video_dir)  # type: ignore[arg-type]
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{record['label']}_{record['task']}_seed{record['seed']}_{outcome}.mp4"
        with imageio.get_writer(path, fps=VIDEO_FPS, macro_block_size=1) as writer:
            for frame in frames:
                writer.append_data(frame)
        return path

    def close(self) -> None:
        self.executor.close()
        self.env.close()


def _make_executor(policy: Any, settings: EvalSettings) -> tuple[ChunkExecutor, Any]:
    """The chunk executor of an evaluation: simulated time and an injected inference delay in
    the simulator (deterministic on any machine); wall time and a background inference thread
    on the real rig."""
    execution = dict(settings.execution)
    delay_s = float(execution.pop("inference_delay_s", 0.0))
    if settings.backend == "sim":
        clock: Any = SimClock()
        inference: Any = SimulatedInference(policy.predict_chunk, delay_s)
    else:
        clock = WallClock()
        inference = ThreadedInference(policy.predict_chunk, clock, extra_delay_s=delay_s)
        execution.setdefault("margin_steps", 1)  # wall-clock jitter
    config = ExecutionConfig.from_policy_config(policy.config, **execution)
    return ChunkExecutor(policy.predict_chunk, config, clock, inference), clock


def _check_execution(settings: EvalSettings) -> None:
    """Raise ``ValueError`` now if the policy cannot be played as ``settings.execution`` asks."""
    from aloha_bench.policies import checkpoint_dir
    from aloha_bench.policies.act.config import ACTConfig
    from aloha_bench.policies.act.policy import CONFIG_FILE

    config = ACTConfig.load_json(checkpoint_dir(settings.run) / CONFIG_FILE)
    n_action_steps = settings.policy_overrides.get("n_action_steps")
    if n_action_steps is not None and not 1 <= n_action_steps <= config.chunk_size:
        # Named by the flag that sets it: the config field does not tell a user what to change.
        raise ValueError(
            f"n_action_steps (eval --n-action-steps) = {n_action_steps}: run {settings.run} "
            f"predicts chunks of {config.chunk_size} actions; give 1..{config.chunk_size}"
        )
    config = dataclasses.replace(config, **dict(settings.policy_overrides))
    execution = {k: v for k, v in settings.execution.items() if k != "inference_delay_s"}
    ExecutionConfig.from_policy_config(config, **execution)
    delay_s = settings.execution.get("inference_delay_s", 0.0)
    if not 0.0 <= delay_s <= 10.0:
        raise ValueError(f"inference delay must be in [0, 10000] ms, got {1e3 * delay_s:g}")


def _execution_summary(executor: ChunkExecutor, settings: EvalSettings) -> dict[str, Any]:
    config = executor.config
    return {
        "mode": config.mode,
        "smoothing": config.smoothing,
        "blend_steps": config.blend_steps if config.smoothing == "blend" else 0,
        "n_action_steps": config.n_action_steps,
        "inference_delay_ms": 1e3 * float(settings.execution.get("inference_delay_s", 0.0)),
    }


# One runner per worker process: renderers and policies do not cross processes, so each (spawned)
# worker builds its own. Only worker processes set this.
_WORKER_RUNNER: EpisodeRunner | None = None


def _init_worker(settings: EvalSettings) -> None:
    global _WORKER_RUNNER
    os.environ.setdefault("MUJOCO_GL", "egl")
    _WORKER_RUNNER = EpisodeRunner(settings)


def _run_in_worker(index: int) -> dict[str, Any]:
    assert _WORKER_RUNNER is not None, "worker used before _init_worker"
    return _WORKER_RUNNER.run(index)


def evaluate(
    settings: EvalSettings,
    workers: int = 1,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Roll out ``settings.run`` for ``settings.episodes`` episodes; records in episode order.

    Args:
        settings: what to evaluate and how.
        workers: processes running episodes in parallel (spawned, each with its own renderer);
            the records equal a serial run's.
        progress: called with each record as its episode finishes (in completion order).

    Raises:
        SeedOverlapError: the seeds include training demo seeds (``settings.check_seeds``).
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if settings.backend == "real" and workers > 1:
        raise ValueError("one real rig runs one episode at a time: use --workers 1")
    envs.load_task_spec(settings.task)  # an unknown task fails before anything loads
    _check_execution(settings)  # a bad --async combination fails before workers start
    check_task(settings)
    if settings.check_seeds and settings.backend == "sim":
        seeds = range(settings.seed, settings.seed + settings.episodes)
        check_seed_overlap(settings.run, settings.task, list(seeds))
    records: list[dict[str, Any]] = []
    if workers == 1:
        runner = EpisodeRunner(settings)
        try:
            for index in range(settings.episodes):
                records.append(runner.run(index))
                if progress is not None:
                    progress(records[-1])
        finally:
            runner.close()
        return records
    # spawn, never fork: a process forked after a GL context exists hangs (SIM_NOTES.md).
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        min(workers, settings.episodes),
        mp_context=context,
        initializer=_init_worker,
        initargs=(settings,),
    ) as pool:
        futures = [pool.submit(_run_in_worker, i) for i in range(settings.episodes)]
        for future in as_completed(futures):
            record = future.result()
            records.append(record)
            if progress is not None:
                progress(record)
    return sorted(records, key=lambda r: r["episode"])


# ---------------------------------------------------------------------------------------------
# Summaries


def _rate(successes: int, trials: int) -> dict[str, float]:
    low, high = wilson_interval(successes, trials)
    return {"rate": successes / trials, "ci_low": low, "ci_high": high}


def summarize(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Rates of one policy on one task: end-of-episode and any-step success with Wilson 95%
    intervals, the fraction of episodes that reached each stage, mean length and return.

    Raises:
        ValueError: no records, or records of more than one (label, task).
    """
    if not records:
        raise ValueError("no episode records to summarize")
    keys = {(r["label"], r["task"]) for r in records}
    if len(keys) != 1:
        raise ValueError(f"records of several (policy, task) pairs: {sorted(keys)}; split them")
    first = records[0]
    n = len(records)
    end = sum(bool(r["success_end"]) for r in records)
    any_step = sum(bool(r["success_any"]) for r in records)
    # Records written before the lenient rule existed lack it: unknown, not zero.
    lenient = (
        sum(bool(r["success_lenient"]) for r in records)
        if all("success_lenient" in r for r in records)
        else None
    )
    stages = {}
    for i, name in enumerate(first["stage_names"], start=1):
        reached = sum(int(r["max_stage"]) >= i for r in records)
        stages[name] = {"reached": reached, **_rate(reached, n)}
    success = _rate(end, n)
    success_any = _rate(any_step, n)
    nan = {"rate": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")}
    success_lenient = nan if lenient is None else _rate(lenient, n)
    return {
        "label": first["label"],
        "run": first["run"],
        "task": first["task"],
        "episodes": n,
        "seeds": [min(r["seed"] for r in records), max(r["seed"] for r in records)],
        "successes": end,
        "success_rate": success["rate"],
        "ci_low": success["ci_low"],
        "ci_high": success["ci_high"],
        "successes_any": any_step,
        "success_rate_any": success_any["rate"],
        "ci_low_any": success_any["ci_low"],
        "ci_high_any": success_any["ci_high"],
        "successes_lenient": lenient,
        "success_rate_lenient": success_lenient["rate"],
        "ci_low_lenient": success_lenient["ci_low"],
        "ci_high_lenient": success_lenient["ci_high"],
        "task_version": first.get("task_version"),
        "stage_names": list(first["stage_names"]),
        "stages": stages,
        "mean_steps": float(np.mean([r["steps"] for r in records])),
        "mean_return": float(np.mean([r["return"] for r in records])),
        "randomize": first.get("randomize", "none"),
        "latency": first.get("latency", "none"),
        "trained_task": first.get("trained_task"),
        **{k: first[k] for k in POLICY_KEYS if k in first},
        **_seam_summary(records),
    }


def _seam_summary(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Execution settings and seam figures averaged over episodes (records that have them)."""
    if "seams" not in records[0]:
        return {}
    out: dict[str, Any] = {
        "runtime": records[0].get("runtime", "torch"),
        "precision": records[0].get("precision"),
        "onnx_quantize": records[0].get("onnx_quantize"),
        "execution": records[0]["execution"],
        "stall_ticks_mean": float(np.mean([r["chunking"]["stall_ticks"] for r in records])),
        "skipped_mean": float(np.mean([r["chunking"]["skipped_mean"] for r in records])),
    }
    for source in ("seams", "seams_joint"):
        for key in ("seam_accel_mean", "seam_jump_mean", "interior_accel_p99"):
            values = [r[source][key] for r in records if r[source][key] is not None]
            out[f"{source}_{key}"] = float(np.mean(values)) if values else None
    return out


def _pct(rate: float, low: float, high: float) -> str:
    if not np.isfinite(rate):
        return "—"
    return f"{100 * rate:.0f}% [{100 * low:.0f}, {100 * high:.0f}]"


def how_it_ran(summary: Mapping[str, Any]) -> str:
    """The execution a summary's rates belong to, in words: chunk size and actions played per
    chunk (or temporal ensembling), sync or async chunks and their smoothing, runtime and its
    precision or an ONNX graph's quantization. Empty for a summary without these keys."""
    if "chunk_size" not in summary:
        return ""
    coeff = summary.get("temporal_ensemble_coeff")
    parts = [
        f"K = {summary['chunk_size']}, "
        + (
            f"temporal ensembling (m = {coeff:g})"
            if coeff is not None
            else f"{summary['n_action_steps']} actions per chunk"
        )
    ]
    execution = summary.get("execution") or {}
    if execution.get("mode"):
        smoothing = execution.get("smoothing", "none")
        parts.append(execution["mode"] + ("" if smoothing == "none" else f" + {smoothing}"))
    if summary.get("runtime"):
        quantize = summary.get("onnx_quantize")
        precision = summary.get("precision")
        parts.append(
            summary["runtime"]
            + (f" {precision}" if precision and quantize in (None, "none") else "")
            + ("" if quantize in (None, "none") else f" ({quantize})")
        )
    return ", ".join(parts)


def summary_table(summaries: Sequence[Mapping[str, Any]]) -> str:
    """A markdown table: one row per (policy, task), rates with Wilson 95% intervals."""
    lines = [
        "| policy | task | episodes | success (end) | success (any step) "
        "| success (ACT code's rule) | stages reached | mean steps | mean return |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        stages = " / ".join(
            f"{name} {_pct(v['rate'], v['ci_low'], v['ci_high'])}"
            for name, v in s["stages"].items()
        )
        lines.append(
            f"| {s['label']} | {s['task']} | {s['episodes']} "
            f"| {_pct(s['success_rate'], s['ci_low'], s['ci_high'])} "
            f"| {_pct(s['success_rate_any'], s['ci_low_any'], s['ci_high_any'])} "
            f"| {_pct(s['success_rate_lenient'], s['ci_low_lenient'], s['ci_high_lenient'])} "
            f"| {stages} | {s['mean_steps']:.0f} | {s['mean_return']:.0f} |"
        )
    lines.append("")
    ran = [f"{s['label']}: {how_it_ran(s)}" for s in summaries if how_it_ran(s)]
    if ran:
        lines.append("How each policy ran: " + "; ".join(ran) + ".")
        lines.append("")
    lines.append(
        "Intervals: Wilson 95%. 'end': the final stage holds at the last step; 'any step': "
        "it held at some step; 'ACT code's rule': the final stage without its let-go checks held "
        "at some step (a hand-off counted while the giving gripper still holds), as the original "
        "ACT code scored success; compare the paper's figures with that column."
    )
    return "\n".join(lines) + "\n"


def write_outputs(
    out_dir: str | Path,
    records: Sequence[Mapping[str, Any]],
    summaries: Sequence[Mapping[str, Any]],
) -> dict[str, Path]:
    """Write ``records.jsonl`` (one line per episode), ``summary.json`` and ``table.md``.

    Files are written to a temporary name and renamed, so an interrupted write never leaves a
    half file in place of a finished one.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "records": out / RECORDS_FILE,
        "summary": out / SUMMARY_FILE,
        "table": out / TABLE_FILE,
    }
    texts = {
        "records": "".join(json.dumps(r, sort_keys=True) + "\n" for r in records),
        "summary": json.dumps(list(summaries), indent=2) + "\n",
        "table": summary_table(summaries),
    }
    for key, path in paths.items():
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(texts[key])
        tmp.replace(path)
    return paths


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Records from a ``records.jsonl``; a malformed line raises naming the file and line."""
    path = Path(path)
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{path}:{number}: not a JSON record ({error.msg}); the file is damaged, "
                "re-run the evaluation that wrote it"
            ) from error
    return records
