"""Replaying datasets in sim and on the (emulated) real rig; the camera alignment aid.

Both are sim-to-real tools (docs/sim_to_real.md), tested here side by side.
"""

import contextlib

import imageio.v3 as iio
import numpy as np
import pytest

from aloha_bench import align, embodiment, keys
from aloha_bench.data.store import EpisodeStore
from aloha_bench.generate import GenerateSettings, generate
from aloha_bench.replay import plot_report, replay, report_csv, report_markdown, save_report
from tests.robots.test_real_env import CAMERAS, IMAGE_SIZE, FakeCapture, Rig

K = 2 * np.pi / 4096


@pytest.fixture(scope="module")
def sim_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("replay") / "demo.zarr"
    generate(GenerateSettings(task="transfer_cube", obs_mode="state"), path, episodes=1, seed=5)
    return path


def test_sim_dataset_replays_exactly_in_sim(sim_store, tmp_path):
    report = replay(sim_store)
    (episode,) = report["episodes"]
    assert episode["seed"] == EpisodeStore.open(sim_store).episode_meta(0)["seed"]
    assert episode["steps"] == 400 and episode["start_error_rad"] == 0.0
    assert set(report["joints"]) == set(embodiment.STATE_NAMES)
    assert max(err["rmse_rad"] for err in report["joints"].values()) < 1e-6
    paths = save_report(report, tmp_path / "out")
    table = paths["md"].read_text()
    assert "| left_shoulder_pan |" in table and "RMSE (deg)" in table
    assert report_markdown(report) == table
    assert report_csv(report).count("\n") == 1 + 2 * 12
    assert iio.imread(paths["png"]).shape == (360, 720, 3)


def test_replay_measures_a_mismatch(sim_store):
    # The same actions on a rig with servo latency and backlash no longer track the recording.
    report = replay(sim_store, env_kwargs={"latency": "real"})
    errors = [err["max_deg"] for err in report["joints"].values()]
    assert max(errors) > 0.5
    image = plot_report(report)
    assert image.dtype == np.uint8 and image.shape == (360, 720, 3)


def test_replay_rejects_a_bad_episode_index(sim_store):
    with pytest.raises(IndexError, match="out of range"):
        replay(sim_store, episodes=[3])


def _write_rig_toml(rig, path):
    lines = [
        f"image_size = {list(rig.config.image_size)}",
        f"max_relative_target_rad = {rig.config.max_relative_target_rad}",
        f"reset_speed_rad_s = {rig.config.reset_speed_rad_s}",
        f"camera_timeout_s = {rig.config.camera_timeout_s}",
    ]
    for side, arm in rig.config.arms.items():
        lines += [
            f"[arms.{side}]",
            f'follower_port = "{arm.follower_port}"',
            f'follower_calibration = "{arm.follower_calibration}"',
        ]
    for name, camera in rig.config.cameras.items():
        lines += [f"[cameras.{name}]", f"device = {camera.device}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_replay_on_the_emulated_real_rig(tmp_path):
    steps = 12
    t = np.arange(steps)[:, None]
    actions = np.tile(embodiment.HOME_STATE_RAD, (steps, 1))
    actions[:, [2, 8]] += 0.05 * np.sin(0.5 * t)  # both elbows, within the per-tick cap
    # What an ideal rig records: row t holds the state after the previous action.
    states = np.concatenate([embodiment.HOME_STATE_RAD[None], actions[:-1]])
    store = EpisodeStore.create(
        tmp_path / "real.zarr",
        task_id="transfer_cube",
        task_version=1,
        obs_mode="pixels",
        cameras=CAMERAS,
        image_size=IMAGE_SIZE,
    )
    arrays = {
        keys.ACTION: actions.astype(np.float32),
        keys.STATE: states.astype(np.float32),
        keys.ENVIRONMENT_STATE: np.zeros((steps, 0), np.float32),
    }
    for camera in CAMERAS:
        arrays[keys.image_key(camera)] = np.zeros((steps, *IMAGE_SIZE, 3), np.uint8)
    store.append_episode(
        arrays, {"seed": 0, "success": True, "max_stage": 0, "source": "teleop", "strategy": ""}
    )
    with contextlib.ExitStack() as stack:
        rig = Rig(tmp_path, stack)
        report = replay(
            tmp_path / "real.zarr",
            backend="real",
            robot_config=_write_rig_toml(rig, tmp_path / "rig.toml"),
            env_kwargs={"capture_factory": rig.capture_factory},
        )
        # The rig switched torque off when the replay closed it.
        assert rig.follower_torque([0] * 12) == [0] * 12
    (episode,) = report["episodes"]
    assert report["backend"] == "real" and episode["steps"] == steps
    # The emulated servos reach each goal within a tick of encoder resolution (plus calibration
    # rounding), so the replay tracks the ideal recording to about a tick.
    assert episode["start_error_rad"] < 3 * K
    assert max(err["max_rad"] for err in report["joints"].values()) < 3 * K


def test_align_composes_sim_real_and_blend(tmp_path):
    real = np.zeros((60, 80, 3), np.uint8)
    real[:, :, 1] = 200
    iio.imwrite(tmp_path / "real.png", real)
    out = tmp_path / "align" / "top.png"
    composite = align.align(
        "transfer_cube", "top", tmp_path / "real.png", out, image_size=(30, 40), fovy_deg=60.0
    )
    assert composite.shape == (30, 120, 3)
    np.testing.assert_array_equal(iio.imread(out), composite)
    sim, frame, blend = composite[:, :40], composite[:, 40:80], composite[:, 80:]
    assert np.all(frame[:, :, 1] == 200)  # the file, resized
    np.testing.assert_allclose(blend, (sim.astype(int) + frame + 1) // 2)
    wide = align.render_sim_camera("transfer_cube", "top", (30, 40), fovy_deg=90.0)
    assert not np.array_equal(wide, sim)  # the field of view is applied


def test_align_reads_a_live_camera(tmp_path):
    def factory(device, fps, capture_size):
        assert device == 3
        return FakeCapture()

    composite = align.align(
        "transfer_cube",
        "front",
        "3",
        tmp_path / "a.png",
        image_size=IMAGE_SIZE,
        capture_factory=factory,
    )
    assert composite.shape == (IMAGE_SIZE[0], 3 * IMAGE_SIZE[1], 3)
    with pytest.raises(FileNotFoundError, match="no such image file"):
        align.align("transfer_cube", "top", tmp_path / "missing.png", tmp_path / "b.png")
