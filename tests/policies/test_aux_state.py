"""The auxiliary object-pose loss (``aux_state_weight``, an extension beyond the paper's ACT)."""

import csv
import math

import numpy as np
import pytest
import torch

from aloha_bench import keys
from aloha_bench.data.store import DatasetError, EpisodeStore
from aloha_bench.policies import load, load_config
from aloha_bench.policies.act.losses import act_loss
from aloha_bench.policies.act.policy import ACTPolicy
from aloha_bench.train import train
from tests.policies.conftest import ENV_DIM, fake_stats, tiny_config


def _batch(batch_size=2, chunk=5, size=32):
    generator = torch.Generator().manual_seed(0)
    return {
        keys.STATE: torch.randn(batch_size, 12, generator=generator),
        keys.ACTION: torch.randn(batch_size, chunk, 12, generator=generator),
        keys.ACTION_IS_PAD: torch.zeros(batch_size, chunk, dtype=torch.bool),
        keys.ENVIRONMENT_STATE: torch.randn(batch_size, ENV_DIM, generator=generator),
        keys.image_key("top"): torch.randint(
            0, 256, (batch_size, size, size, 3), dtype=torch.uint8, generator=generator
        ),
    }


def test_the_named_config_is_act_plus_the_extension():
    act = load_config("act", profile="cpu")
    aux = load_config("act_aux_state", profile="cpu")
    assert act.aux_state_weight == 0.0 and aux.aux_state_weight == 1.0
    differing = {name for name, value in act.to_dict().items() if aux.to_dict()[name] != value}
    assert differing == {"aux_state_weight"}
    # Training reads the object poses as the loss's target; acting never does.
    assert keys.ENVIRONMENT_STATE in aux.training_keys
    assert keys.ENVIRONMENT_STATE not in aux.input_keys
    assert act.training_keys == act.input_keys


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"obs_mode": "state", "aux_state_weight": 1.0}, "needs obs_mode = 'pixels'"),
        ({"aux_state_weight": -1.0}, "finite number >= 0"),
        ({"aux_state_weight": math.nan}, "finite number"),
        ({"aux_state_weight": math.inf}, "finite number"),
    ],
)
def test_bad_weights_are_refused(overrides, message):
    with pytest.raises(ValueError, match=f"aux_state_weight.*{message}"):
        tiny_config(**overrides)


def test_the_loss_adds_the_weighted_pose_error_and_trains_the_backbone():
    torch.manual_seed(0)
    config = tiny_config(aux_state_weight=0.5)
    policy = ACTPolicy(config, fake_stats())
    policy.eval()  # z = posterior mean: the two forward passes below see the same z
    batch = _batch()
    loss, metrics = policy.compute_loss(batch)
    inputs = policy.preprocess(batch)
    target = policy.normalizer.normalize(keys.ACTION, batch[keys.ACTION])
    mu, log_var = policy.model.encode_posterior(inputs["state"], target, None)
    actions, poses = policy.model(latent=mu, predict_environment_state=True, **inputs)
    assert poses.shape == (2, ENV_DIM)
    base, _ = act_loss(actions, target, None, mu, log_var, config.kl_weight)
    pose_target = policy.normalizer.normalize(keys.ENVIRONMENT_STATE, batch[keys.ENVIRONMENT_STATE])
    pose_l1 = (poses - pose_target).abs().mean()
    assert metrics["aux_state_l1"] == pytest.approx(pose_l1.item(), rel=1e-5)
    assert loss.item() == pytest.approx((base + 0.5 * pose_l1).item(), rel=1e-5)
    # The pose error alone reaches the backbone: that is the point of the extension.
    policy.zero_grad()
    policy.model(latent=mu, predict_environment_state=True, **inputs)[1].abs().mean().backward()
    grads = [p.grad for p in policy.backbone_parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_without_the_extension_there_is_no_head_and_no_pose_output():
    policy = ACTPolicy(tiny_config(), fake_stats())
    assert not hasattr(policy.model, "aux_state_head")
    inputs = policy.preprocess(_batch())
    with pytest.raises(ValueError, match="aux_state_weight > 0"):
        policy.model(latent=policy.zero_latent(2), predict_environment_state=True, **inputs)


def test_a_run_logs_the_pose_error_and_its_policy_acts_without_poses(tmp_path, pixels_store):
    run = tmp_path / "run"
    train(tiny_config(aux_state_weight=1.0, steps=3, val_every=3), pixels_store, run)
    with (run / "losses.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert all(float(row["aux_state_l1"]) > 0 for row in rows)
    assert rows[-1]["val_aux_state_l1"] != ""
    policy = load(run / "best")
    obs = {
        keys.STATE: np.zeros(12, np.float32),
        keys.image_key("top"): np.zeros((32, 32, 3), np.uint8),
    }
    assert policy.select_action(obs).shape == (12,)


def test_a_dataset_without_object_poses_is_refused_before_anything_is_written(tmp_path):
    # Recordings of the real rig store an environment state of width 0.
    path = tmp_path / "real.zarr"
    store = EpisodeStore.create(
        path,
        task_id="transfer_cube",
        task_version=1,
        obs_mode="pixels",
        cameras=("top",),
        image_size=(32, 32),
    )
    length = 10
    store.append_episode(
        {
            keys.STATE: np.zeros((length, 12), np.float32),
            keys.ACTION: np.zeros((length, 12), np.float32),
            keys.ENVIRONMENT_STATE: np.zeros((length, 0), np.float32),
            keys.image_key("top"): np.zeros((length, 32, 32, 3), np.uint8),
        },
        {"seed": 0, "success": True, "max_stage": 1, "source": "human", "strategy": "default"},
    )
    store.close()
    with pytest.raises(DatasetError, match="records no observation.environment_state.*aux_state"):
        train(tiny_config(aux_state_weight=1.0, steps=1), path, tmp_path / "run")
    assert not (tmp_path / "run").exists()
