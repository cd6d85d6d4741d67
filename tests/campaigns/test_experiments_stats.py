"""Experiments: the significance tests against scipy and hand values, the sample-size
warnings, per-variant figures on a store (SQLite and PostgreSQL), and S8 — A/B assignment
is stable when a run is advanced again or re-entered with the same key, and holdout runs
are never sent anything."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats
from sqlalchemy import text
from tests.campaigns.campaign_store import DAY, Person, at, build_store, write_flows

from boomerang.campaigns.attribution import proportion_diff, welch_interval
from boomerang.campaigns.engine import Facts, RunState, advance, variant_for
from boomerang.campaigns.experiments import (
    MIN_PER_ARM,
    Arm,
    analyse,
    minimum_detectable_effect,
    required_per_arm,
    two_proportion_ztest,
)
from boomerang.campaigns.flow import parse_flow
from boomerang.services import campaign_runtime, campaign_stats, campaigns
from boomerang.services.context import open_engine

# -- the tests themselves ---------------------------------------------------------------------


def test_two_proportion_z_test_matches_hand_values_and_scipy() -> None:
    # 120/1000 vs 150/1000: pooled p = 0.135, se = sqrt(0.135 * 0.865 * 2/1000).
    z, p = two_proportion_ztest(120, 1000, 150, 1000)
    se = math.sqrt(0.135 * 0.865 * 2 / 1000)
    assert z == pytest.approx(-0.03 / se, rel=1e-12)
    assert z == pytest.approx(-1.96305, abs=1e-5)
    assert p == pytest.approx(0.049640, abs=1e-6)
    # The pooled z-test is the chi-square test without continuity correction: z^2 = chi2.
    chi2, p_chi, _, _ = stats.chi2_contingency([[120, 880], [150, 850]], correction=False)
    assert z**2 == pytest.approx(chi2, rel=1e-12) and p == pytest.approx(p_chi, rel=1e-12)
    assert two_proportion_ztest(0, 50, 0, 60) == (0.0, 1.0)
    diff, low, high, p2 = proportion_diff(150, 1000, 120, 1000)
    assert diff == pytest.approx(0.03) and p2 == pytest.approx(p)
    wald = 1.959964 * math.sqrt(0.15 * 0.85 / 1000 + 0.12 * 0.88 / 1000)
    assert low == pytest.approx(0.03 - wald, abs=1e-6)
    assert high == pytest.approx(0.03 + wald, abs=1e-6)


def test_welch_matches_scipy() -> None:
    rng = np.random.default_rng(3)
    a = (rng.random(400) < 0.3) * rng.integers(1000, 9000, 400).astype(float)
    b = (rng.random(250) < 0.2) * rng.integers(1000, 9000, 250).astype(float)
    diff, low, high, p = welch_interval(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert diff == pytest.approx(a.mean() - b.mean())
    assert p == pytest.approx(ref.pvalue, rel=1e-10)
    assert low == pytest.approx(ci.low, rel=1e-10) and high == pytest.approx(ci.high, rel=1e-10)
    # Hand check of the Welch-Satterthwaite degrees of freedom on a tiny sample.
    x, y = np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 4.0, 9.0])
    vx, vy = x.var(ddof=1) / 4, y.var(ddof=1) / 3
    df = (vx + vy) ** 2 / (vx**2 / 3 + vy**2 / 2)
    _, lo, hi, _ = welch_interval(x, y)
    half = stats.t.ppf(0.975, df) * math.sqrt(vx + vy)
    assert lo == pytest.approx(2.5 - 5.0 - half) and hi == pytest.approx(2.5 - 5.0 + half)
    assert welch_interval(np.array([1.0]), y)[1:] == (None, None, None)
    assert welch_interval(np.zeros(5), np.zeros(5)) == (0.0, 0.0, 0.0, 1.0)


def test_sample_size_and_power() -> None:
    # 10% -> 12%, two-sided 5%, power 80% (Fleiss, no continuity correction): 3,841 per arm.
    assert required_per_arm(0.10) == 3841
    assert required_per_arm(0.0) is None and required_per_arm(0.9, relative_lift=0.2) is None
    # (1.95996 + 0.84162) * sqrt(2 * 0.1 * 0.9 / 3841) = 0.019179 (variance at the base rate).
    mde = minimum_detectable_effect(0.10, 3841)
    assert mde is not None and mde == pytest.approx(0.019179, abs=1e-6)
    small = analyse([
        Arm("a", np.zeros(40), np.array([1] * 4 + [0] * 36)),
        Arm("b", np.zeros(60), np.array([1] * 9 + [0] * 51)),
    ])  # fmt: skip
    assert [v.recipients for v in small.variants] == [40, 60]
    assert sum(f"fewer than {MIN_PER_ARM}" in w for w in small.warnings) == 2
    assert any(w.startswith("underpowered") for w in small.warnings)
    assert small.required_per_arm == required_per_arm(0.10)
    big = analyse([
        Arm("a", np.full(5000, 100.0), np.array([1] * 1000 + [0] * 4000)),
        Arm("b", np.full(5000, 110.0), np.array([1] * 1250 + [0] * 3750)),
    ])  # fmt: skip
    assert big.warnings == [] and big.comparisons[0].significant
    nothing = analyse([Arm("a", np.zeros(200), np.zeros(200)), Arm("b", np.zeros(200),
                                                                np.zeros(200))])  # fmt: skip
    assert nothing.warnings == ["no conversions yet: nothing to compare"]


# -- on a store -----------------------------------------------------------------------------------

START = "2026-03-02 00:00"
OFFER = {
    "name": "offer-test",
    "trigger": {"type": "order_placed", "which": "first"},
    "holdout": 0.3,
    "steps": [
        {"id": "pick", "ab": {"variants": [
            {"name": "dollar", "weight": 1, "next": "c-dollar"},
            {"name": "percent", "weight": 1, "next": "c-percent"},
        ]}},
        {"id": "c-dollar", "coupon": {"kind": "amount_off", "value": 1000}, "next": "mail"},
        {"id": "c-percent", "coupon": {"kind": "percent_off", "value": 1000}},
        {"id": "mail", "send": {"channel": "email", "template": "generic"}},
    ],
}  # fmt: skip
N = 40


_ENGINES: dict[str, Any] = {}


def _engine(db: str) -> Any:
    """One migrated engine per database for the test's own reads and writes."""
    if db not in _ENGINES:
        _ENGINES.clear()
        _ENGINES[db] = open_engine(db)
    return _ENGINES[db]


def rows(db: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with _engine(db).connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def execute(db: str, sql: str, params: list[dict[str, Any]] | dict[str, Any]) -> None:
    with _engine(db).begin() as conn:
        conn.execute(text(sql), params)


def variants(db: str) -> dict[int, tuple[int, int, str]]:
    """run id -> (customer id, holdout, variant)."""
    return {
        int(rid): (int(cid), int(held), json.loads(ctx)["variants"]["pick"])
        for rid, cid, held, ctx in rows(
            db, "SELECT id, customer_id, holdout, context FROM flow_runs"
        )
    }


def test_s8_assignment_is_stable_and_the_holdout_is_never_sent(db: str, tmp_path: Path) -> None:
    # Each customer: a first order (the trigger) on day 0; "percent" customers are later
    # given an order 1 day after entry, every other "dollar" customer one 2 days after,
    # and everyone one 9 days after (outside the 5-day window).
    people = [Person(f"p{i:02d}", orders=[(f"2026-03-02 {i % 20:02d}:00", 2000)]) for i in range(N)]
    build_store(db, "shop", people, consent_at=at("2026-01-01 00:00"))
    campaigns.set_flows(db, "shop", [write_flows(tmp_path, [OFFER])], start=at(START))
    out = tmp_path / "out"
    campaign_runtime.simulate_until(db, "shop", at("2026-03-03 00:00"), out_dir=out)

    chosen = variants(db)
    assert len(chosen) == N
    weights = [1, 1]
    names = ["dollar", "percent"]
    for cid, _, name in chosen.values():  # the deterministic hash, nothing stored elsewhere
        assert name == names[variant_for("offer-test", "pick", cid, weights)]
    # The message carries the variant its run took.
    for rid, ctx in rows(db, "SELECT run_id, context FROM outbox"):
        assert json.loads(ctx)["variants"] == {"pick": chosen[int(rid)][2]}
    # The holdout is never sent anything (and gets no coupon); everyone else is sent one.
    by_status = rows(db, "SELECT holdout, status, COUNT(*) FROM outbox GROUP BY holdout, status")
    held = sum(1 for _, h, _ in chosen.values() if h)
    assert 0 < held < N
    assert sorted(by_status) == sorted([(0, "sent", N - held), (1, "skipped", held)])
    assert rows(db, "SELECT COUNT(*) FROM outbox WHERE holdout = 1 AND sent_at IS NOT NULL") == [
        (0,)
    ]
    assert rows(db, "SELECT COUNT(*) FROM coupons") == [(N - held,)]

    # Advanced twice (a crash after advancing, before the commit, redoes the batch): put
    # every run back before the A/B step with its variants forgotten, and tick again.
    forgotten = [
        {"r": rid, "c": json.dumps({k: v for k, v in json.loads(ctx).items() if k == "trigger"})}
        for rid, ctx in rows(db, "SELECT id, context FROM flow_runs")
    ]
    execute(db, "UPDATE flow_runs SET status = 'active', step_id = 'pick', due_at = entered_at, "
            "context = :c WHERE id = :r", forgotten)  # fmt: skip
    engine = open_engine(db)
    try:
        again = campaigns.tick(engine, "shop", at("2026-03-03 00:00"))
        assert again.advanced == N and again.queued == 0  # one message per (run, step), ever
        # Re-entered with the same key: scanning the same triggers again lets nobody in.
        execute(db, "UPDATE flows SET cursor_at = :t", {"t": at(START)})
        assert campaigns.enter(engine, "shop", at("2026-03-03 00:00")).entered == {"offer-test": 0}
    finally:
        engine.dispose()
    assert variants(db) == chosen
    assert rows(db, "SELECT COUNT(*) FROM coupons") == [(N - held,)]  # not issued twice

    # The pure engine: the same run advanced twice takes the same branch.
    flow = parse_flow(OFFER)
    run = RunState(1, 12345, "pick", 0, 0, False, {})

    class NoEffects:
        def coupon(self, *a: Any) -> dict[str, Any]:
            return {"code": "X"}

        def points(self, *a: Any) -> None: ...

        def task(self, *a: Any) -> None: ...

        def profile(self, *a: Any) -> None: ...

    first = advance(flow, run, Facts(), 10, NoEffects())
    second = advance(flow, run, Facts(), 10, NoEffects())
    assert first.context["variants"] == second.context["variants"]
    assert first.executed == second.executed

    # Per-variant figures, as computed by hand from the orders we add now.
    entered = {
        int(cid): int(t) for cid, t in rows(db, "SELECT customer_id, entered_at FROM flow_runs")
    }
    keys = dict(rows(db, "SELECT id, external_id FROM customers"))
    extra: list[tuple[str, int, int]] = []
    expect: dict[str, list[int]] = {"dollar": [], "percent": []}
    dollar_seen = 0
    for cid, held_flag, name in sorted(chosen.values()):
        revenue = 0
        if name == "percent":
            revenue = 3000 + 100 * (cid % 3)
            extra.append((keys[cid], entered[cid] + DAY, revenue))
        elif dollar_seen % 2 == 0:
            extra.append((keys[cid], entered[cid] + 2 * DAY, 5000))
            revenue = 5000
        if name == "dollar":
            dollar_seen += 1
        extra.append((keys[cid], entered[cid] + 9 * DAY, 7000))
        if not held_flag:
            expect[name].append(revenue)
    add_orders(db, extra)
    result = campaign_stats.experiment_stats(db, "shop", as_of=at("2026-04-01 00:00"))
    (e,) = result.experiments
    assert (e.flow, e.step_id, e.control, e.start_days, e.length_days) == (
        "offer-test", "pick", "dollar", 0.0, 5.0,
    )  # fmt: skip
    assert e.holdout_excluded == held and e.not_measured == 0
    got = {v.name: v for v in e.result.variants}
    for name in names:
        want = np.array(expect[name], dtype=float)
        assert got[name].recipients == len(want)
        assert got[name].conversions == int(np.count_nonzero(want))
        assert got[name].revenue_minor == int(want.sum())
    (c,) = e.result.comparisons
    d, p = np.array(expect["dollar"], float), np.array(expect["percent"], float)
    z, pz = two_proportion_ztest(int(np.count_nonzero(p)), len(p), int(np.count_nonzero(d)), len(d))
    assert c.z == pytest.approx(z) and c.conversion_p_value == pytest.approx(pz)
    assert c.revenue_p_value == pytest.approx(stats.ttest_ind(p, d, equal_var=False).pvalue)
    assert any(f"fewer than {MIN_PER_ARM}" in w for w in e.result.warnings)
    _engine(db).dispose()
    _ENGINES.clear()


def add_orders(db: str, found: list[tuple[str, int, int]]) -> None:
    import polars as pl

    from boomerang.ingest.batch import conform
    from boomerang.services.imports import apply_frames

    frame = pl.DataFrame(
        [
            {"external_id": f"x-{key}-{when}", "customer_key": key, "placed_at": when,
             "currency": "USD", "subtotal_minor": minor, "discount_minor": 0,
             "shipping_minor": 0, "tax_minor": 0, "total_minor": minor, "refunded_minor": 0,
             "status": "paid", "channel": "online", "source": "test",
             "lines_digest": f"d-{key}-{when}"}
            for key, when, minor in found
        ]
    )  # fmt: skip
    apply_frames(db, "shop", {"orders": conform("orders", frame)}, currency="USD")
