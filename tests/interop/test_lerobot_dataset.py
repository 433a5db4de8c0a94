"""LeRobotDataset <-> Zarr, against datasets LeRobot 0.6.1 itself wrote (tests/fixtures/lerobot)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from aloha_bench import keys, lerobot_units
from aloha_bench.data.store import EpisodeStore
from aloha_bench.interop import LeRobotFormatError, from_lerobot, parse_camera_map, to_lerobot
from aloha_bench.interop.lerobot_dataset import load_joint_ranges
from aloha_bench.lerobot_units import JointRanges, UnitsError, lerobot_to_rad, rad_to_lerobot

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lerobot"
EXPECTED = np.load(FIXTURES / "expected.npz")
CALIBRATION = FIXTURES / "calibration"
OVERHEAD = {"top": "observation.images.overhead"}


def make_store(path: Path, lengths=(9, 6), cameras=("top",), size=(48, 64)) -> Path:
    """A pixels store with smooth images (what a codec keeps) and every metadata field set."""
    store = EpisodeStore.create(
        path,
        task_id="transfer_cube",
        task_version=1,
        obs_mode="pixels",
        cameras=cameras,
        image_size=size,
        generator={"source": "test"},
    )
    y, x = np.mgrid[0 : size[0], 0 : size[1]]
    for episode, length in enumerate(lengths):
        t = np.linspace(0, 1, length)[:, None]
        state = (0.4 * np.sin(2 * t + np.arange(12) / 3 + episode)).astype(np.float32)
        arrays = {
            keys.STATE: state,
            keys.ACTION: state + np.float32(0.05),
            keys.ENVIRONMENT_STATE: np.tile(np.arange(7, dtype=np.float32), (length, 1)) + t,
        }
        for camera in cameras:
            frames = np.empty((length, *size, 3), np.uint8)
            for i in range(length):
                frames[i, ..., 0] = (x * 3 + 5 * i) % 256
                frames[i, ..., 1] = y * 4
                frames[i, ..., 2] = 120 + 20 * episode
            arrays[keys.image_key(camera)] = frames
        meta = {"seed": 10 + episode, "success": episode == 0, "max_stage": 2 + episode}
        store.append_episode(
            arrays,
            {**meta, "source": "human", "strategy": f"s{episode}", "style": {"pace": 1.5}},
        )
    return path


# ------------------------------------------------------------------------------------------------
# Units (aloha_bench/lerobot_units.py)
# ------------------------------------------------------------------------------------------------
def test_units_agree_with_the_calibration_ticks_conversion():
    """LeRobot's degree/range/0..100 values of a tick map to the radians calibration.py gives."""
    calibration = pytest.importorskip("aloha_bench.robots.calibration")
    arm = calibration.load_calibration(CALIBRATION / "rig_left.json")
    ranges = load_joint_ranges(CALIBRATION)
    motors = list(arm.motors.values())
    ticks = np.array([(m.range_min + 3 * m.range_max) // 4 for m in motors])
    rad = calibration.ticks_to_rad(ticks, arm)
    low = np.array([m.range_min for m in motors], float)
    high = np.array([m.range_max for m in motors], float)
    mid = (low + high) / 2
    # LeRobot's MotorsBus._normalize (drive_mode 0 everywhere in these files).
    degrees = (ticks - mid) * 360 / 4095
    degrees[5] = (ticks[5] - low[5]) / (high[5] - low[5]) * 100
    ranged = (ticks - low) / (high - low) * 200 - 100
    ranged[5] = degrees[5]
    both = lambda v: np.concatenate([v, v])  # noqa: E731  (right arm: same file shape)
    right = JointRanges(
        np.concatenate([ranges.range_min[:6]] * 2),
        np.concatenate([ranges.range_max[:6]] * 2),
        np.zeros(12, int),
    )
    np.testing.assert_allclose(lerobot_to_rad(both(degrees), "degrees", right)[:6], rad, atol=1e-9)
    np.testing.assert_allclose(lerobot_to_rad(both(ranged), "range", right)[:6], rad, atol=1e-9)


def test_units_round_trip_and_sign_of_a_flipped_joint():
    ranges = load_joint_ranges(CALIBRATION)
    flipped = JointRanges(ranges.range_min, ranges.range_max, np.eye(12, dtype=int)[2])
    q = np.linspace(-1.0, 1.0, 12)
    for units in ("degrees", "range", "radians"):
        back = lerobot_to_rad(rad_to_lerobot(q, units, flipped), units, flipped)
        np.testing.assert_allclose(back, q, atol=1e-12)
    assert lerobot_units.rad_per_unit("degrees", flipped)[2] < 0  # drive_mode 1 flips degrees
    assert lerobot_units.rad_per_unit("range", flipped)[2] > 0  # range mode negates it itself


def test_units_without_calibration_name_the_feature():
    with pytest.raises(UnitsError, match="left_gripper.pos.*--calibration"):
        lerobot_to_rad(np.zeros(12), "degrees")
    with pytest.raises(UnitsError, match="left_shoulder_pan.pos"):
        lerobot_to_rad(np.zeros(12), "range")
    with pytest.raises(UnitsError, match="unknown units"):
        lerobot_to_rad(np.zeros(12), "turns")


# ------------------------------------------------------------------------------------------------
# LeRobot -> Zarr
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["30", "21"])
def test_lerobot_recording_converts_to_what_lerobot_reads(tmp_path, version):
    """Frames equal LeRobot's own decode (AV1 for v3.0, H.264 for v2.1); joints in radians."""
    out = tmp_path / "real.zarr"
    summary = from_lerobot(
        FIXTURES / f"dataset_v{version}",
        out,
        units="degrees",
        calibration=CALIBRATION,
        camera_map=OVERHEAD,
        task="transfer_cube",
    )
    store = EpisodeStore.open(out)
    assert summary["episodes"] == store.n_episodes and store.cameras == ("top",)
    ranges = load_joint_ranges(CALIBRATION)
    for key, name in ((keys.ACTION, "action"), (keys.STATE, "state")):
        want = lerobot_to_rad(EXPECTED[f"v{version}_{name}"], "degrees", ranges)
        np.testing.assert_allclose(store.read_all(key), want, atol=1e-6)
    rows = EXPECTED[f"v{version}_image_rows"]
    frames = store.read_rows(keys.image_key("top"), rows)
    np.testing.assert_array_equal(frames, EXPECTED[f"v{version}_images"])
    meta = store.episode_meta(0)
    assert meta["source"] == "lerobot" and meta["seed"] == -1
    assert store.attrs["generator"]["codebase_version"] == f"v{version[0]}.{version[1]}"
    assert store.array_info(keys.ENVIRONMENT_STATE)["shape"] == [0]


def test_units_are_refused_when_unknown_and_nothing_is_written(tmp_path):
    with pytest.raises(UnitsError, match="--units degrees"):
        from_lerobot(FIXTURES / "dataset_v30", tmp_path / "x.zarr", camera_map=OVERHEAD)
    with pytest.raises(UnitsError, match="--calibration"):
        from_lerobot(
            FIXTURES / "dataset_v30", tmp_path / "x.zarr", units="degrees", camera_map=OVERHEAD
        )
    assert list(tmp_path.iterdir()) == []


def test_unmapped_camera_names_the_fix(tmp_path):
    with pytest.raises(LeRobotFormatError, match="--camera-map CAMERA=observation.images.overhead"):
        from_lerobot(FIXTURES / "dataset_v30", tmp_path / "x.zarr", units="radians")


def _damaged_copy(tmp_path: Path, edit) -> Path:
    copy = tmp_path / "damaged"
    shutil.copytree(FIXTURES / "dataset_v30", copy)
    edit(copy)
    return copy


def _edit_info(change):
    def edit(root: Path) -> None:
        info = json.loads((root / "meta/info.json").read_text())
        change(info)
        (root / "meta/info.json").write_text(json.dumps(info))

    return edit


def _drop_episode(root: Path) -> None:
    path = next((root / "meta/episodes").glob("*/*.parquet"))
    table = pq.read_table(path)
    pq.write_table(table.filter(np.array(table.column("episode_index").to_pylist()) != 1), path)


def _truncate_video(root: Path) -> None:
    video = next((root / "videos").rglob("*.mp4"))
    data = video.read_bytes()
    video.write_bytes(data[: len(data) // 2])


def _shape_12_to_6(info):
    info["features"]["action"]["shape"] = [6]


def _fps_30(info):
    info["fps"] = 30


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda root: (root / "meta/info.json").unlink(), "meta/info.json missing"),
        (lambda root: (root / "meta/stats.json").unlink() or _drop_episode(root), "gap"),
        (_edit_info(_shape_12_to_6), r"action: shape \[6\]"),
        (_edit_info(_fps_30), "30 fps.*dataset.fps=50"),
        (_truncate_video, "file-000.mp4"),
        (lambda root: shutil.rmtree(root / "data"), "no parquet files"),
    ],
    ids=["no-info", "episode-gap", "wrong-shape", "other-fps", "truncated-video", "no-data"],
)
def test_bad_datasets_get_clear_errors_and_leave_no_output(tmp_path, edit, message):
    source = _damaged_copy(tmp_path, edit)
    out = tmp_path / "out.zarr"
    with pytest.raises(LeRobotFormatError, match=message):
        from_lerobot(
            source,
            out,
            units="degrees",
            calibration=CALIBRATION,
            camera_map=OVERHEAD,
            task="transfer_cube",
        )
    assert not out.exists()
    assert not list(tmp_path.glob(".out.zarr*"))  # no half-written store left behind


# ------------------------------------------------------------------------------------------------
# Zarr -> LeRobot -> Zarr
# ------------------------------------------------------------------------------------------------
def test_store_to_lerobot_layout(tmp_path):
    out = tmp_path / "lr"
    to_lerobot(make_store(tmp_path / "s.zarr"), out, camera_map=OVERHEAD)
    info = json.loads((out / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 50
    assert info["total_episodes"] == 2 and info["total_frames"] == 15
    assert info["features"]["action"]["names"][0] == "left_shoulder_pan.pos"
    assert info["features"]["observation.images.overhead"]["info"]["video.codec"] == "av1"
    for path in (
        "meta/stats.json",
        "meta/tasks.parquet",
        "meta/episodes/chunk-000/file-000.parquet",
        "data/chunk-000/file-000.parquet",
        "videos/observation.images.overhead/chunk-000/file-000.mp4",
    ):
        assert (out / path).is_file(), path
    data = pq.read_table(out / "data/chunk-000/file-000.parquet")
    assert data.column_names[-5:] == [
        "timestamp",
        "frame_index",
        "episode_index",
        "index",
        "task_index",
    ]
    episodes = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert episodes[1]["dataset_from_index"] == 9 and episodes[1]["aloha_bench/seed"] == 11
    assert episodes[1]["videos/observation.images.overhead/from_timestamp"] == pytest.approx(0.18)
    assert episodes[0]["tasks"][0].startswith("The right arm picks up")
    stats = json.loads((out / "meta/stats.json").read_text())
    assert np.array(stats["observation.images.overhead"]["mean"]).shape == (3, 1, 1)


@pytest.mark.parametrize("units", ["radians", "degrees"])
def test_round_trip_keeps_everything(tmp_path, units):
    source = make_store(tmp_path / "s.zarr")
    calibration = None if units == "radians" else CALIBRATION
    to_lerobot(source, tmp_path / "lr", units=units, calibration=calibration)
    from_lerobot(tmp_path / "lr", tmp_path / "back.zarr", calibration=calibration)
    a, b = EpisodeStore.open(source), EpisodeStore.open(tmp_path / "back.zarr")
    atol = 0 if units == "radians" else 1e-6
    for key in (keys.ACTION, keys.STATE, keys.ENVIRONMENT_STATE):
        np.testing.assert_allclose(b.read_all(key), a.read_all(key), atol=atol)
    image = keys.image_key("top")
    error = np.abs(b.read_rows(image, slice(0, 15)).astype(int) - a.read_rows(image, slice(0, 15)))
    assert error.mean() < 4.0  # AV1 at CRF 30: codec error only
    assert [b.episode_meta(i) for i in range(2)] == [a.episode_meta(i) for i in range(2)]
    assert b.attrs["task_id"] == "transfer_cube" and b.attrs["generator"] == {"source": "test"}


def test_existing_output_is_refused(tmp_path):
    source = make_store(tmp_path / "s.zarr")
    (tmp_path / "lr").mkdir()
    with pytest.raises(FileExistsError, match="already exists"):
        to_lerobot(source, tmp_path / "lr")


def test_camera_map_parsing():
    assert parse_camera_map(["top=overhead"]) == OVERHEAD
    with pytest.raises(ValueError, match="OURS=THEIRS"):
        parse_camera_map(["top"])
    with pytest.raises(ValueError, match="unknown camera"):
        parse_camera_map(["overhead=top"])
