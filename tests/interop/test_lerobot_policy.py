"""ACT checkpoints <-> LeRobot ``pretrained_model`` folders, against one LeRobot 0.6.1 wrote."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from aloha_bench import keys, policies
from aloha_bench.interop import PolicyConversionError, export_lerobot, import_lerobot
from aloha_bench.lerobot_units import UnitsError, rad_to_lerobot
from aloha_bench.policies import ACTPolicy
from tests.policies.conftest import fake_stats, tiny_config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lerobot"
EXPECTED = np.load(FIXTURES / "expected.npz")
LEROBOT_ACT = FIXTURES / "act_state"
CALIBRATION = FIXTURES / "calibration"
# The fixture ACT's architecture (make_fixtures.py), in our config's terms.
FIXTURE_ARCH = {
    "obs_mode": "state",
    "chunk_size": 10,
    "n_action_steps": 10,
    "dim_model": 32,
    "n_heads": 2,
    "dim_feedforward": 64,
    "n_encoder_layers": 2,
    "n_decoder_layers": 1,
    "n_vae_encoder_layers": 1,
    "latent_dim": 8,
}


def saved_policy(tmp_path: Path, **overrides) -> Path:
    """A randomly perturbed tiny ACT saved as a run folder (``best/``)."""
    config = tiny_config(**overrides)
    torch.manual_seed(0)
    stats = fake_stats(env_dim=7)
    rng = np.random.default_rng(0)
    for key in (keys.STATE, keys.ACTION):
        stats[key] = {"mean": rng.normal(0, 0.3, 12), "std": rng.uniform(0.005, 0.5, 12)}
    policy = ACTPolicy(config, stats)
    with torch.no_grad():
        for parameter in policy.model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    run = tmp_path / "run"
    policy.save(run / "best")
    return run


def observation(config, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    obs = {keys.STATE: rng.normal(0, 0.3, 12).astype(np.float32)}
    if config.obs_mode == "state":
        obs[keys.ENVIRONMENT_STATE] = rng.normal(size=7).astype(np.float32)
    for key in config.image_keys:
        obs[key] = rng.integers(0, 256, (*config.image_size, 3), dtype=np.uint8)
    return obs


def test_exported_names_and_shapes_equal_lerobots_own(tmp_path):
    """Same architecture -> exactly the tensors LeRobot's ACTPolicy.save_pretrained wrote."""
    run = saved_policy(tmp_path, **FIXTURE_ARCH)
    export_lerobot(run, tmp_path / "lr")
    ours = load_file(tmp_path / "lr" / "model.safetensors")
    theirs = load_file(LEROBOT_ACT / "model.safetensors")
    assert {k: tuple(v.shape) for k, v in ours.items()} == {
        k: tuple(v.shape) for k, v in theirs.items()
    }
    torch.testing.assert_close(
        ours["model.vae_encoder_pos_enc"], theirs["model.vae_encoder_pos_enc"]
    )
    config = json.loads((tmp_path / "lr" / "config.json").read_text())
    lerobot = json.loads((LEROBOT_ACT / "config.json").read_text())
    assert config["input_features"] == lerobot["input_features"]
    assert config["pretrained_backbone_weights"] is None
    for name in ("policy_preprocessor.json", "policy_postprocessor.json"):
        steps = json.loads((tmp_path / "lr" / name).read_text())["steps"]
        assert [s["registry_name"] for s in steps] == [
            s["registry_name"] for s in json.loads((LEROBOT_ACT / name).read_text())["steps"]
        ]


def test_lerobot_trained_act_imports_and_predicts_lerobots_chunk(tmp_path):
    import_lerobot(LEROBOT_ACT, tmp_path / "ours", units="radians")
    policy = policies.load(tmp_path / "ours")
    assert policy.config.obs_mode == "state" and policy.config.chunk_size == 10
    chunk = policy.predict_chunk(
        {keys.STATE: EXPECTED["act_state"], keys.ENVIRONMENT_STATE: EXPECTED["act_env"]}
    )
    np.testing.assert_allclose(chunk, EXPECTED["act_chunk"], atol=1e-5)


@pytest.mark.parametrize(
    ("overrides", "units"),
    [
        ({"obs_mode": "state"}, "radians"),
        (
            {"obs_mode": "state", "n_decoder_layers": 3, "use_first_decoder_layer_only": True},
            "range",
        ),
        ({"backbone_norm": "frozen_batchnorm", "cameras": ["top", "front"]}, "degrees"),
        ({"backbone_norm": "frozen_batchnorm", "image_norm": "imagenet"}, "radians"),
        # The training-only pose head of act_aux_state (an extension) is left behind.
        ({"backbone_norm": "frozen_batchnorm", "aux_state_weight": 1.0}, "radians"),
    ],
    ids=[
        "state",
        "first-decoder-layer-range",
        "pixels-2cams-degrees",
        "pixels-imagenet",
        "pixels-aux-state",
    ],
)
def test_export_then_import_predicts_the_same_chunk(tmp_path, overrides, units):
    run = saved_policy(tmp_path, **overrides)
    calibration = None if units == "radians" else CALIBRATION
    summary = export_lerobot(run, tmp_path / "lr", units=units, calibration=calibration)
    assert summary["units"] == units
    if overrides.get("use_first_decoder_layer_only"):
        assert json.loads((tmp_path / "lr" / "config.json").read_text())["n_decoder_layers"] == 1
    import_lerobot(tmp_path / "lr", tmp_path / "back", calibration=calibration)  # units recorded
    a, b = policies.load(run), policies.load(tmp_path / "back")
    obs = observation(a.config)
    np.testing.assert_allclose(b.predict_chunk(obs), a.predict_chunk(obs), atol=1e-5)


def test_groupnorm_backbone_is_refused(tmp_path):
    run = saved_policy(tmp_path, backbone_norm="groupnorm")
    with pytest.raises(PolicyConversionError, match="FrozenBatchNorm2d"):
        export_lerobot(run, tmp_path / "lr")
    assert not (tmp_path / "lr").exists()


def test_lerobot_units_need_calibration_and_recorded_units(tmp_path):
    run = saved_policy(tmp_path, obs_mode="state")
    with pytest.raises(UnitsError, match="--calibration"):
        export_lerobot(run, tmp_path / "lr", units="degrees")
    with pytest.raises(UnitsError, match="--lerobot-units"):
        import_lerobot(LEROBOT_ACT, tmp_path / "x")


def test_import_refuses_what_our_act_lacks(tmp_path):
    folder = tmp_path / "prenorm"
    folder.mkdir()
    for path in LEROBOT_ACT.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    config = json.loads((folder / "config.json").read_text())
    config["pre_norm"] = True
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(PolicyConversionError, match="pre_norm"):
        import_lerobot(folder, tmp_path / "x", units="radians")


def test_degrees_export_reads_and_writes_lerobot_units(tmp_path):
    """The exported statistics are the run's, moved to LeRobot's units (x / f, std / |f|)."""
    run = saved_policy(tmp_path, obs_mode="state")
    export_lerobot(run, tmp_path / "lr", units="degrees", calibration=CALIBRATION)
    stats = load_file(
        tmp_path / "lr" / "policy_postprocessor_step_0_unnormalizer_processor.safetensors"
    )
    ours = policies.load(run).normalizer.to_stats()[keys.ACTION]
    from aloha_bench.interop.lerobot_dataset import load_joint_ranges

    ranges = load_joint_ranges(CALIBRATION)
    np.testing.assert_allclose(
        stats["action.mean"].numpy(), rad_to_lerobot(ours["mean"], "degrees", ranges), rtol=1e-5
    )
