"""Task specifications: ``tasks/<task_id>/task.toml`` parsed into frozen, validated dataclasses.

A task is data: its props (``scene.xml``), how they are randomized at reset, which cameras it
renders, and its ordered stages (the paper's subtask columns), each a conjunction of predicates
from ``aloha_bench.sim.predicates``. Errors name the file, the field and the fix.

Layer L1: no torch, no gymnasium.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from pathlib import Path
from typing import Any

from aloha_bench import keys, paths


class TaskSpecError(ValueError):
    """A task folder or its task.toml is missing or malformed."""


@dataclasses.dataclass(frozen=True)
class Range:
    """A closed interval sampled uniformly at reset; ``low == high`` is a fixed value."""

    low: float
    high: float


@dataclasses.dataclass(frozen=True)
class ObjectSpec:
    """A free body of the scene, placed at a random pose at every reset.

    Poses are world-frame (table top at z = 0). With ``flip_prob`` > 0 the yaw is turned by pi
    with that probability, for props whose two ends differ (a source of two strategies).
    """

    body: str
    x_m: Range
    y_m: Range
    z_m: Range
    yaw_rad: Range
    flip_prob: float = 0.0


@dataclasses.dataclass(frozen=True)
class JointInit:
    """A prop joint (slider, hinge) whose starting position is drawn at every reset."""

    joint: str
    range: Range


@dataclasses.dataclass(frozen=True)
class Breakaway:
    """An equality constraint (e.g. a press-fit weld) switched off for the rest of the episode
    once the force it carries exceeds ``force_n``: how a snapped-on lid lets go."""

    equality: str
    force_n: float


@dataclasses.dataclass(frozen=True)
class Check:
    """One predicate call: the function's name in ``predicates`` and its keyword arguments.

    ``release`` marks a let-go condition (the giving gripper off the object): the original ACT
    code's lenient success rule is the final stage without these checks (``StageSpec.lenient``).
    """

    fn: str
    args: dict[str, Any]
    release: bool = False


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """A named subtask; reached at a step when every one of its checks holds."""

    name: str
    checks: tuple[Check, ...]

    @property
    def lenient(self) -> tuple[Check, ...]:
        """The checks without the let-go (``release``) ones: the original ACT code's rule."""
        return tuple(c for c in self.checks if not c.release)


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """Everything the env needs to build and score one task."""

    task_id: str
    name: str
    version: int
    description: str
    folder: Path
    episode_steps: int
    cameras: tuple[str, ...]
    objects: tuple[ObjectSpec, ...]
    joint_inits: tuple[JointInit, ...]
    breakaways: tuple[Breakaway, ...]
    state_joints: tuple[str, ...]
    stages: tuple[StageSpec, ...]

    @property
    def gym_id(self) -> str:
        """The Gymnasium id, e.g. ``AlohaBench/TransferCube-v0``."""
        return f"AlohaBench/{self.name}-v0"

    @property
    def scene_path(self) -> Path:
        return self.folder / "scene.xml"

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(stage.name for stage in self.stages)

    @property
    def environment_state_dim(self) -> int:
        """Width of ``observation.environment_state``: a pose (x, y, z, qw, qx, qy, qz) per
        object, then one position per state joint (the env's ``environment_state``)."""
        return 7 * len(self.objects) + len(self.state_joints)


def available_tasks() -> tuple[str, ...]:
    """Ids of every task folder (one holding a ``task.toml``), sorted."""
    root = paths.tasks_dir()
    return tuple(sorted(p.name for p in root.iterdir() if (p / "task.toml").is_file()))


def load_task_spec(task_id: str) -> TaskSpec:
    """Load and validate ``tasks/<task_id>/task.toml``.

    Raises:
        TaskSpecError: unknown task (the message lists the valid ones) or a malformed field.
    """
    valid = available_tasks()
    if task_id not in valid:
        raise TaskSpecError(f"unknown task {task_id!r}; valid tasks: {', '.join(valid)}")
    folder = paths.tasks_dir() / task_id
    path = folder / "task.toml"
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise TaskSpecError(f"{path}: not valid TOML ({err}); fix the syntax") from err
    return _parse(raw, folder, path)


def _parse(raw: dict[str, Any], folder: Path, path: Path) -> TaskSpec:
    def need(table: dict[str, Any], key: str, kind: type, where: str) -> Any:
        if key not in table:
            raise TaskSpecError(f"{path}: {where} is missing required field {key!r}")
        value = table[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind):
            raise TaskSpecError(
                f"{path}: {where}.{key} must be {kind.__name__}, got {type(value).__name__}"
            )
        return value

    def to_range(value: Any, where: str) -> Range:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise TaskSpecError(f"{path}: {where} must be a finite number, got {value}")
            return Range(float(value), float(value))
        if (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, (int, float)) for v in value)
        ):
            low, high = float(value[0]), float(value[1])
            if not (math.isfinite(low) and math.isfinite(high)):
                raise TaskSpecError(f"{path}: {where} range [{low}, {high}] must be finite")
            if low > high:
                raise TaskSpecError(f"{path}: {where} range [{low}, {high}] has low > high")
            return Range(low, high)
        raise TaskSpecError(f"{path}: {where} must be a number or [low, high], got {value!r}")

    task_id = need(raw, "id", str, "task")
    if task_id != folder.name:
        raise TaskSpecError(f"{path}: id {task_id!r} must equal its folder name {folder.name!r}")
    name = need(raw, "name", str, "task")
    if not name.isidentifier() or not name[0].isupper():
        raise TaskSpecError(f"{path}: name {name!r} must be CamelCase, e.g. 'TransferCube'")
    episode_steps = need(raw, "episode_steps", int, "task")
    if episode_steps <= 0:
        raise TaskSpecError(f"{path}: episode_steps must be positive, got {episode_steps}")
    cameras = tuple(need(raw, "cameras", list, "task"))
    unknown = [c for c in cameras if c not in keys.CAMERAS]
    if unknown or not cameras:
        raise TaskSpecError(f"{path}: cameras {unknown or cameras} invalid; use {keys.CAMERAS}")

    objects = []
    for i, obj in enumerate(raw.get("objects", [])):
        where = f"objects[{i}]"
        flip = float(obj.get("flip_prob", 0.0))
        if not 0.0 <= flip <= 1.0:
            raise TaskSpecError(f"{path}: {where}.flip_prob must be in [0, 1], got {flip}")
        objects.append(
            ObjectSpec(
                body=need(obj, "body", str, where),
                x_m=to_range(need(obj, "x_m", object, where), f"{where}.x_m"),
                y_m=to_range(need(obj, "y_m", object, where), f"{where}.y_m"),
                z_m=to_range(need(obj, "z_m", object, where), f"{where}.z_m"),
                yaw_rad=to_range(obj.get("yaw_rad", 0.0), f"{where}.yaw_rad"),
                flip_prob=flip,
            )
        )

    joint_inits = tuple(
        JointInit(
            joint=need(j, "joint", str, f"joints[{i}]"),
            range=to_range(need(j, "range", object, f"joints[{i}]"), f"joints[{i}].range"),
        )
        for i, j in enumerate(raw.get("joints", []))
    )
    breakaways = []
    for i, b in enumerate(raw.get("breakaways", [])):
        force = need(b, "force_n", float, f"breakaways[{i}]")
        if not (force > 0 and math.isfinite(force)):
            raise TaskSpecError(f"{path}: breakaways[{i}].force_n must be positive, got {force}")
        breakaways.append(
            Breakaway(equality=need(b, "equality", str, f"breakaways[{i}]"), force_n=force)
        )

    stages = []
    for i, stage in enumerate(need(raw, "stages", list, "task")):
        where = f"stages[{i}]"
        checks = []
        for j, check in enumerate(need(stage, "all", list, where)):
            args = dict(check)
            fn = args.pop("fn", None)
            if not isinstance(fn, str):
                raise TaskSpecError(f"{path}: {where}.all[{j}] needs fn = '<predicate name>'")
            release = args.pop("release", False)
            if not isinstance(release, bool):
                raise TaskSpecError(f"{path}: {where}.all[{j}].release must be true or false")
            checks.append(Check(fn=fn, args=args, release=release))
        if not checks:
            raise TaskSpecError(f"{path}: {where}.all must list at least one check")
        stages.append(StageSpec(name=need(stage, "name", str, where), checks=tuple(checks)))
    if not stages:
        raise TaskSpecError(f"{path}: a task needs at least one [[stages]] entry")
    for stage in stages[:-1]:
        if any(c.release for c in stage.checks):
            raise TaskSpecError(
                f"{path}: stage {stage.name!r} marks a check release = true; only the final "
                "stage's let-go checks define the lenient rule, so mark them there"
            )
    if stages and not stages[-1].lenient:
        raise TaskSpecError(
            f"{path}: every check of the final stage is release = true; the lenient rule needs "
            "at least one check that is not a let-go condition"
        )

    if not (folder / "scene.xml").is_file():
        raise TaskSpecError(f"{folder}: scene.xml is missing; every task folder needs one")
    version = need(raw, "version", int, "task")
    if version < 1:
        raise TaskSpecError(f"{path}: version must be a positive integer")
    return TaskSpec(
        task_id=task_id,
        name=name,
        version=version,
        description=raw.get("description", ""),
        folder=folder,
        episode_steps=episode_steps,
        cameras=cameras,
        objects=tuple(objects),
        joint_inits=joint_inits,
        breakaways=tuple(breakaways),
        state_joints=tuple(raw.get("state_joints", [])),
        stages=tuple(stages),
    )
