"""Which linear layers of a policy tolerate int8: the action error of static int8 exports that
differ only in which linear layers stay fp32 (``export-policy --quantize int8_static_full``).

Every variant runs the backbone's convolutions in int8 and is calibrated, like the export, on 64
frames of the run's training demos; its actions are compared with the fp32 ONNX graph's on 16
frames of the run's validation demos (largest and RMS difference, mrad). Variants: each group of
five linear layers alone in int8 (in graph order; the last group one by one), then everything
but the last 1, 2, 3 or 5 linear layers. With ``--export-fp32-last N OUT`` it also writes the
export that keeps the last N in fp32 to OUT, to be evaluated with ``aloha-bench eval --runtime
onnx``.

Usage: python results/vision/int8_sensitivity.py RUN_DIR [--export-fp32-last N OUT]
(prints a table; results/vision/int8_sensitivity_PH.txt is its output for the PH run).
"""

import argparse

import numpy as np
import torch

from aloha_bench.demo_frames import demo_observations
from aloha_bench.policies import load
from aloha_bench.policies.export import (
    CALIBRATION_FRAMES,
    OnnxPolicy,
    export_run,
    linear_products,
    onnx_model_bytes,
    quantize_int8_static,
)

parser = argparse.ArgumentParser()
parser.add_argument("run")
parser.add_argument("--export-fp32-last", nargs=2, metavar=("N", "OUT"))
args = parser.parse_args()
torch.set_num_threads(1)
policy = load(args.run)
config = policy.config
calibration = demo_observations(args.run, config.input_keys, CALIBRATION_FRAMES)
checks = demo_observations(args.run, config.input_keys, 16, split="val")
model = onnx_model_bytes(policy)
reference = OnnxPolicy(model, config)
want = [reference.predict_chunk(obs) for obs in checks]
weighted, _ = linear_products(model)


def measure(label: str, graph: bytes) -> None:
    runtime = OnnxPolicy(graph, config)
    diff = np.stack([runtime.predict_chunk(o) - w for o, w in zip(checks, want, strict=True)])
    rms = float(np.sqrt((diff**2).mean()))
    print(f"| {label} | {1e3 * np.abs(diff).max():.1f} | {1e3 * rms:.2f} |", flush=True)


print(f"run {args.run}: {len(weighted)} linear layers; {len(checks)} validation frames\n")
print("| linear layers in int8 (convolutions always) | max diff, mrad | RMS diff, mrad |")
print("|---|---:|---:|")
measure("none", quantize_int8_static(model, config, calibration, "int8_static"))
groups = [weighted[i : i + 5] for i in range(0, len(weighted) - 5, 5)]
groups += [[name] for name in weighted[len(groups) * 5 :]]
for group in groups:
    first, last = weighted.index(group[0]), weighted.index(group[-1])
    label = f"only #{first}" if first == last else f"only #{first}-{last}"
    others = [name for name in weighted if name not in group]
    measure(label, quantize_int8_static(model, config, calibration, "int8_static_full", 0, others))
for keep in (1, 2, 3, 5):
    graph = quantize_int8_static(model, config, calibration, "int8_static_full", keep)
    measure(f"all but the last {keep}", graph)

if args.export_fp32_last:
    keep, out = int(args.export_fp32_last[0]), args.export_fp32_last[1]
    info = export_run(
        args.run,
        out,
        quantize="int8_static_full",
        calibration=calibration,
        check_observations=checks,
        fp32_last=keep,
    )
    print(
        f"\nwrote {out}: the last {keep} linear layers in fp32; largest action difference on "
        f"validation frames {1e3 * info['max_action_diff_rad_on_demos']:.1f} mrad"
    )
