"""Growth simulator (seed 001's example), lifecycle stages, business fit and UTC periods."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from boomerang.analytics import growth, lifecycle
from boomerang.analytics.periods import Granularity, Periods, period_index, period_start, to_day


def test_seed_example_by_hand() -> None:
    """100 new a month, $10 each: month 1 = 100 active; month 2 = 100 + 5 (or + 10)..."""
    proj = growth.seed_example(24)
    five, ten = proj.active
    assert five[:3].tolist() == pytest.approx([100, 105, 105.25])
    assert ten[:3].tolist() == pytest.approx([100, 110, 111])
    assert five[-1] == pytest.approx(100 / 0.95) and ten[-1] == pytest.approx(100 / 0.9)
    assert proj.revenue[1][:2].tolist() == pytest.approx([1000.0, 1100.0])
    assert proj.extra_revenue() == pytest.approx(float(np.sum(ten - five) * 10))


def test_what_if_starts_from_the_store_steady_state() -> None:
    base = growth.StoreBaseline(new_per_month=50, active_per_month=200, revenue_per_active=30,
                                current_active=200)  # fmt: skip
    assert base.implied_retention == pytest.approx(0.75)
    proj = growth.what_if(base, points=5, months=36)
    today, better = proj.active
    assert today.tolist() == pytest.approx([200.0] * 36)  # the baseline stays put
    assert better[-1] == pytest.approx(50 / 0.2, rel=1e-3)  # heads for 50 / (1 - 0.80)
    assert proj.uplift_pct() > 0


def facts(age: float, orders: float, repeat: float | None, growth_pct: float | None,
          aov: float = 50.0, freq: float = 1.2) -> lifecycle.StoreFacts:  # fmt: skip
    return lifecycle.StoreFacts(age, orders, growth_pct, "test", repeat, aov, freq)


@pytest.mark.parametrize(
    ("f", "stage"),
    [
        (facts(1, 400, 50, None), "startup"),  # too young, however busy
        (facts(5, 40, 5, None), "traction"),
        (facts(14, 150, 10, 30), "consistent"),
        (facts(30, 800, 30, 25), "established"),
        (facts(40, 800, 45, 25), "established"),  # still growing fast: not yet stable
        (facts(40, 800, 45, 4), "stable"),
    ],
)
def test_lifecycle_stage(f: lifecycle.StoreFacts, stage: str) -> None:
    result = lifecycle.classify(f)
    assert result.stage == stage
    assert result.focus and result.recommendations
    assert len(result.reasons) == len(result.criteria) == 10


def test_traction_recommends_win_back_and_consistent_referral_loyalty() -> None:
    assert any("win-back" in r for r in lifecycle.classify(facts(5, 40, 5, None)).recommendations)
    recs = " ".join(lifecycle.classify(facts(14, 150, 10, 30)).recommendations)
    assert "referral" in recs and "loyalty" in recs and "Automate" in recs


def test_business_fit_quadrants() -> None:
    assert lifecycle.business_fit(facts(30, 800, 30, 5, aov=250, freq=4)).quadrant == (
        "high-value, frequent purchases"
    )
    assert lifecycle.business_fit(facts(30, 800, 30, 5, aov=20, freq=1)).quadrant == (
        "low-value, infrequent purchases"
    )


@pytest.mark.parametrize("g", list(Granularity))
def test_period_index_round_trip(g: Granularity) -> None:
    days = np.arange(to_day(date(1999, 12, 20)), to_day(date(2031, 3, 3)), 5, dtype=np.int64)
    idx = period_index(days, g)
    starts = period_start(idx, g)
    assert (starts <= days).all() and (period_start(idx + 1, g) > days).all()


def test_periods_are_clipped_to_the_range() -> None:
    p = Periods.between(to_day(date(2024, 1, 15)), to_day(date(2024, 3, 11)), Granularity.MONTH)
    assert p.starts() == [date(2024, 1, 15), date(2024, 2, 1), date(2024, 3, 1)]
    assert p.ends() == [date(2024, 1, 31), date(2024, 2, 29), date(2024, 3, 10)]
    assert p.complete() == [False, True, False]
    w = Periods.between(to_day(date(2024, 1, 1)), to_day(date(2024, 1, 15)), Granularity.WEEK)
    assert w.starts() == [date(2024, 1, 1), date(2024, 1, 8)]  # ISO weeks start on Monday
