"""Policies sit beside envs (layer L2): they never import envs, sim, experts, robots or mujoco."""

import ast
import subprocess
import sys
from pathlib import Path

POLICIES = Path(__file__).resolve().parents[2] / "aloha_bench" / "policies"
FORBIDDEN = ("mujoco", "gymnasium", "dm_control", "aloha_bench.envs", "aloha_bench.sim")
FORBIDDEN += ("aloha_bench.experts", "aloha_bench.robots", "aloha_bench.data")


def _modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return set(result.stdout.split())


def test_no_policy_module_imports_a_forbidden_layer():
    for path in POLICIES.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(FORBIDDEN), f"{path.name} imports {name}"


def test_importing_policies_loads_nothing_beyond_the_package_itself():
    # ``import aloha_bench`` registers the Gymnasium ids (and so loads gymnasium and the task
    # registry); everything that importing the policies adds on top must stay off that list.
    added = _modules_after("import aloha_bench.policies") - _modules_after("import aloha_bench")
    assert "torch" in added
    offending = sorted(m for m in added if m.startswith(FORBIDDEN) or m.split(".")[0] == "mujoco")
    assert not offending, offending
    assert "mujoco" not in _modules_after("import aloha_bench.policies")
