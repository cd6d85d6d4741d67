"""Store lifecycle stage and business-type fit (seed 001), with transparent thresholds.

The stage is the most mature one whose every criterion the store meets; each criterion is
reported with its value and threshold, so the answer explains itself. The recommended focus
per stage follows SPEC §2 and seed 001.
"""

from __future__ import annotations

from dataclasses import dataclass, field

STAGES = ("startup", "traction", "consistent", "established", "stable")

FOCUS = {
    "startup": (
        "Acquisition first: almost all effort goes into finding customers.",
        [
            "Capture permission to contact visitors (welcome pop-up with a first-order offer)",
            "Send a next-order discount code with the first order",
        ],
    ),
    "traction": (
        "Keep acquiring, and start retention: bring previous customers back.",
        [
            "Start win-back / re-order emails to customers who bought once",
            "Post-purchase thank-you a week after the first order, with complementary products",
            "Invite guests to create an account after their first order",
        ],
    ),
    "consistent": (
        "Sales are steady: put retention programs in place and automate them.",
        [
            "Launch a two-sided referral program",
            "Launch a loyalty program (points for purchases, reviews, referrals)",
            "Automate welcome, post-purchase, cart-abandonment and win-back flows",
        ],
    ),
    "established": (
        "Growth now comes from lifetime value: invest seriously and deliberately in retention.",
        [
            "Segment customers (RFM) and target the at-risk segment before they leave",
            "Loyalty tiers with rewards for the best customers",
            "Replenishment reminders for consumables; personal recommendations",
        ],
    ),
    "stable": (
        "Retention is the main lever: most effort goes into keeping and growing customers.",
        [
            "Paid membership with clear benefits (free shipping, early access)",
            "Top-tier recognition and gifts for the most loyal customers",
            "Measure every campaign against a holdout group",
        ],
    ),
}


@dataclass(frozen=True)
class StageThresholds:
    """Minimums per stage (documented in docs/metrics.md)."""

    traction_age_months: float = 3
    traction_orders_per_month: float = 10
    consistent_age_months: float = 12
    consistent_orders_per_month: float = 100
    established_age_months: float = 24
    established_orders_per_month: float = 300
    established_repeat_share: float = 25.0
    stable_age_months: float = 36
    stable_repeat_share: float = 40.0
    stable_max_growth: float = 10.0  # growth has levelled off below this (% a year)


@dataclass(frozen=True)
class StoreFacts:
    age_months: float
    orders_per_month: float  # last 3 complete months, guest orders included
    growth_pct: float | None  # revenue growth, see `growth_basis`
    growth_basis: str
    repeat_revenue_share: float | None  # % of the last 12 months' revenue from repeat orders
    average_order_value: float | None  # last 12 months
    orders_per_customer_year: float | None  # last 12 months


@dataclass(frozen=True)
class Criterion:
    stage: str
    name: str
    value: float | None
    threshold: str
    met: bool


@dataclass(frozen=True)
class Lifecycle:
    stage: str
    criteria: tuple[Criterion, ...]
    focus: str
    recommendations: tuple[str, ...]
    reasons: tuple[str, ...] = field(default=())


def _criteria(f: StoreFacts, t: StageThresholds) -> dict[str, list[Criterion]]:
    def at_least(stage: str, name: str, value: float | None, minimum: float) -> Criterion:
        return Criterion(
            stage, name, value, f">= {minimum:g}", value is not None and value >= minimum
        )

    growth = Criterion(
        "stable",
        f"revenue growth % ({f.growth_basis})",
        f.growth_pct,
        f"< {t.stable_max_growth:g}",
        f.growth_pct is not None and f.growth_pct < t.stable_max_growth,
    )
    return {
        "traction": [
            at_least("traction", "age (months)", f.age_months, t.traction_age_months),
            at_least("traction", "orders per month", f.orders_per_month, t.traction_orders_per_month),
        ],
        "consistent": [
            at_least("consistent", "age (months)", f.age_months, t.consistent_age_months),
            at_least("consistent", "orders per month", f.orders_per_month, t.consistent_orders_per_month),
        ],
        "established": [
            at_least("established", "age (months)", f.age_months, t.established_age_months),
            at_least("established", "orders per month", f.orders_per_month, t.established_orders_per_month),
            at_least("established", "repeat revenue share %", f.repeat_revenue_share, t.established_repeat_share),
        ],
        "stable": [
            at_least("stable", "age (months)", f.age_months, t.stable_age_months),
            at_least("stable", "repeat revenue share %", f.repeat_revenue_share, t.stable_repeat_share),
            growth,
        ],
    }  # fmt: skip


def classify(facts: StoreFacts, thresholds: StageThresholds | None = None) -> Lifecycle:
    """The most mature stage whose criteria, and those of every earlier stage, are all met."""
    t = thresholds or StageThresholds()
    crit = _criteria(facts, t)
    stage = "startup"
    for name in STAGES[1:]:
        if all(c.met for c in crit[name]):
            stage = name
        else:
            break
    reasons = []
    for name in STAGES[1:]:
        for c in crit[name]:
            value = "unknown" if c.value is None else f"{c.value:,.1f}"
            mark = "meets" if c.met else "below" if "<" not in c.threshold else "not yet"
            reasons.append(f"{name}: {c.name} {value} ({mark} {c.threshold})")
    focus, recs = FOCUS[stage]
    flat = tuple(c for name in STAGES[1:] for c in crit[name])
    return Lifecycle(stage, flat, focus, tuple(recs), tuple(reasons))


@dataclass(frozen=True)
class BusinessFit:
    quadrant: str
    high_value: bool
    frequent: bool
    advice: str
    aov: float | None
    orders_per_customer_year: float | None
    aov_threshold: float
    frequency_threshold: float


def business_fit(
    facts: StoreFacts, aov_threshold: float = 100.0, frequency_threshold: float = 2.0
) -> BusinessFit:
    """Where the store sits on seed 001's value × frequency matrix."""
    high = facts.average_order_value is not None and facts.average_order_value >= aov_threshold
    freq = (
        facts.orders_per_customer_year is not None
        and facts.orders_per_customer_year >= frequency_threshold
    )
    quadrant, advice = {
        (True, True): (
            "high-value, frequent purchases",
            "The highest lifetime value: retention pays off most here; make it the priority.",
        ),
        (False, True): (
            "low-value, frequent purchases",
            "Value comes from repetition: subscriptions, replenishment reminders and loyalty points.",
        ),
        (True, False): (
            "high-value, infrequent purchases",
            "Each customer buys rarely: referrals, reviews and cross-sell carry retention.",
        ),
        (False, False): (
            "low-value, infrequent purchases",
            "Retention gains are smallest: balance it with acquisition, raise order value first.",
        ),
    }[(high, freq)]
    return BusinessFit(
        quadrant,
        high,
        freq,
        advice,
        facts.average_order_value,
        facts.orders_per_customer_year,
        aov_threshold,
        frequency_threshold,
    )
