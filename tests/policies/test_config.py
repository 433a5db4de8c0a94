"""ACTConfig: defaults, validation messages, TOML resolution order, overrides, JSON round trip."""

import dataclasses
import json

import pytest

from aloha_bench import paths
from aloha_bench.policies import ACTConfig, load_config
from aloha_bench.policies.act.config import parse_overrides


def test_defaults_are_lerobots():
    c = ACTConfig()
    assert (c.chunk_size, c.n_action_steps, c.dim_model, c.n_heads) == (100, 100, 512, 8)
    assert (c.dim_feedforward, c.n_encoder_layers, c.n_decoder_layers) == (3200, 4, 1)
    assert (c.use_vae, c.latent_dim, c.n_vae_encoder_layers, c.kl_weight) == (True, 32, 4, 10.0)
    assert (c.dropout, c.temporal_ensemble_coeff, c.lr, c.lr_backbone) == (0.1, None, 1e-5, 1e-5)
    assert (c.weight_decay, c.grad_clip_norm, c.batch_size) == (1e-4, 10.0, 8)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"n_action_steps": 101}, "n_action_steps: must be in 1..chunk_size"),
        ({"temporal_ensemble_coeff": 0.01}, "set n_action_steps = 1"),
        ({"dim_model": 100, "n_heads": 8}, "not divisible by n_heads"),
        ({"cameras": ("top", "sky")}, "unknown camera 'sky'"),
        ({"cameras": ()}, "pixels mode needs at least one camera"),
        ({"obs_mode": "depth"}, "choose one of ('pixels', 'state')"),
        ({"image_size": (16, 64)}, "at least 32 pixels"),
        ({"dropout": 1.0}, "dropout: must be in [0, 1)"),
        ({"lr": 0.0}, "lr: must be a positive number"),
        ({"chunk_size": "ten"}, "chunk_size: expected an integer"),
        ({"use_vae": "yes"}, "expected true or false"),
        ({"pretrained_backbone_path": "r.pth", "backbone_norm": "groupnorm"}, "frozen_batchnorm"),
    ],
)
def test_bad_values_are_rejected_with_a_fix(fields, message):
    with pytest.raises(ValueError, match="ACTConfig") as err:
        ACTConfig(**fields)
    assert message in str(err.value)


FLOAT_FIELDS = [
    f.name for f in dataclasses.fields(ACTConfig) if f.type in ("float", "float | None")
]


def test_every_float_field_is_listed():
    assert {"kl_weight", "weight_decay", "lr", "dropout", "temporal_ensemble_coeff"} <= set(
        FLOAT_FIELDS
    )


@pytest.mark.parametrize("name", FLOAT_FIELDS)
@pytest.mark.parametrize("text", ["nan", "inf", "-inf"])
def test_non_finite_floats_are_refused_naming_the_key(name, text):
    # As the CLI's --set gives them (TOML reads nan and inf as floats) and as Python floats.
    for source in ([f"{name}={text}"], {name: float(text)}):
        with pytest.raises(ValueError) as err:
            load_config(overrides=source)
        assert f"ACTConfig.{name}: must be a finite number, got" in str(err.value)


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ValueError, match="did you mean 'chunk_size'"):
        load_config(overrides=["chunk_sise=10"])
    with pytest.raises(ValueError, match="key=value"):
        load_config(overrides=["chunk_size"])


def test_overrides_parse_toml_values_and_shorthands():
    parsed = parse_overrides(
        [
            "lr=3e-4",
            "obs_mode=state",
            "image_size=96x128",
            "cameras=['top','front']",
            "use_vae=false",
        ]
    )
    assert parsed == {
        "lr": 3e-4,
        "obs_mode": "state",
        "image_size": "96x128",
        "cameras": ["top", "front"],
        "use_vae": False,
    }
    c = load_config(overrides=["image_size=96x128", "temporal_ensemble_coeff=none", "steps=10"])
    assert c.image_size == (96, 128) and c.temporal_ensemble_coeff is None and c.steps == 10
    assert load_config(overrides={"cameras": "top,front"}).cameras == ("top", "front")


def test_state_mode_clears_cameras():
    assert load_config(overrides=["obs_mode=state"]).cameras == ()


def test_resolution_order_defaults_profile_baseline_overrides():
    c = load_config("single_step", profile="paper", overrides=["lr=2e-5"])
    assert c.chunk_size == 1 and c.n_action_steps == 1  # the baseline beats the profile
    assert c.dim_model == 512 and c.n_decoder_layers == 7  # the profile beats the defaults
    assert c.lr == 2e-5  # overrides beat everything


@pytest.mark.parametrize("profile", [None, "paper", "cpu"])
@pytest.mark.parametrize("baseline", ["act", "no_cvae", "single_step"])
def test_every_baseline_loads_under_every_profile(baseline, profile):
    c = load_config(baseline, profile=profile)
    assert c.use_vae == (baseline != "no_cvae")
    assert c.chunk_size == (1 if baseline == "single_step" else 100)


def test_paper_profile_is_the_papers_table():
    c = load_config("act", profile="paper")
    assert (c.dim_model, c.dim_feedforward, c.n_heads) == (512, 3200, 8)
    assert (c.n_encoder_layers, c.n_decoder_layers, c.batch_size, c.lr) == (4, 7, 8, 1e-5)
    assert c.image_size == (480, 640) and len(c.cameras) == 4
    assert (c.chunk_size, c.kl_weight, c.latent_dim) == (100, 10.0, 32)


def test_names_files_and_errors(tmp_path):
    toml = tmp_path / "mine.toml"
    toml.write_text('policy = "act"\nchunk_size = 7\nn_action_steps = 7\n')
    assert load_config(toml).chunk_size == 7
    with pytest.raises(FileNotFoundError, match="available"):
        load_config("nope")
    with pytest.raises(FileNotFoundError, match="available"):
        load_config(profile="gpu_farm")
    bad = tmp_path / "bad.toml"
    bad.write_text('policy = "diffusion"\n')
    with pytest.raises(ValueError, match="not 'act'"):
        load_config(bad)
    assert (paths.baselines_dir() / "profiles" / "cpu.toml").is_file()


def test_json_round_trip(tmp_path):
    c = load_config(
        "act", profile="cpu", overrides=["temporal_ensemble_coeff=0.01", "n_action_steps=1"]
    )
    c.save(tmp_path / "config.json")
    data = json.loads((tmp_path / "config.json").read_text())
    assert data["policy"] == "act" and data["image_size"] == list(c.image_size)
    assert ACTConfig.load_json(tmp_path / "config.json") == c
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.lr = 1.0


@pytest.mark.parametrize("seed", [-1, 2**32, 2**64])
def test_a_seed_out_of_range_names_seed(seed):
    with pytest.raises(ValueError, match=r"ACTConfig\.seed: must be in 0\.\.4294967295"):
        load_config("act", "cpu", [f"seed={seed}"])


def test_pretrained_weights_are_one_switch_under_any_profile():
    # The cpu profile trains from scratch (GroupNorm, dataset statistics); ImageNet weights need
    # frozen batch norm and ImageNet normalization, which the switch brings along.
    config = load_config("act", "cpu", ["pretrained_backbone_path=torchvision"])
    assert config.backbone_norm == "frozen_batchnorm" and config.image_norm == "imagenet"
    # Set alongside (or after) the switch, a choice is the user's: image_norm may differ...
    config = load_config(
        "act", "cpu", ["pretrained_backbone_path=torchvision", "image_norm=dataset"]
    )
    assert config.backbone_norm == "frozen_batchnorm" and config.image_norm == "dataset"
    # ...and an impossible pair is still refused, with the fix.
    with pytest.raises(ValueError, match="backbone_norm = 'frozen_batchnorm'"):
        load_config(
            "act", "cpu", ["pretrained_backbone_path=torchvision", "backbone_norm=groupnorm"]
        )
    # Without the switch nothing changes.
    assert load_config("act", "cpu").backbone_norm == "groupnorm"
    assert load_config("act", "cpu", ["pretrained_backbone_path=none"]).backbone_norm == "groupnorm"
