"""Growth simulator: what a few more points of retention are worth (seed 001).

Model (docs/metrics.md, "growth simulation"): each month the store gains ``new`` customers;
of the customers active last month a share ``retention`` stays active; every active customer
spends ``value`` a month. So active(m) = new + retention × active(m−1) and revenue(m) =
value × active(m). Assumptions: constant acquisition, constant spend per active customer,
no seasonality, retention the same for every customer and month. The steady state is
new / (1 − retention), so each point of retention is worth more the higher retention already is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
MAX_RETENTION = 0.99


@dataclass(frozen=True)
class Scenario:
    label: str
    retention: float  # monthly share of last month's active customers still active
    new_per_month: float
    value_per_active: float  # revenue per active customer per month
    start_active: float = 0.0

    def project(self, months: int) -> tuple[F64, F64]:
        """Active customers and revenue for months 1..months."""
        active = np.zeros(months, dtype=np.float64)
        prev = self.start_active
        for m in range(months):
            prev = self.new_per_month + self.retention * prev
            active[m] = prev
        return active, active * self.value_per_active


@dataclass(frozen=True)
class Projection:
    months: int
    scenarios: tuple[Scenario, ...]
    active: tuple[F64, ...]
    revenue: tuple[F64, ...]

    @property
    def cumulative(self) -> tuple[F64, ...]:
        return tuple(np.cumsum(r) for r in self.revenue)

    def extra_revenue(self) -> float:
        """Cumulative revenue of the last scenario minus the first, over the horizon."""
        return float(self.cumulative[-1][-1] - self.cumulative[0][-1])

    def uplift_pct(self) -> float:
        base = float(self.cumulative[0][-1])
        return self.extra_revenue() / base * 100 if base else 0.0


def run(scenarios: tuple[Scenario, ...], months: int) -> Projection:
    projected = [s.project(months) for s in scenarios]
    return Projection(
        months=months,
        scenarios=scenarios,
        active=tuple(a for a, _ in projected),
        revenue=tuple(r for _, r in projected),
    )


def seed_example(months: int = 24) -> Projection:
    """Seed 001's chart: 100 new customers a month buying one $10 item; 5% vs 10% retention."""
    return run(
        (
            Scenario("store keeping 5% of its customers each month", 0.05, 100, 10.0),
            Scenario("store keeping 10% of its customers each month", 0.10, 100, 10.0),
        ),
        months,
    )


@dataclass(frozen=True)
class StoreBaseline:
    """The store's own monthly numbers the what-if starts from."""

    new_per_month: float
    active_per_month: float
    revenue_per_active: float
    current_active: float  # where the projection starts (the store uses its average)

    @property
    def implied_retention(self) -> float:
        """The retention that makes the model's steady state match the store's averages."""
        if self.active_per_month <= 0:
            return 0.0
        return float(min(max(1 - self.new_per_month / self.active_per_month, 0.0), MAX_RETENTION))


def what_if(baseline: StoreBaseline, points: float = 5.0, months: int = 24) -> Projection:
    """Baseline vs retention raised by ``points`` percentage points, on the store's numbers."""
    r = baseline.implied_retention
    better = min(r + points / 100, MAX_RETENTION)
    common = {
        "new_per_month": baseline.new_per_month,
        "value_per_active": baseline.revenue_per_active,
        "start_active": baseline.current_active,
    }
    return run(
        (
            Scenario(f"today: {r * 100:.1f}% monthly retention", r, **common),
            Scenario(f"+{points:g} points: {better * 100:.1f}%", better, **common),
        ),
        months,
    )
