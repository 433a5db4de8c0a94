"""`pip install .` (a wheel, not only editable) must carry the data folders and find them."""

import subprocess
import sys
import zipfile

import pytest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(root),
        ],
        check=True,
    )
    (path,) = out.glob("aloha_bench-*.whl")
    return path


def test_wheel_contains_assets_tasks_and_baselines(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "aloha_bench/_data/assets/so101.xml" in names
    assert "aloha_bench/_data/assets/rig.xml" in names
    for task in ("transfer_cube", "insertion"):
        assert f"aloha_bench/_data/tasks/{task}/task.toml" in names
        assert f"aloha_bench/_data/tasks/{task}/scene.xml" in names
    assert any(n.startswith("aloha_bench/_data/baselines/") for n in names)


def test_unpacked_wheel_finds_its_data_and_builds_an_env(wheel, tmp_path):
    zipfile.ZipFile(wheel).extractall(tmp_path)
    code = (
        "import aloha_bench, aloha_bench.paths as p; "
        "assert '_data' in str(p.tasks_dir()), p.tasks_dir(); "
        "from aloha_bench import envs; e = envs.make('insertion', obs_mode='state'); "
        "e.reset(seed=0); print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
