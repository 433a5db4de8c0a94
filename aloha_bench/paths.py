"""Where the package's data folders live, in a source checkout and in an installed wheel.

The wheel ships ``assets/``, ``tasks/`` and ``baselines/`` inside the package as
``aloha_bench/_data/<name>`` (see pyproject.toml); a checkout keeps them at the repository root.
Everything that reads them asks this module, so both layouts work.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _data_dir(name: str) -> Path:
    for candidate in (_PACKAGE_DIR / "_data" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"aloha-bench data folder {name!r} not found next to the package ({_PACKAGE_DIR}); "
        "reinstall with `pip install .` from a full checkout"
    )


def assets_dir() -> Path:
    """Folder of the rig's MJCF models."""
    return _data_dir("assets")


def tasks_dir() -> Path:
    """Folder holding one sub-folder per task (``scene.xml``, ``task.toml``, ``README.md``)."""
    return _data_dir("tasks")


def baselines_dir() -> Path:
    """Folder of policy configuration files."""
    return _data_dir("baselines")
