"""Zarr episode store in diffusion_policy's ReplayBuffer convention, with crash-safe appends.

On disk (Zarr format 3, readable with plain ``zarr``)::

    <store>.zarr/
      data/action                          (N, 12) float32   joint targets, radians
      data/observation.state               (N, 12) float32   follower joints, radians
      data/observation.environment_state   (N, E)  float32   props' poses (+ task joints)
      data/observation.images.<camera>     (N, H, W, 3) uint8, one frame per chunk
      meta/episode_ends                    (n,) int64        cumulative end row of each episode
      meta/episode_seed | _success | _max_stage | _source | _strategy | _style   (>= n,)

All episodes are concatenated along the first axis; episode ``i`` is rows
``episode_ends[i-1]:episode_ends[i]`` (``0:episode_ends[0]`` for the first). Row ``t`` pairs the
observation the policy saw with the action it then sent (the reset observation is row 0; the
observation after the last action is not stored), as LeRobot and ACT record episodes.

Crash safety: an append writes the data rows first, then the episode's metadata, then grows
``meta/episode_ends`` last; every file write is atomic (zarr's ``LocalStore`` writes a temporary
file and renames it). Growing ``episode_ends`` is one file write (its new chunk is written while the
array still has its old shape, then the shape grows), so a process killed at any point leaves every
finished episode intact. Rows of data arrays past ``episode_ends[-1]`` and entries of metadata
arrays past ``len(episode_ends)`` are leftovers of an interrupted append: readers ignore them and
the next append overwrites them.

One writer at a time: a store opened for writing holds an exclusive lock (``<store>.lock``, the
writer's PID inside; :mod:`aloha_bench.data.lock`) until :meth:`EpisodeStore.close`.

A store must fit its task: opening one checks the task id exists, the environment-state width is
the task's, camera names are distinct, and every action and state row is finite.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from aloha_bench import __version__, embodiment, keys
from aloha_bench.data.lock import WriterLock
from aloha_bench.sim.task_spec import available_tasks, load_task_spec

FORMAT_NAME = "aloha-bench/episodes"
FORMAT_VERSION = 1

# Rows per chunk of the low-dimensional arrays: one chunk holds a few episodes (~40 KB of actions),
# so a window reads one or two chunks. Images are one frame per chunk (random access per sample).
LOW_DIM_CHUNK_ROWS = 1024
META_CHUNK = 4096
# Chunk files named c.<t>.0.0.0 side by side in the array's folder: the default "/" separator
# would make three nested folders per image frame.
CHUNK_KEY_ENCODING = {"name": "default", "separator": "."}
# Image rows decoded at once by deep validation.
_SCAN_ROWS = 256

# Per-episode metadata: field name in ``append_episode``'s ``meta`` -> (array under meta/, dtype).
# Strings use Zarr 3's variable-length "string" type (numpy reads it back as StringDType).
META_FIELDS: dict[str, tuple[str, Any]] = {
    "seed": ("episode_seed", np.int64),
    "success": ("episode_success", np.bool_),
    "max_stage": ("episode_max_stage", np.int64),
    "source": ("episode_source", str),
    "strategy": ("episode_strategy", str),
    "style": ("episode_style", str),
}
EPISODE_ENDS = "meta/episode_ends"
# Attributes two runs must share to append to the same store.
COMPATIBILITY_ATTRS = (
    "format_version",
    "task_id",
    "task_version",
    "obs_mode",
    "cameras",
    "image_size",
    "fps",
    "embodiment",
)
# Generator settings that are provenance, not data: a resume may differ in them.
PROVENANCE_SETTINGS = ("aloha_bench_version",)
# The env's observation modes (envs.spaces.OBS_MODES; this layer may not import envs).
OBS_MODES = ("pixels", "state")
# Float arrays whose rows must be finite (a NaN action or pose poisons training statistics).
FINITE_KEYS = (keys.ACTION, keys.STATE, keys.ENVIRONMENT_STATE)


class DatasetError(ValueError):
    """An episode store is missing, damaged, inconsistent, or incompatible with a request."""


class EpisodeIndexError(DatasetError, IndexError):
    """An episode index beyond the store's episodes (an ``IndexError`` too, for sequences)."""


def _codecs(dtype: np.dtype) -> tuple:
    # Byte shuffle helps multi-byte numbers (float32 joint angles); it is a no-op on uint8 pixels.
    # The CRC32C checksum makes a damaged chunk fail loudly instead of decoding to garbage.
    shuffle = "shuffle" if dtype.itemsize > 1 else "noshuffle"
    return (BloscCodec(cname="zstd", clevel=5, shuffle=shuffle), Crc32cCodec())


def _jsonable(value: Any) -> Any:
    """Normalize tuples to lists (and numpy scalars to Python) so attributes compare as stored."""
    return json.loads(json.dumps(value, default=lambda v: v.item()))


class EpisodeStore:
    """A Zarr store of recorded episodes: append (crash-safe), read, validate.

    Create one with :meth:`create` or open one with :meth:`open`; do not call the constructor.

    Example::

        store = EpisodeStore.create("demo.zarr", task_id="transfer_cube", task_version=1,
                                    obs_mode="pixels", cameras=["top"], image_size=(96, 128))
        store.append_episode(arrays, {"seed": 0, "success": True, "max_stage": 3,
                                      "source": "scripted", "strategy": "default"})
        EpisodeStore.open("demo.zarr").episode(0)["action"]  # (T, 12) float32
    """

    def __init__(self, path: Path, root: zarr.Group, writable: bool) -> None:
        self.path = path
        self._root = root
        self._writable = writable
        self._attrs = dict(root.attrs)
        self._ends = np.zeros(0, dtype=np.int64)
        self._cache: dict[str, np.ndarray] = {}
        self._meta_cache: dict[str, list] = {}
        self._arrays: dict[str, zarr.Array] = {}
        self._lock: WriterLock | None = None

    # ----------------------------------------------------------------------------------------
    # Creating and opening
    # ----------------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | Path,
        *,
        task_id: str,
        task_version: int,
        obs_mode: str,
        cameras: Sequence[str] = (),
        image_size: tuple[int, int] | None = None,
        fps: float = embodiment.CONTROL_RATE_HZ,
        generator: Mapping[str, Any] | None = None,
        resume: bool = False,
    ) -> EpisodeStore:
        """Create an empty store, or reopen a compatible one to append to it.

        Args:
            path: directory of the store (by convention ending in ``.zarr``).
            task_id: task folder name, e.g. ``"transfer_cube"``.
            task_version: the task's ``version`` from its ``task.toml``.
            obs_mode: ``"pixels"`` (images stored) or ``"state"`` (no images).
            cameras: camera names (``keys.CAMERAS``) whose images are stored; pixels mode only.
            image_size: (height, width) of every image; pixels mode only.
            fps: control rate the episodes were recorded at.
            generator: settings of the run that produced the data (expert, styles, seeds...),
                stored as JSON in the ``generator`` attribute of the store's creation.
            resume: if ``path`` already holds a store, open it for appending after checking that
                its settings match these (a crashed run resumes this way). Without it an
                existing path is an error.

        The returned store holds the writer lock until :meth:`close` (use it in a ``with``).
        An existing store without any episode holds nothing: it is replaced, not resumed.

        Raises:
            DatasetError: ``path`` exists and ``resume`` is false, or the existing store's
                settings (attributes or ``generator`` settings) differ from these (the message
                names the setting and both values).
            StoreLockedError: another process is writing to ``path`` (the message names it).
            ValueError: an unknown task, obs_mode or camera, or a camera named twice.
        """
        path = Path(path)
        if obs_mode not in OBS_MODES:
            raise ValueError(f"unknown obs_mode {obs_mode!r}; expected one of {OBS_MODES}")
        load_task_spec(task_id)  # unknown task: the error lists the valid ones
        cameras = keys.camera_names(cameras)  # "top" is one camera; a repeated name is refused
        if obs_mode == "pixels":
            if not cameras or image_size is None:
                raise ValueError("pixels mode needs cameras=[...] and image_size=(height, width)")
        elif cameras or image_size is not None:
            raise ValueError("state mode stores no images; leave cameras and image_size unset")
        attrs = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "task_id": task_id,
            "task_version": int(task_version),
            "obs_mode": obs_mode,
            "cameras": list(cameras),
            "image_size": None if image_size is None else [int(v) for v in image_size],
            "fps": float(fps),
            "embodiment": {
                "state_names": list(embodiment.STATE_NAMES),
                "action_names": list(embodiment.STATE_NAMES),
                "units": "rad",
            },
            "generator": _jsonable(dict(generator or {})),
            "aloha_bench_version": __version__,
        }
        lock = WriterLock(path)
        try:
            if path.exists() and not _is_empty_store(path):
                if not resume:
                    raise DatasetError(
                        f"{path} already exists; pass resume=True to append to it, or choose a "
                        "new path (or delete the old store)"
                    )
                store = cls.open(path, mode="a", _lock=lock)
                store._check_compatible(attrs)
                return store
            if path.exists():
                shutil.rmtree(path)  # a store without episodes: nothing to keep
            store = cls._create(path, attrs)
        except BaseException:
            lock.release()
            raise
        store._lock = lock
        return store

    @classmethod
    def _create(cls, path: Path, attrs: dict[str, Any]) -> EpisodeStore:
        root = zarr.open_group(path, mode="w-", zarr_format=3, attributes=attrs)
        root.create_group("data")
        meta = root.create_group("meta")
        meta.create_array(
            "episode_ends",
            shape=(0,),
            chunks=(META_CHUNK,),
            dtype=np.int64,
            compressors=_codecs(np.dtype(np.int64)),
            chunk_key_encoding=CHUNK_KEY_ENCODING,
        )
        for name, dtype in META_FIELDS.values():
            meta.create_array(
                name,
                shape=(0,),
                chunks=(META_CHUNK,),
                dtype=dtype,
                compressors=None if dtype is str else _codecs(np.dtype(dtype)),
                chunk_key_encoding=CHUNK_KEY_ENCODING,
            )
        return cls(path, root, writable=True)

    @classmethod
    def open(
        cls,
        path: str | Path,
        mode: str = "r",
        validate: bool = True,
        _lock: WriterLock | None = None,
    ) -> EpisodeStore:
        """Open an existing store.

        Args:
            path: directory of the store.
            mode: ``"r"`` (read only) or ``"a"`` (read and append: takes the writer lock until
                :meth:`close`).
            validate: run :meth:`validate` (cheap checks) before returning. Turn it off only to
                repair a damaged store with :meth:`truncate`.

        Raises:
            DatasetError: the store is missing, not an aloha-bench store, damaged, or does not
                fit its task.
            StoreLockedError: ``mode="a"`` and another process is writing to the store.
        """
        path = Path(path)
        if mode not in ("r", "a"):
            raise ValueError(f"mode must be 'r' or 'a', got {mode!r}")
        lock = _lock or (WriterLock(path) if mode == "a" else None)
        try:
            store = cls._open(path, mode, validate)
        except BaseException:
            if lock is not None and _lock is None:
                lock.release()
            raise
        store._lock = lock
        return store

    @classmethod
    def _open(cls, path: Path, mode: str, validate: bool) -> EpisodeStore:
        if not (path / "zarr.json").is_file():
            raise DatasetError(
                f"{path}: no Zarr store here (zarr.json missing); check the path, or record one "
                "with `aloha-bench generate --task TASK --out PATH` (EpisodeStore.create from "
                "Python)"
            )
        try:
            root = zarr.open_group(path, mode="r" if mode == "r" else "r+", zarr_format=3)
        except Exception as exc:
            raise DatasetError(
                f"{path}: zarr.json of the store is unreadable ({exc}); the store is damaged, "
                "regenerate it"
            ) from exc
        if root.attrs.get("format") != FORMAT_NAME:
            raise DatasetError(
                f"{path}: not an aloha-bench episode store (attribute 'format' is "
                f"{root.attrs.get('format')!r}, expected {FORMAT_NAME!r})"
            )
        if root.attrs.get("format_version") != FORMAT_VERSION:
            raise DatasetError(
                f"{path}: store format_version {root.attrs.get('format_version')!r}, this "
                f"aloha-bench reads {FORMAT_VERSION}; regenerate the store or install the "
                "matching aloha-bench version"
            )
        store = cls(path, root, writable=mode == "a")
        store._ends = store._read_ends()
        if validate:
            store.validate()
        return store

    def _check_compatible(self, requested: Mapping[str, Any]) -> None:
        for name in COMPATIBILITY_ATTRS:
            have, want = self._attrs.get(name), requested[name]
            if _jsonable(have) != _jsonable(want):
                raise DatasetError(
                    f"{self.path}: cannot append, attribute {name!r} differs: the store has "
                    f"{have!r}, this run has {want!r}; write to a new store or match the settings"
                )
        # Every generator setting defines the data too (source, seed, randomization, latency,
        # operator model...): appending under others would mix data the attributes misdescribe.
        have_all = self._attrs.get("generator") or {}
        want_all = requested.get("generator") or {}
        names = [*want_all, *(n for n in have_all if n not in want_all)]
        differ = [
            f"{name!r} (the store was written with {have_all.get(name)!r}, this run has "
            f"{want_all.get(name)!r})"
            for name in names
            if name not in PROVENANCE_SETTINGS
            and _jsonable(have_all.get(name)) != _jsonable(want_all.get(name))
        ]
        if differ:
            raise DatasetError(
                f"{self.path}: cannot append, generator settings differ: {'; '.join(differ)}. "
                "Rerun with the store's settings to continue it, or write to a new store"
            )

    def close(self, remove_if_empty: bool = False) -> None:
        """Release the writer lock; the store stays readable (idempotent).

        Args:
            remove_if_empty: delete the store if it holds no finished episode (a run that
                failed before its first one), so no empty store is left looking valid.
        """
        if remove_if_empty and self._writable and self.n_episodes == 0 and self.path.exists():
            shutil.rmtree(self.path)
        self._writable = False
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> EpisodeStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------------------
    # Properties
    # ----------------------------------------------------------------------------------------
    @property
    def attrs(self) -> dict[str, Any]:
        """The root attributes (task, embodiment, fps, cameras, generator settings...)."""
        return json.loads(json.dumps(self._attrs))

    @property
    def n_episodes(self) -> int:
        return len(self._ends)

    @property
    def n_steps(self) -> int:
        """Rows in all finished episodes."""
        return int(self._ends[-1]) if len(self._ends) else 0

    @property
    def episode_ends(self) -> np.ndarray:
        """Cumulative end row of each finished episode (int64)."""
        return self._ends.copy()

    @property
    def episode_lengths(self) -> np.ndarray:
        return np.diff(self._ends, prepend=0)

    @property
    def cameras(self) -> tuple[str, ...]:
        return tuple(self._attrs["cameras"])

    @property
    def image_keys(self) -> tuple[str, ...]:
        return tuple(keys.image_key(c) for c in self.cameras)

    @property
    def data_keys(self) -> tuple[str, ...]:
        """Keys of the per-step arrays under ``data/``, sorted."""
        return tuple(sorted(self._data_group().array_keys()))

    def array_info(self, key: str) -> dict[str, Any]:
        """Per-step shape, dtype, chunk shape and codecs of ``data/<key>``."""
        array = self._data_array(key)
        return {
            "shape": list(array.shape[1:]),
            "dtype": str(array.dtype),
            "chunks": list(array.chunks),
            "codecs": [type(c).__name__ for c in array.metadata.codecs],
        }

    def fingerprint(self) -> str:
        """SHA-256 of what defines the data for training: the attributes, the episode
        boundaries and metadata, and every low-dimensional array (images excluded: reading
        them would cost a full pass; they follow from the same settings and seeds).

        Two stores with equal fingerprints train the same policy; a store that gained, lost or
        changed an episode gets a new one. Costs one pass over arrays already cached on open.
        """
        digest = hashlib.sha256()
        attrs = {k: v for k, v in self._attrs.items() if k != "aloha_bench_version"}
        digest.update(json.dumps(attrs, sort_keys=True).encode())
        digest.update(self._ends.tobytes())
        for name, _ in META_FIELDS.values():
            digest.update(json.dumps(self._meta_values(name)).encode())
        for key in self.data_keys if self.n_episodes else ():
            if key not in self.image_keys:
                digest.update(key.encode())
                digest.update(np.ascontiguousarray(self.read_all(key)).tobytes())
        return digest.hexdigest()

    def episode_slice(self, episode: int) -> slice:
        """Rows of ``episode`` in every data array."""
        n = self.n_episodes
        if not -n <= episode < n:
            valid = f"0..{n - 1}" if n else "none yet"
            raise EpisodeIndexError(
                f"{self.path}: episode {episode} out of range; the store has {n} episodes "
                f"(indices {valid}); `aloha-bench inspect {self.path}` summarizes them"
            )
        episode %= n
        start = int(self._ends[episode - 1]) if episode else 0
        return slice(start, int(self._ends[episode]))

    def episode_of_row(self, row: int) -> int:
        """Index of the episode that holds ``row``."""
        return int(np.searchsorted(self._ends, row, side="right"))

    # ----------------------------------------------------------------------------------------
    # Reading
    # ----------------------------------------------------------------------------------------
    def episode(self, episode: int, keys: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """All per-step arrays of one episode.

        Args:
            episode: episode index.
            keys: data keys to read; default all (images included).

        Returns:
            ``{key: array}`` with ``T`` rows each.
        """
        rows = self.episode_slice(episode)
        return {key: self.read_rows(key, rows) for key in (keys or self.data_keys)}

    def episode_meta(self, episode: int) -> dict[str, Any]:
        """Per-episode metadata: seed, success, max_stage, source, strategy, style (a dict)."""
        self.episode_slice(episode)  # range check
        episode %= self.n_episodes
        out = {}
        for field, (name, _) in META_FIELDS.items():
            value = self._meta_values(name)[episode]
            out[field] = json.loads(value) if field == "style" else value
        return out

    def read_rows(self, key: str, rows: slice | np.ndarray) -> np.ndarray:
        """Rows of ``data/<key>`` (a slice, or an int array in any order, repeats allowed).

        Raises:
            DatasetError: the array is missing or a chunk is damaged; the message names the
                array and the episode.
        """
        array = self._data_array(key)
        try:
            if isinstance(rows, slice):
                return array[rows]
            # One slice per row: about twice as fast as zarr's orthogonal selection for the
            # handfuls of frames a batch needs.
            parts = [array[int(r) : int(r) + 1] for r in np.asarray(rows).ravel()]
            return np.concatenate(parts) if parts else array[0:0]
        except Exception as exc:
            raise self._damaged(f"data/{key}", _first_bad_row(array, rows), exc) from exc

    def read_all(self, key: str) -> np.ndarray:
        """All finished rows of a small ``data/<key>`` array, decoded once and cached.

        Meant for the low-dimensional arrays (actions, states); use :meth:`read_rows` for images.
        """
        if key not in self._cache:
            self._cache[key] = self.read_rows(key, slice(0, self.n_steps))
        return self._cache[key]

    # ----------------------------------------------------------------------------------------
    # Writing
    # ----------------------------------------------------------------------------------------
    def append_episode(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> int:
        """Append one finished episode; it becomes visible only when everything is written.

        Args:
            arrays: per-step arrays with the same length ``T``: ``action`` (T, 12),
                ``observation.state`` (T, 12), ``observation.environment_state`` (T, E), and in
                pixels mode ``observation.images.<camera>`` (T, H, W, 3) uint8 for each of the
                store's cameras. Floats are stored as float32. Extra keys are allowed if every
                episode has them.
            meta: ``seed`` (int), ``success`` (bool), ``max_stage`` (int), ``source`` (str, e.g.
                ``"scripted"`` or ``"teleop"``), ``strategy`` (str, the expert's style mode),
                and optionally ``style`` (a JSON-serializable dict of style parameters).

        Returns:
            The new episode's index.

        Raises:
            ValueError: arrays or metadata are malformed or do not match the store.
        """
        if not self._writable:
            raise DatasetError(f"{self.path}: opened read-only; open it with mode='a' to append")
        columns, length = self._checked_arrays(arrays)
        meta_values = self._checked_meta(meta)
        n = self.n_episodes
        start = self.n_steps
        stop = start + length
        data = self._data_group()
        if n == 0:
            # Leftovers of a crashed first append may have other keys or shapes: start afresh.
            for key in list(data.array_keys()):
                del data[key]
        try:
            with zarr.config.set({"array.write_empty_chunks": True}):
                # 1. Data rows (past the last finished episode: invisible until step 3).
                for key, value in columns.items():
                    if key in data:
                        array = data[key]
                    else:
                        chunk_rows = 1 if key.startswith(keys.IMAGES_PREFIX) else LOW_DIM_CHUNK_ROWS
                        array = data.create_array(
                            key,
                            shape=(0, *value.shape[1:]),
                            chunks=(chunk_rows, *value.shape[1:]),
                            dtype=value.dtype,
                            compressors=_codecs(value.dtype),
                            chunk_key_encoding=CHUNK_KEY_ENCODING,
                        )
                    array.resize((stop, *value.shape[1:]))
                    array[start:stop] = value
                # 2. Per-episode metadata at index n (also invisible until step 3).
                for name, value in meta_values.items():
                    array = self._meta_array(name)
                    array.resize((n + 1,))
                    array[n] = value
                # 3. Commit: write episode_ends' chunk while the array still has n entries,
                # then grow its shape to n + 1 in one atomic metadata write.
                ends = self._root[EPISODE_ENDS]
                grown = zarr.AsyncArray(
                    metadata=ends.metadata.update_shape((n + 1,)),
                    store_path=ends.store_path,
                )
                zarr.Array(grown)[n] = stop
                ends.resize((n + 1,))
        finally:
            self._forget()  # shapes changed, even if this append did not finish
        self._ends = np.append(self._ends, np.int64(stop))
        return n

    def truncate(self, n_episodes: int) -> None:
        """Keep only the first ``n_episodes`` episodes (repairs a store damaged past them).

        Shrinking ``episode_ends`` is the commit; data and metadata arrays are shrunk after it,
        and the next append would overwrite their extra rows anyway.
        """
        if not self._writable:
            raise DatasetError(f"{self.path}: opened read-only; open it with mode='a' to truncate")
        if not 0 <= n_episodes <= self.n_episodes:
            raise ValueError(f"n_episodes must be in 0..{self.n_episodes}, got {n_episodes}")
        self._root[EPISODE_ENDS].resize((n_episodes,))
        self._ends = self._ends[:n_episodes]
        rows = self.n_steps
        data = self._data_group()
        for key in data.array_keys():
            array = data[key]
            array.resize((min(rows, array.shape[0]), *array.shape[1:]))
        for name, _ in META_FIELDS.values():
            if name in self._root["meta"]:
                array = self._meta_array(name)
                array.resize((min(n_episodes, array.shape[0]),))
        self._forget()

    def _checked_arrays(self, arrays: Mapping[str, np.ndarray]) -> tuple[dict, int]:
        required = {keys.ACTION, keys.STATE, keys.ENVIRONMENT_STATE, *self.image_keys}
        missing = required - set(arrays)
        if missing:
            raise ValueError(
                f"episode lacks arrays {sorted(missing)}; a store needs {sorted(required)}"
            )
        unknown_images = {
            k for k in arrays if k.startswith(keys.IMAGES_PREFIX) and k not in self.image_keys
        }
        if unknown_images:
            raise ValueError(
                f"episode has images {sorted(unknown_images)} but the store's cameras are "
                f"{list(self.cameras)}"
            )
        existing = set(self.data_keys) if self.n_episodes else set(arrays)
        if set(arrays) != existing:
            raise ValueError(
                f"episode has keys {sorted(arrays)}, earlier episodes have {sorted(existing)}"
            )
        lengths = {key: len(value) for key, value in arrays.items()}
        if len(set(lengths.values())) != 1 or 0 in lengths.values():
            raise ValueError(f"episode arrays need one common, nonzero length; got {lengths}")
        columns = {}
        for key, value in arrays.items():
            value = np.asarray(value)
            if key.startswith(keys.IMAGES_PREFIX):
                height, width = self._attrs["image_size"]
                if value.dtype != np.uint8 or value.shape[1:] != (height, width, 3):
                    raise ValueError(
                        f"{key} must be (T, {height}, {width}, 3) uint8 (the store's image_size), "
                        f"got {value.shape} {value.dtype}"
                    )
            elif np.issubdtype(value.dtype, np.floating):
                value = value.astype(np.float32)
            if key in (keys.ACTION, keys.STATE):
                if value.shape[1:] != (embodiment.STATE_DIM,):
                    raise ValueError(
                        f"{key} must be (T, {embodiment.STATE_DIM}), got {value.shape}"
                    )
            if key == keys.ENVIRONMENT_STATE:
                widths = self._environment_state_dims()
                if value.ndim != 2 or value.shape[1] not in widths:
                    raise ValueError(
                        f"{key} must be (T, {widths[0]}) for task {self._attrs['task_id']!r} "
                        f"(or (T, 0) on the real rig), got {value.shape}"
                    )
            if key in FINITE_KEYS and not np.all(np.isfinite(value)):
                raise ValueError(f"{key} has NaN/inf values; the episode was not stored")
            if self.n_episodes:
                stored = self._data_array(key)
                if value.shape[1:] != stored.shape[1:] or value.dtype != stored.dtype:
                    raise ValueError(
                        f"{key} is {value.shape[1:]} {value.dtype} per step, earlier episodes "
                        f"have {stored.shape[1:]} {stored.dtype}"
                    )
            columns[key] = value
        return columns, next(iter(lengths.values()))

    @staticmethod
    def _checked_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
        required = set(META_FIELDS) - {"style"}
        missing = required - set(meta)
        unknown = set(meta) - set(META_FIELDS)
        if missing or unknown:
            raise ValueError(
                f"episode meta needs {sorted(required)} (+ optional 'style'); missing "
                f"{sorted(missing)}, unknown {sorted(unknown)}"
            )
        return {
            "episode_seed": int(meta["seed"]),
            "episode_success": bool(meta["success"]),
            "episode_max_stage": int(meta["max_stage"]),
            "episode_source": str(meta["source"]),
            "episode_strategy": str(meta["strategy"]),
            "episode_style": json.dumps(_jsonable(meta.get("style", {})), sort_keys=True),
        }

    # ----------------------------------------------------------------------------------------
    # Validation
    # ----------------------------------------------------------------------------------------
    def validate(self, deep: bool = False) -> None:
        """Check the store's structure; raise ``DatasetError`` naming the problem and its fix.

        Cheap checks (run on open): ``episode_ends`` strictly increasing; every metadata array
        present with an entry per episode; every required data array present, long enough and
        of the right shape and dtype; every chunk of the finished rows present on disk; the
        low-dimensional arrays decode. ``deep=True`` also decodes every image chunk.
        """
        self._check_task()
        ends = self._ends
        if len(ends) and (ends[0] <= 0 or np.any(np.diff(ends) <= 0)):
            bad = 0 if ends[0] <= 0 else int(np.flatnonzero(np.diff(ends) <= 0)[0]) + 1
            raise DatasetError(
                f"{self.path}: {EPISODE_ENDS} is not strictly increasing at episode {bad} "
                f"(values {ends[max(bad - 1, 0) : bad + 1].tolist()}); keep the episodes before "
                f"it with {self._repair_hint(bad)}"
            )
        for name, _ in META_FIELDS.values():
            array = self._meta_array(name)
            if array.ndim != 1 or array.shape[0] < len(ends):
                first = min(array.shape[0], len(ends)) if array.ndim == 1 else 0
                raise DatasetError(
                    f"{self.path}: meta/{name} has {array.shape[0]} entries for {len(ends)} "
                    f"episodes, so episode {first} has no {name}; keep the episodes before it "
                    f"with {self._repair_hint(first)}"
                )
            self._check_chunks(f"meta/{name}", array, len(ends), per_episode=True)
        if not len(ends):
            return
        data = self._data_group()
        required = {keys.ACTION, keys.STATE, keys.ENVIRONMENT_STATE, *self.image_keys}
        missing = required - set(data.array_keys())
        if missing:
            raise DatasetError(
                f"{self.path}: data/{sorted(missing)[0]} is missing, so every episode lacks it "
                "(episode 0 onwards); the store cannot be repaired by truncation, regenerate it"
            )
        for key in self.data_keys:
            array = self._data_array(key)
            if array.shape[0] < self.n_steps:
                first = self.episode_of_row(array.shape[0])
                raise DatasetError(
                    f"{self.path}: data/{key} has {array.shape[0]} rows but episode_ends[-1] is "
                    f"{self.n_steps}, so episode {first} is incomplete; keep the episodes before "
                    f"it with {self._repair_hint(first)}"
                )
            self._check_shape(key, array)
            self._check_chunks(f"data/{key}", array, self.n_steps, per_episode=False)
            if key not in self.image_keys:
                values = self.read_all(key)
                if key in FINITE_KEYS:
                    self._check_finite(key, values)
            elif deep:
                for rows in self._row_blocks(_SCAN_ROWS):
                    self.read_rows(key, rows)
        for name, _ in META_FIELDS.values():
            self._meta_values(name)

    def _check_task(self) -> None:
        """The store's task exists here and its camera names are distinct."""
        task_id = self._attrs.get("task_id")
        if task_id not in available_tasks():
            raise DatasetError(
                f"{self.path}: attribute task_id {task_id!r} is not a task of this aloha-bench "
                f"(tasks: {list(available_tasks())}); open it with the aloha-bench "
                "that recorded it, or regenerate it for one of these tasks"
            )
        cameras = list(self._attrs.get("cameras") or [])
        if len(set(cameras)) != len(cameras):
            raise DatasetError(
                f"{self.path}: attribute cameras {cameras} names a camera twice, so two image "
                "arrays would share one key; regenerate the store with distinct --cameras"
            )

    def _check_finite(self, key: str, values: np.ndarray) -> None:
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.flatnonzero(bad.reshape(len(values), -1).any(axis=1))[0])
            episode = self.episode_of_row(row)
            raise DatasetError(
                f"{self.path}: data/{key} has a NaN or infinite value in row {row} (episode "
                f"{episode}); training on it would poison the statistics. Keep the episodes "
                f"before it with {self._repair_hint(episode)}, or regenerate the store"
            )

    def _environment_state_dims(self) -> tuple[int, ...]:
        """Widths ``observation.environment_state`` may have: the task's, or 0 (the real rig
        measures no object poses)."""
        return (load_task_spec(self._attrs["task_id"]).environment_state_dim, 0)

    def _check_shape(self, key: str, array: zarr.Array) -> None:
        if key == keys.ENVIRONMENT_STATE:
            widths = self._environment_state_dims()
            if array.ndim != 2 or array.shape[1] not in widths:
                raise DatasetError(
                    f"{self.path}: data/{key} is {array.shape[1:]} per step, but task "
                    f"{self._attrs['task_id']!r} has ({widths[0]},) (a pose per object and its "
                    "state joints; (0,) on the real rig); the store was recorded for another "
                    "task or task version, regenerate it"
                )
            return
        if key in self.image_keys:
            height, width = self._attrs["image_size"]
            want_shape, want_dtype = (height, width, 3), np.dtype(np.uint8)
        elif key in (keys.ACTION, keys.STATE):
            want_shape, want_dtype = (embodiment.STATE_DIM,), np.dtype(np.float32)
        else:
            return
        if array.shape[1:] != want_shape or array.dtype != want_dtype:
            raise DatasetError(
                f"{self.path}: data/{key} is {array.shape[1:]} {array.dtype} per step, expected "
                f"{want_shape} {want_dtype} (from the store's attributes); every episode is "
                "affected, regenerate the store"
            )

    def _check_chunks(self, name: str, array: zarr.Array, rows: int, per_episode: bool) -> None:
        """Raise if a chunk holding one of the first ``rows`` rows is absent from disk.

        Zarr reads a missing chunk as its fill value without complaint, so a deleted chunk file
        would otherwise pass for zeros.
        """
        chunk_rows = array.chunks[0]
        needed = math.ceil(rows / chunk_rows)
        if not needed or math.prod(array.shape[1:]) == 0:
            # Zero-width rows (the real rig's empty environment state) have no chunk files.
            return
        present = _chunk_indices(self.path / name)
        absent = [i for i in range(needed) if i not in present]
        if absent:
            row = absent[0] * chunk_rows
            episode = row if per_episode else self.episode_of_row(row)
            raise DatasetError(
                f"{self.path}: {name} lacks chunk {absent[0]} (rows {row}..{row + chunk_rows - 1}"
                f"), so episode {episode} is damaged; keep the episodes before it with "
                f"{self._repair_hint(episode)}, or regenerate the store"
            )

    def _damaged(self, name: str, row: int, exc: Exception) -> DatasetError:
        episode = self.episode_of_row(row)
        return DatasetError(
            f"{self.path}: {name} cannot be read near row {row} (episode {episode}): "
            f"{type(exc).__name__}: {exc}; the chunk file is damaged. Keep the episodes before "
            f"it with {self._repair_hint(episode)}, or regenerate the store"
        )

    def _repair_hint(self, episode: int) -> str:
        return f"EpisodeStore.open({str(self.path)!r}, 'a', validate=False).truncate({episode})"

    # ----------------------------------------------------------------------------------------
    # Internals
    # ----------------------------------------------------------------------------------------
    def _read_ends(self) -> np.ndarray:
        try:
            array = self._root[EPISODE_ENDS]
            if array.ndim != 1 or array.dtype != np.int64:
                raise TypeError(f"shape {array.shape} {array.dtype}, expected (n,) int64")
            self._check_chunks(EPISODE_ENDS, array, array.shape[0], per_episode=True)
            return np.asarray(array[:])
        except DatasetError:
            raise
        except Exception as exc:
            raise DatasetError(
                f"{self.path}: {EPISODE_ENDS} is missing or unreadable ({type(exc).__name__}: "
                f"{exc}); without it no episode can be located, regenerate the store"
            ) from exc

    def _forget(self) -> None:
        """Drop cached arrays and values after the store changed."""
        self._cache.clear()
        self._meta_cache.clear()
        self._arrays.clear()

    def _data_group(self) -> zarr.Group:
        try:
            return self._root["data"]
        except KeyError as exc:
            raise DatasetError(
                f"{self.path}: group data/ is missing; the store is damaged, regenerate it"
            ) from exc

    def _data_array(self, key: str) -> zarr.Array:
        # Cached: looking an array up reads its zarr.json, which would double a frame's cost.
        if key not in self._arrays:
            try:
                self._arrays[key] = self._data_group()[key]
            except Exception as exc:
                raise DatasetError(
                    f"{self.path}: data/{key} is missing or unreadable ({exc}); the store has "
                    f"{list(self.data_keys)}. Every episode is affected: regenerate the store"
                ) from exc
        return self._arrays[key]

    def _meta_array(self, name: str) -> zarr.Array:
        try:
            array = self._root["meta"][name]
        except Exception as exc:
            raise DatasetError(
                f"{self.path}: meta/{name} is missing or unreadable ({exc}); every episode "
                "(episode 0 onwards) lacks it, regenerate the store"
            ) from exc
        return array

    def _meta_values(self, name: str) -> list:
        """The finished episodes' entries of ``meta/<name>`` as Python values, cached."""
        if name not in self._meta_cache:
            try:
                self._meta_cache[name] = self._meta_array(name)[: self.n_episodes].tolist()
            except DatasetError:
                raise
            except Exception as exc:
                raise self._damaged(f"meta/{name}", 0, exc) from exc
        return self._meta_cache[name]

    def _row_blocks(self, block: int) -> Iterator[slice]:
        for start in range(0, self.n_steps, block):
            yield slice(start, min(start + block, self.n_steps))


def _is_empty_store(path: Path) -> bool:
    """Whether ``path`` is an aloha-bench store without a finished episode (nothing to keep)."""
    try:
        return EpisodeStore._open(path, "r", validate=False).n_episodes == 0
    except DatasetError:
        return False


def _chunk_indices(array_dir: Path) -> set[int]:
    """First-axis indices of the chunk files (``c.<i>.<j>...``) in a Zarr 3 array's folder."""
    present = set()
    with os.scandir(array_dir) as entries:
        for entry in entries:
            parts = entry.name.split(".")
            # Skips zarr.json and leftovers of interrupted atomic writes (``*.partial``).
            if parts[0] == "c" and len(parts) > 1 and parts[-1] != "partial":
                present.add(int(parts[1]))
    return present


def _first_bad_row(array: zarr.Array, rows: slice | np.ndarray) -> int:
    """First row of ``rows`` whose chunk fails to decode (so errors name the right episode)."""
    if isinstance(rows, slice):
        rows = np.arange(*rows.indices(array.shape[0]))
    chunk_rows = array.chunks[0]
    for first in np.unique(np.asarray(rows) // chunk_rows) * chunk_rows:
        try:
            array[int(first) : int(first) + chunk_rows]
        except Exception:
            return max(int(first), int(np.min(rows)))
    return int(np.min(rows))


def inspect(store: EpisodeStore | str | Path) -> dict[str, Any]:
    """A summary of a store: sizes, success, provenance and settings (JSON-serializable).

    Args:
        store: an open store or its path.

    Returns:
        ``episodes``, ``steps``, ``length`` (min/mean/max), ``success`` (count, rate),
        ``sources`` and ``strategies`` (counts), ``task_id``, ``task_version``, ``obs_mode``,
        ``cameras``, ``image_size``, ``fps``, ``data`` (shape and dtype per key), ``path`` and
        ``attrs`` (all root attributes).
    """
    if not isinstance(store, EpisodeStore):
        store = EpisodeStore.open(store)
    n = store.n_episodes
    lengths = store.episode_lengths
    meta = [store.episode_meta(i) for i in range(n)]
    successes = sum(m["success"] for m in meta)

    def counts(field: str) -> dict[str, int]:
        values = [m[field] for m in meta]
        return {v: values.count(v) for v in sorted(set(values))}

    attrs = store.attrs
    return {
        "path": str(store.path),
        "task_id": attrs["task_id"],
        "task_version": attrs["task_version"],
        "episodes": n,
        "steps": store.n_steps,
        "length": {
            "min": int(lengths.min()) if n else 0,
            "mean": float(lengths.mean()) if n else 0.0,
            "max": int(lengths.max()) if n else 0,
        },
        "success": {"count": int(successes), "rate": successes / n if n else 0.0},
        "sources": counts("source"),
        "strategies": counts("strategy"),
        "obs_mode": attrs["obs_mode"],
        "cameras": attrs["cameras"],
        "image_size": attrs["image_size"],
        "fps": attrs["fps"],
        "data": {key: store.array_info(key) for key in store.data_keys},
        "attrs": attrs,
    }
