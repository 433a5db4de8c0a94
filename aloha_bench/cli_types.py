"""Argument types of the ``aloha-bench`` command: every count, size and seed checked at parse time.

argparse calls these while it parses argv, so a bad value ends in one line that names the flag
(``argument --max-steps: must be at least 1, got 0``) before torch, MuJoCo or a dataset is
touched, and nothing is created on disk. Each verb's parser uses them; new verbs should too.

Standard library only: importing the CLI must stay cheap.
"""

from __future__ import annotations

import argparse
import math
import tomllib
from collections.abc import Callable, Sequence
from typing import Any

# Seeds go through numpy's SeedSequence, torch.manual_seed and int64 dataset columns; the range
# every one of them takes is numpy's legacy 32-bit seed range.
MAX_SEED = 2**32 - 1


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def bounded_int(low: int, high: int | None = None, what: str = "") -> Callable[[str], int]:
    """An argparse type: an integer in ``low..high`` (``high=None``: no upper bound)."""

    def parse(text: str) -> int:
        value = _integer(text)
        if value < low or (high is not None and value > high):
            span = f"at least {low}" if high is None else f"in {low}..{high}"
            note = f" ({what})" if what else ""
            raise argparse.ArgumentTypeError(f"must be {span}{note}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in some messages
    return parse


positive_int = bounded_int(1)
non_negative_int = bounded_int(0)
seed = bounded_int(0, MAX_SEED, "a seed: numpy, torch and the dataset store take 0..2**32-1")


def positive_float(text: str) -> float:
    """An argparse type: a finite number above zero."""
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """An argparse type: a finite number, zero or above."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def image_size(low: int = 16, high: tuple[int, int] = (480, 640)) -> Callable[[str], tuple]:
    """An argparse type: ``HxW`` (e.g. ``96x128``) with each side in ``low..high``."""

    def parse(text: str) -> tuple[int, int]:
        parts = text.lower().split("x")
        try:
            height, width = (int(v) for v in parts)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"image size {text!r} must look like 96x128 (height x width in pixels)"
            ) from None
        if not (low <= height <= high[0] and low <= width <= high[1]):
            raise argparse.ArgumentTypeError(
                f"image size {text!r} out of range: height {low}..{high[0]}, width "
                f"{low}..{high[1]} pixels"
            )
        return height, width

    parse.__name__ = "image size"
    return parse


def task_id(text: str) -> str:
    """An argparse type: the id of a folder in ``tasks/`` (the registry, read without MuJoCo)."""
    from aloha_bench.sim.task_spec import available_tasks

    valid = available_tasks()
    if text not in valid:
        raise argparse.ArgumentTypeError(f"unknown task {text!r}; valid tasks: {', '.join(valid)}")
    return text


def task_metavar() -> str:
    """``{battery,cup_lid,...}``: how help shows a ``--task`` argument (as for ``choices``)."""
    from aloha_bench.sim.task_spec import available_tasks

    return "{" + ",".join(available_tasks()) + "}"


def parse_assignments(items: Sequence[str], example: str = "lr=1e-4") -> dict[str, Any]:
    """``["key=value", ...]`` (values in TOML syntax, bare words as strings) to a dict.

    Raises:
        ValueError: an item without ``=`` or a key (the message shows ``example``).
    """
    parsed = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override {item!r} must look like key=value, e.g. {example}")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()  # a bare word: a string such as obs_mode=state
        parsed[key.strip()] = value
    return parsed
