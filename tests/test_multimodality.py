"""The multimodality measure on hand-made trajectories, and the operator model's strategies."""

import numpy as np
import pytest

from aloha_bench import multimodality as mm
from aloha_bench.experts.base import strategy_of
from aloha_bench.experts.human import (
    OPERATOR_STRATEGIES,
    TEMPOS,
    HumanOperator,
    HumanOperatorConfig,
    slowest_speed,
    strategies,
)


def _demo(seed, label, actions, success=True):
    return mm.Demo(seed, label, np.asarray(actions, dtype=float), success)


def _reach(target, steps, hold=40, dims=12):
    """A joint-space move from 0 to ``target`` over ``steps`` steps, then holding still."""
    ramp = np.linspace(0.0, 1.0, steps)[:, None] * np.full(dims, target)[None]
    return np.vstack([ramp, np.repeat(ramp[-1:], hold, axis=0)])


def test_phase_alignment_removes_pace():
    slow, quick = _reach(0.5, 200), _reach(0.5, 100, hold=140)
    a, b = mm.phase_resample(slow), mm.phase_resample(quick)
    assert a.shape == (mm.PHASES, 12)
    assert np.abs(a - b).max() < 0.03  # the same motion at two paces lines up
    assert len(mm.phase_resample_end(quick)) < len(quick)  # the still tail is cut off


def test_two_modes_make_the_average_a_motion_nobody_demonstrated():
    rng = np.random.default_rng(0)
    two_modes = [
        _demo(i, "up" if i % 2 else "down", _reach(0.6 if i % 2 else -0.6, 100)) for i in range(10)
    ]
    one_mode = [_demo(i, "up", _reach(0.6 + rng.normal(0, 0.05), 100)) for i in range(10)]
    split, same = mm.measure(two_modes), mm.measure(one_mode)
    assert split["n_strategies"] == 2 and split["strategy_entropy_bits"] == pytest.approx(1.0)
    assert split["averaging_gap_max"] > 5  # the mean (zero) is far from every demo
    assert same["averaging_gap_mean"] < 1.5 and same["n_strategies"] == 1
    assert split["pairwise_rad_mean"] > same["pairwise_rad_mean"]
    with pytest.raises(ValueError, match="at least 2 demos"):
        mm.phase_measures(np.zeros((1, 5, 12)))


def test_per_strategy_success_pools_tempos():
    demos = [
        _demo(0, "lift/brisk", _reach(0.1, 10), True),
        _demo(1, "lift/steady", _reach(0.1, 10), False),
        _demo(2, "peel/steady", _reach(0.1, 10), True),
    ]
    rates = mm.per_strategy_success(demos)
    assert rates["lift"] == {"episodes": 2, "successes": 1, "rate": 0.5}
    assert rates["peel"]["rate"] == 1.0


@pytest.mark.parametrize("task", sorted(OPERATOR_STRATEGIES))
def test_the_operator_draws_every_strategy_and_tempo_and_can_be_forced(task):
    config = HumanOperatorConfig()
    drawn = {HumanOperator(task, config, np.random.default_rng(s)).strategy for s in range(40)}
    names = strategies(task)
    assert len(names) >= 2
    assert drawn == {f"{n}/{t}" for n in names for t in TEMPOS}
    forced = HumanOperator(task, config, np.random.default_rng(0), strategy=names[1])
    assert forced.strategy.startswith(f"{names[1]}/")
    style = forced.expert.style
    for field, value in OPERATOR_STRATEGIES[task][names[1]].items():
        assert getattr(style, field) == value
    low, high = TEMPOS[forced.strategy.split("/")[1]]
    assert low <= style.speed <= high
    with pytest.raises(ValueError, match="unknown strategy"):
        HumanOperator(task, config, np.random.default_rng(0), strategy="juggle")


def test_the_operator_never_drives_a_script_below_its_slowest_speed():
    """Tempo floor: speed x pace stays at or above the expert's slowest varied speed (battery:
    0.9, above the steady tempo's 0.85), or the 400-step episode ends before the script does."""
    assert slowest_speed("battery") == pytest.approx(0.9)
    assert slowest_speed("insertion") == pytest.approx(0.85)
    # The slowest operator the config allows: the lowest pace, steady tempo.
    config = HumanOperatorConfig(pace=(0.85, 0.85))
    effective = {"steady": [], "brisk": []}
    for s in range(40):
        op = HumanOperator("battery", config, np.random.default_rng(s))
        effective[op.strategy.split("/")[1]].append(op.expert.style.speed * op.traits.pace)
    assert min(effective["steady"]) >= 0.9 - 1e-9
    assert min(effective["steady"]) < 0.9 + 1e-9  # lifted to the floor, not beyond
    # The brisk tempo is untouched by the floor, and the tempos stay apart.
    assert min(effective["brisk"]) == pytest.approx(1.1 * 0.85, abs=0.02)
    assert max(effective["steady"]) < min(effective["brisk"])
    # With the default config the draws stay in the pace range wherever the floor allows.
    for s in range(40):
        op = HumanOperator("battery", HumanOperatorConfig(), np.random.default_rng(s))
        assert op.expert.style.speed * op.traits.pace >= 0.9 - 1e-9
        assert op.traits.pace <= 1.1


def test_transfer_cube_strategies_differ_in_the_pick():
    """The two transfer_cube strategies are the expert's two pick styles, not a jitter."""
    config = HumanOperatorConfig()
    picks = {
        name: strategy_of(
            HumanOperator("transfer_cube", config, np.random.default_rng(0), name).expert.style
        )
        for name in strategies("transfer_cube")
    }
    assert picks == {"top_down_high": "top_down", "angled_low": "angled"}


def test_results_and_overview_are_written_with_their_command(tmp_path):
    demos = [
        _demo(i, "up" if i % 2 else "down", _reach(0.6 if i % 2 else -0.6, 60)) for i in range(4)
    ]
    human = mm.measure(demos) | {"per_strategy": mm.per_strategy_success(demos)}
    scripted = mm.measure([_demo(i, "top_down", _reach(0.6, 60)) for i in range(4)])
    command = "aloha-bench modes --task transfer_cube --episodes 4"
    paths = mm.write_results(
        "transfer_cube", {"scripted": scripted, "human": human}, tmp_path, command
    )
    assert [p.suffix for p in paths] == [".json", ".md", ".png"] and all(p.is_file() for p in paths)
    assert command in paths[1].read_text() and "human: up | 2 | success 2/2" in paths[1].read_text()
    overview = mm.write_overview(tmp_path).read_text()
    assert "| transfer_cube | human | 4 | 2 |" in overview and "up 2/2" in overview
    assert command in overview


def test_human_datasets_of_an_older_operator_model_are_not_reused():
    from aloha_bench import study
    from aloha_bench.experts.human import OPERATOR_VERSION

    human = study.DataCell("transfer_cube", "human", "state", (), (96, 128), 50)
    scripted = study.DataCell("transfer_cube", "scripted", "state", (), (96, 128), 50)
    assert human.id == f"transfer_cube_human_state_op{OPERATOR_VERSION}_x3"
    assert scripted.id == "transfer_cube_scripted_state_x3"  # plan 3 (EXPERT_VERSIONS)
    battery = study.DataCell("battery", "scripted", "state", (), (96, 128), 50)
    assert battery.id == "battery_scripted_state"  # plan 1: no suffix


def test_the_gap_stays_finite_where_every_demo_coincides():
    # All demos start from the same rest pose: there the nearest-demo distance is ~0, and the
    # gap must not become float noise divided by ~0 (it read 873,091 on human transfer_cube).
    rng = np.random.default_rng(0)
    aligned = rng.normal(0.0, 0.2, (6, 5, 12))
    aligned[:, 0] = 0.1  # phase 0: identical
    aligned[:3, 0, 0] += 1e-7  # and float noise
    gap = mm.phase_measures(aligned)["averaging_gap"]
    assert gap[0] < 1e-3 and np.all(np.isfinite(gap)) and gap[1:].max() < 10


def test_demos_of_the_same_seed_are_not_each_others_nearest_demo():
    # `modes --per-strategy` plays every seed once per strategy: the two demos of a seed share the
    # props and the operator's draws, so they coincide until the strategies part. As each other's
    # nearest demo they made the typical nearest-demo distance ~0 there (human insertion: gap 138).
    rng = np.random.default_rng(0)
    base = rng.normal(0.0, 0.2, (8, 1, 12)) * np.linspace(0.0, 1.0, 10)[None, :, None]
    part = np.clip(np.linspace(-1.0, 1.0, 10), 0.0, None)[None, :, None]  # they part halfway
    aligned = np.concatenate([base - 0.5 * part, base + 0.5 * part])  # 8 seeds x 2 strategies
    seeds = list(range(8)) * 2
    paired = mm.phase_measures(aligned, seeds)
    assert paired["averaging_gap"].max() < 3
    assert mm.phase_measures(aligned)["averaging_gap"].max() > 20  # twins as neighbours
    demos = [_demo(s, "a" if i < 8 else "b", np.zeros((3, 12))) for i, s in enumerate(seeds)]
    assert mm.measure(demos)["averaging_gap_max"] == 0.0
    with pytest.raises(ValueError, match="at least 2 seeds"):
        mm.phase_measures(aligned[:2], [3, 3])


def _two_way_store(path, strategy_in_obs: bool, episodes: int = 12, steps: int = 60):
    """Episodes whose joints follow the same ramp; half go on with actions +1, half with -1.
    With ``strategy_in_obs`` the object pose says which (the policy can tell), else nothing
    does."""
    from aloha_bench.data import EpisodeStore

    with EpisodeStore.create(path, task_id="transfer_cube", task_version=1, obs_mode="state") as s:
        for e in range(episodes):
            sign = 1.0 if e % 2 else -1.0
            ramp = np.linspace(0.0, 1.0, steps)[:, None]
            env = np.zeros((steps, 7))
            env[:, 0] = sign if strategy_in_obs else 0.0
            s.append_episode(
                {
                    "action": np.repeat(sign + 0.0 * ramp, 12, axis=1),
                    "observation.state": np.repeat(ramp, 12, axis=1)
                    + 1e-3 * np.random.default_rng(e).standard_normal((steps, 12)),
                    "observation.environment_state": env,
                },
                {
                    "seed": e,
                    "success": True,
                    "max_stage": 3,
                    "source": "human",
                    "strategy": "up" if sign > 0 else "down",
                },
            )
    return path


def test_given_the_observation_a_hidden_choice_is_averaged_and_a_visible_one_is_not(tmp_path):
    hidden = mm.given_observation(
        _two_way_store(tmp_path / "hidden.zarr", False), chunk_size=10, queries=60, neighbours=4
    )
    visible = mm.given_observation(
        _two_way_store(tmp_path / "visible.zarr", True), chunk_size=10, queries=60, neighbours=4
    )
    # Hidden: neighbours go both ways (spread ~1 rad, their mean, 0, is 1 rad from either).
    assert hidden["spread_given_obs_rad"] > 0.8 and hidden["gap_given_obs"] > 100
    assert hidden["same_strategy_chance"] == pytest.approx(0.5)
    assert hidden["same_strategy_given_obs"] < 0.75
    # Visible: the pose picks the way; the neighbours agree and the chunk mean is one of them.
    assert visible["spread_given_obs_rad"] < 1e-6 and visible["same_strategy_given_obs"] == 1.0
    assert visible["gap_given_obs"] < 1e-3
    # The control ignores the observation: both stores mix the two ways at the same progress.
    assert visible["spread_given_progress_rad"] > 0.8
    assert [b["from"] for b in visible["by_progress"]] == list(mm.PROGRESS_BINS[:-1])
    out = mm.write_given_observation(
        [visible | {"command": "aloha-bench modes-given-obs --datasets visible.zarr"}],
        tmp_path / "out",
    )
    text = out.read_text()
    assert "| transfer_cube | visible.zarr | 12 | 2 | 0.000 |" in text
    assert "`aloha-bench modes-given-obs --datasets visible.zarr`" in text
