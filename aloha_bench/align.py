"""Camera alignment aid: the simulated camera beside the real one, and a 50/50 blend.

Place a real camera so that its view matches the simulator's (or tune the simulator's camera to
match a fixed real one): render the sim camera at the real camera's resolution and field of view,
put a real frame next to it, and blend the two. Edges that line up in the blend (table borders,
arm bases) mean the extrinsics agree; a uniform scale difference means the field of view does not.

Layer L4: uses the simulator (``envs``) and the rig's cameras (``robots.cameras``).
"""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np

from aloha_bench import envs, keys
from aloha_bench.robots.cameras import (
    CaptureFactory,
    center_crop_to_aspect,
    open_cameras,
    open_opencv_capture,
)

# The rig model's offscreen buffer (sim/rig.py) bounds the render size.
MAX_IMAGE_SIZE = (480, 640)


def render_sim_camera(
    task: str,
    camera: str,
    image_size: tuple[int, int] = MAX_IMAGE_SIZE,
    fovy_deg: float | None = None,
    seed: int = 0,
) -> np.ndarray:
    """The policy camera ``camera`` of ``task`` at reset, (H, W, 3) uint8 RGB.

    Args:
        task: task id (its props are placed from ``seed``).
        camera: policy camera name (``keys.CAMERAS``).
        image_size: (height, width), at most 480 x 640.
        fovy_deg: vertical field of view to render with; default the model's.
        seed: reset seed.
    """
    keys.image_key(camera)  # validates the name
    height, width = (int(v) for v in image_size)
    if not (1 <= height <= MAX_IMAGE_SIZE[0] and 1 <= width <= MAX_IMAGE_SIZE[1]):
        raise ValueError(f"image_size {image_size} out of range; at most {MAX_IMAGE_SIZE}")
    if fovy_deg is not None and not 1.0 <= fovy_deg <= 170.0:
        raise ValueError(f"fovy_deg must be in [1, 170] degrees, got {fovy_deg}")
    env = envs.make(task, obs_mode="state")
    sim = env.unwrapped
    try:
        env.reset(seed=seed)
        camera_id = sim.index.cameras[camera]
        if fovy_deg is not None:
            sim.model.cam_fovy[camera_id] = fovy_deg
        renderer = mujoco.Renderer(sim.model, height, width)
        try:
            renderer.update_scene(sim.data, camera=camera_id)
            return renderer.render().copy()
        finally:
            renderer.close()
    finally:
        env.close()


def read_real_frame(
    source: str | Path | int,
    image_size: tuple[int, int],
    capture_factory: CaptureFactory = open_opencv_capture,
    timeout_s: float = 2.0,
) -> np.ndarray:
    """One real frame as (H, W, 3) uint8 RGB of ``image_size``.

    Args:
        source: an image file (PNG, JPEG...), or a camera device (index or ``/dev/video*`` path)
            read once through ``aloha_bench.robots.cameras``.
        image_size: (height, width) to resize to; a frame of another aspect ratio is
            centre-cropped to it first (never distorted).
        capture_factory: opens the camera device (tests pass fakes).
        timeout_s: longest wait for the camera's first frame.
    """
    height, width = (int(v) for v in image_size)
    if isinstance(source, str) and source.isdigit():
        source = int(source)
    if isinstance(source, int) or str(source).startswith("/dev/"):
        # The camera name only labels messages; any policy camera name will do.
        cameras = open_cameras(
            {"top": (source, None, None)}, (height, width), timeout_s, capture_factory
        )
        try:
            return cameras["top"].read()
        finally:
            cameras["top"].close()
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file (give a file, or a camera device)")
    import imageio.v3 as iio
    from PIL import Image  # imageio's own dependency

    frame = np.asarray(iio.imread(path))
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    frame = np.ascontiguousarray(frame[:, :, :3]).astype(np.uint8)
    if frame.shape[:2] != (height, width):
        # Centre-crop to the panel's aspect first: a squashed frame would never line up.
        frame = np.ascontiguousarray(center_crop_to_aspect(frame, (height, width)))
        frame = np.asarray(Image.fromarray(frame).resize((width, height), Image.BILINEAR))
    return frame


def compose(sim: np.ndarray, real: np.ndarray) -> np.ndarray:
    """``sim | real | 50/50 blend`` side by side, (H, 3W, 3) uint8."""
    if sim.shape != real.shape:
        raise ValueError(f"sim {sim.shape} and real {real.shape} frames must have one shape")
    blend = ((sim.astype(np.uint16) + real.astype(np.uint16) + 1) // 2).astype(np.uint8)
    return np.concatenate([sim, real, blend], axis=1)


def align(
    task: str,
    camera: str,
    real: str | Path | int,
    out: str | Path,
    image_size: tuple[int, int] = MAX_IMAGE_SIZE,
    fovy_deg: float | None = None,
    seed: int = 0,
    capture_factory: CaptureFactory = open_opencv_capture,
) -> np.ndarray:
    """Render ``camera``, put the real frame beside it and a blend, and save them as one PNG.

    Args:
        task: task id of the simulated scene.
        camera: policy camera name.
        real: an image file, or a camera device (index or path) to grab one frame from.
        out: PNG path to write.
        image_size: (height, width) of each of the three panels (the real camera's resolution).
        fovy_deg: the real camera's vertical field of view, to render the sim camera with.
        seed: reset seed of the simulated scene (prop placement).
        capture_factory: opens a camera device (tests pass fakes).

    Returns:
        The composite, (H, 3W, 3) uint8.
    """
    import imageio.v3 as iio

    sim = render_sim_camera(task, camera, image_size, fovy_deg, seed)
    frame = read_real_frame(real, image_size, capture_factory)
    composite = compose(sim, frame)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(out, composite)
    return composite
