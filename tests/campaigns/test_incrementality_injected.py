"""Incrementality on a simulated store with a known injected effect: the reported 95%
interval of a flow's incremental revenue contains the true effect, and a flow with no
effect gets an interval containing 0 (docs/attribution.md#incrementality).

2,000 customers place a first order over ten days; two flows enter them on it, each with
a 50% holdout drawn by the engine. The engine's own services let them in and advance them
(`campaigns.enter` + `campaigns.tick`: runs, holdout flags and outbox rows as in
production); delivery is recorded by `deliver` below, which does what the arbiter does
for these messages (holdout rows skipped, the rest sent at their due time) in one
statement: `simulate_until` delivers message by message and takes minutes for 4,000
messages on SQLite. Then orders are injected with seeded randomness:

- baseline, for everyone: with p = 0.30 one order 1 minute to 7 days after entry
  (20.00-80.00), and with p = 0.20 one 8-20 days after (outside every horizon);
- lift, only for entrants of ``treat`` who were not held out: with p = 0.25 one more
  order of 40.00 within 5 days of entry.

The true incremental revenue of ``treat`` is the sum of the lift orders (the exact
difference between what its treated entrants spent and what they would have spent
without it); ``noop`` has no effect at all (its treated and held-out entrants get lift
orders at the same rate, through ``treat``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import polars as pl
from sqlalchemy import text
from tests.campaigns.campaign_store import DAY, HOUR, Person, at, build_store, write_flows

from boomerang.campaigns.attribution import incrementality
from boomerang.ingest.batch import conform
from boomerang.services import campaign_stats, campaigns
from boomerang.services.context import open_engine
from boomerang.services.imports import apply_frames

N = 2000
START = at("2026-03-01 00:00")
END_OF_RUNS = at("2026-03-14 00:00")
AS_OF = at("2026-04-15 00:00")
LIFT_P, LIFT_MINOR = 0.25, 4000
BASE_P, LATE_P = 0.30, 0.20

TREAT = {
    "name": "treat",
    "trigger": {"type": "order_placed", "which": "first"},
    "holdout": 0.5,
    "priority": 60,
    "steps": [
        {"send": {"channel": "email", "template": "generic"}},
        {"wait": "2d"},
        {"send": {"channel": "email", "template": "generic"}},
    ],
}
NOOP = {
    "name": "noop",
    "trigger": {"type": "order_placed", "which": "first"},
    "holdout": 0.5,
    "steps": [{"send": {"channel": "email", "template": "generic"}}],
}


def deliver(db: str, when: int) -> None:
    """What dispatch decides for these messages, at once: holdout rows are skipped, every
    other (consented, uncapped in this test) row is sent at its due time."""
    engine = open_engine(db)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE outbox SET status = 'skipped', reason = 'holdout: measured, never "
                    "sent', updated_at = :t WHERE holdout = 1 AND status = 'queued'"
                ),
                {"t": when},
            )
            conn.execute(
                text(
                    "UPDATE outbox SET status = 'sent', sent_at = not_before, attempts = 1, "
                    "updated_at = :t WHERE holdout = 0 AND status = 'queued'"
                ),
                {"t": when},
            )
    finally:
        engine.dispose()


def runs_of(db: str) -> pl.DataFrame:
    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT f.name, c.external_id, r.holdout, r.entered_at FROM flow_runs r "
                    "JOIN flows f ON f.id = r.flow_id JOIN customers c ON c.id = r.customer_id"
                )
            ).all()
    finally:
        engine.dispose()
    return pl.DataFrame(
        [tuple(r) for r in rows], schema=["flow", "key", "holdout", "entered_at"], orient="row"
    )


def add_orders(db: str, orders: list[dict[str, object]]) -> None:
    frame = pl.DataFrame(
        [
            {"external_id": o["id"], "customer_key": o["key"], "email": f"{o['key']}@example.com",
             "placed_at": o["at"], "currency": "USD", "subtotal_minor": o["minor"],
             "discount_minor": 0, "shipping_minor": 0, "tax_minor": 0, "total_minor": o["minor"],
             "refunded_minor": 0, "status": "paid", "channel": "online", "source": "test",
             "lines_digest": f"d-{o['id']}"}
            for o in orders
        ]
    )  # fmt: skip
    apply_frames(db, "shop", {"orders": conform("orders", frame)}, currency="USD")


def build(db: str, tmp_path: Path, *, seed: int) -> tuple[int, int, int]:
    """The store, the flows run, orders injected; returns (lift orders, their revenue,
    treated entrants of ``treat``)."""
    people = [
        Person(f"c{i:04d}", orders=[(f"2026-03-{1 + (i % 240) // 24:02d} {i % 24:02d}:00", 3000)])
        for i in range(N)
    ]
    build_store(db, "shop", people, consent_at=at("2026-01-01 00:00"))
    campaigns.set_flows(db, "shop", [write_flows(tmp_path, [TREAT, NOOP])], start=START)
    engine = open_engine(db)
    try:
        entered = campaigns.enter(engine, "shop", END_OF_RUNS)
        campaigns.tick(engine, "shop", END_OF_RUNS)
    finally:
        engine.dispose()
    assert entered.entered == {"treat": N, "noop": N}
    deliver(db, END_OF_RUNS)

    runs = runs_of(db)
    treat = runs.filter(pl.col("flow") == "treat").sort("key")
    rng = np.random.default_rng(seed)
    orders: list[dict[str, object]] = []
    lift_n = 0
    for key, held, entered_at in treat.select("key", "holdout", "entered_at").iter_rows():
        if rng.random() < BASE_P:
            when = entered_at + int(rng.integers(60, 7 * 86_400)) * 1_000_000
            minor = int(rng.integers(2000, 8001))
            orders.append({"id": f"{key}-base", "key": key, "at": when, "minor": minor})
        if rng.random() < LATE_P:
            when = entered_at + int(rng.integers(8 * 86_400, 20 * 86_400)) * 1_000_000
            orders.append({"id": f"{key}-late", "key": key, "at": when, "minor": 5000})
        if not held and rng.random() < LIFT_P:
            when = entered_at + int(rng.integers(60, 5 * 86_400)) * 1_000_000
            orders.append({"id": f"{key}-lift", "key": key, "at": when, "minor": LIFT_MINOR})
            lift_n += 1
    add_orders(db, orders)
    treated = treat.filter(pl.col("holdout") == 0).height
    return lift_n, lift_n * LIFT_MINOR, treated


def check(db: str, tmp_path: Path, seed: int) -> dict[str, float]:
    lift_n, truth, treated = build(db, tmp_path, seed=seed)
    result = campaign_stats.flow_stats(db, "shop", as_of=AS_OF)
    by = {f.name: f for f in result.flows}
    treat, noop = by["treat"], by["noop"]
    assert treat.horizon_days == 7 and noop.horizon_days == 5  # span + the 5-day window
    assert treat.measured_entrants == treat.entrants == N
    inc = treat.incrementality
    assert inc is not None and inc.treated == treated and inc.holdout == N - treated
    low, high = inc.incremental_low_minor, inc.incremental_high_minor
    assert low is not None and high is not None
    # The acceptance: the interval contains the true injected effect (realised, and its
    # expectation), and excludes 0 (the effect is large enough to be found).
    assert low <= truth <= high, (low, truth, high)
    expected = treated * LIFT_P * LIFT_MINOR
    assert low <= expected <= high, (low, expected, high)
    assert low > 0
    assert inc.conversion_diff > 0 and inc.lift_pct is not None and inc.lift_pct > 0
    # No effect: the interval contains 0.
    zero = noop.incrementality
    assert zero is not None
    assert zero.incremental_low_minor is not None and zero.incremental_high_minor is not None
    assert zero.incremental_low_minor <= 0 <= zero.incremental_high_minor
    # Tracking: the holdout is never sent anything; attribution credits each order once.
    assert treat.sends == 2 * treated and treat.suppressed == 2 * (N - treated)
    assert treat.not_sent == 0 and treat.opens == treat.clicks == 0
    assert result.attributed_orders == treat.conversions + noop.conversions
    assert treat.attributed_revenue_minor > 0
    return {
        "truth": truth, "expected": expected, "estimate": inc.incremental_minor,
        "low": low, "high": high, "lift_orders": lift_n,
        "noop": zero.incremental_minor, "noop_low": zero.incremental_low_minor,
        "noop_high": zero.incremental_high_minor,
        "attributed_treat": treat.attributed_revenue_minor,
    }  # fmt: skip


def test_the_interval_contains_the_injected_effect_sqlite(sqlite_db: str, tmp_path: Path) -> None:
    started = time.perf_counter()
    found = check(sqlite_db, tmp_path, seed=20260301)
    print(f"sqlite: {found} in {time.perf_counter() - started:.1f}s")


def test_the_interval_contains_the_injected_effect_postgres(pg_db: str, tmp_path: Path) -> None:
    started = time.perf_counter()
    found = check(pg_db, tmp_path, seed=20260301)
    print(f"postgres: {found} in {time.perf_counter() - started:.1f}s")


def test_the_interval_is_calibrated() -> None:
    """The same design drawn 400 times in memory (no database): the 95% Welch interval
    covers the realised effect in about 95% of draws (the binomial 99.9% band around 0.95
    for 400 draws is about 0.92-0.98), and 0 in about 95% of no-effect draws."""
    rng = np.random.default_rng(11)
    covered = zero_covered = 0
    reps, n_t, n_h = 400, 1000, 1000

    def base(n: int) -> np.ndarray:
        return (rng.random(n) < BASE_P) * rng.integers(2000, 8001, n)

    for _ in range(reps):
        lift = (rng.random(n_t) < LIFT_P) * LIFT_MINOR
        t_rev, h_rev = base(n_t) + lift, base(n_h)
        inc = incrementality(t_rev, h_rev, (t_rev > 0).astype(int), (h_rev > 0).astype(int))
        assert inc.incremental_low_minor is not None and inc.incremental_high_minor is not None
        covered += inc.incremental_low_minor <= lift.sum() <= inc.incremental_high_minor
        t0, h0 = base(n_t), base(n_h)
        nil = incrementality(t0, h0, (t0 > 0).astype(int), (h0 > 0).astype(int))
        assert nil.incremental_low_minor is not None and nil.incremental_high_minor is not None
        zero_covered += nil.incremental_low_minor <= 0 <= nil.incremental_high_minor
    assert 0.92 <= covered / reps <= 0.98, covered / reps
    assert 0.92 <= zero_covered / reps <= 0.98, zero_covered / reps
    assert HOUR * 24 == DAY
