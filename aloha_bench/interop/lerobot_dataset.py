"""LeRobotDataset (v3.0; v2.1 and v2.0 read) <-> this package's Zarr episode store.

LeRobotDataset v3.0 on disk (LeRobot >= 0.4; ``lerobot/datasets/utils.py`` of LeRobot 0.6)::

    meta/info.json                         codebase_version, fps, features, robot_type, paths
    meta/stats.json                        per feature: min, max, mean, std, count, q01..q99
    meta/tasks.parquet                     task strings (index) -> task_index
    meta/episodes/chunk-000/file-000.parquet   one row per episode: length, tasks, where its
                                           rows and video frames are, per-episode stats, extras
    data/chunk-000/file-000.parquet        one row per frame: features + timestamp, frame_index,
                                           episode_index, index, task_index
    videos/<camera key>/chunk-000/file-000.mp4   episodes back to back (from/to_timestamp)

v2.x keeps one parquet file and one mp4 per episode and its episode list in
``meta/episodes.jsonl``. Our per-episode metadata (seed, success, stage, source, strategy,
style) goes in extra ``aloha_bench/<field>`` columns of the episodes table, where LeRobot keeps
extra per-episode metadata; the store's own attributes (task, generator settings, units) go in
``meta/aloha_bench.json``, a file LeRobot does not read. Converting back restores both.

Output is written to a hidden ``.<name>.partial`` folder beside the destination and renamed
into place only when complete: an interrupted or failed conversion never leaves a folder that
looks like a valid dataset.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from aloha_bench import embodiment, keys, lerobot_units
from aloha_bench.data.store import DatasetError, EpisodeStore
from aloha_bench.interop.video import VideoError, VideoReader, VideoWriter, video_info
from aloha_bench.lerobot_units import LEROBOT_JOINT_NAMES, JointRanges

CODEBASE_VERSION = "v3.0"
READABLE_VERSIONS = ("v2.0", "v2.1", "v3.0")
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
SIDE_PATH = "meta/aloha_bench.json"
CHUNK_FILE = "chunk-{chunk_index:03d}/file-{file_index:03d}"
DATA_PATH = "data/" + CHUNK_FILE + ".parquet"
EPISODES_PATH = "meta/episodes/" + CHUNK_FILE + ".parquet"
VIDEO_PATH = "videos/{video_key}/" + CHUNK_FILE + ".mp4"
# LeRobot 0.6's limits (files per chunk folder, MB per data and video file).
CHUNKS_SIZE = 1000
DATA_FILE_MB = 100
VIDEO_FILE_MB = 200
# The bookkeeping columns every LeRobot frame has (``lerobot.utils.constants.DEFAULT_FEATURES``).
DEFAULT_FEATURES: dict[str, dict[str, Any]] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
# Prefix of our per-episode columns in LeRobot's episodes table.
EXTRA_PREFIX = "aloha_bench/"
META_COLUMNS = ("seed", "success", "max_stage", "source", "strategy", "style")
# LeRobot's name of the SO-101 bimanual robot (``robots/bi_so_follower``).
ROBOT_TYPE = "bi_so_follower"
# Frames per episode summarized for an image's per-episode statistics.
_IMAGE_STATS_FRAMES = 20
_IMAGE_STATS_TOTAL = 1000


class LeRobotFormatError(DatasetError):
    """A LeRobot dataset is missing files, inconsistent, or holds what cannot be converted."""


def is_lerobot_dataset(path: str | Path) -> bool:
    """True if ``path`` is a folder with LeRobot's ``meta/info.json``."""
    return (Path(path) / INFO_PATH).is_file()


def parse_camera_map(items: Sequence[str] | None) -> dict[str, str]:
    """``["top=observation.images.overhead", ...]`` -> ``{"top": "observation.images.overhead"}``.

    The LeRobot side may be given without its ``observation.images.`` prefix.

    Raises:
        ValueError: an item is malformed or names an unknown camera of ours.
    """
    mapping: dict[str, str] = {}
    for item in items or ():
        ours, sep, theirs = item.partition("=")
        ours, theirs = ours.strip(), theirs.strip()
        if not sep or not ours or not theirs:
            raise ValueError(
                f"--camera-map {item!r}: expected OURS=THEIRS, e.g. top=observation.images.overhead"
            )
        keys.image_key(ours)  # validates the camera name
        if not theirs.startswith(keys.IMAGES_PREFIX):
            theirs = keys.IMAGES_PREFIX + theirs
        if ours in mapping or theirs in mapping.values():
            raise ValueError(f"--camera-map {item!r}: a camera is mapped twice")
        mapping[ours] = theirs
    return mapping


def load_joint_ranges(calibration: str | Path) -> JointRanges:
    """The two follower arms' calibration from a folder (ours or LeRobot's file names).

    Accepts ``left_follower.json`` / ``right_follower.json`` (``aloha-bench calibrate``) or the
    files LeRobot's bimanual robot writes (``<id>_left.json`` / ``<id>_right.json``): exactly one
    JSON file whose name contains ``left`` (``right``), a ``follower`` one preferred.

    Raises:
        ValueError: the folder lacks an arm's file or has several candidates.
        CalibrationError: a file is invalid (from ``robots.calibration``).
    """
    try:
        from aloha_bench.robots.calibration import load_calibration
    except ImportError as exc:  # scservo_sdk comes with the [robot] extra
        raise ValueError(
            f"reading calibration files needs the robot extra ({exc}); pip install "
            "'aloha-bench[robot]'"
        ) from exc
    folder = Path(calibration)
    if not folder.is_dir():
        raise FileNotFoundError(f"--calibration {folder}: not a folder of calibration JSON files")
    arms = {}
    for arm in embodiment.ARMS:
        candidates = sorted(p for p in folder.glob("*.json") if arm in p.stem)
        followers = [p for p in candidates if "follower" in p.stem]
        chosen = followers if len(followers) == 1 else candidates
        if len(chosen) != 1:
            raise ValueError(
                f"--calibration {folder}: expected one {arm} arm file (e.g. {arm}_follower.json "
                f"or <id>_{arm}.json), found {[p.name for p in candidates]}"
            )
        arms[arm] = load_calibration(chosen[0]).to_json_dict()
    return JointRanges.from_arms(arms)


@contextmanager
def _staged(out: Path) -> Iterator[Path]:
    """A hidden sibling folder to write into, renamed to ``out`` only on success."""
    if out.exists():
        raise FileExistsError(f"{out} already exists; choose another --out or delete it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial"
    if staging.exists():  # leftover of an interrupted conversion
        shutil.rmtree(staging)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    os.replace(staging, out)


# ------------------------------------------------------------------------------------------------
# Statistics (LeRobot's: per feature min, max, mean, std, count and quantiles)
# ------------------------------------------------------------------------------------------------
def _stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """Statistics over the first axis of (N, D) values."""
    values = values.astype(np.float64)
    out = {
        "min": values.min(axis=0),
        "max": values.max(axis=0),
        "mean": values.mean(axis=0),
        "std": values.std(axis=0),
        "count": np.array([len(values)]),
    }
    for name, q in QUANTILES.items():
        out[name] = np.quantile(values, q, axis=0)
    return out


def _image_stats(frames: np.ndarray) -> dict[str, np.ndarray]:
    """Per-channel statistics of (N, H, W, 3) uint8 frames in [0, 1], shaped (3, 1, 1)."""
    pixels = frames.reshape(-1, 3) / 255.0
    stats = _stats(pixels)
    count = np.array([len(frames)])
    return {k: (count if k == "count" else v.reshape(3, 1, 1)) for k, v in stats.items()}


def _jsonable_stats(stats: Mapping[str, Mapping[str, np.ndarray]]) -> dict:
    return {key: {k: np.asarray(v).tolist() for k, v in s.items()} for key, s in stats.items()}


# ------------------------------------------------------------------------------------------------
# Zarr -> LeRobot
# ------------------------------------------------------------------------------------------------
def _fixed_list(values: np.ndarray) -> pa.Array:
    values = np.ascontiguousarray(values, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def _hf_features(features: Mapping[str, Mapping[str, Any]]) -> bytes:
    """The ``huggingface`` schema metadata ``datasets`` writes beside LeRobot's parquet files."""
    hf = {}
    for key, feature in features.items():
        if feature["dtype"] == "video":
            continue
        value = {"dtype": feature["dtype"], "_type": "Value"}
        if feature["shape"] == [1]:
            hf[key] = value
        else:
            hf[key] = {"feature": value, "length": feature["shape"][0], "_type": "List"}
    return json.dumps({"info": {"features": hf}}).encode()


def to_lerobot(
    store_path: str | Path,
    out: str | Path,
    *,
    units: str | None = "radians",
    calibration: str | Path | None = None,
    camera_map: Mapping[str, str] | None = None,
    task: str | None = None,
) -> dict[str, Any]:
    """Write a Zarr episode store as a LeRobotDataset v3.0 folder.

    Args:
        store_path: the store (``aloha-bench generate``).
        out: the dataset folder to create (must not exist).
        units: joint units of the output: ``"radians"`` (ours, lossless), ``"degrees"`` (LeRobot
            SO-101 ``use_degrees=True``) or ``"range"`` (its default -100..100); the gripper is
            0..100 in both LeRobot modes (:mod:`aloha_bench.lerobot_units`).
        calibration: folder of the arms' calibration files (needed by ``degrees`` and
            ``range``).
        camera_map: our camera -> LeRobot image key; default ``observation.images.<camera>``.
        task: the task string; default the task's description from its ``task.toml``.

    Returns:
        A summary: ``out``, ``episodes``, ``frames``, ``fps``, ``cameras`` (ours -> theirs),
        ``units``.

    Raises:
        DatasetError: the store is damaged. UnitsError: the units need a calibration.
        FileExistsError: ``out`` exists.
    """
    store = EpisodeStore.open(store_path)
    out = Path(out)
    attrs = store.attrs
    units = units or "radians"
    ranges = load_joint_ranges(calibration) if calibration is not None else None
    factor = lerobot_units.rad_per_unit(units, ranges)  # refuses before anything is written
    camera_map = dict(camera_map or {})
    unknown = sorted(set(camera_map) - set(store.cameras))
    if unknown:
        raise ValueError(f"--camera-map names {unknown}, not cameras of {store.path}")
    video_keys = {cam: camera_map.get(cam, keys.image_key(cam)) for cam in store.cameras}
    if task is None:
        task = _task_description(attrs["task_id"])
    fps = int(round(attrs["fps"]))
    env_dim = int(store.array_info(keys.ENVIRONMENT_STATE)["shape"][0])

    features: dict[str, dict[str, Any]] = {
        keys.STATE: {"dtype": "float32", "shape": [12], "names": list(LEROBOT_JOINT_NAMES)},
        keys.ACTION: {"dtype": "float32", "shape": [12], "names": list(LEROBOT_JOINT_NAMES)},
    }
    if env_dim:
        features[keys.ENVIRONMENT_STATE] = {"dtype": "float32", "shape": [env_dim], "names": None}
    if store.cameras:
        height, width = attrs["image_size"]
        for video_key in video_keys.values():
            features[video_key] = {
                "dtype": "video",
                "shape": [height, width, 3],
                "names": ["height", "width", "channels"],
                "info": video_info(height, width, fps),
            }
    features |= DEFAULT_FEATURES
    low_dim = [k for k in (keys.STATE, keys.ACTION, keys.ENVIRONMENT_STATE) if k in features]

    with _staged(out) as root:
        episodes: list[dict[str, Any]] = []
        columns: dict[str, list[np.ndarray]] = {
            k: [] for k in features if k not in video_keys.values()
        }
        image_samples: dict[str, list[np.ndarray]] = {k: [] for k in video_keys.values()}
        writers: dict[str, VideoWriter] = {}
        video_files = dict.fromkeys(video_keys.values(), 0)
        video_start_s = dict.fromkeys(video_keys.values(), 0.0)
        n_total = store.n_episodes
        try:
            for episode in range(n_total):
                rows = store.episode_slice(episode)
                length = rows.stop - rows.start
                ep_cols = {k: store.read_rows(k, rows) for k in low_dim}
                for k in (keys.STATE, keys.ACTION):
                    ep_cols[k] = (ep_cols[k] / factor).astype(np.float32)
                frame_index = np.arange(length, dtype=np.int64)
                ep_cols["timestamp"] = (frame_index / fps).astype(np.float32)
                ep_cols["frame_index"] = frame_index
                ep_cols["episode_index"] = np.full(length, episode, dtype=np.int64)
                ep_cols["index"] = np.arange(rows.start, rows.stop, dtype=np.int64)
                ep_cols["task_index"] = np.zeros(length, dtype=np.int64)
                for k, v in ep_cols.items():
                    columns[k].append(v)
                record: dict[str, Any] = {
                    "episode_index": episode,
                    "tasks": [task],
                    "length": length,
                    "data/chunk_index": 0,
                    "data/file_index": 0,
                    "dataset_from_index": rows.start,
                    "dataset_to_index": rows.stop,
                }
                ep_stats = {k: _stats(v.reshape(length, -1)) for k, v in ep_cols.items()}
                for cam, video_key in video_keys.items():
                    frames = store.read_rows(keys.image_key(cam), rows)  # (T, H, W, 3)
                    writer = writers.get(video_key)
                    if writer is not None and writer.bytes > VIDEO_FILE_MB * 2**20:
                        writer.close()
                        writer = None
                        video_files[video_key] += 1
                        video_start_s[video_key] = 0.0
                    if writer is None:
                        chunk, file = divmod(video_files[video_key], CHUNKS_SIZE)
                        path = root / VIDEO_PATH.format(
                            video_key=video_key, chunk_index=chunk, file_index=file
                        )
                        path.parent.mkdir(parents=True, exist_ok=True)
                        writer = writers[video_key] = VideoWriter(path, *frames.shape[1:3], fps)
                    writer.write(frames)
                    chunk, file = divmod(video_files[video_key], CHUNKS_SIZE)
                    start_s = video_start_s[video_key]
                    video_start_s[video_key] = start_s + length / fps
                    record |= {
                        f"videos/{video_key}/chunk_index": chunk,
                        f"videos/{video_key}/file_index": file,
                        f"videos/{video_key}/from_timestamp": start_s,
                        f"videos/{video_key}/to_timestamp": start_s + length / fps,
                    }
                    pick = np.linspace(0, length - 1, min(_IMAGE_STATS_FRAMES, length)).astype(int)
                    image_samples[video_key].append(frames[pick])
                    ep_stats[video_key] = _image_stats(frames[pick])
                for k, s in ep_stats.items():
                    for name, value in s.items():
                        record[f"stats/{k}/{name}"] = np.asarray(value).tolist()
                record["meta/episodes/chunk_index"] = 0
                record["meta/episodes/file_index"] = 0
                meta = store.episode_meta(episode)
                for name in META_COLUMNS:
                    value = meta[name]
                    record[EXTRA_PREFIX + name] = json.dumps(value) if name == "style" else value
                episodes.append(record)
        finally:
            for writer in writers.values():
                writer.close()

        data = {k: np.concatenate(v) for k, v in columns.items()}
        _write_data(root, data, features)
        stats = {k: _stats(v.reshape(len(v), -1)) for k, v in data.items()}
        for video_key, samples in image_samples.items():
            frames = np.concatenate(samples)
            pick = np.linspace(0, len(frames) - 1, min(_IMAGE_STATS_TOTAL, len(frames)))
            stats[video_key] = _image_stats(frames[pick.astype(int)])
            stats[video_key]["count"] = np.array([len(data["index"])])
        _write_json(root / STATS_PATH, _jsonable_stats(stats))
        _write_tasks(root, [task])
        path = root / EPISODES_PATH.format(chunk_index=0, file_index=0)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(episodes), path)
        info = {
            "codebase_version": CODEBASE_VERSION,
            "fps": fps,
            "features": features,
            "total_episodes": n_total,
            "total_frames": store.n_steps,
            "total_tasks": 1,
            "chunks_size": CHUNKS_SIZE,
            "data_files_size_in_mb": DATA_FILE_MB,
            "video_files_size_in_mb": VIDEO_FILE_MB,
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if video_keys else None,
            "robot_type": ROBOT_TYPE,
            "splits": {"train": f"0:{n_total}"},
        }
        side = {
            "units": units,
            "cameras": video_keys,
            "store_attrs": attrs,
            "source": str(store.path),
        }
        _write_json(root / SIDE_PATH, side)
        _write_json(root / INFO_PATH, info)  # last: a folder without it is not a dataset
    return {
        "out": str(out),
        "episodes": n_total,
        "frames": store.n_steps,
        "fps": fps,
        "cameras": video_keys,
        "units": units,
    }


def _task_description(task_id: str) -> str:
    from aloha_bench.sim.task_spec import load_task_spec

    try:
        return load_task_spec(task_id).description or task_id
    except (FileNotFoundError, ValueError):
        return task_id  # a store of a task this install does not have


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=4) + "\n")


def _write_tasks(root: Path, tasks: Sequence[str]) -> None:
    import pandas as pd

    frame = pd.DataFrame({"task_index": np.arange(len(tasks), dtype=np.int64)})
    frame.index = pd.Index(list(tasks), name="task")
    frame.to_parquet(root / TASKS_PATH)


def _write_data(root: Path, data: Mapping[str, np.ndarray], features: Mapping) -> None:
    arrays, names = [], []
    for key, feature in features.items():
        if feature["dtype"] == "video":
            continue
        value = data[key]
        arrays.append(_fixed_list(value) if value.ndim == 2 else pa.array(value))
        names.append(key)
    table = pa.Table.from_arrays(arrays, names=names)
    table = table.replace_schema_metadata({"huggingface": _hf_features(features)})
    bytes_per_row = max(1, table.nbytes // max(1, table.num_rows))
    rows_per_file = max(1, DATA_FILE_MB * 2**20 // bytes_per_row)
    # Files break between episodes, as LeRobot's writer does.
    episode = data["episode_index"]
    start, file_number = 0, 0
    while start < len(episode):
        stop = min(start + rows_per_file, len(episode))
        while stop < len(episode) and episode[stop] == episode[stop - 1]:
            stop += 1
        chunk, file = divmod(file_number, CHUNKS_SIZE)
        path = root / DATA_PATH.format(chunk_index=chunk, file_index=file)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.slice(start, stop - start), path)
        start, file_number = stop, file_number + 1


# ------------------------------------------------------------------------------------------------
# LeRobot -> Zarr
# ------------------------------------------------------------------------------------------------
def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise LeRobotFormatError(
            f"{path} missing; not a complete LeRobot dataset (download or copy it again)"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise LeRobotFormatError(f"{path}: not valid JSON ({exc})") from exc


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise LeRobotFormatError(f"{path} missing; not a complete LeRobot v2 dataset")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _read_parquets(paths: Sequence[Path], what: str, columns: Sequence[str] | None = None):
    if not paths:
        raise LeRobotFormatError(f"no parquet files of {what}; the dataset is incomplete")
    try:
        tables = [pq.read_table(p, columns=columns) for p in paths]
    except (pa.ArrowInvalid, OSError) as exc:
        raise LeRobotFormatError(f"{what}: a parquet file is unreadable ({exc})") from exc
    return pa.concat_tables(tables, promote_options="default")


def _column(table: pa.Table, name: str, width: int | None, where: str) -> np.ndarray:
    """A column as (N,) or (N, width) numpy."""
    column = table.column(name).combine_chunks()
    if width is None:
        return column.to_numpy(zero_copy_only=False)
    values = column.flatten().to_numpy(zero_copy_only=False)
    if len(values) != len(column) * width:
        raise LeRobotFormatError(
            f"{where}: {name} holds {len(values)} values for {len(column)} frames, expected "
            f"{width} per frame (its shape in meta/info.json)"
        )
    return values.reshape(len(column), width)


def _joint_order(feature: Mapping[str, Any], key: str) -> np.ndarray:
    """Indices that put a 12-D LeRobot feature's entries into embodiment order."""
    shape = list(feature.get("shape", []))
    if shape != [embodiment.STATE_DIM]:
        raise LeRobotFormatError(
            f"{key}: shape {shape} in meta/info.json, expected [{embodiment.STATE_DIM}]: the 12 "
            "joints of a bimanual SO-101 (left_shoulder_pan.pos ... right_gripper.pos)"
        )
    names = feature.get("names")
    if isinstance(names, dict) and len(names) == 1:  # v2.0 style {"motors": [...]}
        names = next(iter(names.values()))
    if not isinstance(names, list) or sorted(names) != sorted(LEROBOT_JOINT_NAMES):
        raise LeRobotFormatError(
            f"{key}: joint names {names} are not the bimanual SO-101's "
            f"{list(LEROBOT_JOINT_NAMES)}; only that robot converts"
        )
    return np.array([names.index(n) for n in LEROBOT_JOINT_NAMES])


class _Source:
    """A LeRobot dataset folder being read: its info, episodes and frames."""

    def __init__(self, root: Path) -> None:
        self.root = root
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: no such dataset folder")
        self.info = _read_json(root / INFO_PATH)
        self.version = str(self.info.get("codebase_version"))
        if self.version not in READABLE_VERSIONS:
            raise LeRobotFormatError(
                f"{root / INFO_PATH}: codebase_version {self.version!r}; this converter reads "
                f"{READABLE_VERSIONS} (convert older datasets with LeRobot's own scripts first)"
            )
        self.fps = self.info.get("fps")
        self.features: dict[str, dict] = self.info.get("features") or {}
        for key in (keys.STATE, keys.ACTION):
            if key not in self.features:
                raise LeRobotFormatError(
                    f"{root / INFO_PATH}: no {key!r} feature; a dataset to train ACT on needs "
                    f"{keys.STATE!r} and {keys.ACTION!r} (have {sorted(self.features)})"
                )
        self.image_keys = [
            k for k, f in self.features.items() if f.get("dtype") in ("video", "image")
        ]
        self.episodes = self._episodes()

    def _episodes(self) -> list[dict[str, Any]]:
        if self.version == CODEBASE_VERSION:
            paths = sorted((self.root / "meta/episodes").glob("*/*.parquet"))
            episodes = _read_parquets(paths, f"{self.root}/meta/episodes").to_pylist()
        else:
            episodes = _read_jsonl(self.root / "meta/episodes.jsonl")
        episodes.sort(key=lambda e: e["episode_index"])
        indices = [int(e["episode_index"]) for e in episodes]
        if indices != list(range(len(indices))):
            missing = sorted(set(range(max(indices, default=-1) + 1)) - set(indices))
            raise LeRobotFormatError(
                f"{self.root}: episode indices have a gap (episode {missing[0]} is missing of "
                f"0..{max(indices)}); the dataset is incomplete, re-download or re-record it"
            )
        total = self.info.get("total_episodes")
        if total is not None and total != len(episodes):
            raise LeRobotFormatError(
                f"{self.root / INFO_PATH}: total_episodes is {total} but the episode list has "
                f"{len(episodes)}; the dataset is incomplete"
            )
        return episodes

    def frames(self) -> Iterator[tuple[dict[str, Any], pa.Table]]:
        """(episode record, its rows ordered by frame_index), episode by episode."""
        if self.version == CODEBASE_VERSION:
            paths = sorted((self.root / "data").glob("*/*.parquet"))
            table = _read_parquets(paths, f"{self.root}/data")
            episode_column = _column(table, "episode_index", None, "data")
            order = np.argsort(episode_column, kind="stable")
            bounds = np.searchsorted(episode_column[order], np.arange(len(self.episodes) + 1))
            for episode in self.episodes:
                i = int(episode["episode_index"])
                yield episode, table.take(order[bounds[i] : bounds[i + 1]])
        else:
            template = self.info.get("data_path", "")
            chunks = int(self.info.get("chunks_size", CHUNKS_SIZE))
            for episode in self.episodes:
                i = int(episode["episode_index"])
                path = self.root / template.format(episode_chunk=i // chunks, episode_index=i)
                yield episode, _read_parquets([path] if path.is_file() else [], str(path))

    def video_path(self, key: str, episode: Mapping[str, Any]) -> tuple[Path, float]:
        """(file, start time in seconds) of an episode's frames of camera ``key``."""
        template = self.info.get("video_path") or ""
        if self.version == CODEBASE_VERSION:
            prefix = f"videos/{key}/"
            path = template.format(
                video_key=key,
                chunk_index=episode[prefix + "chunk_index"],
                file_index=episode[prefix + "file_index"],
            )
            return self.root / path, float(episode[prefix + "from_timestamp"])
        i = int(episode["episode_index"])
        chunks = int(self.info.get("chunks_size", CHUNKS_SIZE))
        path = template.format(episode_chunk=i // chunks, video_key=key, episode_index=i)
        return self.root / path, 0.0


def from_lerobot(
    source: str | Path,
    out: str | Path,
    *,
    units: str | None = None,
    calibration: str | Path | None = None,
    camera_map: Mapping[str, str] | None = None,
    task: str | None = None,
) -> dict[str, Any]:
    """Convert a LeRobotDataset (v3.0, v2.1 or v2.0 folder) of a bimanual SO-101 to a store.

    Args:
        source: the dataset folder (``meta/info.json`` inside).
        out: the Zarr store to create (must not exist).
        units: what the joint values are in: ``"degrees"``, ``"range"`` or ``"radians"``
            (:mod:`aloha_bench.lerobot_units`); default: what ``meta/aloha_bench.json`` records
            (datasets written by :func:`to_lerobot`), else refused (LeRobot does not record it).
        calibration: folder of the arms' calibration files (needed by ``degrees``/``range``).
        camera_map: our camera -> LeRobot image key; LeRobot cameras whose name is one of ours
            (``observation.images.top``) map by themselves.
        task: the store's ``task_id``, one of aloha-bench's tasks (the one the recording shows);
            default what ``meta/aloha_bench.json`` records. Stores always name a task of ours
            (``EpisodeStore`` refuses others), so a LeRobot recording without one is refused.

    Returns:
        ``out``, ``episodes``, ``frames``, ``cameras`` (ours -> theirs), ``units``.

    Raises:
        LeRobotFormatError: missing meta files, a feature of the wrong shape or names, an
            episode index gap, frames out of order, a truncated or undecodable video, another fps.
        UnitsError: the units are unknown or need a calibration.
    """
    src = _Source(Path(source))
    side = (
        json.loads((src.root / SIDE_PATH).read_text()) if (src.root / SIDE_PATH).is_file() else {}
    )
    store_attrs = side.get("store_attrs", {})
    if src.fps != embodiment.CONTROL_RATE_HZ:
        raise LeRobotFormatError(
            f"{src.root}: recorded at {src.fps} fps, but the rig runs at "
            f"{embodiment.CONTROL_RATE_HZ:g} Hz and a policy's chunk is a time span; record at "
            f"{embodiment.CONTROL_RATE_HZ:g} fps (lerobot-record --dataset.fps="
            f"{embodiment.CONTROL_RATE_HZ:g})"
        )
    units = units or side.get("units")
    if units is None:
        raise lerobot_units.UnitsError(
            f"{src.root}: {keys.STATE} and {keys.ACTION}: LeRobot does not record its SO-101 "
            "joint units; pass --units degrees (recorded with use_degrees=true), range (the "
            "default -100..100) or radians (written by aloha-bench)"
        )
    ranges = load_joint_ranges(calibration) if calibration is not None else None
    factor = lerobot_units.rad_per_unit(units, ranges)
    state_order = _joint_order(src.features[keys.STATE], keys.STATE)
    action_order = _joint_order(src.features[keys.ACTION], keys.ACTION)
    env_feature = src.features.get(keys.ENVIRONMENT_STATE)
    env_dim = int(env_feature["shape"][0]) if env_feature else 0

    cameras = _map_cameras(src, dict(camera_map or {}), side.get("cameras", {}))
    sizes = {tuple(src.features[k]["shape"][:2]) for k in cameras.values()}
    for key in cameras.values():
        shape = list(src.features[key]["shape"])
        if len(shape) != 3 or 3 not in (shape[0], shape[2]):
            raise LeRobotFormatError(f"{key}: shape {shape}, expected [height, width, 3]")
    if len(sizes) > 1:
        raise LeRobotFormatError(
            f"{src.root}: cameras {list(cameras.values())} have different sizes {sorted(sizes)}; "
            "a store holds one image size, map only cameras of one size with --camera-map"
        )
    obs_mode = "pixels" if cameras else "state"
    task_id = task or store_attrs.get("task_id")
    if task_id is None:
        from aloha_bench.sim.task_spec import available_tasks

        raise LeRobotFormatError(
            f"{src.root}: which aloha-bench task does this recording show? Pass --task "
            f"(convert) or --lerobot-task (train), one of {', '.join(available_tasks())}"
        )
    generator = store_attrs.get("generator") or {
        "source": "lerobot",
        "dataset": str(src.root),
        "codebase_version": src.version,
        "robot_type": src.info.get("robot_type"),
        "units": units,
    }
    readers: dict[Path, VideoReader] = {}
    with _staged(Path(out)) as staging:
        store = EpisodeStore.create(
            staging,
            task_id=task_id,
            task_version=int(store_attrs.get("task_version", 0)),
            obs_mode=obs_mode,
            cameras=list(cameras),
            image_size=next(iter(sizes)) if cameras else None,
            fps=embodiment.CONTROL_RATE_HZ,
            generator=generator,
        )
        try:
            for episode, table in src.frames():
                i = int(episode["episode_index"])
                where = f"{src.root} episode {i}"
                length = int(episode["length"])
                frame_index = _column(table, "frame_index", None, where)
                if len(table) != length or not np.array_equal(frame_index, np.arange(length)):
                    raise LeRobotFormatError(
                        f"{where}: {len(table)} rows with frame_index {frame_index[:3]}..., "
                        f"expected frames 0..{length - 1} (its length); the data is incomplete"
                    )
                arrays = {
                    keys.STATE: _column(table, keys.STATE, 12, where)[:, state_order] * factor,
                    keys.ACTION: _column(table, keys.ACTION, 12, where)[:, action_order] * factor,
                    keys.ENVIRONMENT_STATE: (
                        _column(table, keys.ENVIRONMENT_STATE, env_dim, where)
                        if env_dim
                        else np.zeros((length, 0), dtype=np.float32)
                    ),
                }
                for ours, theirs in cameras.items():
                    arrays[keys.image_key(ours)] = _images(src, theirs, episode, table, readers)
                store.append_episode(arrays, _episode_meta(episode, task_id))
        except (VideoError, KeyError, ValueError) as exc:
            if isinstance(exc, DatasetError):
                raise
            raise LeRobotFormatError(f"{src.root}: {exc}") from exc
        finally:
            for reader in readers.values():
                reader.close()
        summary = {
            "out": str(out),
            "episodes": store.n_episodes,
            "frames": store.n_steps,
            "cameras": cameras,
            "units": units,
        }
    return summary


def _map_cameras(src: _Source, camera_map: dict[str, str], recorded: Mapping[str, str]) -> dict:
    """Our camera -> LeRobot image key, for every camera of the dataset."""
    for ours, theirs in camera_map.items():
        if theirs not in src.image_keys:
            raise LeRobotFormatError(
                f"--camera-map {ours}={theirs}: the dataset has no such camera (it has "
                f"{src.image_keys})"
            )
    mapping = dict(camera_map)
    for theirs in src.image_keys:
        if theirs in mapping.values():
            continue
        name = theirs.removeprefix(keys.IMAGES_PREFIX)
        ours = next((o for o, t in recorded.items() if t == theirs), None)
        if ours is None and name in keys.CAMERAS:
            ours = name
        if ours is None or ours in mapping:
            raise LeRobotFormatError(
                f"{theirs}: no camera of ours is named {name!r}; map it with --camera-map "
                f"CAMERA={theirs} (CAMERA one of {keys.CAMERAS})"
            )
        mapping[ours] = theirs
    return mapping


def _images(
    src: _Source,
    key: str,
    episode: Mapping[str, Any],
    table: pa.Table,
    readers: dict[Path, VideoReader],
) -> np.ndarray:
    """(T, H, W, 3) uint8 frames of camera ``key`` in one episode."""
    length = int(episode["length"])
    if src.features[key]["dtype"] == "image":
        import imageio.v3 as iio

        cells = table.column(key).to_pylist()
        return np.stack([iio.imread(io.BytesIO(cell["bytes"])) for cell in cells])
    path, start_s = src.video_path(key, episode)
    if path not in readers:
        readers[path] = VideoReader(path, src.fps)
    first = round(start_s * src.fps)
    frames = readers[path].read(first, first + length)
    shape = tuple(src.features[key]["shape"][:2])
    if frames.shape[1:3] != shape:
        raise LeRobotFormatError(
            f"{path}: frames are {frames.shape[1:3]}, meta/info.json says {key} is {shape}"
        )
    return frames


def _episode_meta(episode: Mapping[str, Any], task_id: str) -> dict[str, Any]:
    """Our per-episode metadata from the extra columns, or what a LeRobot recording implies.

    A LeRobot recording has no simulator seed (-1: it never clashes with evaluation seeds) and
    no success flag: the episodes an operator saved are taken as successful demonstrations.
    """
    extra = {n: episode.get(EXTRA_PREFIX + n) for n in META_COLUMNS}
    if all(v is not None for v in extra.values()):
        return {**extra, "style": json.loads(extra["style"])}
    tasks = episode.get("tasks") or [task_id]
    return {
        "seed": -1,
        "success": True,
        "max_stage": 0,
        "source": "lerobot",
        "strategy": str(tasks[0]),
    }
