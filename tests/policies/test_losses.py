"""ACT's loss terms as pure functions, checked against closed forms and by hand."""

import torch

from aloha_bench.policies.act.losses import act_loss, kl_to_standard_normal, masked_l1


def test_kl_matches_torch_distributions():
    torch.manual_seed(0)
    mu, log_var = torch.randn(5, 8), torch.randn(5, 8)
    posterior = torch.distributions.Normal(mu, (0.5 * log_var).exp())
    prior = torch.distributions.Normal(torch.zeros(5, 8), torch.ones(5, 8))
    expected = torch.distributions.kl_divergence(posterior, prior).sum(-1).mean()
    torch.testing.assert_close(kl_to_standard_normal(mu, log_var), expected)
    assert kl_to_standard_normal(torch.zeros(3, 4), torch.zeros(3, 4)) == 0


def test_l1_is_the_mean_over_non_padded_steps():
    predicted = torch.zeros(1, 3, 2)
    target = torch.tensor([[[1.0, 3.0], [2.0, 2.0], [100.0, 100.0]]])
    is_pad = torch.tensor([[False, False, True]])
    assert masked_l1(predicted, target, is_pad) == (1 + 3 + 2 + 2) / 4
    assert masked_l1(predicted, target) == target.mean()


def test_padded_targets_do_not_move_the_loss():
    torch.manual_seed(0)
    predicted = torch.randn(4, 6, 12, requires_grad=True)
    target = torch.randn(4, 6, 12)
    is_pad = torch.zeros(4, 6, dtype=torch.bool)
    is_pad[:, 4:] = True
    is_pad[0, 1:] = True
    changed = target.clone()
    changed[is_pad] = torch.tensor(float("nan"))
    loss = masked_l1(predicted, target, is_pad)
    assert torch.equal(loss, masked_l1(predicted, changed, is_pad))
    loss.backward()
    assert torch.all(predicted.grad[is_pad] == 0)


def test_total_is_l1_plus_weighted_kl():
    torch.manual_seed(0)
    p, t = torch.randn(2, 3, 12), torch.randn(2, 3, 12)
    mu, log_var = torch.randn(2, 4), torch.randn(2, 4)
    loss, parts = act_loss(p, t, None, mu, log_var, kl_weight=10.0)
    torch.testing.assert_close(loss, parts["l1"] + 10.0 * parts["kl"])
    loss, parts = act_loss(p, t, None, None, None, kl_weight=10.0)
    assert torch.equal(loss, parts["l1"]) and parts["kl"] == 0
