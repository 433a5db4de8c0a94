"""ACT checkpoints both ways: our run folder <-> LeRobot's ``pretrained_model`` folder.

A LeRobot ACT folder (LeRobot 0.6, ``policies/act/modeling_act.py``, ``processor/``) holds::

    config.json                                         ACTConfig ("type": "act", features...)
    model.safetensors                                   ACTPolicy's state dict ("model.*")
    policy_preprocessor.json                            rename -> batch -> device -> normalizer
    policy_preprocessor_step_3_normalizer_processor.safetensors    "<feature>.<stat>" tensors
    policy_postprocessor.json                           unnormalizer -> device
    policy_postprocessor_step_0_unnormalizer_processor.safetensors

The two networks compute the same function (both are DETR-style post-norm transformers with
the same token order: latent, joint state, environment state or camera features); only names
and packing differ. LeRobot's attention is ``nn.MultiheadAttention`` with one packed
``in_proj_weight`` = [W_q; W_k; W_v]; ours keeps three projections. LeRobot builds its ResNet18
with ``FrozenBatchNorm2d`` only, so a GroupNorm backbone has no LeRobot equivalent.

Normalization is folded exactly where the conventions differ: our statistics clamp std at
``STD_MIN`` and LeRobot adds ``eps`` (and also knows min/max and quantile modes), so on import
the ratio of the two scales multiplies the first layer that reads each input (and the action
head's rows); unit conversions (``aloha_bench.lerobot_units``) are linear and move into the
statistics, with a joint whose factor is negative flipped in those same layers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from aloha_bench import embodiment, keys, lerobot_units
from aloha_bench.interop.lerobot_dataset import SIDE_PATH, _staged, load_joint_ranges
from aloha_bench.policies import ACTConfig, ACTPolicy, checkpoint_dir
from aloha_bench.policies import load as load_policy
from aloha_bench.policies.act.model import sinusoid_table
from aloha_bench.policies.normalize import STD_MIN

CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
PREPROCESSOR = "policy_preprocessor"
POSTPROCESSOR = "policy_postprocessor"
NORMALIZER_FILE = f"{PREPROCESSOR}_step_3_normalizer_processor.safetensors"
UNNORMALIZER_FILE = f"{POSTPROCESSOR}_step_0_unnormalizer_processor.safetensors"
# What our export records beside LeRobot's files (LeRobot ignores it; import reads it).
EXPORT_NOTE = "aloha_bench_export.json"
LEROBOT_EPS = 1e-8
# ResNet18 children in torchvision order: our Backbone is nn.Sequential(children[:-2]).
RESNET_CHILDREN = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
# Every input normalized by mean/std, as ours are. LeRobot's ACT default leaves out "ENV" (its
# environment state enters unnormalized), so an exported state-mode policy names it.
NORM_MAP = {"VISUAL": "MEAN_STD", "STATE": "MEAN_STD", "ENV": "MEAN_STD", "ACTION": "MEAN_STD"}


class PolicyConversionError(ValueError):
    """A checkpoint uses something the other side's ACT cannot represent, or is malformed."""


def is_lerobot_policy(path: str | Path) -> bool:
    """True if ``path`` is a LeRobot ``pretrained_model`` folder of an ACT policy."""
    config = Path(path) / CONFIG_FILE
    if not config.is_file() or not (Path(path) / MODEL_FILE).is_file():
        return False
    try:
        return json.loads(config.read_text()).get("type") == "act"
    except json.JSONDecodeError:
        return False


# ------------------------------------------------------------------------------------------------
# Names: ours <-> LeRobot's, one table of regular expressions
# ------------------------------------------------------------------------------------------------
_BLOCK = {"ffn.fc1": "linear1", "ffn.fc2": "linear2", "cross_attn": "multihead_attn"}
_RENAMES: tuple[tuple[str, str], ...] = (
    (r"model\.vae_cls\.", "model.vae_encoder_cls_embed."),
    (r"model\.vae_state_proj\.", "model.vae_encoder_robot_state_input_proj."),
    (r"model\.vae_action_proj\.", "model.vae_encoder_action_input_proj."),
    (r"model\.vae_latent_proj\.", "model.vae_encoder_latent_output_proj."),
    (r"model\.vae_encoder\.(\d+)\.", r"model.vae_encoder.layers.\1."),
    (r"model\.latent_proj\.", "model.encoder_latent_input_proj."),
    (r"model\.state_proj\.", "model.encoder_robot_state_input_proj."),
    (r"model\.env_state_proj\.", "model.encoder_env_state_input_proj."),
    (r"model\.token_pos\.", "model.encoder_1d_feature_pos_embed."),
    (r"model\.image_proj\.", "model.encoder_img_feat_input_proj."),
    (r"model\.encoder\.(\d+)\.", r"model.encoder.layers.\1."),
    (r"model\.queries\.", "model.decoder_pos_embed."),
    (r"model\.decoder\.(\d+)\.", r"model.decoder.layers.\1."),
    (r"model\.decoder_norm\.", "model.decoder.norm."),
)


def _to_lerobot_name(name: str) -> str:
    match = re.fullmatch(r"model\.backbone\.body\.(\d+)\.(.*)", name)
    if match:
        return f"model.backbone.{RESNET_CHILDREN[int(match[1])]}.{match[2]}"
    for pattern, replacement in _RENAMES:
        name = re.sub("^" + pattern, replacement, name)
    name = name.replace(".attn.", ".self_attn.")
    for ours, theirs in _BLOCK.items():
        name = name.replace(f".{ours}.", f".{theirs}.")
    return name


def _to_our_weights(theirs: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor]):
    """LeRobot's ``model.*`` tensors renamed and unpacked into our state dict's names."""
    names = {_to_lerobot_name(n): n for n in reference if n.startswith("model.")}
    out: dict[str, torch.Tensor] = {}
    for their_name, value in theirs.items():
        if their_name == "model.vae_encoder_pos_enc":
            continue  # a fixed table both sides compute the same way
        packed = re.fullmatch(r"(.*)\.in_proj_(weight|bias)", their_name)
        if packed:
            q, k, v = value.chunk(3, dim=0)
            prefix = packed[1]
            for part, tensor in zip(("q", "k", "v"), (q, k, v), strict=True):
                target = names.get(f"{prefix}.{part}_proj.{packed[2]}")
                if target is None:
                    raise PolicyConversionError(f"LeRobot weight {their_name} has no place here")
                out[target] = tensor.clone()
            continue
        target = names.get(their_name)
        if target is None:
            raise PolicyConversionError(
                f"LeRobot weight {their_name} has no counterpart in our ACT; the folder's "
                "config.json and model.safetensors disagree, or the architecture differs"
            )
        out[target] = value.clone()
    return out


def _to_lerobot_weights(ours: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    packs: dict[str, dict[str, torch.Tensor]] = {}
    for name, value in ours.items():
        if not name.startswith("model."):
            continue  # normalization statistics go to the processor files
        if name.startswith("model.aux_state_head."):
            # The auxiliary pose head (aux_state_weight, an extension) serves training only;
            # LeRobot's ACT has no place for it and acts the same without it.
            continue
        match = re.fullmatch(r"(.*)\.([qkv])_proj\.(weight|bias)", name)
        if match:
            key = f"{_to_lerobot_name(match[1] + '.x')[:-2]}.in_proj_{match[3]}"
            packs.setdefault(key, {})[match[2]] = value
            continue
        out[_to_lerobot_name(name)] = value
    for key, parts in packs.items():
        out[key] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


# ------------------------------------------------------------------------------------------------
# Export
# ------------------------------------------------------------------------------------------------
def export_lerobot(
    run: str | Path,
    out: str | Path,
    *,
    units: str = "radians",
    calibration: str | Path | None = None,
    camera_map: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Write a trained ACT as a LeRobot ``pretrained_model`` folder.

    Args:
        run: a run folder of ``aloha-bench train`` (its ``best/`` checkpoint, else ``last/``)
            or a checkpoint folder.
        out: the folder to create (must not exist).
        units: joint units the exported policy reads and writes: ``"radians"`` (the run's
            own), ``"degrees"`` or ``"range"`` (LeRobot's SO-101 modes, to drive real arms
            through LeRobot's tools; need ``calibration``).
        calibration: folder of the arms' calibration files.
        camera_map: our camera -> LeRobot image key (default ``observation.images.<camera>``).

    Returns:
        ``out``, ``checkpoint``, ``units``, ``features`` (LeRobot's input feature keys) and
        ``parameters``.

    Raises:
        PolicyConversionError: the run uses a backbone LeRobot's ACT cannot build (GroupNorm).
        UnitsError: ``units`` needs a calibration.
    """
    checkpoint = checkpoint_dir(run)
    policy = load_policy(checkpoint)
    config = policy.config
    if config.obs_mode == "pixels" and config.backbone_norm != "frozen_batchnorm":
        raise PolicyConversionError(
            f"{checkpoint}: backbone_norm = {config.backbone_norm!r}; LeRobot's ACT builds its "
            "ResNet18 with FrozenBatchNorm2d only, so these weights have no LeRobot equivalent. "
            "Train with backbone_norm = 'frozen_batchnorm' to export"
        )
    ranges = load_joint_ranges(calibration) if calibration is not None else None
    factor = torch.tensor(lerobot_units.rad_per_unit(units, ranges), dtype=torch.float32)
    camera_map = dict(camera_map or {})
    unknown = sorted(set(camera_map) - set(config.cameras))
    if unknown:
        raise ValueError(f"--camera-map names {unknown}, not cameras of this policy")
    image_keys = {cam: camera_map.get(cam, keys.image_key(cam)) for cam in config.cameras}

    state = {k: v.detach().clone().float() for k, v in policy.state_dict().items()}
    n_decoder_layers = config.n_decoder_layers
    if config.use_first_decoder_layer_only and n_decoder_layers > 1:
        # Only the first layer's output is ever used: a one-layer decoder is the same function.
        state = {k: v for k, v in state.items() if not re.match(r"model\.decoder\.[1-9]", k)}
        n_decoder_layers = 1
    stats = policy.normalizer.to_stats()
    # Units: x_lerobot = x_rad / f, so mean / f and std / |f|; a negative f flips the sign of
    # the normalized value, undone in every layer that reads or writes it.
    sign = torch.sign(factor)
    for key in (keys.STATE, keys.ACTION):
        stats[key] = {
            "mean": stats[key]["mean"] / factor.numpy(),
            "std": stats[key]["std"] / np.abs(factor.numpy()),
        }
    _scale_joint_layers(state, sign, sign)
    weights = _to_lerobot_weights(state)
    if config.use_vae:
        weights["model.vae_encoder_pos_enc"] = sinusoid_table(
            config.chunk_size + 2, config.dim_model
        )[None]

    input_features: dict[str, dict[str, Any]] = {keys.STATE: _feature("STATE", [12])}
    if config.obs_mode == "state":
        env_dim = int(np.asarray(stats[keys.ENVIRONMENT_STATE]["mean"]).size)
        input_features[keys.ENVIRONMENT_STATE] = _feature("ENV", [env_dim])
    for cam, key in image_keys.items():
        input_features[key] = _feature("VISUAL", [3, *config.image_size])
        stats[key] = stats.pop(keys.image_key(cam))
    output_features = {keys.ACTION: _feature("ACTION", [12])}
    lerobot_config = {
        "type": "act",
        "n_obs_steps": 1,
        "input_features": input_features,
        "output_features": output_features,
        "device": "cpu",
        "use_amp": False,
        "push_to_hub": False,
        "repo_id": None,
        "chunk_size": config.chunk_size,
        "n_action_steps": config.n_action_steps,
        "normalization_mapping": NORM_MAP,
        "vision_backbone": "resnet18",
        # The weights come from model.safetensors; naming ImageNet here would download them.
        "pretrained_backbone_weights": None,
        "replace_final_stride_with_dilation": False,
        "pre_norm": False,
        "dim_model": config.dim_model,
        "n_heads": config.n_heads,
        "dim_feedforward": config.dim_feedforward,
        "feedforward_activation": "relu",
        "n_encoder_layers": config.n_encoder_layers,
        "n_decoder_layers": n_decoder_layers,
        "use_vae": config.use_vae,
        "latent_dim": config.latent_dim,
        "n_vae_encoder_layers": config.n_vae_encoder_layers,
        "temporal_ensemble_coeff": config.temporal_ensemble_coeff,
        "dropout": config.dropout,
        "kl_weight": config.kl_weight,
        "optimizer_lr": config.lr,
        "optimizer_weight_decay": config.weight_decay,
        "optimizer_lr_backbone": config.lr_backbone,
    }
    tensors = {
        f"{key}.{name}": torch.as_tensor(np.asarray(value, dtype=np.float32)).reshape(3, 1, 1)
        if key.startswith(keys.IMAGES_PREFIX)
        else torch.as_tensor(np.asarray(value, dtype=np.float32))
        for key, s in stats.items()
        for name, value in s.items()
    }
    all_features = {**input_features, **output_features}
    with _staged(Path(out)) as staging:
        staging.mkdir(parents=True)
        save_file({k: v.contiguous() for k, v in weights.items()}, staging / MODEL_FILE)
        save_file(tensors, staging / NORMALIZER_FILE)
        save_file(tensors, staging / UNNORMALIZER_FILE)
        _write(staging / CONFIG_FILE, lerobot_config)
        _write(staging / f"{PREPROCESSOR}.json", _pipeline(PREPROCESSOR, all_features))
        _write(staging / f"{POSTPROCESSOR}.json", _pipeline(POSTPROCESSOR, output_features))
        _write(
            staging / EXPORT_NOTE,
            {
                "source": str(checkpoint),
                "units": units,
                "cameras": image_keys,
                "aloha_bench_config": config.to_dict(),
            },
        )
    return {
        "out": str(out),
        "checkpoint": str(checkpoint),
        "units": units,
        "features": list(input_features),
        "parameters": int(sum(v.numel() for k, v in weights.items() if "pos_enc" not in k)),
    }


def _feature(kind: str, shape: list[int]) -> dict[str, Any]:
    return {"type": kind, "shape": shape}


def _write(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=4) + "\n")


def _pipeline(name: str, features: Mapping[str, Any]) -> dict[str, Any]:
    """LeRobot's processor pipeline JSON, as ``make_act_pre_post_processors`` saves it."""
    norm = {
        "eps": LEROBOT_EPS,
        "features": dict(features),
        "norm_map": NORM_MAP,
    }
    device = {"registry_name": "device_processor", "config": {"device": "cpu", "float_dtype": None}}
    if name == PREPROCESSOR:
        steps = [
            {"registry_name": "rename_observations_processor", "config": {"rename_map": {}}},
            {"registry_name": "to_batch_processor", "config": {}},
            device,
            {
                "registry_name": "normalizer_processor",
                "config": norm,
                "state_file": NORMALIZER_FILE,
            },
        ]
    else:
        steps = [
            {
                "registry_name": "unnormalizer_processor",
                "config": norm,
                "state_file": UNNORMALIZER_FILE,
            },
            device,
        ]
    return {"name": name, "steps": steps}


def _scale_joint_layers(state: dict[str, torch.Tensor], state_scale, action_scale) -> None:
    """Multiply the layers that read joint states (columns) and write actions (rows) per joint.

    ``state_scale`` (12,) multiplies what the network sees of each normalized state entry;
    ``action_scale`` (12,) the normalized actions it reads (CVAE encoder) and writes (head).
    """
    for name in ("model.state_proj.weight", "model.vae_state_proj.weight"):
        if name in state:
            state[name] = state[name] * state_scale[None, :]
    if "model.vae_action_proj.weight" in state:
        state["model.vae_action_proj.weight"] = state["model.vae_action_proj.weight"] * action_scale
    state["model.action_head.weight"] = state["model.action_head.weight"] * action_scale[:, None]
    state["model.action_head.bias"] = state["model.action_head.bias"] * action_scale


# ------------------------------------------------------------------------------------------------
# Import
# ------------------------------------------------------------------------------------------------
def _normalizer_step(folder: Path, pipeline: str, registry_name: str) -> tuple[dict, dict]:
    """(config, {key: {stat: tensor}}) of a pipeline's (un)normalizer step."""
    path = folder / f"{pipeline}.json"
    if not path.is_file():
        raise PolicyConversionError(
            f"{path} missing: the policy's normalization statistics live in LeRobot's processor "
            "files; save them beside the model (preprocessor.save_pretrained(folder))"
        )
    steps = json.loads(path.read_text()).get("steps", [])
    step = next((s for s in steps if s.get("registry_name") == registry_name), None)
    if step is None or "state_file" not in step:
        raise PolicyConversionError(f"{path}: no {registry_name} step with a state_file")
    stats: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in load_file(folder / step["state_file"]).items():
        key, _, stat = name.rpartition(".")
        stats.setdefault(key, {})[stat] = tensor.float()
    return step["config"], stats


def _affine(mode: str, stats: Mapping[str, torch.Tensor] | None, eps: float, dim: int):
    """(center, forward scale, inverse scale) of one LeRobot normalization mode."""
    if mode == "IDENTITY" or stats is None:
        return torch.zeros(dim), torch.ones(dim), torch.ones(dim)
    if mode == "MEAN_STD":
        return stats["mean"], stats["std"] + eps, stats["std"]
    low, high = {
        "MIN_MAX": ("min", "max"),
        "QUANTILES": ("q01", "q99"),
        "QUANTILE10": ("q10", "q90"),
    }.get(mode, (None, None))
    if low is None:
        raise PolicyConversionError(f"unknown LeRobot normalization mode {mode!r}")
    width = stats[high] - stats[low]
    width = torch.where(width == 0, torch.full_like(width, eps), width)
    return stats[low] + width / 2, width / 2, width / 2


def recorded_units(folder: str | Path) -> str | None:
    """The joint units a LeRobot policy folder works in, if something records them.

    Our export's note, else the dataset LeRobot trained it on (``train_config.json`` names its
    root) if that dataset was written by ``aloha-bench convert``.
    """
    folder = Path(folder)
    if (folder / EXPORT_NOTE).is_file():
        return json.loads((folder / EXPORT_NOTE).read_text()).get("units")
    train_config = folder / "train_config.json"
    if train_config.is_file():
        root = (json.loads(train_config.read_text()).get("dataset") or {}).get("root")
        side = Path(root) / SIDE_PATH if root else None
        if side is not None and side.is_file():
            return json.loads(side.read_text()).get("units")
    return None


def _demo_seeds(folder: Path) -> dict[str, Any] | None:
    """``{"task", "demo_seeds"}`` of the dataset LeRobot trained on, if ``convert`` wrote it.

    Evaluation refuses seeds that recorded training demos; LeRobot's ``train_config.json``
    names its dataset, whose episodes carry our seeds when they came from ``to_lerobot``.
    """
    train_config = folder / "train_config.json"
    if not train_config.is_file():
        return None
    root = (json.loads(train_config.read_text()).get("dataset") or {}).get("root")
    if not root or not (Path(root) / SIDE_PATH).is_file():
        return None
    import pyarrow.parquet as pq

    side = json.loads((Path(root) / SIDE_PATH).read_text())
    seeds: list[int] = []
    for path in sorted((Path(root) / "meta/episodes").glob("*/*.parquet")):
        column = "aloha_bench/seed"
        table = pq.read_table(path)
        if column in table.column_names:
            seeds += [int(v) for v in table.column(column).to_pylist()]
    task = side.get("store_attrs", {}).get("task_id")
    return {"task": task, "demo_seeds": seeds, "dataset": str(root)} if task else None


def import_lerobot(
    folder: str | Path,
    out: str | Path,
    *,
    units: str | None = None,
    calibration: str | Path | None = None,
    camera_map: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Convert a LeRobot ACT ``pretrained_model`` folder into our checkpoint folder.

    Args:
        folder: LeRobot's folder (``config.json``, ``model.safetensors``, processor files).
        out: the checkpoint folder to create (``policies.load`` and ``eval --run`` take it).
        units: the joint units the policy works in (``degrees``, ``range``, ``radians``);
            default :func:`recorded_units`, else refused.
        calibration: folder of the arms' calibration files (``degrees``/``range``).
        camera_map: our camera -> LeRobot image key; keys named after one of our cameras map
            by themselves.

    Returns:
        ``out``, ``obs_mode``, ``cameras``, ``units``.

    Raises:
        PolicyConversionError: an option our ACT lacks (pre-norm, another backbone or
            activation, images and environment state together, a robot other than the
            12-joint bimanual SO-101).
    """
    folder = Path(folder)
    if not is_lerobot_policy(folder):
        raise PolicyConversionError(
            f'{folder}: not a LeRobot ACT folder (config.json with "type": "act" and '
            "model.safetensors)"
        )
    lr = json.loads((folder / CONFIG_FILE).read_text())
    for field, allowed in (
        ("pre_norm", False),
        ("feedforward_activation", "relu"),
        ("vision_backbone", "resnet18"),
        ("replace_final_stride_with_dilation", False),
        ("n_obs_steps", 1),
    ):
        if lr.get(field, allowed) != allowed:
            raise PolicyConversionError(
                f"{folder / CONFIG_FILE}: {field} = {lr.get(field)!r}; our ACT implements "
                f"{field} = {allowed!r} only"
            )
    inputs: dict[str, dict] = lr.get("input_features") or {}
    outputs: dict[str, dict] = lr.get("output_features") or {}
    for key, where in ((keys.STATE, inputs), (keys.ACTION, outputs)):
        if list((where.get(key) or {}).get("shape", [])) != [embodiment.STATE_DIM]:
            raise PolicyConversionError(
                f"{folder / CONFIG_FILE}: {key} must be shape [12] (the bimanual SO-101's "
                f"joints), got {where.get(key)}"
            )
    image_keys = [k for k, f in inputs.items() if f.get("type") == "VISUAL"]
    has_env = keys.ENVIRONMENT_STATE in inputs
    if image_keys and has_env:
        raise PolicyConversionError(
            f"{folder}: the policy reads images and {keys.ENVIRONMENT_STATE} together; our ACT "
            "reads one or the other (obs_mode pixels or state)"
        )
    units = units or recorded_units(folder)
    if units is None:
        raise lerobot_units.UnitsError(
            f"{folder}: {keys.STATE} and {keys.ACTION}: the joint units this policy was trained "
            "in are not recorded; pass --lerobot-units degrees (use_degrees=true), range "
            "(LeRobot's default -100..100) or radians (trained on a dataset aloha-bench wrote)"
        )
    ranges = load_joint_ranges(calibration) if calibration is not None else None
    factor = torch.tensor(lerobot_units.rad_per_unit(units, ranges), dtype=torch.float32)

    mapping = dict(camera_map or {})
    cameras: dict[str, str] = {}
    for key in image_keys:
        ours = next((o for o, t in mapping.items() if t == key), None)
        name = key.removeprefix(keys.IMAGES_PREFIX)
        ours = ours or (name if name in keys.CAMERAS else None)
        if ours is None:
            raise PolicyConversionError(
                f"{key}: no camera of ours is named {name!r}; map it with --camera-map "
                f"CAMERA={key} (CAMERA one of {keys.CAMERAS})"
            )
        cameras[ours] = key
    sizes = {tuple(inputs[k]["shape"][1:]) for k in image_keys}
    if len(sizes) > 1:
        raise PolicyConversionError(f"{folder}: cameras of different sizes {sorted(sizes)}")

    pre_config, pre_stats = _normalizer_step(folder, PREPROCESSOR, "normalizer_processor")
    _, post_stats = _normalizer_step(folder, POSTPROCESSOR, "unnormalizer_processor")
    norm_map = pre_config.get("norm_map") or lr.get("normalization_mapping") or {}
    eps = float(pre_config.get("eps", LEROBOT_EPS))

    def affine(key: str, kind: str, stats: Mapping, dim: int):
        return _affine(norm_map.get(kind, "IDENTITY"), stats.get(key), eps, dim)

    # Our normalizer: (x - center) / max(scale, STD_MIN); the ratio to LeRobot's forward scale
    # multiplies the first layer reading each input, the inverse scale the action head's rows.
    our_stats: dict[str, dict[str, np.ndarray]] = {}
    gains: dict[str, torch.Tensor] = {}
    for key, kind, dim in (
        (keys.STATE, "STATE", 12),
        *(
            [(keys.ENVIRONMENT_STATE, "ENV", int(inputs[keys.ENVIRONMENT_STATE]["shape"][0]))]
            if has_env
            else []
        ),
        *[(k, "VISUAL", 3) for k in image_keys],
    ):
        center, scale_in, _ = affine(key, kind, pre_stats, dim)
        center, scale_in = center.reshape(-1), scale_in.reshape(-1)
        if key in (keys.STATE,):
            center, scale_in = center * factor, scale_in * factor.abs()
        ours = scale_in.clamp(min=STD_MIN)
        gains[key] = ours / scale_in
        our_stats[key] = {"mean": center.numpy(), "std": ours.numpy()}
    center, _, scale_out = affine(keys.ACTION, "ACTION", post_stats, 12)
    center, scale_out = center.reshape(-1) * factor, scale_out.reshape(-1) * factor.abs()
    ours = scale_out.clamp(min=STD_MIN)
    action_gain = scale_out / ours
    our_stats[keys.ACTION] = {"mean": center.numpy(), "std": ours.numpy()}
    _, action_in_scale, _ = affine(keys.ACTION, "ACTION", pre_stats, 12)
    action_in_gain = ours / (action_in_scale.reshape(-1) * factor.abs())

    image_size = tuple(next(iter(sizes))) if sizes else (480, 640)
    config = ACTConfig(
        obs_mode="pixels" if image_keys else "state",
        cameras=tuple(cameras) if cameras else ("top",),
        image_size=image_size,
        image_norm="dataset",
        chunk_size=int(lr["chunk_size"]),
        n_action_steps=int(lr["n_action_steps"]),
        temporal_ensemble_coeff=lr.get("temporal_ensemble_coeff"),
        dim_model=int(lr["dim_model"]),
        n_heads=int(lr["n_heads"]),
        dim_feedforward=int(lr["dim_feedforward"]),
        n_encoder_layers=int(lr["n_encoder_layers"]),
        n_decoder_layers=int(lr["n_decoder_layers"]),
        dropout=float(lr.get("dropout", 0.1)),
        backbone_norm="frozen_batchnorm",
        use_vae=bool(lr.get("use_vae", True)),
        latent_dim=int(lr["latent_dim"]),
        n_vae_encoder_layers=int(lr.get("n_vae_encoder_layers", 1)),
        kl_weight=float(lr.get("kl_weight", 10.0)),
        lr=float(lr.get("optimizer_lr", 1e-5)),
        lr_backbone=float(lr.get("optimizer_lr_backbone", 1e-5)),
        weight_decay=float(lr.get("optimizer_weight_decay", 1e-4)),
    )
    stats = {keys.image_key(o): our_stats[t] for o, t in cameras.items()}
    stats |= {k: v for k, v in our_stats.items() if not k.startswith(keys.IMAGES_PREFIX)}
    policy = ACTPolicy(config, stats)
    reference = policy.state_dict()
    weights = _to_our_weights(load_file(folder / MODEL_FILE), reference)
    missing = sorted(n for n in reference if n.startswith("model.") and n not in weights)
    if missing:
        raise PolicyConversionError(
            f"{folder / MODEL_FILE}: lacks {len(missing)} weights, e.g. {missing[:3]}; the "
            "file is incomplete or config.json describes another architecture"
        )
    sign = torch.sign(factor)
    state_gain = gains[keys.STATE] * sign
    _scale_joint_layers(weights, state_gain, action_in_gain * sign)
    # The head writes our normalized actions: LeRobot's scale over ours, per joint and sign.
    head_gain = action_gain * sign / (action_in_gain * sign)
    weights["model.action_head.weight"] = weights["model.action_head.weight"] * head_gain[:, None]
    weights["model.action_head.bias"] = weights["model.action_head.bias"] * head_gain
    if has_env:
        name = "model.env_state_proj.weight"
        weights[name] = weights[name] * gains[keys.ENVIRONMENT_STATE][None, :]
    if len(cameras) > 1 and not all(
        torch.equal(gains[k], gains[image_keys[0]]) for k in image_keys
    ):
        raise PolicyConversionError(
            f"{folder}: cameras share one backbone but LeRobot's statistics of "
            f"{image_keys} differ below our std floor {STD_MIN}; they cannot be folded into it"
        )
    if image_keys:
        conv = "model.backbone.body.0.weight"
        weights[conv] = weights[conv] * gains[image_keys[0]].reshape(1, 3, 1, 1)
    full = dict(reference) | weights
    policy.load_state_dict(full)
    with _staged(Path(out)) as staging:
        policy.save(staging)
        _write(
            staging / "lerobot_source.json",
            {"source": str(folder), "units": units, "cameras": cameras},
        )
        split = _demo_seeds(folder)
        if split is not None:
            _write(staging / "split.json", split)
    return {"out": str(out), "obs_mode": config.obs_mode, "cameras": cameras, "units": units}
