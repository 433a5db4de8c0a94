"""ACT's training objective as pure functions (Zhao et al. 2023, Algorithm 1).

loss = L1(predicted chunk, demonstrated chunk) + beta * KL(q(z | state, actions) || N(0, I)).
"""

from __future__ import annotations

import torch


def masked_l1(
    predicted: torch.Tensor, target: torch.Tensor, is_pad: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean absolute error over the non-padded steps only.

    Padded steps (past the episode's end, ``is_pad`` True) neither add error nor count in the
    mean, so a window near the end weighs like any other. (The original code and LeRobot zero the
    padded errors but still divide by every step, which shrinks the L1 of late windows against
    the KL term.)

    Args:
        predicted: (B, K, A) actions.
        target: (B, K, A) actions.
        is_pad: (B, K) bool, True where the target is padding; None means no padding.

    Returns:
        A scalar.
    """
    error = (predicted - target).abs()  # (B, K, A)
    if is_pad is None:
        return error.mean()
    valid = (~is_pad).unsqueeze(-1).to(error.dtype)  # (B, K, 1)
    # where(), not a product, so a NaN or inf target on a padded step cannot leak into the loss.
    error = torch.where(valid.bool(), error, torch.zeros_like(error))
    return error.sum() / (valid.sum() * error.shape[-1]).clamp(min=1.0)


def kl_to_standard_normal(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(log_var))) || N(0, I)) in closed form, summed over z, mean over batch.

    KL = 1/2 * sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2), per sample; the original ACT code
    reduces it the same way (sum over the latent dimensions, mean over the batch).

    Args:
        mu: (B, L) posterior means.
        log_var: (B, L) posterior log variances.

    Returns:
        A scalar.
    """
    per_dim = 0.5 * (mu.square() + log_var.exp() - 1.0 - log_var)  # (B, L)
    return per_dim.sum(dim=-1).mean()


def act_loss(
    predicted: torch.Tensor,
    target: torch.Tensor,
    is_pad: torch.Tensor | None,
    mu: torch.Tensor | None,
    log_var: torch.Tensor | None,
    kl_weight: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total ACT loss: L1 + kl_weight * KL (L1 alone when there is no posterior, ``mu`` None).

    Returns:
        (loss, {"l1": ..., "kl": ...}) with every entry a scalar tensor.
    """
    l1 = masked_l1(predicted, target, is_pad)
    if mu is None:
        return l1, {"l1": l1, "kl": torch.zeros_like(l1)}
    kl = kl_to_standard_normal(mu, log_var)
    return l1 + kl_weight * kl, {"l1": l1, "kl": kl}
