"""The ACT network: shapes, token counts, the decoder-layer flag, the CVAE encoder's masking."""

import pytest
import torch

from aloha_bench.policies import load_config
from aloha_bench.policies.act.model import (
    ACT,
    DecoderLayer,
    EncoderLayer,
    feature_map_size,
    n_encoder_tokens,
    sine_embedding_2d,
    sinusoid_table,
)
from tests.policies.conftest import tiny_config


def _inputs(config, batch=2):
    torch.manual_seed(1)
    inputs = {"state": torch.randn(batch, 12), "latent": torch.randn(batch, config.latent_dim)}
    if config.obs_mode == "pixels":
        inputs["images"] = torch.randn(batch, len(config.cameras), 3, *config.image_size)
    else:
        inputs["environment_state"] = torch.randn(batch, 4)
    return inputs


def _encoder_tokens(model, inputs):
    seen = []
    hook = model.encoder[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape))
    with torch.no_grad():
        out = model(**inputs)
    hook.remove()
    return seen[0], out


@pytest.mark.parametrize("obs_mode", ["pixels", "state"])
def test_output_shapes(obs_mode):
    config = tiny_config(
        obs_mode=obs_mode, cameras=["top", "front"], chunk_size=7, n_action_steps=7
    )
    model = ACT(config, environment_state_dim=4)
    tokens, out = _encoder_tokens(model, _inputs(config, batch=3))
    assert out.shape == (3, 7, 12)
    assert tokens == (3, n_encoder_tokens(config), 32)
    assert n_encoder_tokens(config) == (2 + 2 * 1 * 1 if obs_mode == "pixels" else 3)


def test_paper_token_count_is_1202():
    paper = load_config("act", profile="paper")
    assert feature_map_size((480, 640)) == (15, 20) and feature_map_size((96, 128)) == (3, 4)
    assert n_encoder_tokens(paper) == 1202


def test_four_480x640_cameras_encode_to_1202_tokens():
    # The paper's cameras and images through the real backbone; a narrow transformer keeps it fast.
    config = tiny_config(
        cameras=["top", "front", "left_wrist", "right_wrist"], image_size=[480, 640]
    )
    tokens, _ = _encoder_tokens(ACT(config), _inputs(config, batch=1))
    assert tokens == (1, 1202, 32)


@pytest.mark.slow
def test_paper_model_forward_and_size():
    config = load_config("act", profile="paper")
    model = ACT(config).eval()
    n_params = sum(p.numel() for p in model.parameters())
    assert 80e6 < n_params < 90e6  # the paper: ~80 M
    tokens, out = _encoder_tokens(model, _inputs(config, batch=1))
    assert tokens == (1, 1202, 512) and out.shape == (1, 100, 12)


def test_wrong_image_size_is_reported():
    config = tiny_config()
    inputs = _inputs(config)
    inputs["images"] = torch.randn(2, 1, 3, 64, 64)
    with pytest.raises(ValueError, match="image_size"):
        ACT(config)(**inputs)


def test_every_decoder_layer_counts_unless_the_original_bug_is_reproduced():
    for first_only in (False, True):
        config = tiny_config(n_decoder_layers=3, use_first_decoder_layer_only=first_only)
        model = ACT(config).eval()
        inputs = _inputs(config)
        model(**inputs).sum().backward()
        got_grad = [layer.ffn.fc1.weight.grad is not None for layer in model.decoder]
        assert got_grad == ([True, False, False] if first_only else [True, True, True])
        before = model(**inputs)
        with torch.no_grad():
            model.decoder[2].ffn.fc2.bias.add_(1.0)
        assert torch.equal(before, model(**inputs)) == first_only


def test_cvae_encoder_ignores_padded_actions():
    config = tiny_config(chunk_size=6, n_action_steps=6)
    model = ACT(config).eval()
    state, actions = torch.randn(2, 12), torch.randn(2, 6, 12)
    is_pad = torch.zeros(2, 6, dtype=torch.bool)
    is_pad[:, 4:] = True
    mu, log_var = model.encode_posterior(state, actions, is_pad)
    changed = actions.clone()
    changed[:, 4:] = 1e3
    mu2, log_var2 = model.encode_posterior(state, changed, is_pad)
    torch.testing.assert_close(mu, mu2)
    torch.testing.assert_close(log_var, log_var2)
    assert mu.shape == log_var.shape == (2, config.latent_dim)


def test_first_token_only_equals_the_full_layers_first_token():
    layer = EncoderLayer(tiny_config()).eval()
    x, pos = torch.randn(2, 9, 32), torch.randn(1, 9, 32)
    torch.testing.assert_close(layer(x, pos, first_token_only=True), layer(x, pos)[:, :1])


@pytest.mark.parametrize("training", [False, True])
def test_the_first_decoder_layer_on_zeros_equals_the_full_layer(training):
    """x = None (DETR's all-zero start) computes the self-attention once for the batch: the same
    output as the full layer on zeros, dropout included (same draws in the same order)."""
    layer = DecoderLayer(tiny_config(dropout=0.3)).train(training)
    with torch.no_grad():
        layer.self_attn.v_proj.bias.normal_()  # nonzero, so the values matter
    query_pos, memory, memory_pos = (
        torch.randn(1, 10, 32),
        torch.randn(3, 4, 32),
        torch.randn(1, 4, 32),
    )
    torch.manual_seed(0)
    full = layer(torch.zeros(3, 10, 32), query_pos, memory, memory_pos)
    torch.manual_seed(0)
    short = layer(None, query_pos, memory, memory_pos)
    torch.testing.assert_close(short, full)
    if training:  # the gradients reach the same parameters
        short.sum().backward()
        assert layer.self_attn.q_proj.weight.grad is not None
        assert layer.self_attn.v_proj.bias.grad.abs().sum() > 0


def test_position_embeddings():
    table = sinusoid_table(10, 8)
    assert table.shape == (10, 8) and torch.equal(table[0, 1::2], torch.ones(4))
    grid = sine_embedding_2d(3, 4, 16)
    assert grid.shape == (12, 16)
    # The first half encodes the row only, the second half the column only.
    assert torch.equal(grid[0, :8], grid[3, :8]) and torch.equal(grid[0, 8:], grid[4, 8:])
    assert len({tuple(row.tolist()) for row in grid}) == 12


def test_dropout_keeps_one_minus_p_and_rescales():
    from aloha_bench.policies.act.model import dropout

    torch.manual_seed(0)
    x = torch.ones(400_000)
    y = dropout(x, 0.1, training=True)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.9) < 0.003
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.9))
    assert dropout(x, 0.1, training=False) is x
    assert dropout(x, 0.0, training=True) is x
    bf16 = dropout(x.bfloat16().view(400, 1000), 0.3, training=True)
    assert bf16.dtype == torch.bfloat16 and bf16.shape == (400, 1000)
    assert abs((bf16 != 0).float().mean().item() - 0.7) < 0.005


def test_dropout_draws_from_torch_seed():
    from aloha_bench.policies.act.model import dropout

    x = torch.ones(3, 50, 64)
    torch.manual_seed(7)
    first = dropout(x, 0.2, training=True)
    torch.manual_seed(7)
    assert dropout(x, 0.2, training=True).equal(first)
    assert not dropout(x, 0.2, training=True).equal(first)


def test_attention_training_path_matches_the_fused_one(monkeypatch):
    # With its dropout made the identity, the explicit training path (product, mask, softmax)
    # must compute what scaled_dot_product_attention computes at inference.
    from aloha_bench.policies.act import model as act_model

    torch.manual_seed(0)
    attn = act_model.Attention(32, 4, dropout=0.1)
    q, kv = torch.randn(2, 5, 32), torch.randn(2, 7, 32)
    mask = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    mask[1, ..., 5:] = False
    attn.eval()
    fused = attn(q, kv, kv, mask)
    monkeypatch.setattr(act_model, "dropout", lambda x, p, training: x)
    attn.train()
    assert torch.allclose(attn(q, kv, kv, mask), fused, atol=1e-5)
