"""ONNX export of a trained policy and its ONNX Runtime twin, :class:`OnnxPolicy`.

The exported graph is the whole acting path of ``ACTPolicy.predict_chunk``: raw observations in
(``observation.state`` (1, 12) float32, then ``observation.environment_state`` (1, E) float32 or
one ``observation.images.<camera>`` (1, H, W, 3) uint8 per camera), normalization, the network
at z = 0, unnormalization, and the chunk out (``action``, (1, K, 12) float32, radians). So an
export folder is a complete policy: ``policy.onnx``, the policy's ``config.json`` and
``export.json`` (what was exported, how, and the largest action difference from fp32 torch
measured on a synthetic observation at export time).

The graph is always fp32: a ``precision = "bf16"`` policy trains and runs in torch with bf16
matrix products over fp32 master weights, and ONNX Runtime's CPU kernels are fastest and exact in
fp32. Optionally the matrix weights are quantized to int8 (``quantize="int8"``, ONNX Runtime's
dynamic quantization), or the image backbone's convolutions are (``quantize="int8_static"``:
int8 weights per output channel and uint8 activations whose ranges are calibrated on the run's
own demonstration frames, ONNX Runtime's static QDQ quantization; the transformer stays fp32),
or the convolutions and the transformer's linear layers are (``quantize="int8_static_full"``,
the same calibration; the attention products, the last decoder layer's feed-forward and the
action head stay fp32). Each changes the actions, so the export measures by how much and says so.

Runtime options that pay on a small CPU (:func:`session_options`): every graph optimization
(constant folding, node fusions: attention, layer norm, GELU, bias adds), ``intra_op`` threads
set explicitly (ONNX Runtime defaults to one per core and spins them, which fights a control loop
for a 2-core machine), one ``inter_op`` thread and sequential execution (the graph is a chain).

``aloha_bench.policies.load(run, runtime="onnx")`` loads an export folder, or exports a run's
checkpoint in memory when the folder has no ``policy.onnx``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aloha_bench import keys
from aloha_bench.policies.act.config import ACTConfig
from aloha_bench.policies.act.policy import CONFIG_FILE, INFERENCE_FIELDS, ACTPolicy
from aloha_bench.policies.chunking import ChunkExecutor, ExecutionConfig, SimClock

ONNX_FILE = "policy.onnx"
EXPORT_FILE = "export.json"
OPSET = 18
QUANTIZATIONS = ("none", "int8", "int8_static", "int8_static_full")
# What int8_static quantizes: the ResNet18 backbone's convolutions, the largest share of a pixel
# policy's chunk time on ONNX Runtime; the transformer's matrix products, whose output is the
# action itself, stay fp32.
STATIC_OP_TYPES = ("Conv",)
# int8_static_full adds the transformer's linear layers (matrix products with a weight): with
# the convolutions in int8 they were 60% of the lerobot_parity chunk on ONNX Runtime (profiled,
# 2 threads). Left in fp32: the attention products (activation x activation, no weight to
# calibrate per channel) and the last FP32_LAST_LINEAR linear layers, the last decoder layer's
# feed-forward and the action head: quantized one at a time on the vision recipe's policy
# (results/vision/, PH), those three caused most of the action error (the feed-forward's second
# product reads ReLU outputs whose long tail sets a coarse uint8 step); keeping them in fp32 cut
# the RMS action difference on validation demo frames from 5.2 to 2.0 mrad.
FULL_OP_TYPES = ("Conv", "MatMul", "Gemm")
FP32_LAST_LINEAR = 3
# Demonstration frames the activation ranges are calibrated on (spread over the run's training
# episodes).
CALIBRATION_FRAMES = 64
ACTION_OUTPUT = "action"
# The parity the export promises against fp32 torch, radians (issue 17's bar).
PARITY_TOLERANCE_RAD = 1e-3
RUNTIMES = ("torch", "onnx")


class _ChunkFromObservation(nn.Module):
    """Raw observation tensors (batch of 1) -> unnormalized chunk (1, K, 12), fp32, z = 0."""

    def __init__(self, policy: ACTPolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        batch = dict(zip(self.policy.config.input_keys, inputs, strict=True))
        model_inputs = self.policy.preprocess(batch)
        latent = torch.zeros(1, self.policy.config.latent_dim)  # (1, L): the prior's mean
        predicted = self.policy.model(latent=latent, **model_inputs)  # (1, K, 12)
        return self.policy.normalizer.unnormalize(keys.ACTION, predicted)


def example_observation(policy: ACTPolicy, seed: int = 0) -> dict[str, np.ndarray]:
    """A synthetic observation of the policy's inputs (unbatched numpy), for export and parity.

    Joint and object states are drawn around the training statistics (mean +- 1 std), images
    uniformly: the parity of two runtimes does not depend on what the observation shows.
    """
    rng = np.random.default_rng(seed)
    stats = policy.normalizer.to_stats()
    obs: dict[str, np.ndarray] = {}
    for key in policy.config.input_keys:
        if key.startswith(keys.IMAGES_PREFIX):
            obs[key] = rng.integers(0, 256, (*policy.config.image_size, 3), dtype=np.uint8)
        else:
            mean, std = stats[key]["mean"], stats[key]["std"]
            obs[key] = (mean + std * rng.uniform(-1, 1, mean.shape)).astype(np.float32)
    return obs


def _batched(config: ACTConfig, obs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    return [np.ascontiguousarray(obs[key])[None] for key in config.input_keys]


def onnx_model_bytes(policy: ACTPolicy, opset: int = OPSET) -> bytes:
    """The policy's acting path as a serialized ONNX model (fp32, batch 1)."""
    fp32 = ACTPolicy(dataclasses.replace(policy.config, precision="fp32"), _stats(policy))
    fp32.load_state_dict(policy.state_dict())
    fp32.eval()
    wrapper = _ChunkFromObservation(fp32).eval()
    example = tuple(torch.from_numpy(a) for a in _batched(fp32.config, example_observation(fp32)))
    with warnings.catch_warnings():
        # The exporter reports its progress through warnings and prints; neither is ours.
        warnings.simplefilter("ignore")
        with (
            torch.no_grad(),
            _quiet_logs(),
            open(os.devnull, "w") as devnull,
            contextlib.redirect_stdout(devnull),
        ):
            program = torch.onnx.export(
                wrapper,
                example,
                dynamo=True,
                input_names=list(fp32.config.input_keys),
                output_names=[ACTION_OUTPUT],
                opset_version=opset,
                optimize=True,
                verbose=False,
            )
    return program.model_proto.SerializeToString()


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """Mute the exporter's and quantizer's progress logging (warnings about their own passes)."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _stats(policy: ACTPolicy) -> dict[str, dict[str, np.ndarray]]:
    return policy.normalizer.to_stats()


def quantize_int8(model: bytes) -> bytes:
    """Dynamic int8 quantization of the matrix weights (ONNX Runtime's ``quantize_dynamic``)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(model)
        with _quiet_logs():
            quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        return target.read_bytes()


def _prepare(model: bytes, folder: Path) -> Path:
    """The quantizer's input: ``model`` with shapes inferred and the graph cleaned up (ONNX
    Runtime's ``quant_pre_process``, which also names the fused nodes), written to ``folder``."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source, prepared = folder / "fp32.onnx", folder / "prepared.onnx"
    source.write_bytes(model)
    quant_pre_process(source, prepared)
    return prepared


def linear_products(model: bytes) -> tuple[list[str], list[str]]:
    """Node names, in graph order, of the quantizer's matrix products: (those with a weight,
    i.e. linear layers; those without, i.e. attention products), as ``fp32_nodes`` of
    :func:`quantize_int8_static` takes them."""
    with tempfile.TemporaryDirectory() as tmp, _quiet_logs():
        return _products(_prepare(model, Path(tmp)))


def _products(prepared: Path) -> tuple[list[str], list[str]]:
    import onnx

    graph = onnx.load(str(prepared)).graph
    weights = {init.name for init in graph.initializer}
    products = [n for n in graph.node if n.op_type in ("MatMul", "Gemm")]
    weighted = [n.name for n in products if any(i in weights for i in n.input)]
    return weighted, [n.name for n in products if n.name not in weighted]


def _full_scope_fp32(prepared: Path, fp32_last: int, more: list[str] | None) -> list[str]:
    """The products ``int8_static_full`` leaves in fp32: those without a weight (attention), the
    last ``fp32_last`` with one (by default the last decoder layer's feed-forward and the action
    head, in graph order) and ``more``."""
    weighted, unweighted = _products(prepared)
    return unweighted + (weighted[-fp32_last:] if fp32_last > 0 else []) + list(more or [])


def quantize_int8_static(
    model: bytes,
    config: ACTConfig,
    calibration: list[Mapping[str, np.ndarray]],
    quantization: str = "int8_static",
    fp32_last: int = FP32_LAST_LINEAR,
    fp32_nodes: list[str] | None = None,
) -> bytes:
    """Static int8 (QDQ) quantization with activation ranges calibrated on ``calibration``
    observations (ONNX Runtime's ``quantize_static``, per-channel weights).

    Args:
        quantization: ``"int8_static"``: the backbone's convolutions (``STATIC_OP_TYPES``);
            ``"int8_static_full"``: those and the transformer's linear layers but the last
            three (``FULL_OP_TYPES``, :func:`_full_scope_fp32`).
        fp32_last: with ``int8_static_full``, how many of the last linear layers stay fp32.
        fp32_nodes: with ``int8_static_full``, more node names to leave in fp32 (a sensitivity
            study's knob: ``results/vision/int8_sensitivity.py``).

    Raises:
        ValueError: no calibration observations, an unknown quantization, or ``int8_static``
            on a policy without images (no backbone).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    full = quantization == "int8_static_full"
    if quantization not in ("int8_static", "int8_static_full"):
        raise ValueError(
            f"unknown static quantization {quantization!r}; expected 'int8_static' or "
            "'int8_static_full'"
        )
    if not full and config.obs_mode != "pixels":
        raise ValueError(
            "int8_static quantizes the image backbone's convolutions; a state policy has none "
            "(export it with --quantize none, or int8_static_full for its linear layers)"
        )
    if not calibration:
        raise ValueError(
            f"{quantization} needs calibration observations: the run's demo frames "
            f"(`aloha-bench export-policy RUN --quantize {quantization}` reads them from its "
            "dataset)"
        )
    feeds = [
        dict(zip(config.input_keys, _batched(config, obs), strict=True)) for obs in calibration
    ]

    class _Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    with tempfile.TemporaryDirectory() as tmp, _quiet_logs():
        prepared, target = _prepare(model, Path(tmp)), Path(tmp) / "int8.onnx"
        quantize_static(
            prepared,
            target,
            _Frames(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=list(FULL_OP_TYPES if full else STATIC_OP_TYPES),
            nodes_to_exclude=_full_scope_fp32(prepared, fp32_last, fp32_nodes) if full else None,
        )
        return target.read_bytes()


def session_options(threads: int = 1) -> Any:
    """ONNX Runtime options for a small CPU: all graph optimizations, ``threads`` intra-op
    threads without spinning, one inter-op thread, sequential execution."""
    import onnxruntime as ort

    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Spinning threads burn the core the control loop and the servo I/O need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


class OnnxPolicy:
    """A policy run by ONNX Runtime's CPU provider, with ``ACTPolicy``'s acting interface:
    ``config``, ``reset()``, ``predict_chunk(obs) -> (K, 12)``, ``select_action(obs) -> (12,)``.

    Args:
        model: a serialized ONNX model or the path of one (from :func:`export_onnx`).
        config: the policy's configuration (input keys, chunk size, execution settings).
        threads: ONNX Runtime intra-op threads.
        info: what :func:`export_onnx` recorded (``export.json``), kept for reports.
    """

    name = "act"
    runtime = "onnx"

    def __init__(
        self,
        model: bytes | str | Path,
        config: ACTConfig,
        threads: int = 1,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        import onnxruntime as ort

        self.config = config
        self.info = dict(info or {})
        source = str(model) if isinstance(model, str | Path) else model
        self.session = ort.InferenceSession(
            source, sess_options=session_options(threads), providers=["CPUExecutionProvider"]
        )
        names = [i.name for i in self.session.get_inputs()]
        if names != list(config.input_keys):
            raise ValueError(
                f"the ONNX model reads {names} but its config.json names {list(config.input_keys)};"
                " export the policy again with `aloha-bench export-policy`"
            )
        self._executor: ChunkExecutor | None = None
        self._clock = SimClock()

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of each observation the graph reads, unbatched (its inputs without the batch
        of 1), as ``ACTPolicy.input_shapes``."""
        return {i.name: tuple(int(d) for d in i.shape[1:]) for i in self.session.get_inputs()}

    def predict_chunk(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The next K actions (K, 12), unnormalized, from one observation (z = 0)."""
        feeds = dict(zip(self.config.input_keys, _batched(self.config, obs), strict=True))
        feeds = {
            key: value.astype(np.float32, copy=False) if value.dtype != np.uint8 else value
            for key, value in feeds.items()
        }
        (actions,) = self.session.run([ACTION_OUTPUT], feeds)  # (1, K, 12)
        return actions[0]

    def reset(self) -> None:
        """Forget queued actions; call at the start of every episode."""
        if self._executor is not None:
            self._executor.reset()

    def select_action(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The action (12,) to send now: sync chunk execution, as ``ACTPolicy.select_action``."""
        if self._executor is None:
            self._executor = ChunkExecutor(
                self.predict_chunk, ExecutionConfig.from_policy_config(self.config), self._clock
            )
        action = self._executor.act(obs)
        self._clock.advance(self._executor.config.control_dt_s)
        return action

    @classmethod
    def load(
        cls,
        directory: str | Path,
        overrides: Mapping[str, Any] | None = None,
        threads: int = 1,
    ) -> OnnxPolicy:
        """Load an export folder written by :func:`export_onnx`.

        Raises:
            FileNotFoundError: the folder lacks ``policy.onnx`` or ``config.json``.
        """
        directory = Path(directory)
        for name in (ONNX_FILE, CONFIG_FILE):
            if not (directory / name).is_file():
                raise FileNotFoundError(
                    f"{directory / name} missing; write an export with `aloha-bench "
                    "export-policy RUN --to onnx --out DIR`"
                )
        config = _with_overrides(ACTConfig.load_json(directory / CONFIG_FILE), overrides)
        info_path = directory / EXPORT_FILE
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        return cls(directory / ONNX_FILE, config, threads=threads, info=info)


def _with_overrides(config: ACTConfig, overrides: Mapping[str, Any] | None) -> ACTConfig:
    if not overrides:
        return config
    fixed = sorted(set(overrides) - set(INFERENCE_FIELDS))
    if fixed:
        raise ValueError(
            f"{fixed} are fixed by training; at load time only {INFERENCE_FIELDS} change"
        )
    return dataclasses.replace(config, **overrides)


def max_action_difference(
    reference: ACTPolicy,
    other: Any,
    n_observations: int = 4,
    observations: list[Mapping[str, np.ndarray]] | None = None,
) -> float:
    """Largest |action difference| (radians) between two policies over ``observations``, or
    ``n_observations`` synthetic ones."""
    if observations is None:
        observations = [example_observation(reference, seed) for seed in range(n_observations)]
    worst = 0.0
    for obs in observations:
        worst = max(
            worst, float(np.abs(reference.predict_chunk(obs) - other.predict_chunk(obs)).max())
        )
    return worst


def export_onnx(
    policy: ACTPolicy,
    out_dir: str | Path,
    quantize: str = "none",
    source: str | None = None,
    threads: int = 1,
    calibration: list[Mapping[str, np.ndarray]] | None = None,
    check_observations: list[Mapping[str, np.ndarray]] | None = None,
    fp32_last: int = FP32_LAST_LINEAR,
) -> dict[str, Any]:
    """Write ``policy.onnx``, ``config.json`` and ``export.json`` to ``out_dir``.

    Parity is measured before anything is written: the ONNX Runtime actions are compared with
    fp32 torch on synthetic observations, and an fp32 export that differs by more than
    ``PARITY_TOLERANCE_RAD`` is refused (an int8 export records its difference instead).

    Args:
        policy: the trained policy (torch).
        out_dir: the export folder (created).
        quantize: ``"none"``, ``"int8"``, ``"int8_static"`` or ``"int8_static_full"``.
        source: where the policy came from (the run folder), recorded in ``export.json``.
        threads: ONNX Runtime threads for the parity check.
        calibration: observations for ``int8_static(_full)``'s activation ranges (the run's demo
            frames, ``aloha_bench.demo_frames.demo_observations``).
        check_observations: real observations to measure the difference on as well (recorded
            as ``max_action_diff_rad_on_demos``), e.g. validation frames.
        fp32_last: with ``int8_static_full``, how many of the last linear layers stay fp32
            (``FP32_LAST_LINEAR``; recorded as ``fp32_last_linear``).

    Returns:
        The contents of ``export.json``.

    Raises:
        ValueError: unknown ``quantize``, or an fp32 export outside the parity tolerance.
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {quantize!r}; expected one of {QUANTIZATIONS}")
    model = onnx_model_bytes(policy)
    if quantize == "int8":
        model = quantize_int8(model)
    elif quantize in ("int8_static", "int8_static_full"):
        model = quantize_int8_static(model, policy.config, calibration or [], quantize, fp32_last)
    config = policy.config
    reference = ACTPolicy(dataclasses.replace(config, precision="fp32"), _stats(policy))
    reference.load_state_dict(policy.state_dict())
    onnx_policy = OnnxPolicy(model, config, threads=threads)
    difference = max_action_difference(reference, onnx_policy)
    on_demos = (
        max_action_difference(reference, onnx_policy, observations=check_observations)
        if check_observations
        else None
    )
    if quantize == "none" and difference > PARITY_TOLERANCE_RAD:
        raise ValueError(
            f"the ONNX export's actions differ from fp32 torch by {difference:.2e} rad (more than "
            f"{PARITY_TOLERANCE_RAD:.0e}); nothing was written. Report this with the policy's "
            "config.json"
        )
    import onnxruntime

    info = {
        "format": "onnx",
        "opset": OPSET,
        "quantize": quantize,
        "source": source,
        "inputs": list(config.input_keys),
        "output": ACTION_OUTPUT,
        "max_action_diff_rad_vs_torch_fp32": difference,
        "max_action_diff_rad_on_demos": on_demos,
        "calibration_frames": len(calibration) if quantize.startswith("int8_static") else 0,
        "fp32_last_linear": fp32_last if quantize == "int8_static_full" else None,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / ONNX_FILE).write_bytes(model)
    config.save(out / CONFIG_FILE)
    (out / EXPORT_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return info


def export_run(
    run_dir: str | Path,
    out_dir: str | Path,
    quantize: str = "none",
    threads: int = 1,
    calibration: list[Mapping[str, np.ndarray]] | None = None,
    check_observations: list[Mapping[str, np.ndarray]] | None = None,
    fp32_last: int = FP32_LAST_LINEAR,
) -> dict[str, Any]:
    """Export a training run's checkpoint (``best/``, else ``last/``) to ``out_dir``.

    The run's ``split.json`` (its demonstration seeds) is copied along, so evaluating the export
    keeps the check that evaluation seeds are unseen. ``calibration`` and
    ``check_observations`` go to :func:`export_onnx` (``int8_static`` needs the former: the
    run's demo frames, ``aloha_bench.demo_frames.demo_observations``).
    """
    from aloha_bench.policies import checkpoint_dir, load

    policy = load(run_dir)
    info = export_onnx(
        policy,
        out_dir,
        quantize=quantize,
        source=str(run_dir),
        threads=threads,
        calibration=calibration,
        check_observations=check_observations,
        fp32_last=fp32_last,
    )
    directory = checkpoint_dir(run_dir)
    for candidate in (Path(run_dir) / "split.json", directory.parent / "split.json"):
        if candidate.is_file():
            shutil.copyfile(candidate, Path(out_dir) / "split.json")
            break
    return info
