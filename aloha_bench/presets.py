"""Named presets of frozen config dataclasses, with per-field overrides (L0: standard library).

The sim-to-real configs (``sim.randomize.RandomizationConfig``, ``envs.latency.LatencyConfig``)
are chosen by level name (``"light"``, ``"real"``...) or, in study profiles, by a table of a
``level`` plus fields to change. One resolver serves both so the two accept the same forms and
fail with the same kind of message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

Config = TypeVar("Config")


def resolve_preset(cls: type[Config], value: Any, what: str) -> Config:
    """A ``cls`` from an instance (returned as is), a level name (``cls.from_level``), or a
    mapping of a ``level`` (default ``"none"``) plus field overrides.

    Args:
        cls: a frozen dataclass with a ``from_level(name)`` classmethod.
        value: what the user gave.
        what: the option's name in messages (e.g. ``"randomize"``).

    Raises:
        ValueError: an unknown level or field name (the message lists the valid fields).
        TypeError: ``value`` is none of the accepted forms.
    """
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        return cls.from_level(value)  # type: ignore[attr-defined]
    if isinstance(value, Mapping):
        fields = dict(value)
        base = cls.from_level(str(fields.pop("level", "none")))  # type: ignore[attr-defined]
        known = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        unknown = sorted(set(fields) - set(known))
        if unknown:
            raise ValueError(f"unknown {what} fields {unknown}; known: {known}")
        return dataclasses.replace(base, **fields)
    raise TypeError(
        f"{what} must be a level name, a table of a level and fields, or a {cls.__name__}, "
        f"got {value!r}"
    )
