"""Scripted experts (L3), one per task, registered by task id."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from aloha_bench.experts.base import ScriptedExpert, style_from

# task id -> "module:Class", imported on first use so one task's expert never slows another's.
EXPERTS: dict[str, str] = {
    "transfer_cube": "aloha_bench.experts.transfer_cube:TransferCubeExpert",
    "insertion": "aloha_bench.experts.insertion:InsertionExpert",
    "ziplock": "aloha_bench.experts.ziplock:ZiplockExpert",
    "battery": "aloha_bench.experts.battery:BatteryExpert",
    "cup_lid": "aloha_bench.experts.cup_lid:CupLidExpert",
}
# Bumped when a task's scripted plan (which the human operator model also follows) changes the
# demonstrations it records, so that a study never trains on demos of an older plan
# (transfer_cube 2: every keyframe within reach, no 3.5 rad jump in the right arm's retreat;
# insertion 2: stiff prop contacts, the peg lined up straight down at 7 cm; ziplock 2 and
# cup_lid 2: the right arm's hover, wait and lift within reach, where plan v1 was missed by up to
# 42 mm and 12 mm; transfer_cube 3: varied styles hover tilted over far cubes, tilt the right
# tool as it backs away from the handover and hand over no nearer than 1.5 cm left of centre,
# default demonstrations unchanged; insertion 3: both hovers and the peg's wait kept under the
# top-down reach, where plan v2 hovered up to 22 mm out of it).
EXPERT_VERSIONS: dict[str, int] = {"transfer_cube": 3, "insertion": 3, "ziplock": 2, "cup_lid": 2}


def expert_version(task_id: str) -> int:
    """Version of ``task_id``'s scripted plan (1 unless ``EXPERT_VERSIONS`` says otherwise)."""
    return EXPERT_VERSIONS.get(task_id, 1)


STYLE_MODES = ("default", "varied")


def expert_class(task_id: str) -> type[ScriptedExpert]:
    """The expert class registered for ``task_id``."""
    if task_id not in EXPERTS:
        raise ValueError(
            f"no scripted expert for task {task_id!r}; experts exist for {sorted(EXPERTS)}"
        )
    module, _, name = EXPERTS[task_id].partition(":")
    return getattr(importlib.import_module(module), name)


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
    cls = expert_class(task_id)
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
