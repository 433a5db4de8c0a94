"""Chunk execution: how a policy's action chunks become one action per control tick.

ACT predicts K actions at once (Zhao et al. 2023, sec. IV-B). How those chunks are played decides
whether the arm pauses while the next one is computed and whether it jerks where two chunks meet.
:class:`ChunkExecutor` is the one implementation of every way this project plays chunks; the
simulated evaluation, the real rig and ``ACTPolicy.select_action`` all go through it.

Modes (:class:`ExecutionConfig`):

* ``sync`` (the paper's and LeRobot's default): predict a chunk, play its first ``n_action_steps``
  actions, predict the next one. While it is computed the arm waits: on a wall clock the loop
  blocks; on a simulated clock the env steps on with the last action held, which is what a
  blocked loop does to the servos (they keep their last goal). The new chunk then plays from its
  first action.
* ``sync`` with ``temporal_ensemble_coeff`` (paper sec. IV-C): a chunk every tick, and the
  predictions of every stored chunk for the current time averaged (:class:`TemporalEnsembler`).
* ``async``: the next chunk is computed in the background from a fresh observation while the
  current one plays, and the loop never waits for one: before the first chunk arrives (or in a
  stall, when inference is slower than the lead it was given) the arm holds still. Index 0 of
  a chunk is the action for the time its observation was taken, so when it arrives the actions
  whose time has passed during inference are skipped and the chunk lines up with the clock. The
  next inference starts early enough, given the expected latency
  and the seam blend, that the new chunk takes over ``n_action_steps`` after the current one's
  observation: the re-planning period of ``sync``, without its stall.

Seam smoothing (``smoothing``; ``"none"`` by default, so the paper's baselines switch chunks
outright): ``"blend"`` crossfades from the outgoing stream to the incoming chunk over
``blend_steps`` ticks with a raised-cosine weight, both evaluated at the same time. Why this one:
a hard switch between two plans that disagree by D is a position step (acceleration ~ D / dt^2);
a linear crossfade over T ticks leaves a velocity step of D / (T dt) at each end (acceleration ~
D / (T dt^2)); the raised cosine's weight has zero slope at both ends, so the seam's extra
acceleration falls to ~ (pi^2 / 2) D / (T dt)^2. Temporal ensembling of the overlap (a weighted
average while both chunks exist) still snaps when the old chunk ends, and inpainting the new
chunk to agree with the old one (Black et al. 2025, real-time chunking) needs a flow-matching or
diffusion policy, which ACT is not.

Time comes from a :class:`Clock` passed in: :class:`SimClock` (simulated time, advanced by the
loop: one 20 ms control period per env step, plus an injected inference delay through
:class:`SimulatedInference`, so results are deterministic on any machine) or :class:`WallClock`
(the real rig, with :class:`ThreadedInference` computing chunks on a background thread).

Layer L2: numpy and the standard library only; never imports ``envs``, ``sim`` or ``robots``.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np

from aloha_bench import embodiment, keys

MODES = ("sync", "async")
SMOOTHING = ("none", "blend")
# Ticks of a chunk switch examined by the seam figures: 2 before, the switch, and 12 after (the
# default blend of 10 ticks plus 2), the same window for every method.
SEAM_WINDOW = (2, 12)
# Sim times are sums of control periods; comparisons allow for their rounding.
_EPS_S = 1e-9

Predict = Callable[[Mapping[str, np.ndarray]], np.ndarray]


# ------------------------------------------------------------------------------------------------
# Clocks
# ------------------------------------------------------------------------------------------------
class Clock(Protocol):
    """A source of time in seconds."""

    def now_s(self) -> float: ...


class SimClock:
    """Simulated time: the loop advances it by one control period per env step."""

    def __init__(self, start_s: float = 0.0) -> None:
        self._now_s = start_s

    def now_s(self) -> float:
        return self._now_s

    def advance(self, dt_s: float) -> None:
        """Let ``dt_s`` seconds of simulated time pass."""
        self._now_s += dt_s


class WallClock:
    """Real time (``time.perf_counter``), for the real rig."""

    def now_s(self) -> float:
        return time.perf_counter()


# ------------------------------------------------------------------------------------------------
# Inference backends
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Prediction:
    """A chunk (K, A) predicted from the observation taken at ``obs_time_s``."""

    chunk: np.ndarray
    obs_time_s: float
    latency_s: float


class Inference(Protocol):
    """Computes chunks for the executor, possibly in the background.

    ``blocking``: whether :meth:`wait` may block (a wall clock); a simulated clock cannot block,
    so the executor holds the last action for the tick instead.
    """

    blocking: bool

    @property
    def pending(self) -> bool: ...

    @property
    def expected_latency_s(self) -> float: ...

    def submit(self, obs: Mapping[str, np.ndarray], now_s: float) -> None: ...

    def poll(self, now_s: float) -> Prediction | None: ...

    def wait(self) -> Prediction: ...

    def close(self) -> None: ...


class SimulatedInference:
    """Inference in simulated time: the chunk is computed at once but is only available
    ``delay_s`` later, the compute time of a slower computer, injected.

    Deterministic: the result depends on the observation and the delay, never on how fast this
    machine is.

    Args:
        predict: observation -> chunk (K, A).
        delay_s: simulated inference time, seconds (>= 0).
    """

    blocking = False

    def __init__(self, predict: Predict, delay_s: float = 0.0) -> None:
        if not delay_s >= 0.0:
            raise ValueError(f"inference delay must be >= 0 s, got {delay_s}")
        self._predict = predict
        self.delay_s = float(delay_s)
        self._job: tuple[Prediction, float] | None = None

    @property
    def pending(self) -> bool:
        return self._job is not None

    @property
    def expected_latency_s(self) -> float:
        return self.delay_s

    def submit(self, obs: Mapping[str, np.ndarray], now_s: float) -> None:
        if self._job is not None:
            raise RuntimeError("an inference is already running; poll it first")
        chunk = np.asarray(self._predict(obs))
        self._job = (Prediction(chunk, now_s, self.delay_s), now_s + self.delay_s)

    def poll(self, now_s: float) -> Prediction | None:
        if self._job is None or now_s + _EPS_S < self._job[1]:
            return None
        prediction, self._job = self._job[0], None
        return prediction

    def wait(self) -> Prediction:
        raise RuntimeError("simulated time cannot block; step the env and poll again")

    def close(self) -> None:
        self._job = None


class ThreadedInference:
    """Inference on a background thread, timed by a wall clock (the real rig).

    torch and ONNX Runtime release the GIL while they compute, so the control loop keeps its
    50 Hz ticks while a chunk is predicted.

    Args:
        predict: observation -> chunk (K, A).
        clock: the clock latencies are measured with.
        extra_delay_s: sleep this long in the thread after predicting (a slower computer).
        history: latencies remembered for :attr:`expected_latency_s` (their maximum).
    """

    blocking = True

    def __init__(
        self,
        predict: Predict,
        clock: Clock | None = None,
        extra_delay_s: float = 0.0,
        history: int = 10,
    ) -> None:
        self._predict = predict
        self._clock = clock or WallClock()
        self.extra_delay_s = float(extra_delay_s)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chunk-inference")
        self._future: Future[Prediction] | None = None
        self._latencies_s: deque[float] = deque(maxlen=history)
        self._lock = threading.Lock()

    @property
    def pending(self) -> bool:
        return self._future is not None

    @property
    def expected_latency_s(self) -> float:
        with self._lock:
            return max(self._latencies_s, default=0.0)

    def _run(self, obs: Mapping[str, np.ndarray], now_s: float) -> Prediction:
        chunk = np.asarray(self._predict(obs))
        if self.extra_delay_s > 0:
            time.sleep(self.extra_delay_s)
        latency_s = self._clock.now_s() - now_s
        with self._lock:
            self._latencies_s.append(latency_s)
        return Prediction(chunk, now_s, latency_s)

    def submit(self, obs: Mapping[str, np.ndarray], now_s: float) -> None:
        if self._future is not None:
            raise RuntimeError("an inference is already running; poll it first")
        # The loop may reuse its observation buffers; the thread gets its own copy.
        frozen = {key: np.array(value, copy=True) for key, value in obs.items()}
        self._future = self._pool.submit(self._run, frozen, now_s)

    def poll(self, now_s: float) -> Prediction | None:
        if self._future is None or not self._future.done():
            return None
        return self.wait()

    def wait(self) -> Prediction:
        if self._future is None:
            raise RuntimeError("no inference is running")
        future, self._future = self._future, None
        return future.result()  # re-raises an exception of the policy here, in the loop

    def close(self) -> None:
        if self._future is not None:
            self._future.cancel()
            self._future = None
        self._pool.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------------------------------------
# Temporal ensembling
# ------------------------------------------------------------------------------------------------
class TemporalEnsembler:
    """The paper's temporal ensembling (sec. IV-C): average every prediction for the current step.

    A chunk predicted j steps ago predicts the current step at its index j. The predictions are
    averaged with weights exp(-m * i), where i = 0 is the OLDEST prediction (the original code's
    and LeRobot's convention): a small m weighs old and new almost alike, a larger m trusts the
    older predictions more.
    """

    def __init__(self, coeff: float, chunk_size: int) -> None:
        self.coeff = coeff
        self.chunk_size = chunk_size
        self._chunks: deque[list] = deque()  # [chunk (K, A), age in steps], oldest first

    def reset(self) -> None:
        self._chunks.clear()

    def update(self, chunk: np.ndarray, elapsed_steps: int = 1) -> np.ndarray:
        """Add the chunk (K, A) predicted now, ``elapsed_steps`` after the previous one; return
        the ensembled action (A,) for now."""
        for entry in self._chunks:
            entry[1] += elapsed_steps
        while self._chunks and self._chunks[0][1] >= self.chunk_size:
            self._chunks.popleft()
        self._chunks.append([chunk, 0])
        predictions = np.stack([c[age] for c, age in self._chunks])  # (n, A), oldest first
        weights = np.exp(-self.coeff * np.arange(len(self._chunks)))  # (n,)
        return (weights[:, None] * predictions).sum(axis=0) / weights.sum()


# ------------------------------------------------------------------------------------------------
# The executor
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ExecutionConfig:
    """How chunks are played.

    Attributes:
        chunk_size: K, actions per chunk.
        n_action_steps: ticks between the observations two successive chunks are predicted from
            (the execution horizon, 1..K): ``sync`` plays this many actions of each chunk;
            ``async`` makes the next chunk take over this many ticks after the current one's
            observation.
        mode: ``"sync"`` or ``"async"``.
        temporal_ensemble_coeff: m of temporal ensembling (``sync`` with ``n_action_steps`` 1
            only); None disables it.
        smoothing: ``"none"`` (switch chunks outright) or ``"blend"`` (raised-cosine crossfade).
        blend_steps: ticks of the crossfade.
        control_dt_s: the control period, seconds (50 Hz: 0.02).
        margin_steps: ``async`` starts the next inference this many ticks earlier than the
            expected latency needs (jitter of a wall clock; 0 for exact simulated time).
    """

    chunk_size: int
    n_action_steps: int
    mode: str = "sync"
    temporal_ensemble_coeff: float | None = None
    smoothing: str = "none"
    blend_steps: int = 10
    control_dt_s: float = embodiment.CONTROL_DT_S
    margin_steps: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown execution mode {self.mode!r}; expected one of {MODES}")
        if self.smoothing not in SMOOTHING:
            raise ValueError(f"unknown seam smoothing {self.smoothing!r}; expected {SMOOTHING}")
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if not 1 <= self.n_action_steps <= self.chunk_size:
            raise ValueError(
                f"n_action_steps must be in 1..chunk_size ({self.chunk_size}), got "
                f"{self.n_action_steps}"
            )
        if self.temporal_ensemble_coeff is not None:
            if self.mode != "sync" or self.n_action_steps != 1:
                raise ValueError(
                    "temporal ensembling predicts a chunk every tick: it needs mode 'sync' and "
                    "n_action_steps 1 (drop --async, or drop --temporal-ensemble)"
                )
            if self.smoothing != "none":
                raise ValueError("temporal ensembling already averages; use smoothing 'none'")
        if self.blend_steps < 1:
            raise ValueError(f"blend_steps must be >= 1, got {self.blend_steps}")
        if self.smoothing == "blend" and self.blend_steps >= self.chunk_size:
            raise ValueError(
                f"blend_steps {self.blend_steps} must be shorter than the chunk "
                f"({self.chunk_size} actions)"
            )
        if self.control_dt_s <= 0:
            raise ValueError(f"control_dt_s must be positive, got {self.control_dt_s}")
        if self.margin_steps < 0:
            raise ValueError(f"margin_steps must be >= 0, got {self.margin_steps}")

    @classmethod
    def from_policy_config(cls, config: Any, **changes: Any) -> ExecutionConfig:
        """The execution a policy's config asks for (its chunk size, horizon, ensembling),
        with ``changes`` applied (e.g. ``mode="async"``)."""
        base = cls(
            chunk_size=config.chunk_size,
            n_action_steps=config.n_action_steps,
            temporal_ensemble_coeff=config.temporal_ensemble_coeff,
        )
        return dataclasses.replace(base, **changes)


@dataclasses.dataclass
class _Chunk:
    actions: np.ndarray  # (K, A)
    origin_s: float  # the time of actions[0]


def raised_cosine(step: int, steps: int) -> float:
    """Crossfade weight of the incoming chunk at ``step`` (0-based) of a ``steps``-tick blend:
    rises from near 0 to near 1 with zero slope at both ends (``step >= steps`` gives 1)."""
    if step >= steps:
        return 1.0
    return 0.5 * (1.0 - math.cos(math.pi * (step + 1) / (steps + 1)))


class ChunkExecutor:
    """Turns a policy's chunks into one action per control tick (see the module docstring).

    Call :meth:`reset` at the start of every episode and :meth:`act` once per tick.

    Args:
        predict: observation -> chunk (K, A) (e.g. ``policy.predict_chunk``).
        config: how chunks are played.
        clock: where time comes from (:class:`SimClock` or :class:`WallClock`).
        inference: computes chunks (default: :class:`SimulatedInference` without delay).

    After an episode, :attr:`switch_ticks` holds the ticks at which a new chunk took over,
    :attr:`skipped` the actions each chunk skipped on arrival, :attr:`stall_ticks` the ticks with
    nothing to play (the last action held) and :attr:`latencies_s` each inference's latency.
    """

    def __init__(
        self,
        predict: Predict,
        config: ExecutionConfig,
        clock: Clock,
        inference: Inference | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.inference = inference if inference is not None else SimulatedInference(predict)
        self._ensembler = (
            TemporalEnsembler(config.temporal_ensemble_coeff, config.chunk_size)
            if config.temporal_ensemble_coeff is not None
            else None
        )
        self.reset()

    def reset(self) -> None:
        """Forget chunks, held actions and statistics; a pending inference is collected first."""
        if self.inference.pending:
            if self.inference.blocking:
                self.inference.wait()
            else:
                self.inference.close()
        self._current: _Chunk | None = None
        self._blend_from: _Chunk | np.ndarray | None = None
        self._blend_start_s = 0.0
        self._last_action: np.ndarray | None = None
        self._last_arrival_s: float | None = None
        self._stalled_since_submit = False
        if self._ensembler is not None:
            self._ensembler.reset()
        self.tick = 0
        self.switch_ticks: list[int] = []
        self.skipped: list[int] = []
        self.latencies_s: list[float] = []
        self.stall_ticks = 0

    def close(self) -> None:
        self.inference.close()

    # --- timing ---

    def _index(self, chunk: _Chunk, now_s: float) -> int:
        """Index of ``chunk``'s action for time ``now_s``."""
        return int(math.floor((now_s - chunk.origin_s) / self.config.control_dt_s + 0.5))

    def _lead_steps(self) -> int:
        """Ticks before the take-over point at which ``async`` starts the next inference."""
        cfg = self.config
        latency = math.ceil(self.inference.expected_latency_s / cfg.control_dt_s - 1e-6)
        blend = cfg.blend_steps if cfg.smoothing == "blend" else 0
        return latency + blend + cfg.margin_steps

    def _blending(self, now_s: float) -> bool:
        if self._blend_from is None:
            return False
        elapsed = int(math.floor((now_s - self._blend_start_s) / self.config.control_dt_s + 0.5))
        return elapsed < self.config.blend_steps

    # --- one tick ---

    def _needy(self, now_s: float) -> bool:
        """Whether there is nothing left to play now (the loop must wait for a chunk)."""
        cfg = self.config
        if self._ensembler is not None or self._current is None:
            return True
        limit = cfg.n_action_steps if cfg.mode == "sync" else cfg.chunk_size
        return self._index(self._current, now_s) >= limit

    def _should_launch(self, now_s: float) -> bool:
        if self.inference.pending:
            return False
        if self._needy(now_s):
            return True
        if self.config.mode != "async" or self._blending(now_s):
            return False
        launch_at = self.config.n_action_steps - self._lead_steps()
        return self._index(self._current, now_s) >= launch_at

    def act(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The action (A,) to send at this tick, given the observation just taken."""
        now_s = self.clock.now_s()
        if self._should_launch(now_s):
            self.inference.submit(obs, now_s)
            self._stalled_since_submit = False
        needy = self._needy(now_s)
        prediction = self.inference.poll(now_s)
        waited = False
        # sync waits for the chunk it needs (the stall the paper's execution has). async never
        # blocks the loop, the first chunk included: with nothing to play it holds still (the
        # last action, or the joints' present positions) and keeps its deadlines, as it does on
        # a simulated clock; the chunk then plays from its first action.
        if (
            prediction is None
            and needy
            and self.inference.pending
            and self.inference.blocking
            and self.config.mode == "sync"
        ):
            prediction = self.inference.wait()
            now_s = self.clock.now_s()  # the wait took real time
            waited = True
        if prediction is not None:
            self.latencies_s.append(prediction.latency_s)
            if self._ensembler is not None:
                return self._ensemble(prediction, now_s)
            waited = (
                waited
                or self.config.mode == "sync"
                or self._current is None
                or self._stalled_since_submit
            )
            self._switch(prediction, now_s, waited)
        action = self._output(now_s, obs)
        self._last_action = action
        self.tick += 1
        return action

    def _ensemble(self, prediction: Prediction, now_s: float) -> np.ndarray:
        elapsed = 1
        if self._last_arrival_s is not None:
            elapsed = max(
                1, int(math.floor((now_s - self._last_arrival_s) / self.config.control_dt_s + 0.5))
            )
        self._last_arrival_s = now_s
        self.switch_ticks.append(self.tick)
        self.skipped.append(0)
        action = self._ensembler.update(prediction.chunk, elapsed).astype(np.float32)
        self._last_action = action
        self.tick += 1
        return action

    def _switch(self, prediction: Prediction, now_s: float, waited: bool) -> None:
        """Make ``prediction`` the current chunk.

        A chunk the loop waited for (``sync``, the first chunk, or an ``async`` chunk that came
        after the previous one ran out) plays from its first action: the arm stood still, so
        nothing of it has elapsed. Otherwise (``async``) index 0 belongs to the observation's
        time, and the actions whose time passed during inference are skipped.
        """
        origin_s = now_s if waited else prediction.obs_time_s
        incoming = _Chunk(prediction.chunk, origin_s)
        if self.config.smoothing == "blend" and self._last_action is not None:
            # Fade from what the arm was following: the outgoing chunk if it is still playing,
            # else the action it has been holding.
            self._blend_from = self._current if not waited else self._last_action.copy()
            self._blend_start_s = now_s
        else:
            self._blend_from = None
        self._current = incoming
        self.switch_ticks.append(self.tick)
        self.skipped.append(max(0, self._index(incoming, now_s)))

    def _output(self, now_s: float, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        current = self._current
        if current is None or self._needy(now_s):
            # Nothing to play (waiting for the first chunk, or a stall): hold still.
            self.stall_ticks += 1
            self._stalled_since_submit = True
            if self._last_action is not None:
                return self._last_action
            return np.asarray(obs[keys.STATE], dtype=np.float32).copy()
        index = min(self._index(current, now_s), len(current.actions) - 1)
        action = np.asarray(current.actions[index], dtype=np.float64)
        if self._blending(now_s):
            step = int(math.floor((now_s - self._blend_start_s) / self.config.control_dt_s + 0.5))
            weight = raised_cosine(step, self.config.blend_steps)
            source = self._blend_from
            if isinstance(source, _Chunk):
                old_index = min(max(self._index(source, now_s), 0), len(source.actions) - 1)
                old = np.asarray(source.actions[old_index], dtype=np.float64)
            else:
                old = np.asarray(source, dtype=np.float64)
            action = (1.0 - weight) * old + weight * action
        return action.astype(np.float32)

    def summary(self) -> dict[str, Any]:
        """This episode's chunk statistics (JSON-able)."""
        latencies_ms = 1e3 * np.asarray(self.latencies_s, dtype=float)
        return {
            "chunks": len(self.switch_ticks),
            "stall_ticks": self.stall_ticks,
            "skipped_mean": float(np.mean(self.skipped)) if self.skipped else 0.0,
            "skipped_max": int(max(self.skipped, default=0)),
            "latency_ms_max": float(latencies_ms.max()) if latencies_ms.size else 0.0,
        }


# ------------------------------------------------------------------------------------------------
# Seam smoothness
# ------------------------------------------------------------------------------------------------
def seam_smoothness(
    trajectory: np.ndarray,
    switch_ticks: Sequence[int],
    dt_s: float = embodiment.CONTROL_DT_S,
    window: tuple[int, int] = SEAM_WINDOW,
) -> dict[str, float | None]:
    """How hard the chunk switches are: peak joint acceleration around each seam.

    The acceleration at tick t is the second difference (x[t+1] - 2 x[t] + x[t-1]) / dt^2 of
    every joint; a seam's figure is its largest magnitude over the joints and the ticks from
    ``window[0]`` before to ``window[1]`` after the switch (the same window for every method).
    The first chunk of an episode is no seam (nothing came before it).

    Args:
        trajectory: (T, J) positions per tick, radians (actions sent, or joints measured).
        switch_ticks: ticks at which a new chunk took over, the episode's first chunk first.
        dt_s: control period, seconds.
        window: ticks (before, after) each switch.

    Returns:
        ``seams`` (count), ``seam_accel_mean`` and ``seam_accel_max`` (rad/s^2, mean and max of
        the seams' peaks), ``seam_jump_mean`` (rad, largest joint change across the switch tick,
        averaged over seams) and ``interior_accel_p99`` (rad/s^2, the 99th percentile of the
        per-tick peak away from every seam window, for scale). None where nothing was measured.
    """
    x = np.asarray(trajectory, dtype=np.float64)
    n = len(x)
    nan = None
    if n < 3:
        return {
            "seams": 0,
            "seam_accel_mean": nan,
            "seam_accel_max": nan,
            "seam_jump_mean": nan,
            "interior_accel_p99": nan,
        }
    accel = np.abs(x[2:] - 2 * x[1:-1] + x[:-2]).max(axis=1) / dt_s**2  # (T-2,) at ticks 1..T-2
    peaks, jumps = [], []
    in_window = np.zeros(n, dtype=bool)
    for tick in list(switch_ticks)[1:]:  # the first chunk takes over from nothing: no seam
        if tick <= 0 or tick >= n:
            continue  # a switch outside the recorded ticks
        low, high = max(1, tick - window[0]), min(n - 2, tick + window[1])
        in_window[max(0, tick - window[0]) : tick + window[1] + 1] = True
        if high >= low:
            peaks.append(accel[low - 1 : high].max())
        jumps.append(np.abs(x[tick] - x[tick - 1]).max())
    interior = accel[~in_window[1:-1]]
    return {
        "seams": len(jumps),
        "seam_accel_mean": float(np.mean(peaks)) if peaks else nan,
        "seam_accel_max": float(np.max(peaks)) if peaks else nan,
        "seam_jump_mean": float(np.mean(jumps)) if jumps else nan,
        "interior_accel_p99": float(np.percentile(interior, 99)) if interior.size else nan,
    }
