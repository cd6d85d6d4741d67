"""A/B/n experiments inside flows: per variant conversion and revenue per recipient,
significance against the control (the first variant listed in the step) and sample-size
warnings. Pure: arrays in, dataclasses out (docs/attribution.md#experiments).

- Conversion: a two-proportion z-test (pooled standard error), two-sided.
- Revenue per recipient: Welch's t-test (unequal variances) on the per-recipient net
  revenue, with a Welch-Satterthwaite interval on the difference of means.
- Warnings: an arm with fewer than `MIN_PER_ARM` recipients, and an experiment too small
  to detect a `DETECTABLE_LIFT` relative change of the control's conversion rate with 80%
  power at the 5% level (the recipients needed per arm are reported).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from boomerang.campaigns.attribution import proportion_diff, welch_interval

__all__ = [
    "DETECTABLE_LIFT",
    "MIN_PER_ARM",
    "Arm",
    "Comparison",
    "ExperimentResult",
    "VariantStats",
    "analyse",
    "minimum_detectable_effect",
    "required_per_arm",
    "two_proportion_ztest",
]

MIN_PER_ARM = 100
#: The relative change of the control's conversion rate the power check asks for.
DETECTABLE_LIFT = 0.20
ALPHA = 0.05
POWER = 0.80


def two_proportion_ztest(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    """(z, two-sided p) for H0: p1 == p2, with the pooled standard error.
    z is 0 and p is 1 when the pooled rate is 0 or 1 (nothing to tell apart)."""
    if n1 <= 0 or n2 <= 0:
        raise ValueError("both groups need recipients")
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0.0:
        return 0.0, 1.0
    z = (x1 / n1 - x2 / n2) / se
    return z, float(2 * stats.norm.sf(abs(z)))


def required_per_arm(
    base_rate: float, relative_lift: float = DETECTABLE_LIFT, alpha: float = ALPHA,
    power: float = POWER,
) -> int | None:  # fmt: skip
    """Recipients per arm a two-sided two-proportion test needs to detect a change of
    ``base_rate`` to ``base_rate * (1 + relative_lift)`` (Fleiss, without continuity
    correction); None when the rates make no sense (0, or beyond 1)."""
    p1, p2 = base_rate, base_rate * (1 + relative_lift)
    if not (0 < p1 < 1 and 0 < p2 < 1) or p1 == p2:
        return None
    za, zb = float(stats.norm.ppf(1 - alpha / 2)), float(stats.norm.ppf(power))
    bar = (p1 + p2) / 2
    need = (
        za * math.sqrt(2 * bar * (1 - bar)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    ) ** 2 / (p2 - p1) ** 2
    return math.ceil(need)


def minimum_detectable_effect(
    base_rate: float, per_arm: int, alpha: float = ALPHA, power: float = POWER
) -> float | None:
    """The smallest absolute difference in conversion rate detectable with ``per_arm``
    recipients in each of two arms (normal approximation at the base rate)."""
    if per_arm <= 0 or not 0 < base_rate < 1:
        return None
    za, zb = float(stats.norm.ppf(1 - alpha / 2)), float(stats.norm.ppf(power))
    return (za + zb) * math.sqrt(2 * base_rate * (1 - base_rate) / per_arm)


@dataclass(frozen=True)
class Arm:
    """One variant's recipients: per recipient, net revenue (minor units) and orders in
    the experiment's window."""

    name: str
    revenue_minor: np.ndarray
    orders: np.ndarray


@dataclass(frozen=True)
class VariantStats:
    name: str
    recipients: int
    conversions: int  # recipients with at least one order in the window
    conversion_rate: float | None
    orders: int
    revenue_minor: int
    revenue_per_recipient_minor: float | None


@dataclass(frozen=True)
class Comparison:
    """``variant`` against ``control``: differences are variant minus control."""

    variant: str
    control: str
    conversion_diff: float | None
    conversion_diff_low: float | None
    conversion_diff_high: float | None
    z: float | None
    conversion_p_value: float | None
    revenue_per_recipient_diff_minor: float | None
    revenue_per_recipient_low_minor: float | None
    revenue_per_recipient_high_minor: float | None
    revenue_p_value: float | None
    significant: bool  # conversion or revenue p < 0.05


@dataclass
class ExperimentResult:
    variants: list[VariantStats]
    comparisons: list[Comparison]
    required_per_arm: int | None
    warnings: list[str] = field(default_factory=list)


def _variant(arm: Arm) -> VariantStats:
    n = len(arm.revenue_minor)
    conversions = int(np.count_nonzero(np.asarray(arm.orders) > 0))
    revenue = int(np.sum(arm.revenue_minor)) if n else 0
    return VariantStats(
        name=arm.name,
        recipients=n,
        conversions=conversions,
        conversion_rate=conversions / n if n else None,
        orders=int(np.sum(arm.orders)) if n else 0,
        revenue_minor=revenue,
        revenue_per_recipient_minor=revenue / n if n else None,
    )


def _compare(arm: Arm, control: Arm, a: VariantStats, c: VariantStats) -> Comparison:
    if not a.recipients or not c.recipients:
        return Comparison(arm.name, control.name, None, None, None, None, None, None, None,
                          None, None, False)  # fmt: skip
    diff, low, high, _ = proportion_diff(a.conversions, a.recipients, c.conversions,
                                         c.recipients)  # fmt: skip
    z, p = two_proportion_ztest(a.conversions, a.recipients, c.conversions, c.recipients)
    rdiff, rlow, rhigh, rp = welch_interval(
        np.asarray(arm.revenue_minor, dtype=np.float64),
        np.asarray(control.revenue_minor, dtype=np.float64),
    )
    significant = p < ALPHA or (rp is not None and rp < ALPHA)
    return Comparison(arm.name, control.name, diff, low, high, z, p, rdiff, rlow, rhigh, rp,
                      significant)  # fmt: skip


def analyse(arms: list[Arm]) -> ExperimentResult:
    """Every variant against the first (the control), with warnings."""
    if len(arms) < 2:
        raise ValueError("an experiment needs at least two variants")
    variants = [_variant(a) for a in arms]
    control, c = arms[0], variants[0]
    comparisons = [_compare(a, control, v, c) for a, v in zip(arms[1:], variants[1:], strict=True)]
    warnings = [
        f"variant {v.name!r} has {v.recipients} recipients (fewer than {MIN_PER_ARM}): "
        "too few to judge"
        for v in variants
        if v.recipients < MIN_PER_ARM
    ]
    total = sum(v.recipients for v in variants)
    base = sum(v.conversions for v in variants) / total if total else 0.0
    if c.conversion_rate:
        base = c.conversion_rate
    need = required_per_arm(base)
    smallest = min(v.recipients for v in variants)
    if need is not None and smallest < need:
        early = any(c.significant for c in comparisons)
        warnings.append(
            f"underpowered: detecting a {DETECTABLE_LIFT:.0%} relative change of a "
            f"{base:.1%} conversion rate needs about {need:,} recipients per variant "
            f"(smallest has {smallest:,}); "
            + ("a significant result this early may overstate the effect" if early
               else "keep it running")
        )  # fmt: skip
    elif need is None and total and base == 0.0:
        warnings.append("no conversions yet: nothing to compare")
    return ExperimentResult(variants, comparisons, need, warnings)
