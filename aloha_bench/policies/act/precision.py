"""The precision a policy computes in on this machine.

``precision = "bf16"`` (``ACTConfig``) asks for bfloat16 autocast of the matrix products. It
pays only where the hardware multiplies bf16 itself: x86 CPUs with AVX-512 (oneDNN's bf16 path;
AVX512-BF16 and AMX natively, e.g. Intel Sapphire Rapids, AMD Zen 4) and CUDA GPUs that
``torch.cuda.is_bf16_supported()`` accepts. Elsewhere, on most laptops and many cloud VMs
(AVX2-only x86: Intel consumer chips, AMD Zen 1-3), PyTorch falls back to a scalar kernel:
on a 2-core AMD EPYC (Zen 1, AVX2), an (800 x 256) x (256 x 1024) product, the `cpu` profile's
feed-forward, took 1045 ms in bf16 against 24 ms in fp32, and a `cpu_state` training step 9 s
instead of ~0.1 s. A ``bf16`` policy therefore computes in fp32 there, says so once per process,
and records the precision it used (the run's summary, evaluation records), so no figure is read
as bf16 that was not.

Set ``ALOHA_BENCH_BF16=always`` to autocast to bf16 even where it is emulated (e.g. to match a
bf16 run's numerics on another machine, at that cost).
"""

from __future__ import annotations

import functools
import os
import warnings

import torch

FORCE_ENV = "ALOHA_BENCH_BF16"


class PrecisionWarning(UserWarning):
    """A requested precision this machine cannot compute fast, replaced by fp32."""


@functools.cache
def bf16_is_native(device_type: str) -> bool:
    """Whether bf16 matrix products run at least at fp32 speed on ``device_type``
    (``"cpu"``, ``"cuda"``, ...), by the hardware features PyTorch itself checks."""
    if device_type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device_type == "cpu":
        try:  # oneDNN's own test (AVX-512 core or newer); private, hence the guard
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return True  # other backends (mps, xpu): trust the request


def effective_precision(requested: str, device_type: str = "cpu") -> str:
    """The precision to compute in: ``requested``, except ``"bf16"`` becomes ``"fp32"`` where
    :func:`bf16_is_native` is false (with one :class:`PrecisionWarning` per process and device)
    unless ``ALOHA_BENCH_BF16=always``.

    Args:
        requested: ``ACTConfig.precision`` (``"fp32"`` or ``"bf16"``).
        device_type: ``torch.device.type`` of the model.
    """
    if requested != "bf16" or bf16_is_native(device_type):
        return requested
    if os.environ.get(FORCE_ENV, "").lower() == "always":
        return requested
    _warn_fallback(device_type)
    return "fp32"


@functools.cache
def _warn_fallback(device_type: str) -> None:
    capability = torch.backends.cpu.get_cpu_capability() if device_type == "cpu" else device_type
    warnings.warn(
        f'precision = "bf16" computes in fp32 on this {device_type} ({capability}): it has no '
        "native bf16 matrix products, and PyTorch's fallback is ~40x slower than fp32. "
        'Train with precision = "fp32" (train --set precision=fp32) to silence this, or set '
        f"{FORCE_ENV}=always to use bf16 anyway.",
        PrecisionWarning,
        stacklevel=3,
    )
