"""Imports only point down the layers (ARCHITECTURE.md), checked in fresh interpreters."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "aloha_bench"


def _loaded_after(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


@pytest.mark.parametrize(
    "name", ["embodiment", "keys", "lerobot_units", "paths", "presets", "stats"]
)
def test_layer0_imports_only_stdlib_and_numpy(name):
    # Read the source: importing the module would also run the package's __init__, which
    # registers the Gymnasium ids.
    tree = ast.parse((PACKAGE / f"{name}.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    allowed = set(sys.stdlib_module_names) | {"numpy", "aloha_bench", "__future__"}
    assert imported <= allowed, imported - allowed


@pytest.mark.parametrize(
    "module",
    [
        "aloha_bench.sim.rig",
        "aloha_bench.envs.aloha_env",
        "aloha_bench.experts",
        "aloha_bench.backends",
        "aloha_bench.cli",
    ],
)
def test_sim_envs_experts_never_import_torch(module):
    assert "torch" not in _loaded_after(module)


def test_only_the_cli_imports_interop():
    """LeRobot interop sits above data/ and policies/; only the CLI (L5) may import it."""
    importers = []
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name == "interop" or path.name == "cli.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            module = getattr(node, "module", None) or ""
            names = [a.name for a in node.names]
            if "interop" in module or any("interop" in n for n in names):
                importers.append(str(path.relative_to(PACKAGE)))
    assert importers == []
