"""Live round trips through LeRobot itself (``pytest -m interop``, where ``lerobot`` imports).

LeRobot 0.6 needs Python >= 3.12: install this package beside it, e.g.
``python3.12 -m venv lr && lr/bin/pip install "lerobot[dataset]==0.6.1" -e ".[dev]"``, then
``lr/bin/python -m pytest -m interop tests/interop``.
"""

import numpy as np
import pytest
import torch

from aloha_bench import keys, policies
from aloha_bench.data.store import EpisodeStore
from aloha_bench.interop import export_lerobot, import_lerobot, to_lerobot
from tests.interop.test_lerobot_dataset import make_store
from tests.interop.test_lerobot_policy import observation, saved_policy

pytestmark = pytest.mark.interop
lerobot = pytest.importorskip("lerobot")


def lerobot_chunk(folder, obs: dict[str, np.ndarray]) -> np.ndarray:
    """LeRobot's own prediction: from_pretrained (strict) + its processors."""
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors

    policy = ACTPolicy.from_pretrained(folder, strict=True)
    pre, post = make_pre_post_processors(policy.config, pretrained_path=str(folder))
    frame = {}
    for key, value in obs.items():
        tensor = torch.from_numpy(value)
        if tensor.dtype == torch.uint8:  # (H, W, 3) uint8 -> (3, H, W) in [0, 1], LeRobot's input
            tensor = tensor.permute(2, 0, 1).float() / 255.0
        frame[key] = tensor
    with torch.no_grad():
        return post(policy.predict_action_chunk(pre(frame)))[0].numpy()


@pytest.mark.parametrize("source", ["synthetic", "sim"])
def test_converted_store_loads_in_lerobot_dataset(tmp_path, source):
    """Identical joints; images within AV1 codec error (``-s`` prints it)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from aloha_bench.cli import main

    path = tmp_path / "s.zarr"
    if source == "sim":
        args = ["--task", "transfer_cube", "--episodes", "1", "--out", str(path)]
        assert main(["generate", *args, "--cameras", "top", "--image-size", "96x128"]) == 0
    else:
        make_store(path)
    store = EpisodeStore.open(path)
    to_lerobot(store.path, tmp_path / "lr")
    dataset = LeRobotDataset("aloha_bench/live", root=tmp_path / "lr")
    assert len(dataset) == store.n_steps and dataset.num_episodes == store.n_episodes
    items = [dataset[i] for i in range(len(dataset))]
    actions = np.stack([item["action"].numpy() for item in items])
    states = np.stack([item[keys.STATE].numpy() for item in items])
    np.testing.assert_array_equal(actions, store.read_all(keys.ACTION))
    np.testing.assert_array_equal(states, store.read_all(keys.STATE))
    image = keys.image_key("top")
    frames = np.stack([item[image].numpy().transpose(1, 2, 0) for item in items]) * 255
    error = np.abs(frames - store.read_rows(image, slice(0, store.n_steps)))
    psnr = 10 * np.log10(255**2 / np.mean(error**2))
    print(
        f"\n{source}: {len(items)} frames {frames.shape[1:3]}, joints identical, image error "
        f"mean {error.mean():.2f}/255, p99 {np.percentile(error, 99):.0f}, PSNR {psnr:.1f} dB"
    )
    assert error.mean() < 4.0


@pytest.mark.parametrize(
    ("overrides", "units"),
    [
        ({"obs_mode": "state"}, "radians"),
        ({"backbone_norm": "frozen_batchnorm", "cameras": ["top", "front"]}, "radians"),
        (
            {"obs_mode": "state", "n_decoder_layers": 2, "use_first_decoder_layer_only": True},
            "range",
        ),
    ],
    ids=["state", "pixels", "first-decoder-layer-range"],
)
def test_exported_act_predicts_the_same_chunk_in_lerobot(tmp_path, overrides, units):
    from aloha_bench.interop.lerobot_dataset import load_joint_ranges
    from aloha_bench.lerobot_units import rad_to_lerobot
    from tests.interop.test_lerobot_policy import CALIBRATION

    run = saved_policy(tmp_path, **overrides)
    calibration = None if units == "radians" else CALIBRATION
    export_lerobot(run, tmp_path / "lr", units=units, calibration=calibration)
    ours = policies.load(run)
    obs = observation(ours.config)
    chunk = ours.predict_chunk(obs)
    if calibration is not None:
        ranges = load_joint_ranges(calibration)
        obs[keys.STATE] = rad_to_lerobot(obs[keys.STATE], units, ranges).astype(np.float32)
        chunk = rad_to_lerobot(chunk, units, ranges)
    theirs = lerobot_chunk(tmp_path / "lr", obs)
    print(f"\nmax |LeRobot - ours| over the chunk: {np.abs(theirs - chunk).max():.2e} ({units})")
    np.testing.assert_allclose(theirs, chunk, atol=1e-3, rtol=0)


def test_lerobot_act_imports_with_the_same_chunk(tmp_path):
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors

    torch.manual_seed(0)
    config = ACTConfig(
        input_features={
            keys.STATE: PolicyFeature(FeatureType.STATE, (12,)),
            "observation.images.top": PolicyFeature(FeatureType.VISUAL, (3, 32, 32)),
        },
        output_features={keys.ACTION: PolicyFeature(FeatureType.ACTION, (12,))},
        chunk_size=5,
        n_action_steps=5,
        dim_model=32,
        n_heads=2,
        dim_feedforward=64,
        n_encoder_layers=1,
        n_vae_encoder_layers=1,
        latent_dim=8,
        pretrained_backbone_weights=None,
        device="cpu",
        push_to_hub=False,
    )
    stats = {
        keys.STATE: {"mean": torch.randn(12), "std": torch.rand(12) + 0.1},
        keys.ACTION: {"mean": torch.randn(12), "std": torch.rand(12) + 0.1},
        "observation.images.top": {
            "mean": torch.full((3, 1, 1), 0.4),
            "std": torch.full((3, 1, 1), 0.2),
        },
    }
    policy = ACTPolicy(config)
    pre, post = make_pre_post_processors(config, dataset_stats=stats)
    folder = tmp_path / "pretrained_model"
    policy.save_pretrained(folder)
    pre.save_pretrained(folder)
    post.save_pretrained(folder)
    import_lerobot(folder, tmp_path / "ours", units="radians")
    ours = policies.load(tmp_path / "ours")
    obs = observation(ours.config)
    chunk, theirs = ours.predict_chunk(obs), lerobot_chunk(folder, obs)
    print(f"\nimported: max |LeRobot - ours| over the chunk: {np.abs(theirs - chunk).max():.2e}")
    np.testing.assert_allclose(chunk, theirs, atol=1e-5)
