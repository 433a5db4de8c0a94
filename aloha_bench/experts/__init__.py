"""Scripted experts (L3), one per task, registered by task id."""

from __future__ import annotations

from typing import Any

import numpy as np

from aloha_bench.experts.base import ScriptedExpert, style_from
from aloha_bench.experts.insertion import InsertionExpert
from aloha_bench.experts.transfer_cube import TransferCubeExpert

EXPERTS: dict[str, type[ScriptedExpert]] = {
    "transfer_cube": TransferCubeExpert,
    "insertion": InsertionExpert,
}
STYLE_MODES = ("default", "varied")


def make_expert(
    task_id: str,
    style: str | dict[str, Any] = "default",
    rng: np.random.Generator | None = None,
) -> ScriptedExpert:
    """The scripted expert of ``task_id``.

    Args:
        task_id: a task with a registered expert.
        style: ``"default"``, ``"varied"`` (a random style drawn from ``rng``), or a dict of style
            field overrides.
        rng: random generator for ``"varied"``.
    """
    if task_id not in EXPERTS:
        raise ValueError(f"no scripted expert for task {task_id!r}; experts exist for {sorted(EXPERTS)}")
    cls = EXPERTS[task_id]
    style_cls = cls.style_cls
    if isinstance(style, dict):
        return cls(style_from(style_cls, style))
    if style == "default":
        return cls(style_cls())
    if style == "varied":
        if rng is None:
            raise ValueError("style='varied' needs an rng (np.random.default_rng(seed))")
        return cls(style_cls.varied(rng))
    raise ValueError(f"unknown style {style!r}; use one of {STYLE_MODES} or a dict of fields")
