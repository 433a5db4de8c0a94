"""Camera videos of LeRobot datasets, encoded and decoded with PyAV (FFmpeg).

LeRobot 0.6 records RGB cameras as AV1 (``libsvtav1``, yuv420p, GOP 2, CRF 30) and reads them
back by timestamp; older datasets use H.264. Decoding goes through FFmpeg's ``libdav1d`` (AV1)
and ``h264`` decoders bundled in PyAV's wheels.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

# SVT-AV1 prints its whole configuration to stderr for every file; keep its errors only.
os.environ.setdefault("SVT_LOG", "1")

# LeRobot 0.6's defaults for RGB cameras (``lerobot/configs/video.py``): what its own recorder
# writes, so a converted dataset decodes like a recorded one.
VIDEO_CODEC = "libsvtav1"
VIDEO_CODEC_NAME = "av1"
PIX_FMT = "yuv420p"
GOP = 2
CRF = 30
PRESET = 12


class VideoError(ValueError):
    """A video file is missing, unreadable, or holds fewer frames than its episodes need."""


def video_info(height: int, width: int, fps: int) -> dict[str, Any]:
    """The ``info`` block LeRobot keeps for a video feature in ``meta/info.json``."""
    return {
        "video.height": height,
        "video.width": width,
        "video.codec": VIDEO_CODEC_NAME,
        "video.pix_fmt": PIX_FMT,
        "video.fps": fps,
        "video.channels": 3,
        "has_audio": False,
        "video.g": GOP,
        "video.crf": CRF,
        "video.preset": PRESET,
        "video.fast_decode": 0,
        "video.video_backend": "pyav",
        "video.extra_options": {},
        "is_depth_map": False,
    }


class VideoWriter:
    """One mp4 file of consecutive frames, frame ``i`` shown at ``i / fps`` seconds.

    Args:
        path: the file to write (its folder must exist).
        height: frame height; AV1 and yuv420p need even sizes.
        width: frame width.
        fps: frames per second (an integer, as LeRobot stores it).
    """

    def __init__(self, path: str | Path, height: int, width: int, fps: int) -> None:
        self.path = Path(path)
        self.frames = 0
        self.bytes = 0  # encoded so far (the file may not have been flushed yet)
        self._container = av.open(str(self.path), mode="w")
        options = {"g": str(GOP), "crf": str(CRF), "preset": str(PRESET)}
        self._stream = self._container.add_stream(VIDEO_CODEC, rate=fps, options=options)
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = PIX_FMT
        self._stream.time_base = Fraction(1, fps)

    def write(self, frames: Iterable[np.ndarray]) -> None:
        """Append frames, each (H, W, 3) uint8 RGB."""
        for image in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = self.frames
            self.frames += 1
            for packet in self._stream.encode(frame):
                self.bytes += packet.size
                self._container.mux(packet)

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()


class VideoReader:
    """Frames of one video by frame number, decoded front to back (episodes are read in order).

    The number of a frame is ``round(pts_seconds * fps)``: the index LeRobot's timestamps
    (``from_timestamp + frame_index / fps``) point at. Asking for a range that starts before the
    frames already passed reopens the file.

    Args:
        path: the mp4 file.
        fps: the dataset's frame rate.

    Raises:
        VideoError: the file is missing or cannot be opened (the message names it).
    """

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path = Path(path)
        self.fps = fps
        if not self.path.is_file():
            raise VideoError(f"{self.path}: video file missing; the dataset is incomplete")
        self._open()

    def _open(self) -> None:
        try:
            self._container = av.open(str(self.path))
            stream = self._container.streams.video[0]
        except (av.FFmpegError, IndexError) as exc:
            raise VideoError(f"{self.path}: cannot open ({type(exc).__name__}: {exc})") from exc
        self._time_base = stream.time_base
        self._frames = self._container.decode(stream)
        self._next = 0  # frame number the iterator yields next (at least)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames ``start .. stop-1`` as (stop - start, H, W, 3) uint8 RGB.

        Raises:
            VideoError: the video ends (or is damaged) before frame ``stop - 1``.
        """
        if start < self._next:
            self.close()
            self._open()
        out: list[np.ndarray] = []
        try:
            while len(out) < stop - start:
                frame = next(self._frames)
                number = round(float(frame.pts * self._time_base) * self.fps)
                self._next = number + 1
                if number >= start:
                    out.append(frame.to_ndarray(format="rgb24"))
        except StopIteration:
            pass
        except av.FFmpegError as exc:
            raise VideoError(
                f"{self.path}: damaged near frame {start + len(out)} ({type(exc).__name__}: "
                f"{exc}); re-encode or re-record this episode"
            ) from exc
        if len(out) < stop - start:
            raise VideoError(
                f"{self.path}: holds frames up to {start + len(out) - 1}, but frames "
                f"{start}..{stop - 1} are needed (truncated file?); re-record or re-encode it"
            )
        return np.stack(out)

    def close(self) -> None:
        self._container.close()
