"""Success rates with honest uncertainty (L0: standard library only).

The Wilson score interval (Wilson 1927; recommended over the normal approximation by Brown, Cai
and DasGupta 2001, "Interval Estimation for a Binomial Proportion") stays inside [0, 1] and keeps
its coverage at the 0% and 100% rates that small evaluations of robot policies often produce,
where the normal ("Wald") interval collapses to a width of zero.
"""

from __future__ import annotations

import math
from statistics import NormalDist

__all__ = ["z_score", "wilson_interval"]


def z_score(confidence: float = 0.95) -> float:
    """The two-sided standard normal quantile of ``confidence`` (1.95996... for 0.95)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``successes / trials``.

    Returns:
        (low, high), both in [0, 1]. With no trials the rate is unknown: (0.0, 1.0).

    Raises:
        ValueError: negative counts or more successes than trials.
    """
    if trials < 0 or successes < 0 or successes > trials:
        raise ValueError(
            f"need 0 <= successes <= trials, got successes={successes}, trials={trials}"
        )
    if trials == 0:
        return 0.0, 1.0
    z = z_score(confidence)
    p = successes / trials
    z2n = z * z / trials
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z / (1.0 + z2n) * math.sqrt(p * (1.0 - p) / trials + z2n / (4.0 * trials))
    # The interval contains p; rounding can put an end a hair past it (300 of 300 gave a high of
    # 1 - 2e-16, below the rate itself, and a negative error bar) or outside [0, 1].
    return min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half))
