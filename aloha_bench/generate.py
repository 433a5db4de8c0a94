"""Demonstration generation (L4): run a source of demos in the simulator, write a Zarr store.

Sources: ``scripted`` (the task's expert in its default style) and ``human`` (the operator model
of ``experts/human.py``: several strategies, pace, hesitations, lag, noise, leader smoothing).

Seeds: attempt ``k`` of a run uses seed ``seed + k``; attempts run in seed order and the first
``episodes`` successes are kept (failures too with ``keep_failed``). Workers compute attempts in
parallel but results are accepted in seed order, so ``workers=W`` writes exactly the dataset a
serial run writes. A store that already exists is continued from the seed after its last episode,
only if every setting that defines the data is the same (the store refuses others, naming them).

Every argument is checked, and the env built once, before the store is created; a run that ends
without a single episode (an error, Ctrl-C) removes the store it created, so a corrected rerun is
never blocked by an empty store that looks valid. The store's writer lock is held throughout.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from aloha_bench import __version__, envs, keys
from aloha_bench.data.store import EpisodeStore
from aloha_bench.envs.latency import LatencyConfig
from aloha_bench.experts import expert_class, expert_version, make_expert
from aloha_bench.experts.base import strategy_of, style_from
from aloha_bench.experts.human import HumanOperator, HumanOperatorConfig
from aloha_bench.sim.randomize import RandomizationConfig

SOURCES = ("scripted", "human")
# Seeds are stored per episode as int64 and fed to numpy and Gymnasium; 32 bits is the range
# every seeded tool in the pipeline accepts (numpy's legacy np.random.seed included).
MAX_SEED = 2**32 - 1


@dataclasses.dataclass(frozen=True)
class GenerateSettings:
    """What to record, shared by every episode of a run (and stored in the dataset).

    Attributes:
        task: task id.
        source: ``"scripted"`` or ``"human"``.
        obs_mode: ``"pixels"`` (images of ``cameras``) or ``"state"`` (no images).
        cameras: cameras to record in pixels mode; default: the task's.
        image_size: (height, width) of recorded images.
        human: the operator model's ranges (``source="human"``).
        randomize: domain randomization level (``none``, ``light``, ``strong``); each
            episode's draw is stored with its style.
        latency: timing and servo model (``none`` or ``real``).
        style: ``(field, value)`` pairs of the scripted expert's style (e.g.
            ``(("left_clearance_m", 0.005),)``); empty: the default style.
    """

    task: str
    source: str = "scripted"
    obs_mode: str = "pixels"
    cameras: tuple[str, ...] | None = None
    image_size: tuple[int, int] = (96, 128)
    human: HumanOperatorConfig = HumanOperatorConfig()
    randomize: str = "none"
    latency: str = "none"
    style: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(
                f"unknown source {self.source!r}; expected one of {SOURCES} (teleop: "
                "`aloha-bench teleop`)"
            )
        envs.load_task_spec(self.task)  # unknown task: the error lists the valid ones
        if self.style:
            if self.source != "scripted":
                raise ValueError("style fields set the scripted expert's; use --source scripted")
            # Unknown fields or values out of range fail here, naming the valid ones.
            style_from(expert_class(self.task).style_cls, dict(self.style))
        if self.cameras is not None:
            object.__setattr__(self, "cameras", keys.camera_names(self.cameras))
        object.__setattr__(self, "image_size", keys.image_size(self.image_size))
        if not isinstance(self.human, HumanOperatorConfig):
            raise TypeError(f"human must be a HumanOperatorConfig, got {self.human!r}")
        RandomizationConfig.resolve(self.randomize)  # unknown level: the error lists them
        LatencyConfig.resolve(self.latency)


@dataclasses.dataclass
class Episode:
    """One recorded attempt: per-step arrays and per-episode metadata (store format)."""

    seed: int
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]

    @property
    def success(self) -> bool:
        return bool(self.meta["success"])


class EpisodeRecorder:
    """Records attempts of one ``GenerateSettings`` in one env (one per process)."""

    def __init__(self, settings: GenerateSettings) -> None:
        self.settings = settings
        self.env = envs.make(
            settings.task,
            obs_mode=settings.obs_mode,
            cameras=list(settings.cameras) if settings.cameras else None,
            image_size=settings.image_size,
            randomize=settings.randomize,
            latency=settings.latency,
        )

    def record(self, seed: int) -> Episode:
        """Play one episode from ``seed`` and return everything the store keeps of it."""
        env, sim, st = self.env, self.env.unwrapped, self.settings
        obs, info = env.reset(seed=seed)
        rng = np.random.default_rng(seed)
        if st.source == "human":
            agent = HumanOperator(sim.task.task_id, st.human, rng)
            style = dataclasses.asdict(agent.expert.style)
            style["operator"] = dataclasses.asdict(agent.traits)
            strategy = agent.strategy
        else:
            agent = make_expert(sim.task.task_id, dict(st.style) or "default")
            style = dataclasses.asdict(agent.style)
            strategy = strategy_of(agent.style)
        if "randomization" in info:
            style["randomization"] = info["randomization"]
        agent.reset(sim)
        steps: dict[str, list[np.ndarray]] = {}
        truncated = False
        while not truncated:
            action = np.asarray(agent.act(sim), dtype=np.float32)
            row = {key: value for key, value in obs.items() if key != keys.ENVIRONMENT_STATE}
            row[keys.ENVIRONMENT_STATE] = info[keys.ENVIRONMENT_STATE]
            row[keys.ACTION] = action
            for key, value in row.items():
                steps.setdefault(key, []).append(value)
            obs, _, _, truncated, info = env.step(action)
        arrays = {key: np.stack(values) for key, values in steps.items()}
        meta = {
            "seed": seed,
            "success": bool(info["is_success"]),
            "max_stage": int(info["max_stage"]),
            "source": st.source,
            "strategy": strategy,
            "style": style,
        }
        return Episode(seed=seed, arrays=arrays, meta=meta)

    def close(self) -> None:
        self.env.close()


# One recorder per worker process: a renderer cannot cross processes, so each worker builds its
# own env, lazily, after the (spawn) start. Only worker processes ever set this.
_WORKER_RECORDER: EpisodeRecorder | None = None


def _init_worker(settings: GenerateSettings) -> None:
    global _WORKER_RECORDER
    _WORKER_RECORDER = EpisodeRecorder(settings)


def _record_in_worker(seed: int) -> Episode:
    assert _WORKER_RECORDER is not None, "worker used before _init_worker"
    return _WORKER_RECORDER.record(seed)


def _attempts(
    settings: GenerateSettings, first_seed: int, workers: int, recorder: EpisodeRecorder
) -> Iterator[Episode]:
    """Episodes for seeds first_seed, first_seed + 1, ... in seed order (endless).

    ``recorder`` (built by the caller, which closes it) records serially with one worker.
    """
    if workers <= 1:
        seed = first_seed
        while True:
            yield recorder.record(seed)
            seed += 1
    recorder.close()  # the workers build their own; free its memory
    # spawn, never fork: a process forked after a GL context exists hangs (SIM_NOTES.md).
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(settings,)
    ) as pool:
        seed = first_seed
        while True:
            batch = range(seed, seed + 2 * workers)
            yield from pool.map(_record_in_worker, batch)
            seed += len(batch)


def generator_attrs(settings: GenerateSettings, seed: int, keep_failed: bool) -> dict[str, Any]:
    """The run's settings as stored in the dataset's ``generator`` attribute."""
    attrs: dict[str, Any] = {
        "source": settings.source,
        "first_seed": seed,
        "keep_failed": keep_failed,
        "randomize": settings.randomize,
        "latency": settings.latency,
        "aloha_bench_version": __version__,
    }
    if settings.source == "human":
        attrs["human_operator"] = dataclasses.asdict(settings.human)
    else:
        attrs["expert_style"] = dict(settings.style) if settings.style else "default"
        attrs["expert_version"] = expert_version(settings.task)
    return attrs


def generate(
    settings: GenerateSettings,
    out: str | Path,
    episodes: int,
    seed: int = 0,
    workers: int = 1,
    keep_failed: bool = False,
    progress: Callable[[Episode, int, int], None] | None = None,
) -> EpisodeStore:
    """Record ``episodes`` demonstrations of ``settings`` into the Zarr store at ``out``.

    Args:
        settings: task, source, observation mode, cameras, image size, operator model.
        out: store path (``.zarr``); an existing compatible store is continued.
        episodes: episodes the store should hold at the end (successes, unless ``keep_failed``).
        seed: seed of the first attempt of a new store.
        workers: processes recording in parallel (same dataset as 1).
        keep_failed: keep failed attempts too (their ``episode_success`` is False).
        progress: called after each attempt with (episode, kept so far, attempts so far).

    Returns:
        The store, open for reading (the writer lock is released).

    Raises:
        ValueError: a bad argument (checked before anything is written), or an existing store
            written with other settings (the message names the setting and both values).
        StoreLockedError: another process is writing to ``out``.
    """
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes <= 0:
        raise ValueError(f"episodes must be a positive integer, got {episodes!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be an integer in 0..{MAX_SEED}, got {seed!r}")
    spec = envs.load_task_spec(settings.task)
    cameras = tuple(settings.cameras or spec.cameras)
    pixels = settings.obs_mode == "pixels"
    settings = dataclasses.replace(settings, cameras=cameras)
    # Building the env checks cameras, image size, obs mode, randomization and latency with the
    # env's own messages, before the store exists.
    recorder = EpisodeRecorder(settings)
    try:
        store = EpisodeStore.create(
            out,
            task_id=spec.task_id,
            task_version=spec.version,
            obs_mode=settings.obs_mode,
            cameras=cameras if pixels else (),
            image_size=settings.image_size if pixels else None,
            generator=generator_attrs(settings, seed, keep_failed),
            resume=True,
        )
    except BaseException:
        recorder.close()
        raise
    try:
        kept = store.n_episodes
        if kept:
            # Continue after the last recorded seed: failures in between were dropped and would
            # fail again (episodes are deterministic in their seed), so this equals an
            # uninterrupted run.
            seed = int(max(store.episode_meta(i)["seed"] for i in range(kept))) + 1
        attempts = 0
        if kept >= episodes:
            return store
        for episode in _attempts(settings, seed, workers, recorder):
            attempts += 1
            if episode.success or keep_failed:
                store.append_episode(episode.arrays, _store_meta(episode.meta))
                kept += 1
            if progress is not None:
                progress(episode, kept, attempts)
            if kept >= episodes:
                break
    finally:
        recorder.close()
        store.close(remove_if_empty=True)
    return store


def _store_meta(meta: dict[str, Any]) -> dict[str, Any]:
    # The style (with the operator's draw) is stored as JSON text; numpy values become floats.
    return {**meta, "style": json.loads(json.dumps(meta["style"], default=float))}
