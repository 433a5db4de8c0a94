"""ACT configuration: a frozen, validated dataclass; defaults < profile < baseline TOML < overrides.

Field names follow LeRobot's ``ACTConfig`` where they mean the same thing, so a LeRobot user can
read a config here unchanged. Defaults are LeRobot's (which are the paper's hyperparameters except
for one decoder layer: Zhao et al. 2023, Table V used 7, of which the original code used only the
first, see ``use_first_decoder_layer_only``).

Resolution order, each later source overriding the earlier ones:

1. the dataclass defaults below;
2. a *profile* (``baselines/profiles/<name>.toml``): the scale of the run (model width, image size,
   learning rate, batch, steps), e.g. ``paper`` or ``cpu``;
3. a *baseline* (``baselines/<name>.toml``): the method (chunk size, CVAE on or off, KL weight);
4. ``key=value`` overrides (the CLI's ``--set``).

Profiles sit below baselines so that ``single_step`` keeps its chunk size of 1 under any profile.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aloha_bench import keys, paths
from aloha_bench.cli_types import parse_assignments

POLICY_NAME = "act"
OBS_MODES = ("pixels", "state")
IMAGE_NORMS = ("imagenet", "dataset")
BACKBONE_NORMS = ("frozen_batchnorm", "groupnorm")
PRECISIONS = ("fp32", "bf16")
LR_SCHEDULES = ("constant", "cosine")
# ResNet18 halves the image five times (stride-2 conv, max-pool, three stride-2 stages).
BACKBONE_STRIDE = 32
TORCHVISION_WEIGHTS = "torchvision"
MAX_SEED = 2**32 - 1


@dataclasses.dataclass(frozen=True)
class ACTConfig:
    """Everything that defines an ACT model and its training run.

    Attributes:
        obs_mode: ``"pixels"`` (joint state + camera images) or ``"state"`` (joint state +
            ``observation.environment_state``, the objects' poses; no images). State mode
            clears ``cameras``.
        cameras: cameras fed to the shared ResNet18, in token order.
        image_size: (height, width) of every image; must match the dataset.
        image_norm: ``"imagenet"`` (fixed ImageNet mean/std, right for pretrained weights) or
            ``"dataset"`` (per-channel statistics of the training split).
        image_shift_px: training augmentation: each image shifted by up to this many pixels
            (DrQ's random shift; 0 = off, the paper's ACT has none). Not applied at inference.
        chunk_size: K, actions predicted per forward pass (paper: 100).
        n_action_steps: actions of each chunk executed before predicting again (1..K).
        temporal_ensemble_coeff: m of the paper's temporal ensembling (weights exp(-m * i), i = 0
            for the oldest prediction); None disables it. Needs ``n_action_steps = 1``.
        dim_model: transformer width (paper: 512).
        n_heads: attention heads.
        dim_feedforward: width of each feed-forward block (paper: 3200).
        n_encoder_layers: layers of the observation encoder (paper: 4).
        n_decoder_layers: layers of the action decoder (paper: 7, LeRobot: 1).
        use_first_decoder_layer_only: reproduce the original code's bug: build
            ``n_decoder_layers`` layers but predict from the first one's output.
        dropout: dropout of every transformer block (paper: 0.1).
        backbone_norm: ``"frozen_batchnorm"`` (DETR/ACT: fixed statistics, needed for ImageNet
            weights) or ``"groupnorm"`` (diffusion_policy's choice for training from scratch).
        pretrained_backbone_path: ResNet18 weights: a local ``.pth``/``.safetensors`` state dict,
            ``"torchvision"`` (download ImageNet weights), or None (random initialization).
            Through ``load_config`` it also sets ``PRETRAINED_IMPLIES`` (frozen batch norm,
            ImageNet normalization) unless those are set with it or later.
        use_vae: train with the CVAE encoder (the paper's style variable z); False gives the
            ``no_cvae`` baseline (z = 0 always, L1 loss only).
        latent_dim: size of z (paper: 32).
        n_vae_encoder_layers: layers of the CVAE encoder (paper: 4).
        kl_weight: beta, the weight of the KL term (paper: 10).
        lr: AdamW learning rate of everything but the backbone (paper: 1e-5).
        lr_backbone: learning rate of the ResNet18 backbone (paper: 1e-5).
        weight_decay: AdamW weight decay (paper: 1e-4).
        grad_clip_norm: gradients are clipped to this global L2 norm (LeRobot: 10).
        batch_size: samples per gradient step (paper: 8).
        warmup_steps: the learning rate rises linearly over these steps, then follows
            ``lr_schedule``.
        lr_schedule: ``"constant"`` (the paper, LeRobot) or ``"cosine"`` (decays to
            ``min_lr_ratio * lr`` at ``steps``; a recipe for short CPU budgets, not the paper's).
        min_lr_ratio: where the cosine schedule ends, as a fraction of ``lr`` (0 to 1).
        steps: gradient steps of a training run (not epochs).
        precision: ``"fp32"`` or ``"bf16"`` (bfloat16 autocast of matrix products; weights and
            optimizer state stay fp32). ``"bf16"`` computes in fp32 on hardware without native
            bf16 (AVX2-only CPUs, where it is emulated ~40x slower): ``policy.precision`` and
            the run's records say which ran (``policies/act/precision.py``).
        seed: seed of initialization, batch sampling, dropout and the train/val split.
        val_fraction: share of episodes held out for validation (by episode).
        val_every: validate and write ``last/`` (and ``best/``) every this many steps.
        val_batches: batches of held-out windows per validation (the same ones every time).
        log_every: report training metrics every this many steps.
        aux_state_weight: an EXTENSION beyond the paper (0 = off, the paper's ACT): the weight of
            an auxiliary L1 loss that predicts the normalized ``observation.environment_state``
            (the objects' poses, which the simulator records) from the image features during
            training, so that the backbone learns where the objects are. Pixels mode only;
            inference never reads the environment state, so a policy trained with it runs
            on the real rig as any other.
        ema_decay: exponential moving average of the weights (Polyak averaging), 0 = off (the
            paper's ACT and LeRobot's train without it). A training-recipe lever, as in
            Diffusion Policy (Chi et al. 2023): the averaged weights are what ``best/`` and
            ``last/`` hold, what validation scores and what evaluation runs; the raw weights
            live on in ``last/training_state.pt`` for resuming. The decay ramps up as
            min(ema_decay, (1 + n) / (10 + n)) over the first updates, so early checkpoints
            are not dominated by the random initialization. Typical: 0.999.
    """

    obs_mode: str = "pixels"
    cameras: tuple[str, ...] = ("top",)
    image_size: tuple[int, int] = (480, 640)
    image_norm: str = "imagenet"
    image_shift_px: int = 0
    chunk_size: int = 100
    n_action_steps: int = 100
    temporal_ensemble_coeff: float | None = None
    dim_model: int = 512
    n_heads: int = 8
    dim_feedforward: int = 3200
    n_encoder_layers: int = 4
    n_decoder_layers: int = 1
    use_first_decoder_layer_only: bool = False
    dropout: float = 0.1
    backbone_norm: str = "frozen_batchnorm"
    pretrained_backbone_path: str | None = None
    use_vae: bool = True
    latent_dim: int = 32
    n_vae_encoder_layers: int = 4
    kl_weight: float = 10.0
    lr: float = 1e-5
    lr_backbone: float = 1e-5
    weight_decay: float = 1e-4
    grad_clip_norm: float = 10.0
    batch_size: int = 8
    warmup_steps: int = 0
    lr_schedule: str = "constant"
    min_lr_ratio: float = 0.0
    steps: int = 100_000
    precision: str = "fp32"
    seed: int = 0
    val_fraction: float = 0.1
    val_every: int = 1000
    val_batches: int = 8
    log_every: int = 100
    aux_state_weight: float = 0.0
    ema_decay: float = 0.0

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            value = _coerce(field.name, getattr(self, field.name), hints[field.name])
            object.__setattr__(self, field.name, value)
        if self.obs_mode == "state":
            # Images play no part in state mode; clearing them keeps the saved config truthful.
            object.__setattr__(self, "cameras", ())
        self._validate()

    def _validate(self) -> None:
        _choice("obs_mode", self.obs_mode, OBS_MODES)
        _choice("image_norm", self.image_norm, IMAGE_NORMS)
        _choice("backbone_norm", self.backbone_norm, BACKBONE_NORMS)
        _choice("precision", self.precision, PRECISIONS)
        if self.obs_mode == "pixels":
            if not self.cameras:
                _fail("cameras", "pixels mode needs at least one camera, e.g. cameras=['top']")
            for camera in self.cameras:
                if camera not in keys.CAMERAS:
                    _fail("cameras", f"unknown camera {camera!r}; choose from {keys.CAMERAS}")
            if len(set(self.cameras)) != len(self.cameras):
                _fail("cameras", f"{list(self.cameras)} names a camera twice")
        if len(self.image_size) != 2 or min(self.image_size) < BACKBONE_STRIDE:
            _fail(
                "image_size",
                f"{list(self.image_size)} must be [height, width], each at least "
                f"{BACKBONE_STRIDE} pixels (ResNet18 downsamples by {BACKBONE_STRIDE})",
            )
        for name in (
            "chunk_size",
            "dim_model",
            "n_heads",
            "dim_feedforward",
            "n_encoder_layers",
            "n_decoder_layers",
            "latent_dim",
            "batch_size",
            "steps",
            "val_every",
            "val_batches",
            "log_every",
        ):
            if getattr(self, name) < 1:
                _fail(name, f"must be at least 1, got {getattr(self, name)}")
        if self.use_vae and self.n_vae_encoder_layers < 1:
            _fail("n_vae_encoder_layers", "must be at least 1 with use_vae = true")
        if not 1 <= self.n_action_steps <= self.chunk_size:
            _fail(
                "n_action_steps",
                f"must be in 1..chunk_size ({self.chunk_size}), got {self.n_action_steps}",
            )
        if self.temporal_ensemble_coeff is not None:
            if self.temporal_ensemble_coeff < 0:
                _fail("temporal_ensemble_coeff", "must be >= 0 (the paper uses 0.01) or none")
            if self.n_action_steps != 1:
                _fail(
                    "n_action_steps",
                    "temporal ensembling predicts a chunk every step; set n_action_steps = 1 "
                    "(or temporal_ensemble_coeff = none)",
                )
        if self.dim_model % self.n_heads:
            _fail("dim_model", f"{self.dim_model} is not divisible by n_heads={self.n_heads}")
        if self.dim_model % 4:
            # The 2-D sine embedding gives half the width to each axis, in sin/cos pairs.
            _fail(
                "dim_model", f"must be a multiple of 4 (2-D sine embedding), got {self.dim_model}"
            )
        if self.image_shift_px < 0 or (
            self.obs_mode == "pixels" and self.image_shift_px * 4 > min(self.image_size)
        ):
            _fail(
                "image_shift_px",
                f"must be 0 (off) or a shift smaller than a quarter of the image, "
                f"got {self.image_shift_px} for {tuple(self.image_size)}",
            )
        if not 0.0 <= self.dropout < 1.0:
            _fail("dropout", f"must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.val_fraction < 1.0:
            _fail("val_fraction", f"must be in [0, 1), got {self.val_fraction}")
        if not 0 <= self.seed <= MAX_SEED:
            _fail(
                "seed",
                f"must be in 0..{MAX_SEED} (numpy's and torch's seed range), got {self.seed}",
            )
        if self.lr_schedule not in LR_SCHEDULES:
            _fail("lr_schedule", f"must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            _fail("min_lr_ratio", f"must be in [0, 1], got {self.min_lr_ratio}")
        if not 0.0 <= self.aux_state_weight < math.inf:
            _fail("aux_state_weight", f"must be a finite number >= 0, got {self.aux_state_weight}")
        if not 0.0 <= self.ema_decay < 1.0:
            _fail(
                "ema_decay",
                f"must be in [0, 1) (0 = off; e.g. 0.999), got {self.ema_decay}",
            )
        if self.aux_state_weight and self.obs_mode != "pixels":
            _fail(
                "aux_state_weight",
                "predicts the environment state from images: it needs obs_mode = 'pixels' "
                "(in state mode the policy reads that state directly); set it to 0",
            )
        for name in ("kl_weight", "weight_decay", "warmup_steps"):
            if getattr(self, name) < 0:
                _fail(name, f"must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "lr_backbone", "grad_clip_norm"):
            if not getattr(self, name) > 0:
                _fail(name, f"must be a positive number, got {getattr(self, name)}")
        if self.pretrained_backbone_path is not None and self.backbone_norm != "frozen_batchnorm":
            _fail(
                "backbone_norm",
                "ImageNet weights carry batch-norm statistics; use backbone_norm = "
                "'frozen_batchnorm' with pretrained_backbone_path",
            )

    @property
    def image_keys(self) -> tuple[str, ...]:
        """Observation keys of the cameras, in token order."""
        return tuple(keys.image_key(camera) for camera in self.cameras)

    @property
    def input_keys(self) -> tuple[str, ...]:
        """Observation keys the policy reads."""
        if self.obs_mode == "pixels":
            return (keys.STATE, *self.image_keys)
        return (keys.STATE, keys.ENVIRONMENT_STATE)

    @property
    def training_keys(self) -> tuple[str, ...]:
        """Observation keys a training batch needs: ``input_keys``, plus the environment state
        as the target of the auxiliary loss when ``aux_state_weight`` > 0."""
        if self.aux_state_weight > 0:
            return (*self.input_keys, keys.ENVIRONMENT_STATE)
        return self.input_keys

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields plus ``policy: "act"`` (what :func:`policies.load` dispatches on)."""
        return {"policy": POLICY_NAME, **json.loads(json.dumps(dataclasses.asdict(self)))}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ACTConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error that suggests the closest."""
        data = dict(data)
        policy = data.pop("policy", POLICY_NAME)
        if policy != POLICY_NAME:
            raise ValueError(f"config is for policy {policy!r}, not {POLICY_NAME!r}")
        _check_names(data, "config")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        """Write the resolved config as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load_json(cls, path: str | Path) -> ACTConfig:
        """Read a config written by :meth:`save`.

        Raises:
            ValueError: the file is not valid JSON, or not a valid config (names the file).
        """
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except ValueError as err:  # JSONDecodeError is one
            raise ValueError(
                f"{path}: {err}; the file is damaged or was edited by hand: restore it from the "
                "run that wrote it"
            ) from None


def _fail(name: str, message: str) -> typing.NoReturn:
    raise ValueError(f"ACTConfig.{name}: {message}")


def _choice(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        _fail(name, f"unknown value {value!r}; choose one of {tuple(allowed)}")


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Bring TOML/JSON/CLI values to the field's type (lists -> tuples, ints -> floats)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
            _fail(name, "may not be none")
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        if name == "image_size" and isinstance(value, str):
            value = value.lower().split("x")  # "96x128", as `generate --image-size` takes it
        elif isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, list | tuple):
            _fail(name, f"expected a list, got {value!r}")
        item = args[0]
        return tuple(_coerce(name, v, item) for v in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        _fail(name, f"expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, str) and value.lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(name, f"expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                _fail(name, f"expected a number, got {value!r}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            _fail(name, f"expected a number, got {value!r}")
        if not math.isfinite(value):
            # Checked here, for every float field at once: NaN passes any `x < 0` check below.
            _fail(name, f"must be a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            _fail(name, f"expected a string, got {value!r}")
        return value
    return value


def _check_names(data: Mapping[str, Any], source: str) -> None:
    names = [f.name for f in dataclasses.fields(ACTConfig)]
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {names}"
            raise ValueError(f"{source}: unknown ACT config key {key!r}{hint}")


def _resolve_toml(name_or_path: str | Path, folder: Path, kind: str) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"{kind} file {path} not found")
        return path
    candidate = folder / f"{name_or_path}.toml"
    if not candidate.is_file():
        available = sorted(p.stem for p in folder.glob("*.toml"))
        raise FileNotFoundError(f"no {kind} named {name_or_path!r}; available: {available}")
    return candidate


def read_toml(path: str | Path) -> dict[str, Any]:
    """Fields of one TOML file (flat keys; an optional ``policy = "act"`` is checked, dropped)."""
    data = tomllib.loads(Path(path).read_text())
    policy = data.pop("policy", POLICY_NAME)
    if policy != POLICY_NAME:
        raise ValueError(f"{path}: policy {policy!r} is not {POLICY_NAME!r}")
    _check_names(data, str(path))
    return data


def parse_overrides(overrides: Sequence[str] | Mapping[str, Any]) -> dict[str, Any]:
    """Config overrides (``--set``) as a dict; unknown names suggest the closest field."""
    parsed = dict(overrides) if isinstance(overrides, Mapping) else parse_assignments(overrides)
    _check_names(parsed, "--set")
    return parsed


def load_config(
    config: str | Path | None = None,
    profile: str | Path | None = None,
    overrides: Sequence[str] | Mapping[str, Any] = (),
) -> ACTConfig:
    """Resolve an ACT config: defaults < profile < baseline TOML < overrides.

    Args:
        config: a baseline name in ``baselines/`` (``"act"``, ``"no_cvae"``, ``"single_step"``)
            or a TOML path; None for the defaults.
        profile: a profile name in ``baselines/profiles/`` (``"paper"``, ``"cpu"``) or a path.
        overrides: ``["key=value", ...]`` as the CLI's ``--set`` gives them, or a dict.

    Raises:
        ValueError: an unknown key (with the closest valid one) or an invalid value (with how to
            fix it).
        FileNotFoundError: a named baseline or profile does not exist (lists those that do).
    """
    layers: list[dict[str, Any]] = []
    if profile is not None:
        layers.append(
            read_toml(_resolve_toml(profile, paths.baselines_dir() / "profiles", "profile"))
        )
    if config is not None:
        layers.append(read_toml(_resolve_toml(config, paths.baselines_dir(), "baseline")))
    layers.append(parse_overrides(overrides))
    fields: dict[str, Any] = {}
    for layer in layers:
        fields |= layer
    return ACTConfig(**(fields | _implied_by_pretrained(layers)))


# What ImageNet weights need: their batch-norm statistics kept (frozen) and ImageNet's input
# normalization, the statistics they were trained with.
PRETRAINED_IMPLIES = {"backbone_norm": "frozen_batchnorm", "image_norm": "imagenet"}


def _implied_by_pretrained(layers: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``PRETRAINED_IMPLIES`` for the fields no layer at or after the one that sets
    ``pretrained_backbone_path`` sets itself.

    So ``--set pretrained_backbone_path=torchvision`` is one switch under any profile (the
    ``cpu`` profile's ``groupnorm`` and ``dataset`` normalization give way to it), while a
    deliberate ``backbone_norm`` given together with it, or later, still meets the validation.
    """
    last = max(
        (
            i
            for i, layer in enumerate(layers)
            if layer.get("pretrained_backbone_path") not in (None, "none", "null")
        ),
        default=None,
    )
    if last is None:
        return {}
    later = set().union(*(layer.keys() for layer in layers[last:]))
    return {name: value for name, value in PRETRAINED_IMPLIES.items() if name not in later}
