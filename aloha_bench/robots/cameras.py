"""Rig cameras (top, front, left_wrist, right_wrist) delivering policy-sized RGB frames.

Each :class:`Camera` reads its capture in a background thread, so a 30 fps camera never stalls a
50 Hz control loop, and :meth:`Camera.read` returns the newest frame at once. A camera that stops
delivering -- reads fail, the read blocks, or the driver repeats one frame (a frozen USB stream
keeps returning its last buffer) -- raises :class:`CameraError` once no new frame has arrived for
``timeout_s``; a policy never acts on a frozen image.

Captures are injectable: anything with OpenCV's ``read() -> (ok, bgr_frame)`` and ``release()``
works, so tests use fakes and OpenCV is imported only to open real devices or resize frames.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Protocol

import numpy as np

from aloha_bench import keys


class CameraError(RuntimeError):
    """A camera cannot be opened or has stopped delivering new frames."""


class Capture(Protocol):
    """The part of ``cv2.VideoCapture`` a :class:`Camera` uses."""

    def read(self) -> tuple[bool, np.ndarray | None]:
        """Block until the next frame; return (ok, HxWx3 uint8 BGR frame)."""
        ...

    def release(self) -> None:
        """Free the device."""
        ...


def _import_cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:
        raise CameraError(
            "OpenCV is needed for real cameras and for resizing frames: "
            "pip install 'aloha-bench[robot]' (or opencv-python-headless)"
        ) from exc
    return cv2


def open_opencv_capture(
    device: int | str, fps: int | None = None, capture_size: tuple[int, int] | None = None
) -> Capture:
    """Open a V4L2/UVC camera with OpenCV.

    Args:
        device: camera index (``0``) or device path (``/dev/video0``).
        fps: frame rate to request, if any.
        capture_size: (height, width) to request from the camera, if any.

    Raises:
        CameraError: OpenCV is missing or the device cannot be opened.
    """
    cv2 = _import_cv2()
    capture = cv2.VideoCapture(device)
    if not capture.isOpened():
        raise CameraError(
            f"cannot open camera device {device!r}: check the USB cable and the device name "
            "(`v4l2-ctl --list-devices` lists them; /dev/v4l/by-id/ names survive reboots)"
        )
    if fps is not None:
        capture.set(cv2.CAP_PROP_FPS, fps)
    if capture_size is not None:
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, capture_size[0])
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, capture_size[1])
    return capture


def center_crop_to_aspect(frame: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """The largest centred window of ``frame`` (H, W, ...) with the aspect ratio of
    ``image_size`` (height, width), as a view.

    Every path that resizes a camera frame crops with this first, so a frame is scaled by the
    same factor along both axes and never distorted: a 16:9 camera feeding a 4:3 policy loses
    its left and right edges (the vertical field of view is kept), as LeRobot's and most
    vision pipelines' centre crops do. At most one pixel of rounding is dropped.
    """
    height, width = frame.shape[:2]
    target_h, target_w = (int(v) for v in image_size)
    if height * target_w > width * target_h:  # taller than the target: drop rows
        keep = max(1, round(width * target_h / target_w))
        top = (height - keep) // 2
        return frame[top : top + keep]
    if height * target_w < width * target_h:  # wider than the target: drop columns
        keep = max(1, round(height * target_w / target_h))
        left = (width - keep) // 2
        return frame[:, left : left + keep]
    return frame


def to_policy_image(frame_bgr: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """BGR capture frame -> contiguous RGB uint8 frame of ``image_size`` (height, width).

    A frame of another aspect ratio is centre-cropped to the policy's (``center_crop_to_aspect``)
    before resizing, never squashed. Resizing uses OpenCV's area interpolation, which averages
    rather than drops pixels when shrinking (less aliasing than nearest-neighbour).
    """
    frame = np.asarray(frame_bgr)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise CameraError(f"expected an HxWx3 uint8 frame, got {frame.shape} {frame.dtype}")
    if frame.shape[:2] != tuple(image_size):
        frame = center_crop_to_aspect(frame, image_size)
    if frame.shape[:2] != tuple(image_size):
        cv2 = _import_cv2()
        height, width = image_size
        frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(frame[:, :, ::-1])


class Camera:
    """One named camera producing RGB frames of the policy's image size.

    Args:
        name: camera name from ``keys.CAMERAS``.
        capture: an opened capture (see :class:`Capture`).
        image_size: (height, width) of the frames :meth:`read` returns.
        timeout_s: longest time without a new frame before :meth:`read` raises.
        label: how messages name the device, e.g. ``"/dev/video0"``.
    """

    def __init__(
        self,
        name: str,
        capture: Capture,
        image_size: tuple[int, int],
        timeout_s: float = 0.5,
        label: str = "",
    ) -> None:
        keys.image_key(name)  # validates the name
        if not (timeout_s > 0 and math.isfinite(timeout_s)):
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.name = name
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.timeout_s = timeout_s
        self.label = label or name
        self._capture = capture
        self._condition = threading.Condition()
        self._latest: np.ndarray | None = None
        self._latest_raw: np.ndarray | None = None
        self._fresh_at_s = 0.0
        self._problem = "no frame yet"
        self._fatal: BaseException | None = None
        self._running = False
        self._thread: threading.Thread | None = None

    def start(self) -> Camera:
        """Start the reader thread."""
        if self._thread is None:
            self._running = True
            self._fresh_at_s = time.monotonic()
            self._thread = threading.Thread(target=self._reader, name=f"camera-{self.name}")
            self._thread.daemon = True
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop the reader and release the device."""
        self._running = False
        if self._thread is not None:
            # A read stuck in the driver cannot be interrupted; the thread is a daemon.
            self._thread.join(timeout=max(1.0, self.timeout_s))
            self._thread = None
        self._capture.release()

    def __enter__(self) -> Camera:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _reader(self) -> None:
        while self._running:
            try:
                ok, frame = self._capture.read()
                problem = ""
                if not ok or frame is None:
                    problem = "reads are failing"
                elif self._latest_raw is not None and np.array_equal(frame, self._latest_raw):
                    problem = "the same frame keeps repeating (frozen stream)"
                else:
                    image = to_policy_image(frame, self.image_size)
            except Exception as exc:
                with self._condition:
                    self._fatal = exc
                    self._condition.notify_all()
                return
            if problem:
                with self._condition:
                    self._problem = problem
                # A dead device may fail at once; pausing keeps this thread from starving the
                # control loop of the GIL.
                time.sleep(0.005)
                continue
            with self._condition:
                self._latest_raw = frame.copy()
                self._latest = image
                self._fresh_at_s = time.monotonic()
                self._condition.notify_all()

    def read(self) -> np.ndarray:
        """The newest frame, (H, W, 3) uint8 RGB; waits up to ``timeout_s`` for the first one.

        Raises:
            CameraError: no new frame for ``timeout_s`` (failing reads, a blocked driver or a
                repeated frame), or the capture raised.
        """
        if self._thread is None:
            raise CameraError(f"camera {self.name!r} is not started; call start()")
        with self._condition:
            while True:
                if self._fatal is not None:
                    raise CameraError(
                        f"camera {self.name!r} ({self.label}) failed: {self._fatal!r}"
                    ) from self._fatal
                age_s = time.monotonic() - self._fresh_at_s
                if self._latest is not None and age_s <= self.timeout_s:
                    return self._latest.copy()
                if age_s > self.timeout_s:
                    raise CameraError(
                        f"camera {self.name!r} ({self.label}) has delivered no new frame for "
                        f"{age_s:.2f} s: {self._problem}. Check its USB cable and bandwidth "
                        "(one USB controller per camera helps); restart the run"
                    )
                self._condition.wait(timeout=self.timeout_s - age_s)


CaptureFactory = Callable[[int | str, int | None, tuple[int, int] | None], Capture]


def open_cameras(
    devices: Mapping[str, tuple[int | str, int | None, tuple[int, int] | None]],
    image_size: tuple[int, int],
    timeout_s: float = 0.5,
    capture_factory: CaptureFactory = open_opencv_capture,
) -> dict[str, Camera]:
    """Open and start several cameras; on failure close the ones already open.

    Args:
        devices: camera name -> (device, fps or None, capture (height, width) or None).
        image_size: (height, width) every camera delivers.
        timeout_s: see :class:`Camera`.
        capture_factory: opens one device (OpenCV by default; tests pass fakes).
    """
    cameras: dict[str, Camera] = {}
    try:
        for name, (device, fps, capture_size) in devices.items():
            capture = capture_factory(device, fps, capture_size)
            cameras[name] = Camera(name, capture, image_size, timeout_s, str(device)).start()
    except BaseException:
        for camera in cameras.values():
            camera.close()
        raise
    return cameras
