"""The whole study, end to end and resumable: demos -> training -> evaluation -> report (L4).

A *study profile* (``baselines/studies/<name>.toml``) names the tasks, data sources, policies,
training seeds, scale, and the ablation groups to run. ``plan`` expands it into *cells* of three
kinds, each with a stable id and an output that marks it finished:

* ``DataCell``: one demonstration dataset (task x source x observation setup), a Zarr store whose
  episode count says whether it is finished (``generate`` continues a partial store).
* ``TrainCell``: one training run (dataset x resolved ACT config x training seed). Its id hashes
  the resolved config, so the same training asked for by two groups (the main table's ``act`` is
  also the K = 100 point of the chunk-size ablation) runs once. A killed run resumes bit-for-bit
  from its ``last/`` checkpoint.
* ``EvalCell``: one evaluation (training run x evaluation conditions: temporal ensembling,
  perturbations), writing ``records/<id>.jsonl`` and ``records/<id>.json`` (its summary row) under
  the results folder. Finished means the summary row exists.

``run_study`` runs every unfinished cell on an executor (``local``: a process pool on this
machine; ``ray``: tasks on a Ray cluster, ``ray.init(address=...)``), data first, then one job per
training run (train, then its evaluations), and finally writes ``summary.csv`` (one row per
evaluation, the columns of ``aloha_bench.report.SUMMARY_COLUMNS``) and the report. Cells that
did not run are listed in ``missing.md`` (:func:`missing_markdown`) with what each still needs and
the command that runs it, so a partial study says what it lacks.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import dataclasses
import functools
import hashlib
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import threading
import time
import tomllib
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from aloha_bench import keys, paths

EXECUTORS = ("local", "ray")
GROUPS = (
    "main",
    "chunk_size",
    "temporal_ensembling",
    "cvae",
    "beta",
    "cameras",
    "robustness",
    "pixels",
    "train_steps",
    "demos",
)
POLICIES = ("act", "no_cvae", "single_step")
SOURCES = ("scripted", "human")
DONE_FILE = "study_done.json"


# ---------------------------------------------------------------------------------------------
# Profiles


def studies_dir() -> Path:
    return paths.baselines_dir() / "studies"


def available_profiles() -> list[str]:
    return sorted(p.stem for p in studies_dir().glob("*.toml"))


def load_profile(name: str | Path) -> dict[str, Any]:
    """A study profile by name (``baselines/studies/<name>.toml``) or path, validated.

    Raises:
        FileNotFoundError: no such profile (the message lists those that exist).
        ValueError: a malformed profile (the message names the key and the file).
    """
    path = Path(name)
    if not path.suffix:
        path = studies_dir() / f"{name}.toml"
    if not path.is_file():
        raise FileNotFoundError(
            f"no study profile {str(name)!r}; available: {available_profiles()} "
            f"(files in {studies_dir()})"
        )
    try:
        profile = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: not valid TOML ({error})") from error
    _validate_profile(profile, path)
    profile.setdefault("name", path.stem)
    return profile


_REQUIRED = {
    "training_profile": str,
    "obs_mode": str,
    "demos": int,
    "train_steps": (int, dict),
    "eval_episodes": int,
    "seeds": int,
    "tasks": list,
    "sources": list,
    "policies": list,
}


# Every top-level key a study profile may hold: a misspelt one (``train_step = 500``) would
# otherwise be ignored silently and the study run at the default it meant to change.
_OPTIONAL = (
    "name",
    "description",
    "eval_seed",
    "cameras",
    "image_size",
    "example_videos",
    "cost",
    "groups",
    "training_overrides",
)


# A study's observation modes (envs.spaces.OBS_MODES, named here so that planning never imports
# the simulator): object poses and joints, or camera images and joints.
OBS_MODES = ("state", "pixels")

# The keys a robustness arm may set (the group's own values are each arm's defaults).
ARM_KEYS = ("obs_mode", "cameras", "train_steps", "train_randomize", "perturbations")
# The keys each [groups.NAME] table reads: the common ones, then each group's own.
_GROUP_COMMON_KEYS = ("tasks", "sources", "seeds", "train_steps", "eval_episodes")
_GROUP_KEYS = {
    "chunk_size": ("values",),
    "train_steps": ("values",),
    "demos": ("values",),
    "beta": ("values",),
    "temporal_ensembling": ("coeff",),
    "pixels": ("cameras",),
    "cameras": ("sets",),
    "robustness": ("arms", *ARM_KEYS),
}
_GROUP_NEEDS = {
    "chunk_size": ("values",),
    "beta": ("values",),
    "temporal_ensembling": ("coeff",),
    "cameras": ("sets",),
}


# The groups whose ``values`` list the settings they sweep: (what, example, check of one value).
_GROUP_VALUES = {
    "chunk_size": ("chunk sizes >= 1", "[1, 10, 100]", lambda v: _is_int(v) and v >= 1),
    "train_steps": ("step counts >= 1", "[3000, 10000]", lambda v: _is_int(v) and v >= 1),
    "demos": ("demonstration counts >= 1", "[50, 200]", lambda v: _is_int(v) and v >= 1),
    "beta": ("KL weights >= 0", "[1, 10, 100]", lambda v: _is_number(v) and v >= 0),
}


_COST_KEYS = (
    "state_steps_per_s",
    "pixels_steps_per_s",
    "state_episodes_per_min",
    "pixels_episodes_per_min",
)


def _unknown(key: str, known: Sequence[str], where: str, what: str) -> ValueError:
    import difflib

    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ValueError(f"{where}: unknown {what} {key!r}{hint}; expected one of {list(known)}")


_SINGULAR = {"tasks": "task", "sources": "source", "policies": "policy"}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_cameras(value: Any, where: str, example: str = '["top", "left_wrist"]') -> None:
    if not isinstance(value, list) or not value or not all(isinstance(c, str) for c in value):
        raise ValueError(f"{where} must be a list of camera names, e.g. {example}; got {value!r}")
    for camera in value:
        if camera not in keys.CAMERAS:
            raise _unknown(camera, keys.CAMERAS, where, "camera")


def _validate_profile(profile: Mapping[str, Any], path: Path) -> None:
    from aloha_bench import envs
    from aloha_bench.policies.act.config import load_config

    known = (*_REQUIRED, *_OPTIONAL)
    for key in profile:
        if key not in known:
            raise _unknown(key, known, str(path), "key")
    for key, kind in _REQUIRED.items():
        if key not in profile:
            raise ValueError(f"{path}: missing key {key!r} (see baselines/studies/cpu.toml)")
        if not isinstance(profile[key], kind) or isinstance(profile[key], bool):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise ValueError(f"{path}: {key} must be a {names}, got {profile[key]!r}")
    for key in ("tasks", "sources", "policies"):
        if not profile[key] or not all(isinstance(v, str) for v in profile[key]):
            raise ValueError(
                f"{path}: {key} must be a non-empty list of names, got {profile[key]!r}"
            )
    for task in profile["tasks"]:
        envs.load_task_spec(task)  # names the valid tasks
    for key, allowed in (("sources", SOURCES), ("policies", POLICIES)):
        for value in profile[key]:
            if value not in allowed:
                raise _unknown(value, allowed, f"{path}: {key}", _SINGULAR[key])
    if profile["obs_mode"] not in OBS_MODES:
        raise _unknown(profile["obs_mode"], OBS_MODES, f"{path}: obs_mode", "mode")
    for key in ("demos", "eval_episodes", "seeds"):
        if profile[key] < 1:
            raise ValueError(f"{path}: {key} must be >= 1, got {profile[key]}")
    # Optional keys, each of its type: a wrong one is named here rather than failing deep in
    # the plan (or, for a string where a bool belongs, being read as true).
    for key, ok, what in (
        ("name", lambda v: isinstance(v, str), "a string"),
        ("description", lambda v: isinstance(v, str), "a string"),
        ("eval_seed", lambda v: _is_int(v) and v >= 0, "an integer >= 0, e.g. 1000"),
        ("example_videos", lambda v: isinstance(v, bool), "true or false"),
        (
            "image_size",
            lambda v: isinstance(v, list) and len(v) == 2 and all(_is_int(x) and x > 0 for x in v),
            "[height, width] in pixels, e.g. [96, 128]",
        ),
        ("cost", lambda v: isinstance(v, dict), "a table of measured rates, e.g. [cost]"),
        ("groups", lambda v: isinstance(v, dict), "tables [groups.NAME], e.g. [groups.cvae]"),
    ):
        if key in profile and not ok(profile[key]):
            raise ValueError(f"{path}: {key} must be {what}; got {profile[key]!r}")
    if "cameras" in profile:
        _check_cameras(profile["cameras"], f"{path}: cameras")
    for key, value in profile.get("cost", {}).items():
        if key not in _COST_KEYS:
            raise _unknown(key, _COST_KEYS, f"{path}: [cost]", "key")
        if not _is_number(value) or value <= 0:
            raise ValueError(f"{path}: [cost] {key} must be a number > 0, got {value!r}")
    try:
        load_config(profile["policies"][0], profile["training_profile"])
    except FileNotFoundError as error:
        raise ValueError(f"{path}: training_profile: {error}") from error
    _validate_steps(profile["train_steps"], profile["tasks"], f"{path}: train_steps")
    _validate_training_overrides(profile, path)
    for name, group in profile.get("groups", {}).items():
        where = f"{path}: [groups.{name}]"
        if name not in GROUPS:
            raise _unknown(name, GROUPS, f"{path}: groups", "group")
        if not isinstance(group, dict):
            raise ValueError(f"{where} must be a table, got {group!r}")
        allowed = _GROUP_COMMON_KEYS + _GROUP_KEYS.get(name, ())
        for key in group:
            if key not in allowed:
                raise _unknown(key, allowed, where, "key")
        for key in _GROUP_NEEDS.get(name, ()):
            if key not in group:
                raise ValueError(f"{where}: missing key {key!r} (see baselines/studies/cpu.toml)")
        # A group's task or source outside the profile's would be dropped without a word.
        for key, allowed_values in (("tasks", profile["tasks"]), ("sources", SOURCES)):
            if key not in group:
                continue
            if not isinstance(group[key], list) or not all(isinstance(v, str) for v in group[key]):
                raise ValueError(f"{where} {key} must be a list of names, got {group[key]!r}")
            for value in group[key]:
                if value not in allowed_values:
                    raise _unknown(value, allowed_values, f"{where} {key}", _SINGULAR[key])
        if "train_steps" in group:
            _validate_steps(group["train_steps"], profile["tasks"], f"{where} train_steps")
        if "seeds" in group and (not _is_int(group["seeds"]) or group["seeds"] < 1):
            raise ValueError(f"{where} seeds must be an integer >= 1, got {group['seeds']!r}")
        if "eval_episodes" in group and (
            not _is_int(group["eval_episodes"]) or group["eval_episodes"] < 1
        ):
            raise ValueError(
                f"{where} eval_episodes must be an integer >= 1, got {group['eval_episodes']!r}"
            )
        if name in _GROUP_VALUES:
            what, example, ok = _GROUP_VALUES[name]
            values = group.get("values")
            if not isinstance(values, list) or not values or not all(ok(v) for v in values):
                raise ValueError(
                    f"{where} values must be a list of {what}, e.g. values = {example}; "
                    f"got {values!r}"
                )
        if name == "temporal_ensembling" and (
            not _is_number(group["coeff"]) or group["coeff"] <= 0
        ):
            raise ValueError(
                f"{where} coeff must be a number > 0 (the paper's m, e.g. coeff = 0.01); "
                f"got {group['coeff']!r}"
            )
        if name == "cameras":
            sets = group["sets"]
            if not isinstance(sets, list) or not sets:
                raise ValueError(
                    f'{where} sets must be a list of camera lists, e.g. sets = [["top"], '
                    f'["top", "front"]]; got {sets!r}'
                )
            for cameras in sets:
                _check_cameras(cameras, f"{where} sets", '["top", "front"]')
        if name == "pixels" and "cameras" in group:
            _check_cameras(group["cameras"], f"{where} cameras")
    if "robustness" in profile.get("groups", {}):
        _validate_robustness(profile["groups"]["robustness"], path)


def _validate_training_overrides(profile: Mapping[str, Any], path: Path) -> None:
    """``[training_overrides]``: ACTConfig fields set on every run of the study over its
    ``training_profile`` (a group's own settings, e.g. chunk_size, still win)."""
    from aloha_bench.policies.act.config import load_config, read_toml

    def baseline_path(policy: str) -> Path:
        return paths.baselines_dir() / f"{policy}.toml"

    table = profile.get("training_overrides", {})
    if not isinstance(table, dict):
        raise ValueError(
            f"{path}: training_overrides must be a table of config fields, e.g. "
            f"[training_overrides] n_decoder_layers = 1; got {table!r}"
        )
    per_cell = sorted(set(table) & {"seed", "steps", "obs_mode", "cameras", "image_size"})
    if per_cell:
        raise ValueError(
            f"{path}: [training_overrides] cannot set {', '.join(per_cell)}: the study sets them "
            "per cell; use the profile's keys train_steps, seeds, obs_mode, cameras, image_size"
        )
    # The fields a baseline sets (chunk_size for single_step, use_vae for no_cvae, ...) define
    # the policy: overriding them for every run would turn one baseline into another.
    for policy in profile["policies"]:
        defining = sorted(set(table) & set(read_toml(baseline_path(policy))))
        if defining:
            raise ValueError(
                f"{path}: [training_overrides] cannot set {', '.join(defining)}: baseline "
                f"{policy!r} defines it; vary it with a group (chunk_size, beta, cvae, ...)"
            )
        try:
            load_config(policy, profile["training_profile"], table)
        except (ValueError, FileNotFoundError) as error:
            raise ValueError(f"{path}: [training_overrides] ({policy}): {error}") from error


def _validate_steps(value: Any, tasks: Sequence[str], where: str) -> None:
    """A step count: an integer, or a table of a ``default`` and per-task integers."""
    table = value if isinstance(value, dict) else {"default": value}
    unknown = sorted(set(table) - {"default", *tasks})
    if unknown:
        raise ValueError(
            f"{where}: unknown keys {unknown}; use default = N and the profile's task ids"
        )
    for key, steps in table.items():
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"{where}.{key} must be an integer >= 1, got {steps!r}")


def steps_for(task: str, value: Any, fallback: int | None = None) -> int:
    """Training steps of ``task`` from a step count (``_validate_steps``): its own entry, else
    the table's ``default``, else ``fallback``.

    Raises:
        ValueError: a table with neither the task nor a default, and no fallback.
    """
    if not isinstance(value, dict):
        return int(value)
    if task in value:
        return int(value[task])
    if "default" in value:
        return int(value["default"])
    if fallback is None:
        raise ValueError(f"train_steps {value!r} has no entry for {task!r} and no default")
    return fallback


# ---------------------------------------------------------------------------------------------
# Cells


@dataclasses.dataclass(frozen=True)
class DataCell:
    task: str
    source: str
    obs_mode: str
    cameras: tuple[str, ...]
    image_size: tuple[int, int]
    episodes: int
    randomize: str = "none"
    # A count other than the profile's `demos` (the demos group) names its store: the cells of
    # the profile's own count keep the ids they always had.
    count_in_id: bool = False

    @property
    def id(self) -> str:
        parts = [self.task, self.source, self.obs_mode]
        if self.obs_mode == "pixels":
            parts += ["+".join(self.cameras), f"{self.image_size[0]}x{self.image_size[1]}"]
        if self.randomize != "none":
            parts.append(f"rand-{self.randomize}")
        if self.count_in_id:
            parts.append(f"d{self.episodes}")
        from aloha_bench.experts import expert_version

        if self.source == "human":
            from aloha_bench.experts.human import OPERATOR_VERSION

            # Demos of an older operator model (e.g. before its named strategies) are not reused.
            if OPERATOR_VERSION > 1:
                parts.append(f"op{OPERATOR_VERSION}")
        # Nor demos of an older scripted plan, which the operator model follows too.
        if expert_version(self.task) > 1:
            parts.append(f"x{expert_version(self.task)}")
        return "_".join(parts)


@dataclasses.dataclass(frozen=True)
class TrainCell:
    data: DataCell
    baseline: str
    overrides: tuple[tuple[str, Any], ...]
    train_seed: int
    steps: int
    training_profile: str

    def config(self):
        from aloha_bench.policies.act.config import load_config

        overrides = {**dict(self.overrides), "seed": self.train_seed, "steps": self.steps}
        return load_config(self.baseline, self.training_profile, overrides)

    @functools.cached_property
    def id(self) -> str:
        # The resolved config, not the way it was asked for, identifies a run (deduplication).
        resolved = json.dumps(dataclasses.asdict(self.config()), sort_keys=True, default=str)
        digest = hashlib.sha256(f"{self.data.id}|{resolved}".encode()).hexdigest()[:8]
        return f"{self.data.id}_{self.baseline}_s{self.train_seed}_{digest}"


@dataclasses.dataclass(frozen=True)
class EvalCell:
    train: TrainCell
    episodes: int
    seed: int
    groups: tuple[str, ...]
    labels: tuple[tuple[str, Any], ...]  # summary columns this cell fixes (policy, perturbation...)
    temporal_ensemble: float | None = None
    randomize: str | tuple[tuple[str, Any], ...] = "none"
    latency: str | tuple[tuple[str, Any], ...] = "none"
    # Film one success and one failure for the results browser (not part of the id: the
    # records are the same with or without them).
    videos: bool = False

    @functools.cached_property
    def id(self) -> str:
        # The task version joins the id: records scored under an older success rule (e.g.
        # transfer_cube v1 counted a handover the right gripper still held) are not reused.
        # Version 1 adds nothing, so the cells of tasks never changed keep their ids.
        version = _task_version(self.train.data.task)
        conditions = json.dumps(
            [self.temporal_ensemble, self.randomize, self.latency, self.episodes, self.seed]
            + ([version] if version > 1 else []),
            default=str,
        )
        digest = hashlib.sha256(f"{self.train.id}|{conditions}".encode()).hexdigest()[:8]
        return f"{self.train.id}_eval_{digest}"

    @property
    def label(self) -> dict[str, Any]:
        return dict(self.labels)


@functools.cache
def _task_version(task: str) -> int:
    from aloha_bench.sim.task_spec import load_task_spec

    return load_task_spec(task).version


def _as_condition(value: Any) -> str | tuple[tuple[str, Any], ...]:
    """A perturbation setting as a hashable cell field: a level name or sorted (key, value)."""
    if isinstance(value, str):
        return value
    return tuple(sorted(dict(value).items()))


def _condition_arg(value: str | tuple[tuple[str, Any], ...]) -> str | dict[str, Any]:
    return value if isinstance(value, str) else dict(value)


@dataclasses.dataclass(frozen=True)
class Plan:
    """Every cell of a study, in the order they should run."""

    profile: dict[str, Any]
    data: tuple[DataCell, ...]
    train: tuple[TrainCell, ...]
    evals: tuple[EvalCell, ...]

    def evals_of(self, train: TrainCell) -> list[EvalCell]:
        return self._evals_by_train.get(train.id, [])

    @functools.cached_property
    def _evals_by_train(self) -> dict[str, list[EvalCell]]:
        out: dict[str, list[EvalCell]] = {}
        for e in self.evals:
            out.setdefault(e.train.id, []).append(e)
        return out


def _baseline_labels(baseline: str, overrides: Mapping[str, Any], training_profile: str):
    from aloha_bench.policies.act.config import load_config

    config = load_config(baseline, training_profile, dict(overrides))
    cameras = list(config.cameras) if config.obs_mode == "pixels" else []
    return {
        "policy": baseline,
        "obs_mode": config.obs_mode,
        "chunk_size": config.chunk_size,
        "kl_weight": config.kl_weight,
        "use_vae": config.use_vae,
        "cameras": "+".join(cameras),
        "n_cameras": len(cameras),
    }


def _canonical_baseline(
    baseline: str,
    overrides: Mapping[str, Any],
    common: Mapping[str, Any],
    policies: Sequence[str],
    training_profile: str,
) -> tuple[str, dict[str, Any]]:
    """The study's own policy that a group's setting amounts to, else the setting as asked.

    A group can ask for a run that one of the study's policies already is: the chunk-size
    group's ``act`` at K = 1 resolves to exactly ``single_step`` (paper Fig. 8a: ACT without
    chunking). A run's id starts with its baseline's name, so asking for it under two names
    would train and evaluate the same config twice and report two numbers for it. The rule does
    not depend on which groups a slice plans, so a group run alone finds the same run later.
    """
    from aloha_bench.policies.act.config import load_config

    wanted = load_config(baseline, training_profile, dict(overrides))
    for policy in policies:
        if policy != baseline and load_config(policy, training_profile, dict(common)) == wanted:
            return policy, dict(common)
    return baseline, dict(overrides)


def robustness_arms(group: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The robustness group's arms: each a policy family (observation mode, cameras, training
    length, training randomizations) evaluated under a list of perturbations.

    A group without ``arms`` is one arm. An arm inherits every key it does not set from the
    group, so the perturbations are written once; an arm may list some of them by label
    (``perturbations = ["none", "gains"]``). State arms measure the physical perturbations
    cheaply; a pixel arm is needed for camera and lighting, which a policy that sees no image
    cannot feel.

    Raises:
        ValueError: an arm names a perturbation label the group does not define.
    """
    base = {k: group[k] for k in ARM_KEYS if k in group}
    by_label = {
        p["label"]: p for p in base.get("perturbations", []) if isinstance(p, dict) and "label" in p
    }
    arms = []
    for i, arm in enumerate(group.get("arms", [{}])):
        arm = {**base, **arm}
        chosen = []
        for p in arm.get("perturbations", []):
            if isinstance(p, str):
                if p not in by_label:
                    raise ValueError(
                        f"[groups.robustness] arm {i}: perturbation {p!r} is not one of the "
                        f"group's {sorted(by_label)}"
                    )
                p = by_label[p]
            chosen.append(p)
        arms.append({**arm, "perturbations": chosen} if "perturbations" in arm else arm)
    return arms


def _validate_robustness(group: Any, path: Path) -> None:
    where = f"{path}: [groups.robustness]"
    arms = group.get("arms", [{}])
    if not isinstance(arms, list) or not all(isinstance(a, dict) for a in arms) or not arms:
        raise ValueError(f"{where}: arms must be a non-empty list of tables, got {arms!r}")
    for i, arm in enumerate(arms):
        unknown = sorted(set(arm) - set(ARM_KEYS))
        if unknown:
            raise ValueError(
                f"{where} arm {i}: unknown keys {unknown}; expected some of {ARM_KEYS}"
            )
    try:
        resolved = robustness_arms(group)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    for i, arm in enumerate(resolved):
        for key in ("train_randomize", "perturbations"):
            if not arm.get(key):
                raise ValueError(f"{where} arm {i}: needs a non-empty {key!r}")
        for p in arm["perturbations"]:
            if not isinstance(p, dict) or "label" not in p:
                raise ValueError(f"{where} arm {i}: each perturbation needs a label, got {p!r}")
        if arm.get("obs_mode", "state") not in ("state", "pixels"):
            raise ValueError(f"{where} arm {i}: obs_mode must be 'state' or 'pixels'")


def plan(
    profile: Mapping[str, Any],
    tasks: Sequence[str] | None = None,
    seeds: int | None = None,
    groups: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
    policies: Sequence[str] | None = None,
    obs_modes: Sequence[str] | None = None,
) -> Plan:
    """Expand a study profile into cells (optionally fewer tasks, seeds, groups, data sources,
    policies or observation modes: a long study can run in slices, e.g. the scripted cells
    before the human ones, or a group's state cells before its ~6x slower pixel cells).

    Raises:
        ValueError: a group, task, source, policy or observation mode the profile does not
            have.
    """
    profile = dict(profile)
    bad = sorted(set(obs_modes or ()) - set(OBS_MODES))
    if bad:
        raise ValueError(f"obs modes {bad} are unknown; expected some of {list(OBS_MODES)}")
    for name, subset, allowed in (
        ("sources", sources, profile["sources"]),
        ("policies", policies, profile["policies"]),
    ):
        bad = sorted(set(subset or ()) - set(allowed))
        if bad:
            raise ValueError(
                f"{name} {bad} are not in study {profile['name']!r} (its {name}: {allowed})"
            )
    spec_groups: dict[str, Any] = dict(profile.get("groups", {}))
    wanted = set(groups) if groups else {"main", *spec_groups}
    unknown = sorted(wanted - set(GROUPS))
    if unknown:
        raise ValueError(f"unknown groups {unknown}; expected some of {GROUPS}")
    task_list = list(tasks) if tasks else list(profile["tasks"])
    bad = sorted(set(task_list) - set(profile["tasks"]))
    if bad:
        raise ValueError(
            f"tasks {bad} are not in study {profile['name']!r} (its tasks: {profile['tasks']})"
        )
    n_seeds = seeds or profile["seeds"]
    obs_mode = profile["obs_mode"]
    image_size = tuple(profile.get("image_size", (96, 128)))
    demos = profile["demos"]
    eval_episodes = profile["eval_episodes"]
    eval_seed = int(profile.get("eval_seed", 1000))
    training_profile = profile["training_profile"]
    training_overrides = dict(profile.get("training_overrides", {}))

    def group_setting(group: Mapping[str, Any], task: str) -> dict[str, Any]:
        """A group's training steps for ``task``, seeds and evaluation episodes: its own where it
        sets them (``--seeds`` still wins), else the profile's."""
        base = steps_for(task, profile["train_steps"])
        return {
            "train_steps": steps_for(task, group.get("train_steps", base), base),
            "n_train_seeds": seeds or int(group.get("seeds", n_seeds)),
            "n_eval_episodes": int(group.get("eval_episodes", eval_episodes)),
        }

    evals: dict[str, EvalCell] = {}
    data: dict[str, DataCell] = {}
    trains: dict[str, TrainCell] = {}

    def add(
        task: str,
        source: str,
        baseline: str,
        overrides: Mapping[str, Any],
        group: str,
        extra_labels: Mapping[str, Any] | None = None,
        cell_obs_mode: str = obs_mode,
        cameras: Sequence[str] = (),
        train_steps: int | None = None,
        train_randomize: str = "none",
        temporal_ensemble: float | None = None,
        randomize: Any = "none",
        latency: Any = "none",
        n_train_seeds: int = n_seeds,
        n_eval_episodes: int = eval_episodes,
        n_demos: int = demos,
    ) -> None:
        if (sources and source not in sources) or (policies and baseline not in policies):
            return
        if obs_modes and cell_obs_mode not in obs_modes:
            return
        if train_steps is None:
            train_steps = group_setting(spec_groups.get("main", {}), task)["train_steps"]
        common = {**training_overrides, "obs_mode": cell_obs_mode}
        if cell_obs_mode == "pixels":
            cameras = tuple(cameras or profile.get("cameras", ("top",)))
            common |= {"cameras": list(cameras), "image_size": list(image_size)}
        else:
            cameras = ()
        baseline, overrides = _canonical_baseline(
            baseline, {**common, **overrides}, common, profile["policies"], training_profile
        )
        d = DataCell(
            task,
            source,
            cell_obs_mode,
            cameras,
            image_size,
            n_demos,
            train_randomize,
            count_in_id=n_demos != demos,
        )
        data.setdefault(d.id, d)
        for seed in range(n_train_seeds):
            t = TrainCell(
                d, baseline, tuple(sorted(overrides.items())), seed, train_steps, training_profile
            )
            t = trains.setdefault(t.id, t)
            labels = {
                **_baseline_labels(baseline, overrides, training_profile),
                "task": task,
                "source": source,
                "demos": n_demos,
                "train_seed": seed,
                "train_steps": train_steps,
                "temporal_ensemble": temporal_ensemble is not None,
                "train_randomize": train_randomize,
                "perturbation": "none",
                "perturbation_level": 0,
                **(extra_labels or {}),
            }
            e = EvalCell(
                t,
                n_eval_episodes,
                eval_seed,
                (group,),
                tuple(sorted(labels.items())),
                temporal_ensemble,
                _as_condition(randomize),
                _as_condition(latency),
                bool(profile.get("example_videos", False)),
            )
            if e.id in evals:  # the same evaluation serves several groups
                old = evals[e.id]
                e = dataclasses.replace(old, groups=tuple(sorted({*old.groups, group})))
            evals[e.id] = e

    # The main cells; the cvae group is the main table's act and no_cvae cells.
    cvae = "cvae" in wanted and "cvae" in spec_groups
    for task in task_list if "main" in wanted or cvae else ():
        for source in profile["sources"]:
            for baseline in profile["policies"]:
                main = group_setting(spec_groups.get("main", {}), task)
                if "main" in wanted:
                    add(task, source, baseline, {}, "main", **main)
                if cvae and baseline in ("act", "no_cvae"):
                    add(task, source, baseline, {}, "cvae", **main)
    for name, group in spec_groups.items():
        if name not in wanted or name == "cvae":
            continue
        group_tasks = [t for t in group.get("tasks", task_list) if t in task_list]
        # The group's own sources (add() still applies the --sources filter to them).
        group_sources = group.get("sources", ["scripted"])
        if name == "main":
            continue  # its settings are read above
        for task in group_tasks:
            own = group_setting(group, task)
            for source in group_sources:
                if name == "chunk_size":
                    for k in group["values"]:
                        chunk = {"chunk_size": k, "n_action_steps": k}
                        add(task, source, "act", chunk, name, **own)
                elif name == "train_steps":
                    # Is the budget long enough? The same act run at several step counts (each
                    # its own cosine schedule): where success stops rising, the cell converged.
                    for steps in group["values"]:
                        add(task, source, "act", {}, name, **{**own, "train_steps": int(steps)})
                elif name == "demos":
                    # Is a task data-bound? The same act recipe on more demonstrations (seeds
                    # 0..N-1 of the same source); the profile's own count is the main cell.
                    for count in group["values"]:
                        add(task, source, "act", {}, name, **own, n_demos=int(count))
                elif name == "beta":
                    for beta in group["values"]:
                        add(task, source, "act", {"kl_weight": float(beta)}, name, **own)
                elif name == "temporal_ensembling":
                    for coeff in (None, float(group["coeff"])):
                        add(task, source, "act", {}, name, temporal_ensemble=coeff, **own)
                elif name == "pixels":
                    # ACT on camera images, as in the paper, beside the state grid: its rows are
                    # also main-table rows (the table then has an obs column).
                    for tag in ("main", "pixels"):
                        add(
                            task,
                            source,
                            "act",
                            {},
                            tag,
                            cell_obs_mode="pixels",
                            cameras=group.get("cameras", ()),
                            **own,
                        )
                elif name == "cameras":
                    for cams in group["sets"]:
                        add(
                            task,
                            source,
                            "act",
                            {},
                            name,
                            cell_obs_mode="pixels",
                            cameras=cams,
                            **own,
                        )
                elif name == "robustness":
                    for arm in robustness_arms(group):
                        for train_randomize in arm["train_randomize"]:
                            for p in arm["perturbations"]:
                                add(
                                    task,
                                    source,
                                    "act",
                                    {},
                                    name,
                                    extra_labels={
                                        "perturbation": p["label"],
                                        "perturbation_level": int(p.get("level", 0)),
                                    },
                                    cell_obs_mode=arm.get("obs_mode", obs_mode),
                                    cameras=arm.get("cameras", ()),
                                    **{
                                        **own,
                                        "train_steps": steps_for(
                                            task, arm.get("train_steps", own["train_steps"])
                                        ),
                                    },
                                    train_randomize=train_randomize,
                                    randomize=p.get("randomize", "none"),
                                    latency=p.get("latency", "none"),
                                )
    return Plan(profile, tuple(data.values()), tuple(trains.values()), tuple(evals.values()))


def plan_size(
    the_plan: Plan, todo_in: Layout | None = None, rates_from: Plan | None = None
) -> dict[str, Any]:
    """How big a plan is, per observation mode: datasets, training runs, training steps and
    evaluation episodes, and the hours the profile's measured rates (``[cost]``, optional) put
    on them: ``{"state": {...}, "pixels": {...}, "hours": float or None}``.

    With ``todo_in``, only the work still to do in that layout counts (datasets and runs that
    :func:`data_needed` / :func:`train_needed` say must run, evaluations not recorded): what a
    study that has run over several sittings has left. A run interrupted part-way counts the
    steps after its last checkpoint (:func:`steps_left`). The measured rates come from the
    finished runs of ``rates_from`` (default: ``the_plan``; pass the whole study's plan when
    ``the_plan`` is a slice, whose own runs may not have run yet). Recording demonstrations is
    not counted (no rate is measured for it)."""
    data, train, evals_all = the_plan.data, the_plan.train, the_plan.evals
    steps = {t.id: t.steps for t in train}
    if todo_in is not None:
        data = [d for d in data if data_needed(d, the_plan, todo_in)]
        train = [t for t in train if train_needed(t, the_plan, todo_in)]
        evals_all = [e for e in evals_all if not eval_done(e, todo_in)]
        steps = {t.id: steps_left(t, todo_in) for t in train}
    size: dict[str, Any] = {}
    for mode in ("state", "pixels"):
        trains = [t for t in train if t.data.obs_mode == mode]
        evals = [e for e in evals_all if e.train.data.obs_mode == mode]
        size[mode] = {
            "datasets": sum(d.obs_mode == mode for d in data),
            "train_runs": len(trains),
            "train_steps": sum(steps[t.id] for t in trains),
            "eval_cells": len(evals),
            "eval_episodes": sum(e.episodes for e in evals),
        }
    cost = the_plan.profile.get("cost", {})
    rates = [f"{m}_{k}" for m in ("state", "pixels") for k in ("steps_per_s", "episodes_per_min")]
    if all(key in cost for key in rates):
        seconds = sum(
            size[m]["train_steps"] / cost[f"{m}_steps_per_s"]
            + 60 * size[m]["eval_episodes"] / cost[f"{m}_episodes_per_min"]
            for m in ("state", "pixels")
        )
        size["hours"] = seconds / 3600
    else:
        size["hours"] = None
    if todo_in is not None and size["hours"] is not None:
        # The same work at the training rates this machine reached on the study's finished runs
        # (each (obs mode, baseline) at its own: single_step trains ~4x faster than act), where
        # it has some; evaluation stays at [cost]'s rates, which no record times.
        measured = measured_train_rates(rates_from or the_plan, todo_in)

        def steps_per_s(t: TrainCell) -> float:
            kind = (t.data.obs_mode, t.baseline)
            return measured[kind][0] if kind in measured else cost[f"{kind[0]}_steps_per_s"]

        seconds = sum(steps[t.id] / steps_per_s(t) for t in train) + sum(
            60 * e.episodes / cost[f"{e.train.data.obs_mode}_episodes_per_min"] for e in evals_all
        )
        size["hours_measured"] = seconds / 3600 if measured else None
        size["measured_rates"] = measured
    return size


# A run folder's files (train.LOSSES_FILE, policy.CONFIG_FILE, checkpoint.MANIFEST_FILE), named
# here so that planning a study never imports torch.
_RUN_LOSSES, _RUN_CONFIG, _RUN_MANIFEST = "losses.csv", "config.json", "manifest.json"


def checkpointed_step(cell: TrainCell, layout: Layout) -> int:
    """The step of the run's resumable checkpoint (``last/``, or the ``last.tmp/`` /
    ``last.old/`` an interrupted swap left, as ``checkpoint.recover_last`` would choose), 0
    when it has none. Reads only the manifests (no torch, no hashing): a plan's size and
    ``missing.md`` must stay cheap; ``train`` verifies the checkpoint when it resumes."""
    best = 0
    for name in ("last", "last.tmp", "last.old"):
        try:
            manifest = json.loads((layout.run(cell) / name / _RUN_MANIFEST).read_text())
            best = max(best, int(manifest.get("step") or 0))
        except (OSError, ValueError, TypeError, AttributeError):
            continue
    return best


def steps_left(cell: TrainCell, layout: Layout) -> int:
    """Training steps a run still has to take in ``layout`` (0 once finished)."""
    if train_done(cell, layout):
        return 0
    return max(0, cell.steps - checkpointed_step(cell, layout))


def measured_train_rates(
    the_plan: Plan, layout: Layout
) -> dict[tuple[str, str], tuple[float, int]]:
    """Training steps/s per (obs mode, baseline) on this machine: the median over the plan's
    finished runs in ``layout`` of each run's rate, the harmonic mean of its logged
    ``samples_per_s`` (equal-sized log windows: total samples over total time, so the windows
    that hold a validation and a checkpoint weigh in, as they do in a study's run) over its batch
    size. Maps to (steps/s, number of runs); kinds without a finished run are absent."""
    per_kind: dict[tuple[str, str], list[float]] = {}
    for cell in the_plan.train:
        run = layout.run(cell)
        if not train_done(cell, layout) or not (run / _RUN_LOSSES).is_file():
            continue
        try:
            batch = json.loads((run / _RUN_CONFIG).read_text())["batch_size"]
            with (run / _RUN_LOSSES).open(newline="") as f:
                rows = csv.DictReader(f)
                logged = [float(r["samples_per_s"]) for r in rows if r["samples_per_s"]]
        except (OSError, ValueError, KeyError):
            continue  # a damaged run folder says nothing about speed (evaluating it will say why)
        if logged and batch:
            per_kind.setdefault((cell.data.obs_mode, cell.baseline), []).append(
                statistics.harmonic_mean(logged) / batch
            )
    return {kind: (statistics.median(v), len(v)) for kind, v in per_kind.items()}


# Rates for cells of a profile without ``[cost]`` (job order and missing.md only).
_DEFAULT_STEPS_PER_S = {"state": 5.0, "pixels": 2.0}
_DEFAULT_EPISODES_PER_MIN = {"state": 50.0, "pixels": 25.0}


def job_seconds(
    profile: Mapping[str, Any],
    train: TrainCell,
    evals: Sequence[EvalCell] = (),
    trained: bool = False,
) -> float:
    """Estimated seconds of one training job (its run, unless finished, and ``evals``) at the
    profile's ``[cost]`` rates (without them: 5 state or 2 pixel steps/s, 50 or 25 episodes/min).
    Only orders the jobs: nothing is timed against it."""
    cost = profile.get("cost", {})
    mode = train.data.obs_mode
    steps_per_s = cost.get(f"{mode}_steps_per_s", _DEFAULT_STEPS_PER_S[mode])
    episodes_per_min = cost.get(f"{mode}_episodes_per_min", _DEFAULT_EPISODES_PER_MIN[mode])
    episodes = sum(e.episodes for e in evals)
    return (0 if trained else train.steps / steps_per_s) + 60 * episodes / episodes_per_min


# ---------------------------------------------------------------------------------------------
# Running cells (top-level functions: they cross process and Ray boundaries)


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where a study keeps its heavy outputs (``work``: datasets and runs, not committed) and
    its results (``results``: records, summary, tables and plots, small enough to commit)."""

    work: Path
    results: Path

    def dataset(self, cell: DataCell) -> Path:
        return self.work / "data" / f"{cell.id}.zarr"

    def run(self, cell: TrainCell) -> Path:
        return self.work / "runs" / cell.id

    def records(self, cell: EvalCell) -> Path:
        return self.results / "records" / f"{cell.id}.jsonl"

    def row(self, cell: EvalCell) -> Path:
        return self.results / "records" / f"{cell.id}.json"

    def progress(self, cell_id: str) -> Path:
        return self.work / "progress" / f"{cell_id}.json"


class CellProgress:
    """A running cell's progress, as a small JSON file the study's status lines read.

    Cells run in spawned worker processes (or Ray tasks on a shared filesystem) that have no
    other channel back while they run. Writes are atomic and at most one per ``every_s``. Each
    file names its writer (host and process id), so that a study starting in the same work
    folder removes only the files of processes that are gone (:func:`clear_stale_progress`).
    Progress is for people to read: a write that fails (its folder removed, a full disk) is
    retried once, then skipped with one warning, and never stops the cell.

    Args:
        layout: the study's folders.
        cell_id: the cell.
        kind: ``"data"``, ``"train"`` or ``"eval"``.
        total: episodes or steps the cell will have done when finished.
        unit: ``"demos"``, ``"steps"`` or ``"episodes"``.
    """

    def __init__(
        self, layout: Layout, cell_id: str, kind: str, total: int, unit: str, every_s: float = 1.0
    ) -> None:
        self.path = layout.progress(cell_id)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.every_s, self._written = every_s, 0.0
        self.state = {
            "id": cell_id,
            "kind": kind,
            "done": 0,
            "total": int(total),
            "unit": unit,
            "started": time.time(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        self._failed = False
        self._write()

    def update(self, done: int, force: bool = False, **extra: Any) -> None:
        """Record ``done`` units (and extra fields, e.g. ``failed`` demos or ``samples_per_s``)."""
        if "first" not in self.state:
            # The rate counts from the first report: a resumed run starts past zero, and
            # loading a dataset or a policy is not progress.
            self.state["first"] = [int(done), time.time()]
        self.state.update(done=int(done), **extra)
        if force or time.time() - self._written >= self.every_s:
            self._write()

    def _write(self) -> None:
        self._written = time.time()
        text = json.dumps({**self.state, "updated": self._written})
        for attempt in range(2):
            try:
                if attempt:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                _atomic_write(self.path, text)
                return
            except OSError as error:
                last = error
        if not self._failed:
            self._failed = True
            warnings.warn(
                f"progress of {self.state['id']} could not be written to {self.path} ({last}); "
                "the cell runs on, its status line may lag",
                RuntimeWarning,
                stacklevel=2,
            )

    def close(self) -> None:
        self.path.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _writer_gone(p: dict[str, Any], host: str, now: float, max_age_s: float) -> bool:
    """Whether a parsed progress file describes nothing running (see
    :func:`clear_stale_progress`)."""
    if "pid" not in p:
        return True
    if p.get("host") == host:
        return not _pid_alive(int(p["pid"]))
    return now - float(p.get("updated", 0.0)) > max_age_s


def clear_stale_progress(layout: Layout, max_age_s: float = 3600.0) -> list[Path]:
    """Remove the progress files that describe nothing running, and return them.

    A file is stale when its writer was on this host and its process is gone (a killed study),
    when a writer on another host (a Ray worker) has not updated it for ``max_age_s``, or when
    it names no writer (written before files named one) or cannot be read for ``max_age_s``.
    Files of live processes stay: two studies may run different slices in one work folder,
    and removing the folder under one of them used to stop it."""
    folder = layout.work / "progress"
    host, now, removed = socket.gethostname(), time.time(), []
    for path in sorted(folder.glob("*.json*")) if folder.is_dir() else []:
        try:
            stale = _writer_gone(json.loads(path.read_text()), host, now, max_age_s)
        except (OSError, ValueError, TypeError):
            try:  # a .tmp half written this instant, or one a killed writer left
                stale = now - path.stat().st_mtime > max_age_s or path.suffix == ".json"
            except OSError:
                continue
        if stale:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def status_line(
    layout: Layout, finished: int, total: int, started: float, max_age_s: float = 3600.0
) -> str:
    """One line: cells finished, then each running cell with its count, rate and ETA. A cell
    whose writer is gone (:func:`clear_stale_progress`: a killed study's) is left out,
    so the line never shows work that nobody is doing."""
    elapsed = time.time() - started
    parts = [f"[{_clock(elapsed)}] {finished}/{total} cells finished"]
    host, now = socket.gethostname(), time.time()
    for path in sorted((layout.work / "progress").glob("*.json")):
        try:
            p = json.loads(path.read_text())
            if _writer_gone(p, host, now, max_age_s):
                continue
        except (OSError, ValueError, TypeError):  # being replaced this instant
            continue
        if "first" not in p:
            # Nothing reported yet: the cell is loading its data or resuming a checkpoint,
            # so its count is not known (a resumed run is not at 0).
            parts.append(f"{p['kind']} {p['id']}: starting ({p['total']} {p['unit']} in all)")
            continue
        done, total_units = p["done"], p["total"]
        first_done, first_time = p["first"]
        rate = (done - first_done) / max(p["updated"] - first_time, 1e-9)
        eta = f", ETA {_clock((total_units - done) / rate)}" if rate > 0 else ""
        extra = f", {p['failed']} failed attempts dropped" if p.get("failed") else ""
        if p.get("samples_per_s"):  # none until a log window has been timed
            extra += f", {p['samples_per_s']:.0f} samples/s"
        parts.append(f"{p['kind']} {p['id']}: {done}/{total_units} {p['unit']}{extra}{eta}")
    return " | ".join(parts)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class _StatusPrinter(threading.Thread):
    """Logs :func:`status_line` every ``interval_s`` while a study's cells run."""

    def __init__(
        self, layout: Layout, total: int, log: Callable[[str], None], interval_s: float
    ) -> None:
        super().__init__(daemon=True)
        self.layout, self.total, self.log, self.interval_s = layout, total, log, interval_s
        self.finished, self.started = 0, time.time()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            self.log(status_line(self.layout, self.finished, self.total, self.started))

    def stop(self) -> None:
        self._stop_event.set()


def data_done(cell: DataCell, layout: Layout) -> bool:
    from aloha_bench.data.store import EpisodeStore

    path = layout.dataset(cell)
    if not path.exists():
        return False
    try:
        return EpisodeStore.open(path).n_episodes >= cell.episodes
    except Exception:  # a damaged store is not finished; generate says what is wrong
        return False


def train_done(cell: TrainCell, layout: Layout) -> bool:
    return (layout.run(cell) / DONE_FILE).is_file()


def eval_done(cell: EvalCell, layout: Layout) -> bool:
    """Whether the cell's summary row is recorded and describes the model now in its run folder
    (not :func:`eval_stale`)."""
    return layout.row(cell).is_file() and not eval_stale(cell, layout)


# The checkpoint folders evaluation loads, in order (policies.CHECKPOINTS), and the weights file
# whose SHA-256 their manifest holds (checkpoint.MANIFEST_FILE, policy.MODEL_FILE).
_RUN_CHECKPOINTS, _RUN_MODEL = ("best", "last"), "model.safetensors"


def model_sha256(run_dir: Path) -> str | None:
    """SHA-256 of the weights an evaluation of ``run_dir`` loads (its ``best/``, else ``last/``),
    read from that checkpoint's manifest (no hashing, no torch); None without one."""
    for name in _RUN_CHECKPOINTS:
        folder = Path(run_dir) / name
        if (folder / _RUN_CONFIG).is_file():
            try:
                files = json.loads((folder / _RUN_MANIFEST).read_text())["files"]
                return str(files[_RUN_MODEL]["sha256"])
            except (OSError, ValueError, KeyError, TypeError):
                return None
    return None


def eval_stale(cell: EvalCell, layout: Layout) -> bool:
    """Whether a recorded evaluation is of another model than the finished run now in
    ``layout``: the run folder was absent (the cell ran on another machine) and the run was
    trained again here. Same seed and recipe, but another CPU's kernels give other weights, so a
    temporal-ensembling or perturbation record of the new model must not be set beside an
    unperturbed record of the old one. Rows name their model (``model_sha256``); rows written
    before they did count as stale when they are older than the run's finish.

    False where nothing can be compared: no row, no finished run here (a fresh clone), or a run
    whose checkpoint has no manifest."""
    run = layout.run(cell.train)
    done, row_path = run / DONE_FILE, layout.row(cell)
    if not done.is_file() or not row_path.is_file():
        return False
    current = model_sha256(run)
    if current is None:
        return False
    try:
        recorded = json.loads(row_path.read_text()).get("model_sha256")
    except (OSError, ValueError, AttributeError):
        return False  # a damaged row is the report's to name (read_summary), not a model change
    if recorded:
        return recorded != current
    return row_path.stat().st_mtime < done.stat().st_mtime


def train_needed(cell: TrainCell, the_plan: Plan, layout: Layout) -> bool:
    """Whether a training run must still run (or resume).

    A run whose every evaluation is already recorded under ``results/`` is not needed even if
    its checkpoint is gone: the records are what the study reports, and a fresh clone (or a
    machine whose ``runs/`` was cleared) must not spend ~25 core-minutes per cell retraining
    them. A run the plan evaluates nowhere is trained for its own sake."""
    if train_done(cell, layout):
        return False
    evals = the_plan.evals_of(cell)
    return not evals or not all(eval_done(e, layout) for e in evals)


def data_needed(cell: DataCell, the_plan: Plan, layout: Layout) -> bool:
    """Whether a dataset must still be recorded: it is unfinished and some training run that
    reads it still has to train (a finished run, or one whose evaluations are all recorded,
    needs no data)."""
    if data_done(cell, layout):
        return False
    return any(t.data.id == cell.id and train_needed(t, the_plan, layout) for t in the_plan.train)


def generation_workers(n_datasets: int, workers: int, executor: str = "local") -> int:
    """Processes recording each dataset: with fewer datasets than workers (a small study has
    one) the idle workers record episodes of the same dataset instead of waiting; the dataset is
    identical. 1 under Ray, whose tasks hold one CPU each."""
    if executor == "ray" or n_datasets < 1:
        return 1
    return max(1, workers // n_datasets)


@contextlib.contextmanager
def cell_lock(layout: Layout, cell_id: str):
    """Hold ``<work>/locks/<cell_id>.lock`` while a cell runs; yields True when it had to wait.

    Two studies may run in one work folder (different slices, or by mistake the same one).
    Without this, a second trainer of a run would find the first one's folder without a
    checkpoint yet and delete it, and two recorders would write one dataset. With it, the second
    waits for the first (and says whom it waits for) and then finds the cell done. The lock is
    the episode store's writer lock (:class:`aloha_bench.data.lock.WriterLock`): held by the open
    file, so a killed process releases it; where the filesystem refuses ``flock`` (some network
    mounts) cells run unlocked, with a warning."""
    from aloha_bench.data.lock import WriterLock

    lock = WriterLock(
        layout.work / "locks" / cell_id,
        lock_file=layout.work / "locks" / f"{cell_id}.lock",
        wait=True,
        required=False,
    )
    try:
        yield lock.waited
    finally:
        lock.release()


def run_data_cell(cell: DataCell, layout: Layout, workers: int = 1) -> str:
    """Record (or finish recording) a cell's demonstrations with ``workers`` processes (the
    same dataset as one: ``generate`` accepts episodes in seed order). Holds the cell's
    :func:`cell_lock` while it records."""
    with cell_lock(layout, cell.id) as waited:
        if data_done(cell, layout):
            return f"{cell.id}: " + ("recorded by another process" if waited else "done before")
        return _record_data_cell(cell, layout, workers)


def _record_data_cell(cell: DataCell, layout: Layout, workers: int) -> str:
    from aloha_bench.generate import GenerateSettings, generate

    settings = GenerateSettings(
        task=cell.task,
        source=cell.source,
        obs_mode=cell.obs_mode,
        cameras=cell.cameras or None,
        image_size=cell.image_size,
        randomize=cell.randomize,
    )
    layout.dataset(cell).parent.mkdir(parents=True, exist_ok=True)
    status = CellProgress(layout, cell.id, "data", cell.episodes, "demos")

    def progress(_episode, kept: int, tried: int) -> None:
        status.update(kept, failed=tried - kept)

    generate(settings, layout.dataset(cell), cell.episodes, progress=progress, workers=workers)
    status.close()
    return f"{cell.id}: {cell.episodes} demos"


def run_train_cell(cell: TrainCell, layout: Layout, threads: int) -> str:
    """Train (or resume) one run; marks it done with the training summary."""
    import torch

    from aloha_bench.train import train

    if train_done(cell, layout):
        return f"{cell.id}: done before"
    torch.set_num_threads(threads)
    run_dir = layout.run(cell)
    resume = (run_dir / "last").is_dir()
    if run_dir.exists() and not resume:
        # A run killed before its first checkpoint holds nothing worth keeping.
        shutil.rmtree(run_dir)
    config = cell.config()
    status = CellProgress(layout, cell.id, "train", config.steps, "steps")

    def progress(row: Mapping[str, Any]) -> None:
        rate = row.get("samples_per_s")  # absent or 0 on the row a resumed run starts with
        status.update(row["step"], **({"samples_per_s": float(rate)} if rate else {}))

    summary = train(
        config, layout.dataset(cell.data), run_dir, device="cpu", resume=resume, progress=progress
    )
    status.close()
    (run_dir / DONE_FILE).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return f"{cell.id}: trained {summary['steps']} steps in {summary['seconds']:.0f} s"


def run_eval_cell(cell: EvalCell, layout: Layout, threads: int) -> str:
    """Evaluate one run under one set of conditions; writes its records and summary row."""
    from aloha_bench.evaluate import EvalSettings, evaluate, summarize

    if eval_done(cell, layout):
        return f"{cell.id}: done before"
    overrides = {}
    if cell.temporal_ensemble is not None:
        overrides = {"temporal_ensemble_coeff": cell.temporal_ensemble, "n_action_steps": 1}
    settings = EvalSettings(
        run=str(layout.run(cell.train)),
        task=cell.train.data.task,
        episodes=cell.episodes,
        seed=cell.seed,
        label=cell.label["policy"],
        randomize=_condition_arg(cell.randomize),
        latency=_condition_arg(cell.latency),
        policy_overrides=overrides,
        threads=threads,
    )
    status = CellProgress(layout, cell.id, "eval", cell.episodes, "episodes")
    records = evaluate(settings, progress=lambda _record: status.update(status.state["done"] + 1))
    status.close()
    row = summary_row(cell, summarize(records), layout)
    note = ""
    if cell.videos:
        from aloha_bench.outcome_videos import film_outcomes

        video_dir = (layout.work / "videos" / cell.id).resolve()
        try:
            films = film_outcomes(settings, records, video_dir)
        except RuntimeError as error:  # a replay that differs: no film, and say why
            films, note = {}, f" (no videos: {error})"
        for outcome in ("success", "failure"):
            path = films.get(outcome)
            # Relative to the results folder, like `records`: the browser links it from there.
            row[f"video_{outcome}"] = (
                os.path.relpath(path, layout.results.resolve()) if path else ""
            )
    path = layout.records(cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    _atomic_write(layout.row(cell), json.dumps(row, indent=2) + "\n")  # last: marks it done
    s = row
    return f"{cell.id}: {s['successes']}/{s['episodes']} successes{note}"


def precision_note(the_plan: Plan) -> str | None:
    """One line for the study's output where its runs ask for bf16 that this CPU lacks (they
    compute in fp32: ``policies/act/precision.py``); the workers then keep quiet about it."""
    import torch

    from aloha_bench.policies.act.precision import bf16_is_native, effective_precision

    asked = {t.config().precision for t in the_plan.train}
    if "bf16" not in asked or bf16_is_native("cpu"):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if effective_precision("bf16", "cpu") == "bf16":  # ALOHA_BENCH_BF16=always
            return None
    return (
        f"note: the runs ask for bf16, which this CPU ({torch.backends.cpu.get_cpu_capability()}) "
        "does not compute natively: they train and run in fp32 (recorded per run)"
    )


def run_train_job(
    train: TrainCell, evals: Sequence[EvalCell], layout: Layout, threads: int
) -> list[str]:
    """A training run and then its evaluations: the unit of work handed to an executor. Holds
    the run's :func:`cell_lock` throughout; one message per cell."""
    from aloha_bench.policies.act.precision import PrecisionWarning

    os.environ.setdefault("MUJOCO_GL", "egl")
    # run_study said it once (precision_note); each worker would repeat it.
    warnings.filterwarnings("ignore", category=PrecisionWarning)
    with cell_lock(layout, train.id) as waited:
        messages = [run_train_cell(train, layout, threads)]
        for e in evals:
            if waited and eval_done(e, layout):  # the other study evaluated it meanwhile
                messages.append(f"{e.id}: evaluated by another process")
            else:
                messages.append(run_eval_cell(e, layout, threads))
    return messages


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def validation_l1(run_dir: Path) -> dict[str, Any]:
    """The run's validation L1 with z = 0 (what the policy executes), from its ``losses.csv``:
    the lowest (``val_l1_best``, at ``val_best_step``) and the last (``val_l1_last``). A flat
    curve (last close to best, and close to a longer run's) says the budget sufficed. NaN where
    the run logged no validation."""
    import csv

    rows = []
    path = Path(run_dir) / "losses.csv"
    if path.is_file():
        with path.open(newline="") as f:
            rows = [
                (int(r["step"]), float(r["val_l1_prior"]))
                for r in csv.DictReader(f)
                if r.get("val_l1_prior")
            ]
    if not rows:
        return {
            "val_l1_best": float("nan"),
            "val_best_step": float("nan"),
            "val_l1_last": float("nan"),
        }
    best = min(rows, key=lambda r: r[1])
    return {"val_l1_best": best[1], "val_best_step": best[0], "val_l1_last": rows[-1][1]}


def summary_row(cell: EvalCell, summary: Mapping[str, Any], layout: Layout) -> dict[str, Any]:
    """One row of ``summary.csv``: the cell's labels and the evaluation's rates."""
    stage_rates = [v["rate"] for v in summary["stages"].values()]
    row = {
        "cell": cell.id,
        "groups": ";".join(cell.groups),
        **cell.label,
        "episodes": summary["episodes"],
        "successes": summary["successes"],
        "success_rate": summary["success_rate"],
        "ci_low": summary["ci_low"],
        "ci_high": summary["ci_high"],
        "successes_any": summary["successes_any"],
        "success_rate_any": summary["success_rate_any"],
        "ci_low_any": summary["ci_low_any"],
        "ci_high_any": summary["ci_high_any"],
        "successes_lenient": summary["successes_lenient"],
        "success_rate_lenient": summary["success_rate_lenient"],
        "ci_low_lenient": summary["ci_low_lenient"],
        "ci_high_lenient": summary["ci_high_lenient"],
        "task_version": summary["task_version"],
        "stages": ">".join(summary["stage_names"]),
        "mean_steps": summary["mean_steps"],
        "mean_return": summary["mean_return"],
        "run": str(layout.run(cell.train)),
        "records": str(layout.records(cell).relative_to(layout.results)),
        # Which weights these records are of (eval_stale compares it with the run folder's).
        "model_sha256": model_sha256(layout.run(cell.train)) or "",
        **validation_l1(layout.run(cell.train)),
    }
    for i in range(3):
        row[f"stage_{i + 1}"] = stage_rates[i] if i < len(stage_rates) else float("nan")
    return row


# ---------------------------------------------------------------------------------------------
# Executors


def _threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def _local_map(fn: Callable[..., Any], jobs: Sequence[tuple], workers: int) -> Iterable[Any]:
    if workers == 1:
        for job in jobs:
            yield fn(*job)
        return
    # spawn, never fork: a process forked after a GL context exists hangs (SIM_NOTES.md).
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = [pool.submit(fn, *job) for job in jobs]
        for future in as_completed(futures):
            yield future.result()


def _ray_map(
    fn: Callable[..., Any], jobs: Sequence[tuple], address: str | None, num_cpus: int
) -> Iterable[Any]:
    try:
        import ray
    except ImportError as error:
        raise RuntimeError(
            "--executor ray needs Ray: pip install 'aloha-bench[cluster]' (or use --executor local)"
        ) from error
    if not ray.is_initialized():
        if address:
            ray.init(address=address)
        else:  # a local Ray instance on this machine
            ray.init(num_cpus=num_cpus, include_dashboard=False)
    remote = ray.remote(num_cpus=1)(fn)
    pending = [remote.remote(*job) for job in jobs]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        yield ray.get(done[0])


def run_study(
    profile: Mapping[str, Any],
    work_dir: str | Path,
    results_dir: str | Path,
    tasks: Sequence[str] | None = None,
    seeds: int | None = None,
    groups: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
    policies: Sequence[str] | None = None,
    obs_modes: Sequence[str] | None = None,
    executor: str = "local",
    workers: int = 1,
    address: str | None = None,
    threads: int | None = None,
    log: Callable[[str], None] = print,
    status_every_s: float = 15.0,
) -> dict[str, Any]:
    """Run every unfinished cell of a study (or of a subset), then write ``summary.csv`` and
    the report of every finished cell of the whole study.

    Args:
        profile: a loaded study profile (``load_profile``).
        work_dir: datasets and run folders (large; not for git).
        results_dir: records, summary.csv, tables and plots.
        tasks, seeds, groups, sources, policies, obs_modes: a subset of the profile's.
        executor: ``"local"`` (process pool of ``workers``) or ``"ray"``.
        workers: parallel jobs for the local executor (each gets cpu_count / workers threads).
        address: Ray cluster address (``ray``; None starts Ray on this machine).
        threads: torch threads per job (default: cpu_count / workers). Use 1 when other work
            shares the cores: OpenMP threads spin-wait on a busy core.
        log: receives one line per finished cell, and every ``status_every_s`` a status line
            (:func:`status_line`: cells finished, each running cell's count, rate and ETA).
        status_every_s: seconds between status lines (0: none).

    Returns:
        ``{"cells": n, "ran": n, "skipped": n, "summary": path or None, "missing": [...]}``.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; expected one of {EXECUTORS}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    the_plan = plan(profile, tasks, seeds, groups, sources, policies, obs_modes)
    layout = Layout(Path(work_dir), Path(results_dir))
    threads = threads or _threads_per_worker(workers)

    def fan_out(fn, jobs):
        if executor == "ray":
            return _ray_map(fn, jobs, address, workers)
        return _local_map(fn, jobs, workers)

    skipped = 0
    n_cells = len(the_plan.data) + len(the_plan.train) + len(the_plan.evals)
    trained_now = {t.id for t in the_plan.train if train_needed(t, the_plan, layout)}
    # Progress files of cells a killed run left behind describe nothing that runs now; those of
    # a study running another slice in this folder stay.
    clear_stale_progress(layout)
    todo_data = [c for c in the_plan.data if data_needed(c, the_plan, layout)]
    skipped += len(the_plan.data) - len(todo_data)
    jobs = []
    for train in the_plan.train:
        evals = [e for e in the_plan.evals_of(train) if not eval_done(e, layout)]
        skipped += len(the_plan.evals_of(train)) - len(evals)
        needed = train_needed(train, the_plan, layout)
        if not needed:
            skipped += 1
        if evals or needed:
            jobs.append((train, evals, layout, threads))
    # Longest first: with several workers, a long run started last would leave the others idle
    # while it finishes (longest-processing-time order bounds that tail by the shortest runs).
    jobs.sort(
        key=lambda job: (
            -job_seconds(the_plan.profile, job[0], job[1], trained=train_done(job[0], layout))
        )
    )
    printer = _StatusPrinter(layout, n_cells, log, status_every_s)
    printer.finished = skipped
    note = precision_note(the_plan) if jobs else None
    if note:  # said once here: the workers, which would repeat it per run, keep quiet
        log(note)
    if status_every_s > 0 and (todo_data or jobs):
        printer.start()
    try:
        per_cell = generation_workers(len(todo_data), workers, executor)
        data_jobs = [(c, layout, per_cell) for c in todo_data]
        for message in fan_out(run_data_cell, data_jobs):
            printer.finished += 1
            log(message)
        for messages in fan_out(run_train_job, jobs):
            printer.finished += len(messages)
            for message in messages:
                log(message)
        # A run trained here whose folder had been absent (it ran on another machine) replaced
        # the model its recorded evaluations were of: evaluate those again (eval_stale).
        again: dict[str, tuple[TrainCell, list[EvalCell]]] = {}
        for e in the_plan.evals:
            if e.train.id in trained_now and eval_stale(e, layout):
                again.setdefault(e.train.id, (e.train, []))[1].append(e)
        if again:
            printer.finished -= sum(len(es) for _, es in again.values())  # counted as skipped
            log(
                f"evaluating again {sum(len(es) for _, es in again.values())} recorded cells of "
                f"{len(again)} run(s) trained anew here (their records were of another model)"
            )
            redo = [(t, es, layout, threads) for t, es in again.values()]
            for messages in fan_out(run_train_job, redo):
                printer.finished += len(messages) - 1  # the run itself: done before
                for message in messages[1:]:
                    log(message)
    finally:
        printer.stop()
    # The summary and report are the study's, not the slice's: a run of one task or group
    # must not cut the other cells' rows out of summary.csv and delete their plots.
    filtered = any(x is not None for x in (tasks, seeds, groups, sources, policies, obs_modes))
    result = write_summary(plan(profile) if filtered else the_plan, layout)
    result["cells"] = n_cells
    result["skipped"] = skipped
    result["ran"] = result["cells"] - skipped
    return result


# Labels every missing cell is listed by; the others, where they differ from the main cells',
# say which setting of its group a cell is (K = 400, beta = 100, a perturbation...).
_MISSING_SETTINGS = (
    ("chunk_size", "K"),
    ("kl_weight", "beta"),
    ("temporal_ensemble", "temporal ensembling"),
    ("demos", "demos"),
    ("train_steps", "steps"),
    ("train_randomize", "trained with randomization"),
    ("perturbation", "perturbation"),
)


def missing_markdown(
    the_plan: Plan, layout: Layout, missing: Sequence[EvalCell] | None = None
) -> str:
    """``missing.md``: every evaluation cell of the plan not recorded yet, with what it still
    needs in ``layout`` (its dataset, the training steps after its run's last checkpoint, its
    episodes), grouped by the ablation groups it belongs to, each group with the command that
    runs it and the hours it needs on one core (at the training rates measured on the
    layout's finished runs where there are some, else the profile's ``[cost]``).

    A cell is missing only because it has not run yet (a study runs over several sittings),
    because its job stopped, or because its record is of another model of its run
    (:func:`eval_stale`); the per-cell state tells which, so no cell is left unexplained.
    """
    if missing is None:
        missing = [e for e in the_plan.evals if not eval_done(e, layout)]
    profile = the_plan.profile
    cost = profile.get("cost", {})
    measured = measured_train_rates(the_plan, layout)

    def train_rate(t: TrainCell) -> tuple[float, str]:
        mode = t.data.obs_mode
        if (mode, t.baseline) in measured:
            return measured[(mode, t.baseline)][0], "measured"
        if f"{mode}_steps_per_s" in cost:
            return cost[f"{mode}_steps_per_s"], "[cost]"
        return _DEFAULT_STEPS_PER_S[mode], "default"

    def episode_seconds(e: EvalCell) -> float:
        mode = e.train.data.obs_mode
        per_min = cost.get(f"{mode}_episodes_per_min", _DEFAULT_EPISODES_PER_MIN[mode])
        return 60 * e.episodes / per_min

    def hours(cells: Sequence[EvalCell]) -> float:
        trains = {e.train.id: e.train for e in cells}.values()
        seconds = sum(steps_left(t, layout) / train_rate(t)[0] for t in trains)
        return (seconds + sum(episode_seconds(e) for e in cells)) / 3600

    # Work several missing cells share (one dataset, one run) is said once per row with how
    # many cells share it; the group's hours count it once.
    data_users = collections.Counter(e.train.data.id for e in missing)
    run_users = collections.Counter(e.train.id for e in missing)

    def shared(n: int) -> str:
        return f" (shared by {n} of these cells)" if n > 1 else ""

    def needs(e: EvalCell) -> str:
        t, parts = e.train, []
        if eval_stale(e, layout):
            return (
                f"evaluate {e.episodes} episodes again: its record is of another model of this "
                "run (trained elsewhere; the run was trained anew here)"
            )
        if not train_done(t, layout) and not data_done(t.data, layout):
            parts.append(f"record {t.data.episodes} demos{shared(data_users[t.data.id])}")
        if train_done(t, layout):
            parts.append("trained")
        else:
            at = checkpointed_step(t, layout)
            rate, basis = train_rate(t)
            left = (t.steps - at) / rate / 60
            parts.append(
                (
                    f"train from step {at:,} (resumes) to {t.steps:,}"
                    if at
                    else f"train {t.steps:,} steps"
                )
                + f" (~{left:.0f} min at the {basis} rate){shared(run_users[t.id])}"
            )
        parts.append(f"evaluate {e.episodes} episodes")
        return "; ".join(parts)

    def setting(e: EvalCell) -> str:
        label = e.label
        # What the policy is without the group's change (single_step's K is 1 by definition).
        own = _baseline_labels(label["policy"], {}, profile["training_profile"])
        usual = {
            **own,
            "temporal_ensemble": False,
            "demos": profile["demos"],
            "train_steps": steps_for(label["task"], profile["train_steps"]),
            "train_randomize": "none",
            "perturbation": "none",
        }
        out = []
        for key, name in _MISSING_SETTINGS:
            value = label.get(key)
            if value is None or value == usual[key]:
                continue
            if value is True:
                out.append(name)
            else:
                out.append(f"{name} {value:,}" if _is_int(value) else f"{name} {value}")
        return ", ".join(out) or "as the main cells"

    def observed(e: EvalCell) -> str:
        d = e.train.data
        return d.obs_mode + (f" {'+'.join(d.cameras)}" if d.cameras else "")

    by_groups: dict[tuple[str, ...], list[EvalCell]] = {}
    for cell in missing:
        by_groups.setdefault(cell.groups, []).append(cell)
    name = profile["name"]
    work = layout.work
    lines = [
        f"# Cells of study `{name}` not run yet",
        "",
        f"{len(missing)} of {len(the_plan.evals)} evaluation cells are missing.",
    ]
    if missing:
        basis = (
            "the training rates measured on the finished runs there"
            if measured
            else ("the profile's [cost] rates" if cost else "default rates")
        )
        lines += [
            "",
            "None was left out on purpose: the study runs over several sittings, and these have "
            "not had their turn yet (or their job stopped: a run with a checkpoint resumes from "
            "it; or their record is of another model of their run, which was trained anew "
            f"here). What each still needs is as `{work}/` held it when this file was written, "
            f"on the machine that wrote it. In all: about {hours(missing):.1f} h of one core at "
            f"{basis} (evaluation at the profile's rates; recording demonstrations not "
            "counted). Each group below runs with its command (on a 2-core machine add "
            "`--workers 2 --threads 1`); finished cells are skipped. Groups that share a "
            "training run each count it.",
        ]
    for groups, cells in by_groups.items():
        lines += [
            "",
            f"## {', '.join(groups)}: {len(cells)} cells, about {hours(cells):.1f} h of one core",
            "",
            f"`aloha-bench reproduce --profile {name} --groups {' '.join(groups)}`",
            "",
            "| task | policy | source | observations | setting | seed | still to do | cell |",
            "|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {c.label['task']} | {c.label['policy']} | {c.label['source']} | {observed(c)} | "
            f"{setting(c)} | {c.label['train_seed']} | {needs(c)} | `{c.id}` |"
            for c in cells
        ]
    return "\n".join(lines) + "\n"


def orphan_records(the_plan: Plan, layout: Layout) -> list[str]:
    """Ids of the evaluation records in ``layout.results/records/`` that no cell of the plan
    owns (sorted): left by an earlier plan of the study, they would otherwise sit there unread
    while looking like results."""
    folder = layout.results / "records"
    if not folder.is_dir():
        return []
    owned = {e.id for e in the_plan.evals}
    return sorted({p.stem for p in folder.glob("*.json*")} - owned)


def write_summary(the_plan: Plan, layout: Layout) -> dict[str, Any]:
    """Collect finished evaluation rows into ``summary.csv``, list the missing ones in
    ``missing.md``, and write the report (tables and plots)."""
    import pandas as pd

    from aloha_bench import report

    rows, missing = [], []
    for cell in the_plan.evals:
        if eval_done(cell, layout):
            # The plan's labels win: a later plan may add groups or label columns to a cell.
            row = {**json.loads(layout.row(cell).read_text()), **cell.label}
            row["groups"] = ";".join(cell.groups)
            rows.append(row)
        else:
            missing.append(cell)
    layout.results.mkdir(parents=True, exist_ok=True)
    orphans = orphan_records(the_plan, layout)
    text = missing_markdown(the_plan, layout, missing)
    if orphans:
        text += (
            f"\n## Records of no cell of this study: {len(orphans)}\n\n"
            f"These files in `{layout.results.name}/records/` match no cell of the study as it "
            "is planned now, so they are not in summary.csv: a cell's id changes with its task's "
            "version, its resolved training config or its evaluation settings, and a group's "
            "setting that is one of the study's policies is that policy's cell. Delete them, or "
            "keep them as history (git has them either way).\n\n"
            + "".join(f"- `{o}`\n" for o in orphans)
        )
    (layout.results / "missing.md").write_text(text)
    out: dict[str, Any] = {
        "summary": None,
        "missing": [c.id for c in missing],
        "orphans": orphans,
        "report": [],
    }
    if not rows:
        return out
    frame = pd.DataFrame(rows)
    columns = [c for c in report.SUMMARY_COLUMNS if c in frame.columns]
    frame = frame[columns + [c for c in frame.columns if c not in columns]]
    summary = layout.results / "summary.csv"
    frame.to_csv(summary, index=False)
    out["summary"] = summary
    out["report"] = report.write_report(summary, layout.results)
    return out
