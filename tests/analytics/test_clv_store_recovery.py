"""CLV from a simulated store's orders: the simulator's true BG/NBD parameters come back,
and a small store gets finite, honestly wide intervals instead of a refusal."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest

from boomerang.analytics.clv_store import Transactions, fit_clv, transactions_from_orders
from boomerang.simulate import SimulatedStore, SimulationParams, simulate_store

# Shoppers only (no replenishers), no seasonality and no cancellations: the store's orders
# then follow BG/NBD exactly (up to same-day merging), so the fit must find truth.json's values.
PURE_BGNBD = dataclasses.replace(
    SimulationParams(),
    replenisher_share=0.0,
    month_factors=(1.0,) * 12,
    weekday_factors=(1.0,) * 7,
    black_friday_factor=1.0,
    late_december_factor=1.0,
    cancel_rate=0.0,
)


def _transactions(sim: SimulatedStore) -> Transactions:
    """The simulator's orders in the shape ``read_orders`` gives (owner -1 = guest = null)."""
    table = sim.book.orders.select(
        pl.when(pl.col("owner") >= 0).then(pl.col("owner")).alias("customer_id"),
        "placed_at", "total_minor", "refunded_minor", "status",
    ).to_arrow()  # fmt: skip
    return transactions_from_orders(table, 0.01)


def test_fit_recovers_truth_json_parameters_within_laplace_interval() -> None:
    sim = simulate_store(10_000, 730, 4, PURE_BGNBD)
    fit = fit_clv(_transactions(sim), n_draws=0)
    truth = sim.truth()["bgnbd"]
    intervals = fit.purchases.intervals(0.95)
    for name in ("r", "alpha", "a", "b"):
        lo, hi = intervals[name]
        assert lo <= truth[name] <= hi, (name, fit.purchases.params[name], truth[name], lo, hi)
        # and a plain tolerance, in case the interval were absurdly wide
        assert fit.purchases.params[name] == pytest.approx(truth[name], rel=0.15), name


def test_transactions_skip_guests_and_cancelled_and_use_net_revenue() -> None:
    import pyarrow as pa

    orders = pa.table(
        {
            "customer_id": pa.array([1, None, 2, 2], pa.int64()),
            "placed_at": pa.array([0, 0, 86_400_000_000, 2 * 86_400_000_000], pa.int64()),
            "total_minor": pa.array([1000, 500, 2000, 700], pa.int64()),
            "refunded_minor": pa.array([250, 0, 0, 0], pa.int64()),
            "status": pa.array(["paid", "paid", "paid", "cancelled"]),
        }
    )
    t = transactions_from_orders(orders, 0.01)
    assert t.customer_id.tolist() == [1, 2]
    assert t.value.tolist() == [7.5, 20.0]
    assert t.day.astype(str).tolist() == ["1970-01-01", "1970-01-02"]


def test_small_store_gets_finite_wide_intervals() -> None:
    small_sim = simulate_store(280, 730, 9, PURE_BGNBD)
    small = fit_clv(_transactions(small_sim), n_draws=200)
    assert 150 <= len(small.summary) <= 260  # about 200 buyers
    big = fit_clv(_transactions(simulate_store(10_000, 730, 4, PURE_BGNBD)), n_draws=200)
    for fit in (small, big):
        p = fit.predictions
        for arr in (p.expected_purchases_low, p.expected_purchases_high, p.clv_low, p.clv_high):
            assert np.all(np.isfinite(arr))
        assert np.all(p.expected_purchases_low <= p.expected_purchases_high)
        assert np.all(p.clv_low <= p.clv_high)

    def width(fit: object) -> float:
        p = fit.predictions  # type: ignore[attr-defined]
        return float(np.median((p.expected_purchases_high - p.expected_purchases_low)
                               / np.maximum(p.expected_purchases, 1e-9)))  # fmt: skip

    assert width(small) > 2 * width(big)
