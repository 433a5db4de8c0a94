"""Per-episode domain randomization of the simulated rig (visuals, dynamics, calibration).

A :class:`RandomizationConfig` holds one magnitude per factor (0 switches it off); levels
``"none"`` (the default: the paper's reproduction, bit-identical to no randomization), ``"light"``
and ``"strong"`` are presets, and ``config.replace(factor=value)`` overrides single factors.

A :class:`Randomizer` owns the model arrays it changes. At every reset it first restores them to
the nominal values copied when it was built (so episodes never compound), then draws new ones from
the env's ``np_random`` and returns a :class:`Draw`: the values the env applies itself (joint
offsets, image noise and blur) and a JSON-able record of everything drawn, which the env returns
in ``info["randomization"]`` so a dataset can store it.

Every factor is drawn at every reset of an active config, as unit draws scaled by its magnitude:
changing one factor's magnitude leaves every other factor's draw unchanged for the same seed.

Factors (magnitudes are half-widths of uniform ranges unless stated):

* ``light_diffuse_scale``: each light's diffuse colour times ``1 + u``, ``|u| <= scale``.
* ``light_direction_deg``: each light's direction turned about a random axis by up to this.
* ``color_jitter``: each RGB channel of the table and of every prop geom shifted by up to this.
* ``camera_position_m``: each policy camera moved along each axis of its parent frame by up to this.
* ``camera_rotation_deg``: each policy camera turned about a random axis by up to this.
* ``camera_fovy_deg``: each policy camera's vertical field of view changed by up to this.
* ``image_noise_std``: per-episode std of Gaussian pixel noise (0..255 units), drawn in
  ``[0, max]``.
* ``image_blur_sigma_px``: per-episode Gaussian blur sigma, drawn in ``[0, max]`` pixels.
* ``mass_scale``: each prop body's mass and inertia times ``1 + u`` (same density change).
* ``friction_scale``: each prop body's geoms' sliding friction times ``1 + u``.
* ``actuator_gain_scale``: each follower servo's kp and kv times independent ``1 + u``.
* ``joint_offset_deg``: per-joint calibration error: the angle the encoder reports minus the
  physical joint angle. The env adds it to observation.state and subtracts it from the servo
  goal, so a miscalibrated arm reports the pose it was asked for while physically sitting off by
  the offset. Done in the env, not with MuJoCo's joint ``ref``, which would also move the joint's
  limits, springs and the model's reference pose.
* ``gripper_force_scale``: each gripper servo's force limit times ``1 + u``.

Layer L1: numpy and mujoco only.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import mujoco
import numpy as np

from aloha_bench import embodiment
from aloha_bench.presets import resolve_preset
from aloha_bench.sim import rig

RANDOMIZATION_LEVELS = ("none", "light", "strong")
# Factors whose magnitude is a fraction of a nominal value: they must keep the value positive.
_SCALE_FACTORS = (
    "light_diffuse_scale",
    "mass_scale",
    "friction_scale",
    "actuator_gain_scale",
    "gripper_force_scale",
)
# Upper bounds that keep a draw physically meaningful; the messages say why.
_MAX: dict[str, tuple[float, str]] = {
    "light_direction_deg": (90.0, "a light turned by more than 90 degrees points sideways"),
    "color_jitter": (1.0, "RGB channels live in [0, 1]"),
    "camera_position_m": (0.2, "cameras are jittered by centimetres, not moved"),
    "camera_rotation_deg": (30.0, "cameras are jittered by degrees, not re-aimed"),
    "camera_fovy_deg": (30.0, "the policy cameras' fields of view are 45-75 degrees"),
    "image_noise_std": (64.0, "pixel noise is in 0..255 units"),
    "image_blur_sigma_px": (10.0, "blur beyond 10 px erases policy-sized images"),
    "joint_offset_deg": (10.0, "calibration errors are about a degree"),
}


@dataclasses.dataclass(frozen=True)
class RandomizationConfig:
    """Magnitude of each randomized factor (0 switches it off); see the module docstring."""

    light_diffuse_scale: float = 0.0
    light_direction_deg: float = 0.0
    color_jitter: float = 0.0
    camera_position_m: float = 0.0
    camera_rotation_deg: float = 0.0
    camera_fovy_deg: float = 0.0
    image_noise_std: float = 0.0
    image_blur_sigma_px: float = 0.0
    mass_scale: float = 0.0
    friction_scale: float = 0.0
    actuator_gain_scale: float = 0.0
    joint_offset_deg: float = 0.0
    gripper_force_scale: float = 0.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{field.name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{field.name} must be a finite number >= 0, got {value}")
            if field.name in _SCALE_FACTORS and value >= 1.0:
                raise ValueError(
                    f"{field.name} must be < 1 (a fraction of the nominal value, which must stay "
                    f"positive), got {value}"
                )
            if field.name in _MAX and value > _MAX[field.name][0]:
                limit, why = _MAX[field.name]
                raise ValueError(f"{field.name} must be <= {limit} ({why}), got {value}")

    @classmethod
    def from_level(cls, name: str) -> RandomizationConfig:
        """The preset ``"none"``, ``"light"`` or ``"strong"``.

        ``light`` stays within what one carefully built rig varies by between sessions (room
        light, a camera bumped by a centimetre, a recalibration); ``strong`` spans different rigs
        and rooms, for policies meant to transfer without fine-tuning.
        """
        if name == "none":
            return cls()
        if name == "light":
            return cls(
                light_diffuse_scale=0.2,
                light_direction_deg=10.0,
                color_jitter=0.05,
                camera_position_m=0.01,
                camera_rotation_deg=1.5,
                camera_fovy_deg=2.0,
                image_noise_std=2.0,
                image_blur_sigma_px=0.5,
                mass_scale=0.1,
                friction_scale=0.1,
                actuator_gain_scale=0.1,
                joint_offset_deg=0.5,
                gripper_force_scale=0.1,
            )
        if name == "strong":
            return cls(
                light_diffuse_scale=0.5,
                light_direction_deg=30.0,
                color_jitter=0.15,
                camera_position_m=0.03,
                camera_rotation_deg=4.0,
                camera_fovy_deg=5.0,
                image_noise_std=6.0,
                image_blur_sigma_px=1.2,
                mass_scale=0.3,
                friction_scale=0.3,
                actuator_gain_scale=0.3,
                joint_offset_deg=1.5,
                gripper_force_scale=0.3,
            )
        raise ValueError(
            f"unknown randomization level {name!r}; expected one of {RANDOMIZATION_LEVELS}"
        )

    @classmethod
    def resolve(cls, value: str | Mapping[str, Any] | RandomizationConfig) -> RandomizationConfig:
        """A config from a level name, a config (returned as is), or a mapping of a ``level``
        (default ``"none"``) plus per-factor overrides, e.g. ``{"camera_position_m": 0.02}``."""
        return resolve_preset(cls, value, "randomize")

    def replace(self, **overrides: float) -> RandomizationConfig:
        """A copy with some factors changed (validated again); unknown names raise TypeError."""
        return dataclasses.replace(self, **overrides)

    @property
    def active(self) -> bool:
        """Whether any factor is switched on."""
        return self != RandomizationConfig()

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass(frozen=True)
class Draw:
    """One episode's draw: what the env applies itself, and the JSON-able record of it all.

    Attributes:
        joint_offset_rad: (12,) encoder reading minus physical angle, embodiment order.
        image_noise_std: std of the Gaussian noise added to every rendered pixel (0..255).
        image_blur_sigma_px: sigma of the Gaussian blur applied before the noise.
        image_seed: seed of the episode's pixel-noise generator.
        record: everything drawn, for ``info["randomization"]``.
    """

    joint_offset_rad: np.ndarray
    image_noise_std: float
    image_blur_sigma_px: float
    image_seed: int
    record: dict[str, Any]


def _rotation(axis_draw: np.ndarray, angle_rad: float) -> np.ndarray:
    """Unit quaternion turning by ``angle_rad`` about the direction of ``axis_draw``."""
    axis = axis_draw / max(np.linalg.norm(axis_draw), 1e-12)
    quat = np.zeros(4)
    mujoco.mju_axisAngle2Quat(quat, axis, angle_rad)
    return quat


def _name(model: mujoco.MjModel, kind: mujoco.mjtObj, i: int) -> str:
    return mujoco.mj_id2name(model, kind, i) or f"{kind.name.removeprefix('mjOBJ_').lower()}{i}"


class Randomizer:
    """Draws and applies a :class:`RandomizationConfig` to one compiled rig model.

    Args:
        model: the env's model; its arrays are changed in place by :meth:`apply`.
        index: the model's :class:`~aloha_bench.sim.rig.RigIndex`.
        config: the factor magnitudes.
    """

    def __init__(
        self, model: mujoco.MjModel, index: rig.RigIndex, config: RandomizationConfig
    ) -> None:
        self.model = model
        self.config = config
        arm_roots = {f"{name}/" for name in rig.FOLLOWERS + rig.LEADERS} | {"rig/"}
        body_names = [model.body(i).name for i in range(model.nbody)]
        # Props: bodies of the task's scene, i.e. under a top-level body that is neither an arm
        # nor the workcell (rig.py attaches those as `left/`, `rig/`...).
        self._prop_bodies = np.array(
            [b for b in range(1, model.nbody) if body_names[model.body_rootid[b]] not in arm_roots],
            dtype=int,
        )
        self._prop_geoms = np.flatnonzero(np.isin(model.geom_bodyid, self._prop_bodies))
        self._colour_geoms = np.concatenate([[model.geom("rig/table").id], self._prop_geoms])
        self._cameras = np.array(sorted(index.cameras.values()), dtype=int)
        self._servos = np.asarray(index.follower_actuators, dtype=int)
        self._grippers = self._servos[list(embodiment.GRIPPER_INDICES)]
        # Nominal copies, restored at every apply() before drawing.
        self._nominal = {
            name: getattr(model, name).copy()
            for name in (
                "light_diffuse",
                "light_dir",
                "geom_rgba",
                "cam_pos",
                "cam_quat",
                "cam_fovy",
                "body_mass",
                "body_inertia",
                "geom_friction",
                "actuator_gainprm",
                "actuator_biasprm",
                "actuator_forcerange",
            )
        }
        # A geom with a material shows the material's colour while its own rgba is MuJoCo's
        # default (0.5, 0.5, 0.5, 1); any other geom rgba overrides it. Jitter the colour it
        # shows, written as the geom's rgba.
        shown = self._nominal["geom_rgba"][self._colour_geoms].copy()
        for row, geom in enumerate(self._colour_geoms):
            matid = model.geom_matid[geom]
            if matid >= 0 and np.array_equal(shown[row], [0.5, 0.5, 0.5, 1.0]):
                shown[row] = model.mat_rgba[matid]
        self._shown_rgba = shown

    def restore(self) -> None:
        """Put every randomized array back to its nominal value."""
        for name, value in self._nominal.items():
            getattr(self.model, name)[:] = value

    def apply(self, rng: np.random.Generator) -> Draw:
        """Restore the nominal model, then draw and apply one episode's randomization.

        Call before ``mj_forward`` (light and camera poses are computed from these arrays).
        """
        self.restore()
        cfg, m = self.config, self.model
        nom = self._nominal
        n_light, n_colour, n_cam = m.nlight, len(self._colour_geoms), len(self._cameras)
        n_body, n_servo = len(self._prop_bodies), len(self._servos)
        # Unit draws for every factor, in a fixed order (see the module docstring).
        u_diffuse = rng.uniform(-1, 1, n_light)
        light_axes, u_light_angle = rng.normal(size=(n_light, 3)), rng.uniform(-1, 1, n_light)
        u_colour = rng.uniform(-1, 1, (n_colour, 3))
        u_cam_pos = rng.uniform(-1, 1, (n_cam, 3))
        cam_axes, u_cam_angle = rng.normal(size=(n_cam, 3)), rng.uniform(-1, 1, n_cam)
        u_fovy = rng.uniform(-1, 1, n_cam)
        u_noise, u_blur = rng.uniform(0, 1, 2)
        u_mass = rng.uniform(-1, 1, n_body)
        u_friction = rng.uniform(-1, 1, n_body)
        u_kp, u_kv = rng.uniform(-1, 1, (2, n_servo))
        u_offset = rng.uniform(-1, 1, embodiment.STATE_DIM)
        u_gripper = rng.uniform(-1, 1, len(self._grippers))
        image_seed = int(rng.integers(2**31))

        m.light_diffuse[:] = np.clip(
            nom["light_diffuse"] * (1 + cfg.light_diffuse_scale * u_diffuse)[:, None], 0, 1
        )
        for i in range(n_light):
            angle = math.radians(cfg.light_direction_deg) * u_light_angle[i]
            mujoco.mju_rotVecQuat(
                m.light_dir[i], nom["light_dir"][i], _rotation(light_axes[i], angle)
            )

        rgba = self._shown_rgba.copy()
        rgba[:, :3] = np.clip(rgba[:, :3] + cfg.color_jitter * u_colour, 0, 1)
        if cfg.color_jitter > 0:
            m.geom_rgba[self._colour_geoms] = rgba

        for row, cam in enumerate(self._cameras):
            m.cam_pos[cam] = nom["cam_pos"][cam] + cfg.camera_position_m * u_cam_pos[row]
            angle = math.radians(cfg.camera_rotation_deg) * u_cam_angle[row]
            # Turn in the camera's own frame: q_new = q_nominal * q_delta.
            mujoco.mju_mulQuat(
                m.cam_quat[cam], nom["cam_quat"][cam], _rotation(cam_axes[row], angle)
            )
            m.cam_fovy[cam] = nom["cam_fovy"][cam] + cfg.camera_fovy_deg * u_fovy[row]

        mass_factor = 1 + cfg.mass_scale * u_mass
        m.body_mass[self._prop_bodies] = nom["body_mass"][self._prop_bodies] * mass_factor
        m.body_inertia[self._prop_bodies] = (
            nom["body_inertia"][self._prop_bodies] * mass_factor[:, None]
        )
        friction_factor = 1 + cfg.friction_scale * u_friction
        body_row = {int(b): row for row, b in enumerate(self._prop_bodies)}
        for geom in self._prop_geoms:
            factor = friction_factor[body_row[int(m.geom_bodyid[geom])]]
            m.geom_friction[geom, 0] = nom["geom_friction"][geom, 0] * factor

        kp = nom["actuator_gainprm"][self._servos, 0] * (1 + cfg.actuator_gain_scale * u_kp)
        kv = -nom["actuator_biasprm"][self._servos, 2] * (1 + cfg.actuator_gain_scale * u_kv)
        # A MuJoCo position servo: force = kp * ctrl - kp * q - kv * qdot.
        m.actuator_gainprm[self._servos, 0] = kp
        m.actuator_biasprm[self._servos, 1] = -kp
        m.actuator_biasprm[self._servos, 2] = -kv
        force_factor = 1 + cfg.gripper_force_scale * u_gripper
        m.actuator_forcerange[self._grippers] = (
            nom["actuator_forcerange"][self._grippers] * force_factor[:, None]
        )

        offset = math.radians(cfg.joint_offset_deg) * u_offset
        noise_std = cfg.image_noise_std * float(u_noise)
        blur_sigma = cfg.image_blur_sigma_px * float(u_blur)
        body, geom, cam, act = (
            mujoco.mjtObj.mjOBJ_BODY,
            mujoco.mjtObj.mjOBJ_GEOM,
            mujoco.mjtObj.mjOBJ_CAMERA,
            mujoco.mjtObj.mjOBJ_ACTUATOR,
        )
        record = {
            "config": cfg.to_dict(),
            "light_diffuse": {
                _name(m, mujoco.mjtObj.mjOBJ_LIGHT, i): m.light_diffuse[i].tolist()
                for i in range(n_light)
            },
            "light_dir": {
                _name(m, mujoco.mjtObj.mjOBJ_LIGHT, i): m.light_dir[i].tolist()
                for i in range(n_light)
            },
            "geom_rgba": {
                _name(m, geom, int(g)): rgba[row].tolist()
                for row, g in enumerate(self._colour_geoms)
            },
            "camera_pos": {_name(m, cam, int(c)): m.cam_pos[c].tolist() for c in self._cameras},
            "camera_quat": {_name(m, cam, int(c)): m.cam_quat[c].tolist() for c in self._cameras},
            "camera_fovy_deg": {_name(m, cam, int(c)): float(m.cam_fovy[c]) for c in self._cameras},
            "image_noise_std": noise_std,
            "image_blur_sigma_px": blur_sigma,
            "image_seed": image_seed,
            "body_mass_kg": {
                _name(m, body, int(b)): float(m.body_mass[b]) for b in self._prop_bodies
            },
            "friction_factor": {
                _name(m, body, int(b)): float(friction_factor[row])
                for row, b in enumerate(self._prop_bodies)
            },
            "actuator_kp": {
                _name(m, act, int(a)): float(k) for a, k in zip(self._servos, kp, strict=True)
            },
            "actuator_kv": {
                _name(m, act, int(a)): float(k) for a, k in zip(self._servos, kv, strict=True)
            },
            "gripper_force_limit_nm": {
                _name(m, act, int(a)): float(m.actuator_forcerange[a, 1]) for a in self._grippers
            },
            "joint_offset_rad": dict(zip(embodiment.STATE_NAMES, offset.tolist(), strict=True)),
        }
        return Draw(
            joint_offset_rad=offset,
            image_noise_std=noise_std,
            image_blur_sigma_px=blur_sigma,
            image_seed=image_seed,
            record=record,
        )


def gaussian_blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Separable Gaussian blur of an (H, W, C) image (float32 out); ``sigma_px <= 0`` copies."""
    out = np.asarray(image, dtype=np.float32)
    if sigma_px <= 0:
        return out.copy()
    radius = max(1, math.ceil(3 * sigma_px))
    taps = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (taps / sigma_px) ** 2)
    kernel /= kernel.sum()
    height, width = out.shape[:2]
    # Edge padding: a blurred border keeps the border's colour instead of darkening.
    for axis, size in ((0, height), (1, width)):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="edge")
        out = sum(
            weight * np.take(padded, np.arange(k, k + size), axis=axis)
            for k, weight in enumerate(kernel)
        )
    return out


def corrupt_image(
    image: np.ndarray, noise_std: float, blur_sigma_px: float, rng: np.random.Generator
) -> np.ndarray:
    """A rendered frame as a camera delivers it: optics blur first, then sensor noise.

    Args:
        image: (H, W, 3) uint8 render.
        noise_std: Gaussian noise std in 0..255 units (0: none).
        blur_sigma_px: blur sigma in pixels (0: none).
        rng: the episode's pixel-noise generator.

    Returns:
        (H, W, 3) uint8.
    """
    if noise_std <= 0 and blur_sigma_px <= 0:
        return image
    out = gaussian_blur(image, blur_sigma_px)
    if noise_std > 0:
        out = out + rng.normal(0.0, noise_std, out.shape).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
