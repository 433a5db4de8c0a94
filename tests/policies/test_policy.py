"""ACTPolicy: the interface, action queueing, temporal ensembling, saving, normalization."""

import numpy as np
import pytest
import torch

from aloha_bench import keys
from aloha_bench.policies import ACTPolicy, load, make_policy
from aloha_bench.policies.act.model import Backbone, BackboneWeightsError
from aloha_bench.policies.chunking import TemporalEnsembler
from tests.policies.conftest import ENV_DIM, fake_stats, tiny_config


def _obs(config, seed=0):
    rng = np.random.default_rng(seed)
    obs = {keys.STATE: rng.normal(size=12).astype(np.float32)}
    if config.obs_mode == "state":
        obs[keys.ENVIRONMENT_STATE] = rng.normal(size=ENV_DIM).astype(np.float32)
    for key in config.image_keys:
        obs[key] = rng.integers(0, 256, (*config.image_size, 3), dtype=np.uint8)
    return obs


def _batch(config, batch=3):
    rng = np.random.default_rng(0)
    out = {
        keys.STATE: torch.randn(batch, 12),
        keys.ACTION: torch.randn(batch, config.chunk_size, 12),
        keys.ACTION_IS_PAD: torch.zeros(batch, config.chunk_size, dtype=torch.bool),
        keys.ENVIRONMENT_STATE: torch.randn(batch, ENV_DIM),
    }
    for key in config.image_keys:
        out[key] = torch.from_numpy(rng.integers(0, 256, (batch, *config.image_size, 3), np.uint8))
    return out


def _count_predictions(policy, monkeypatch):
    calls = []
    predict = policy.predict_chunk

    def counted(obs):
        calls.append(1)
        return predict(obs)

    monkeypatch.setattr(policy, "predict_chunk", counted)
    return calls


def test_select_action_plays_out_n_action_steps_per_chunk(monkeypatch):
    config = tiny_config(obs_mode="state", chunk_size=5, n_action_steps=3)
    policy = make_policy(config, fake_stats())
    calls = _count_predictions(policy, monkeypatch)
    obs = _obs(config)
    chunk = policy.predict_chunk(obs)
    actions = [policy.select_action(obs) for _ in range(7)]
    assert len(calls) == 1 + 3  # the direct call, then steps 0, 3 and 6
    assert actions[0].shape == (12,) and actions[0].dtype == np.float32
    np.testing.assert_allclose(np.stack(actions[:3]), chunk[:3], rtol=1e-6)
    policy.reset()
    policy.select_action(obs)
    assert len(calls) == 5  # reset empties the queue


def test_temporal_ensembling_matches_a_hand_computation():
    m = 0.5
    ensembler = TemporalEnsembler(coeff=m, chunk_size=3)
    chunks = [np.full((3, 1), 10.0 * (s + 1)) + np.arange(3)[:, None] for s in range(4)]
    # Chunk s predicts step s + j as 10 (s + 1) + j.
    out = [ensembler.update(c) for c in chunks]
    assert out[0] == pytest.approx(10.0)
    # Step 1: chunk 0 (oldest, weight 1) says 11, chunk 1 (weight e^-m) says 20.
    assert out[1] == pytest.approx((11 + np.exp(-m) * 20) / (1 + np.exp(-m)))
    # Step 2: chunks 0, 1, 2 say 12, 21, 30 with weights 1, e^-m, e^-2m.
    w = np.exp(-m * np.arange(3))
    assert out[2] == pytest.approx((w @ [12, 21, 30]) / w.sum())
    # Step 3: chunk 0 has run out (K = 3); chunks 1, 2, 3 say 22, 31, 40.
    assert out[3] == pytest.approx((w @ [22, 31, 40]) / w.sum())
    ensembler.reset()
    assert ensembler.update(chunks[3]) == pytest.approx(40.0)


def test_ensembling_policy_predicts_every_step(monkeypatch):
    config = tiny_config(
        obs_mode="state", chunk_size=4, n_action_steps=1, temporal_ensemble_coeff=0.01
    )
    policy = make_policy(config, fake_stats())
    calls = _count_predictions(policy, monkeypatch)
    obs = [_obs(config, seed) for seed in range(3)]
    chunks = [policy.predict_chunk(o) for o in obs]
    calls.clear()
    actions = [policy.select_action(o) for o in obs]
    assert len(calls) == 3
    w = np.exp(-0.01 * np.arange(3))
    expected = (w[:, None] * np.stack([chunks[0][2], chunks[1][1], chunks[2][0]])).sum(0) / w.sum()
    np.testing.assert_allclose(actions[2], expected, rtol=1e-5)


@pytest.mark.parametrize("obs_mode", ["pixels", "state"])
def test_save_load_gives_identical_actions(tmp_path, obs_mode):
    config = tiny_config(obs_mode=obs_mode, cameras=["top", "front"])
    torch.manual_seed(0)
    policy = make_policy(config, fake_stats())
    policy.save(tmp_path / "ckpt")
    loaded = load(tmp_path / "ckpt")
    assert isinstance(loaded, ACTPolicy) and loaded.config == config
    obs = _obs(config)
    np.testing.assert_array_equal(policy.predict_chunk(obs), loaded.predict_chunk(obs))
    for key, stat in policy.normalizer.to_stats().items():
        np.testing.assert_array_equal(stat["mean"], loaded.normalizer.to_stats()[key]["mean"])
    with pytest.raises(FileNotFoundError, match="no saved policy"):
        load(tmp_path / "empty")


def test_load_can_switch_temporal_ensembling_only(tmp_path):
    make_policy(tiny_config(obs_mode="state"), fake_stats()).save(tmp_path / "ckpt")
    ensembling = {"temporal_ensemble_coeff": 0.01, "n_action_steps": 1}
    policy = load(tmp_path / "ckpt", overrides=ensembling)
    assert policy.config.temporal_ensemble_coeff == 0.01 and policy.config.n_action_steps == 1
    assert policy.select_action(_obs(policy.config)).shape == (12,)
    with pytest.raises(ValueError, match="fixed by training"):
        load(tmp_path / "ckpt", overrides={"dim_model": 64})


def test_statistics_live_in_the_policy_and_std_is_clamped():
    stats = fake_stats()
    stats[keys.ACTION] = {"mean": np.full(12, 2.0), "std": np.r_[np.zeros(1), np.full(11, 3.0)]}
    policy = make_policy(tiny_config(obs_mode="state"), stats)
    saved = policy.normalizer.to_stats()[keys.ACTION]
    assert saved["std"][0] == pytest.approx(1e-2) and saved["std"][1] == 3.0
    names = set(policy.state_dict())
    assert "normalizer.stats.action.mean" in names and "normalizer.stats.action.std" in names
    action = torch.full((1, 12), 5.0)
    normalized = policy.normalizer.normalize(keys.ACTION, action)
    assert normalized[0, 1] == pytest.approx(1.0)
    torch.testing.assert_close(policy.normalizer.unnormalize(keys.ACTION, normalized), action)
    with pytest.raises(KeyError, match="environment_state"):
        make_policy(tiny_config(obs_mode="state"), {k: stats[k] for k in (keys.ACTION, keys.STATE)})


def test_imagenet_image_statistics_need_no_dataset_stats():
    config = tiny_config(image_norm="imagenet")
    stats = {k: v for k, v in fake_stats().items() if not k.startswith("observation.images")}
    policy = make_policy(config, stats)
    mean = policy.normalizer.to_stats()[keys.image_key("top")]["mean"]
    np.testing.assert_allclose(mean, [0.485, 0.456, 0.406])


def test_compute_loss_metrics_and_no_cvae():
    config = tiny_config(obs_mode="state")
    policy = make_policy(config, fake_stats())
    loss, metrics = policy.compute_loss(_batch(config))
    assert loss.requires_grad and set(metrics) == {"loss", "l1", "kl"}
    assert metrics["loss"] == pytest.approx(metrics["l1"] + 10.0 * metrics["kl"], rel=1e-5)
    policy.eval()
    _, metrics = policy.compute_loss(_batch(config))
    assert "l1_prior" in metrics
    no_cvae = make_policy(tiny_config(obs_mode="state", use_vae=False), fake_stats())
    assert not any(name.startswith("model.vae") for name in no_cvae.state_dict())
    loss, metrics = no_cvae.compute_loss(_batch(config))
    assert metrics["kl"] == 0 and metrics["loss"] == pytest.approx(metrics["l1"])


def test_pretrained_backbone_from_local_files(tmp_path, monkeypatch, capsys):
    from safetensors.torch import save_file
    from torchvision.models import resnet18

    weights = resnet18().state_dict()
    torch.save(weights, tmp_path / "r18.pth")
    save_file({k: v.contiguous() for k, v in weights.items()}, tmp_path / "r18.safetensors")
    for name in ("r18.pth", "r18.safetensors"):
        config = tiny_config(
            pretrained_backbone_path=str(tmp_path / name), backbone_norm="frozen_batchnorm"
        )
        body = Backbone(config).body
        torch.testing.assert_close(body[0].weight, weights["conv1.weight"])
        torch.testing.assert_close(body[1].running_var, weights["bn1.running_var"])
    with pytest.raises(FileNotFoundError, match="local .pth"):
        Backbone(
            tiny_config(pretrained_backbone_path="missing.pth", backbone_norm="frozen_batchnorm")
        )

    def offline(*_args, **_kwargs):
        print('Downloading: "https://download.pytorch.org/models/resnet18-f37072fd.pth"')
        raise OSError("no network")

    monkeypatch.setattr("torchvision.models.ResNet18_Weights.get_state_dict", offline)
    with pytest.raises(BackboneWeightsError, match="pass its local path") as err:
        Backbone(
            tiny_config(pretrained_backbone_path="torchvision", backbone_norm="frozen_batchnorm")
        )
    # One clear line offline: no chained tracebacks, no download announcement.
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert "Downloading" not in capsys.readouterr().out


def test_bf16_inference_copy_gives_autocast_actions_and_never_goes_stale(monkeypatch):
    monkeypatch.setenv("ALOHA_BENCH_BF16", "always")  # bf16 also where it is not native
    config = tiny_config(precision="bf16")
    policy = make_policy(config, fake_stats())
    obs = _obs(config)

    def autocast_over_fp32_weights():
        with torch.inference_mode(), policy.autocast():
            inputs = policy.preprocess(policy.observation_batch(obs))
            out = policy.model(latent=policy.zero_latent(1), **inputs)
        return policy.normalizer.unnormalize(keys.ACTION, out.float())[0].numpy()

    first = policy.predict_chunk(obs)
    np.testing.assert_array_equal(first, autocast_over_fp32_weights())
    copy = policy.inference_model()
    assert copy is not policy.model and copy.action_head.weight.dtype == torch.float32
    assert policy.model.action_head.weight.dtype == torch.float32
    assert not any(k.startswith("_bf16") for k in policy.state_dict())
    # A training step changes the weights: the copy must follow.
    policy.train()
    with torch.no_grad():
        policy.model.state_proj.weight.add_(1.0)
    second = policy.predict_chunk(obs)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(second, autocast_over_fp32_weights())
    # Loading other weights drops the copy too.
    other = make_policy(config, fake_stats())
    policy.load_state_dict(other.state_dict())
    np.testing.assert_array_equal(policy.predict_chunk(obs), other.predict_chunk(obs))


def test_random_shift_moves_each_image_by_at_most_pad_pixels():
    import torch

    from aloha_bench.policies.act.policy import random_shift

    torch.manual_seed(0)
    # A single bright pixel per image: after the shift it sits within 2 px of where it was.
    images = torch.zeros(4, 2, 3, 16, 20)
    images[..., 8, 10] = 1.0
    shifted = random_shift(images, 2)
    assert shifted.shape == images.shape
    moves = set()
    for b in range(4):
        for n in range(2):
            y, x = (shifted[b, n, 0] == 1.0).nonzero()[0].tolist()
            assert abs(y - 8) <= 2 and abs(x - 10) <= 2
            moves.add((y, x))
    assert len(moves) > 1  # shifted independently, not one offset for the batch
    torch.manual_seed(0)
    assert torch.equal(random_shift(images, 2), shifted)  # torch's seed repeats it


def test_random_shift_is_training_only_and_validated():
    with pytest.raises(ValueError, match="image_shift_px"):
        tiny_config(image_shift_px=-1)
    with pytest.raises(ValueError, match="image_shift_px"):
        tiny_config(image_shift_px=32, image_size=[64, 64])
    config = tiny_config(image_shift_px=4)
    policy = make_policy(config, fake_stats())
    batch = _batch(config)
    policy.train()
    torch.manual_seed(0)
    trained = policy.compute_loss(batch)[1]["l1"]
    torch.manual_seed(0)
    assert policy.compute_loss(batch)[1]["l1"] == trained  # seeded: the same shifts
    policy.eval()
    # Deterministic in eval mode: no shift (and no dropout) between two identical calls.
    assert policy.compute_loss(batch)[1]["l1"] == policy.compute_loss(batch)[1]["l1"]
