"""Cameras: threaded reading, resizing, and errors instead of frozen frames."""

import time

import numpy as np
import pytest

from aloha_bench.robots.cameras import (
    Camera,
    CameraError,
    center_crop_to_aspect,
    open_cameras,
    to_policy_image,
)


class FakeCapture:
    """A capture producing distinct frames at ``fps``; can fail or freeze on request."""

    def __init__(self, shape=(48, 64, 3), fps=100.0):
        self.shape = shape
        self.period_s = 1.0 / fps
        self.count = 0
        self.mode = "ok"
        self.released = False

    def read(self):
        time.sleep(self.period_s)
        if self.mode == "fail":
            return False, None
        if self.mode == "raise":
            raise OSError("device vanished")
        if self.mode == "ok":
            self.count += 1
        frame = np.zeros(self.shape, np.uint8)
        frame[..., 0] = self.count % 256  # blue channel in BGR
        return True, frame

    def release(self):
        self.released = True


def test_frames_are_rgb_and_fresh():
    capture = FakeCapture()
    with Camera("top", capture, (48, 64), timeout_s=0.3) as camera:
        first = camera.read()
        assert first.shape == (48, 64, 3) and first.dtype == np.uint8
        assert first[..., 2].max() > 0 and first[..., 0].max() == 0  # BGR -> RGB
        time.sleep(0.05)
        assert camera.read()[0, 0, 2] != first[0, 0, 2]
    assert capture.released


@pytest.mark.parametrize(
    ("mode", "message"),
    [("fail", "reads are failing"), ("freeze", "same frame keeps repeating")],
)
def test_a_camera_that_stops_delivering_raises(mode, message):
    capture = FakeCapture()
    with Camera("front", capture, (48, 64), timeout_s=0.15, label="/dev/video2") as camera:
        camera.read()
        capture.mode = mode
        time.sleep(0.25)
        with pytest.raises(CameraError, match=rf"'front' \(/dev/video2\).*{message}"):
            camera.read()


def test_no_first_frame_and_capture_exceptions():
    capture = FakeCapture()
    capture.mode = "fail"
    with Camera("top", capture, (48, 64), timeout_s=0.1) as camera:
        with pytest.raises(CameraError, match="no new frame"):
            camera.read()
    capture = FakeCapture()
    capture.mode = "raise"
    with Camera("top", capture, (48, 64), timeout_s=0.5) as camera:
        with pytest.raises(CameraError, match="device vanished"):
            camera.read()
    with pytest.raises(CameraError, match="not started"):
        Camera("top", FakeCapture(), (48, 64)).read()
    with pytest.raises(ValueError, match="unknown camera"):
        Camera("side", FakeCapture(), (48, 64))


def test_resize_uses_opencv():
    pytest.importorskip("cv2")
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:, :, 2] = 200  # red in BGR
    image = to_policy_image(frame, (240, 320))
    assert image.shape == (240, 320, 3)
    assert (image[..., 0] == 200).all() and (image[..., 2] == 0).all()
    with pytest.raises(CameraError, match="HxWx3 uint8"):
        to_policy_image(np.zeros((4, 4), np.uint8), (4, 4))


def test_open_cameras_closes_the_opened_ones_on_failure():
    opened = []

    def factory(device, fps, capture_size):
        if device == "bad":
            raise CameraError("cannot open camera device 'bad'")
        opened.append(FakeCapture())
        return opened[-1]

    with pytest.raises(CameraError, match="'bad'"):
        open_cameras({"top": (0, None, None), "front": ("bad", None, None)}, (48, 64), 0.5, factory)
    assert opened and all(c.released for c in opened)


def _square_frame(height, width, side):
    """Black frame, a white square of ``side`` px in its centre, blue left and right edges."""
    frame = np.zeros((height, width, 3), np.uint8)
    top, left = (height - side) // 2, (width - side) // 2
    frame[top : top + side, left : left + side] = 255
    frame[:, :4] = (255, 0, 0)  # BGR blue
    frame[:, -4:] = (255, 0, 0)
    return frame


def _blue(rgb):
    return (rgb[..., 2] > 128) & (rgb[..., 0] < 100)


def _square_box(image):
    rows, cols = np.nonzero(image.min(axis=2) > 128)
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


def test_center_crop_keeps_the_target_aspect_and_the_middle():
    frame = np.arange(90 * 160).reshape(90, 160)
    assert center_crop_to_aspect(frame, (48, 64)).shape == (90, 120)  # 16:9 -> 4:3
    assert center_crop_to_aspect(frame, (90, 160)).shape == (90, 160)
    assert center_crop_to_aspect(frame[:, :120], (90, 160)).shape == (68, 120)  # 4:3 -> 16:9
    np.testing.assert_array_equal(center_crop_to_aspect(frame, (48, 64)), frame[:, 20:140])


@pytest.mark.parametrize(
    ("frame_size", "policy_size"), [((90, 160), (48, 64)), ((96, 128), (45, 80))]
)
def test_frames_of_another_aspect_are_cropped_never_squashed(frame_size, policy_size):
    pytest.importorskip("cv2")
    image = to_policy_image(_square_frame(*frame_size, side=40), policy_size)
    assert image.shape == (*policy_size, 3)
    height, width = _square_box(image)
    assert abs(height - width) <= 1  # a square stays a square
    if frame_size[1] * policy_size[0] > frame_size[0] * policy_size[1]:  # wider: edges cut
        assert not _blue(image).any()  # the blue edges were cut, not squeezed in


def test_align_crops_real_frames_to_the_panel(tmp_path):
    import imageio.v3 as iio

    from aloha_bench.align import read_real_frame

    path = tmp_path / "wide.png"
    iio.imwrite(path, _square_frame(90, 160, side=40)[:, :, ::-1])  # stored as RGB
    frame = read_real_frame(path, (48, 64))
    assert frame.shape == (48, 64, 3)
    height, width = _square_box(frame)
    assert abs(height - width) <= 1 and not _blue(frame).any()
