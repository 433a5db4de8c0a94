import pytest

from aloha_bench.sim import task_spec
from aloha_bench.sim.task_spec import TaskSpecError, available_tasks, load_task_spec


def test_the_paper_sim_tasks_exist():
    assert {"transfer_cube", "insertion"} <= set(available_tasks())


@pytest.mark.parametrize("task_id", available_tasks())
def test_every_task_spec_loads(task_id):
    spec = load_task_spec(task_id)
    assert spec.gym_id == f"AlohaBench/{spec.name}-v0"
    assert spec.stages and spec.episode_steps > 0
    assert spec.scene_path.is_file()
    assert (spec.folder / "README.md").is_file()


def test_unknown_task_lists_valid_ones():
    with pytest.raises(TaskSpecError, match="valid tasks: .*transfer_cube"):
        load_task_spec("transfer_sphere")


def _write_task(tmp_path, monkeypatch, text):
    folder = tmp_path / "tasks" / "demo"
    folder.mkdir(parents=True)
    (folder / "scene.xml").write_text("<mujoco/>")
    (folder / "task.toml").write_text(text)
    monkeypatch.setattr(task_spec.paths, "tasks_dir", lambda: tmp_path / "tasks")


GOOD = """
id = "demo"
name = "Demo"
version = 1
episode_steps = 10
cameras = ["top"]
[[stages]]
name = "s"
all = [{ fn = "touching", a = ["x"], b = ["y"] }]
"""


def test_a_good_spec_parses(tmp_path, monkeypatch):
    _write_task(tmp_path, monkeypatch, GOOD)
    spec = load_task_spec("demo")
    assert spec.stages[0].checks[0].args == {"a": ["x"], "b": ["y"]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("episode_steps = 10", "episode_steps = -1"), "episode_steps must be positive"),
        (('cameras = ["top"]', 'cameras = ["side"]'), "cameras"),
        (('name = "Demo"', 'name = "demo task"'), "CamelCase"),
        (('id = "demo"', 'id = "other"'), "must equal its folder name"),
        (("episode_steps = 10", 'episode_steps = "ten"'), "episode_steps must be int"),
        (('fn = "touching", ', ""), "needs fn"),
        (("version = 1", "version = 1 ="), "not valid TOML"),
        # TOML reads nan and inf as floats; `x <= 0`-style checks would let NaN through.
        (
            ("[[stages]]", "[[objects]]\nbody = 'b'\nx_m = nan\ny_m = 0\nz_m = 0\n[[stages]]"),
            r"objects\[0\].x_m must be a finite number",
        ),
        (
            ("[[stages]]", "[[objects]]\nbody = 'b'\nx_m = [0, inf]\ny_m = 0\nz_m = 0\n[[stages]]"),
            r"objects\[0\].x_m range \[0.0, inf\] must be finite",
        ),
        (
            ("[[stages]]", "[[breakaways]]\nequality = 'e'\nforce_n = nan\n[[stages]]"),
            r"breakaways\[0\].force_n must be positive, got nan",
        ),
    ],
)
def test_malformed_specs_name_the_field(tmp_path, monkeypatch, change, message):
    _write_task(tmp_path, monkeypatch, GOOD.replace(*change))
    with pytest.raises(TaskSpecError, match=message) as err:
        load_task_spec("demo")
    assert "task.toml" in str(err.value)


def test_release_checks_define_the_lenient_rule(tmp_path, monkeypatch):
    text = GOOD.replace(
        'all = [{ fn = "touching", a = ["x"], b = ["y"] }]',
        'all = [{ fn = "touching", a = ["x"], b = ["y"] }, '
        '{ fn = "not_touching", a = ["y"], b = ["z"], release = true }]',
    )
    _write_task(tmp_path, monkeypatch, text)
    final = load_task_spec("demo").stages[-1]
    assert [c.release for c in final.checks] == [False, True]
    assert [c.fn for c in final.lenient] == ["touching"]
    assert "release" not in final.checks[1].args  # never passed on to the predicate


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        # release on an earlier stage: only the final stage's let-go checks mean anything
        (
            '[[stages]]\nname = "a"\nall = [{ fn = "touching", a = ["x"], b = ["y"], '
            'release = true }]\n[[stages]]\nname = "b"\nall = [{ fn = "touching", a = ["x"], '
            'b = ["y"] }]',
            "only the final",
        ),
        (
            '[[stages]]\nname = "a"\nall = [{ fn = "touching", a = ["x"], b = ["y"], '
            "release = true }]",
            "at least one check that is not",
        ),
        (
            '[[stages]]\nname = "a"\nall = [{ fn = "touching", a = ["x"], b = ["y"], '
            'release = "yes" }]',
            "release must be true or false",
        ),
    ],
)
def test_misplaced_release_checks_are_named(tmp_path, monkeypatch, stages, message):
    head = GOOD.split("[[stages]]")[0]
    _write_task(tmp_path, monkeypatch, head + stages + "\n")
    with pytest.raises(TaskSpecError, match=message):
        load_task_spec("demo")


def test_hand_offs_and_releases_need_the_giver_to_let_go():
    """The decision per task (tasks/*/README.md): a final stage that hands over or puts down
    carries a let-go check; the others have none, so their lenient rule is the strict one."""
    released = {
        t: [c.args["b"] for c in load_task_spec(t).stages[-1].checks if c.release]
        for t in available_tasks()
    }
    assert released["transfer_cube"] == [["right/gripper", "right/moving_jaw"]]
    assert released["battery"] == [["right/gripper", "right/moving_jaw"]]
    assert not released["insertion"] and not released["ziplock"] and not released["cup_lid"]
    assert load_task_spec("transfer_cube").version == 2
