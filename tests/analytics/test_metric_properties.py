"""Invariants on random stores: the engine agrees with a plain pandas reference written from
the definitions, CRR stays within [0, 100], cohort cells add up to the period totals, and
nothing depends on the order of the rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from bench.analytics_reference import compute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from boomerang.analytics.cohorts import cohort_table
from boomerang.analytics.engine import Engine, SourceTables
from boomerang.analytics.metrics import activity
from boomerang.analytics.options import MetricOptions
from boomerang.analytics.periods import DAY_US, Granularity
from boomerang.analytics.prepare import prepare
from boomerang.analytics.retention import retention_arrays, retention_table

BASE_DAY = 19_700  # 2023-12-09
order_row = st.tuples(
    st.integers(0, 5),  # customer (0 = guest)
    st.integers(0, 200),  # day offset
    st.integers(0, 86_399),  # second of day
    st.integers(-2_000, 9_000),  # total (negative: a return record)
    st.sampled_from(["paid", "paid", "paid", "refunded", "partially_refunded", "cancelled"]),
    st.sampled_from(["USD", "USD", "USD", "USD", "EUR"]),
)
stores = st.lists(order_row, min_size=1, max_size=40)


def to_table(rows: list[tuple[int, int, int, int, str, str]]) -> pa.Table:
    refunded = [
        t if s == "refunded" and t > 0 else t // 3 if s == "partially_refunded" and t > 0 else 0
        for _c, _d, _s, t, s, _cur in rows
    ]
    return pa.table(
        {
            "id": pa.array(range(1, len(rows) + 1), pa.int64()),
            "customer_id": pa.array([c or None for c, *_ in rows], pa.int64()),
            "placed_at": pa.array(
                [(BASE_DAY + d) * DAY_US + s * 1_000_000 for _c, d, s, *_ in rows], pa.int64()
            ),
            "currency": [r[5] for r in rows],
            "total_minor": pa.array([r[3] for r in rows], pa.int64()),
            "refunded_minor": pa.array(refunded, pa.int64()),
            "status": [r[4] for r in rows],
        }
    )


def has_purchase(rows: list[tuple[int, int, int, int, str, str]]) -> bool:
    return any(r[4] != "cancelled" and r[5] == "USD" and r[3] >= 0 for r in rows)


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


def run(engine: Engine, orders: pa.Table, g: Granularity, window: int) -> tuple[object, ...]:
    data = engine.load(SourceTables(orders=orders, customers=pa.table({"id": [1]}), currency="USD"))
    p = prepare(
        engine, data, g, options=MetricOptions(activity_window_days=window, tenure_bands=(20, 60))
    )
    arrays = retention_arrays(p)
    return p, activity(p), retention_table(p, arrays, 0.01), arrays


SETTINGS = settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(rows=stores, window=st.integers(5, 400), g=st.sampled_from(list(Granularity)[1:4]))
def test_engine_matches_reference_and_invariants_hold(engine: Engine, rows, window, g) -> None:  # type: ignore[no-untyped-def]
    if not has_purchase(rows):
        return
    orders = to_table(rows)
    p, act, ret, arrays = run(engine, orders, g, window)
    # 1. the plain pandas reference, written from the definitions
    ref = compute(
        orders.to_pandas(), "USD", list(p.periods.bounds), window, (20, 60), month_index=False
    )
    r = ref.periods
    for col in ("orders", "customers", "repeat_customers", "new_customers", "revenue"):
        assert act[col].to_list() == r[col].tolist(), col
    for col in ("customers_at_start", "customers_at_end", "customers_gained", "churned_customers"):
        assert ret[col].to_list() == r[col].tolist(), col
    assert ret["revenue_at_start"].to_numpy() == pytest.approx(
        r["revenue_at_start"].to_numpy() * 0.01
    )
    assert ret["revenue_retained"].to_numpy() == pytest.approx(
        r["revenue_retained"].to_numpy() * 0.01
    )
    kept = arrays.revenue_start.sum(axis=0)[: p.k] + arrays.revenue_contraction.sum(axis=0)
    assert kept == pytest.approx(r["revenue_kept"].to_numpy())
    bands = ref.churn.pivot(index="tenure_band", columns="k", values="churned_customers")
    for i, band in enumerate(("short", "medium", "long")):
        assert arrays.churned[i].tolist() == bands.loc[band].tolist()
    # 2. CRR is a percentage when defined, (E − N) / S, and undefined when S = 0
    defined = ret.filter(pl.col("customer_retention_rate").is_not_null())
    assert defined["customer_retention_rate"].is_between(0, 100).all()
    s, e, n = (
        defined[c].to_numpy()
        for c in ("customers_at_start", "customers_at_end", "customers_gained")
    )
    assert defined["customer_retention_rate"].to_numpy() == pytest.approx((e - n) / s * 100)
    assert ret.filter(pl.col("customers_at_start") == 0)[
        "customer_retention_rate"
    ].null_count() == (ret.filter(pl.col("customers_at_start") == 0).height)
    # 3. cohort cells add up to each period's customers and revenue
    cells = cohort_table(p, 1.0)
    if g is Granularity.MONTH:
        month = cells.with_columns(
            (pl.col("cohort_start").dt.year() * 12 + pl.col("cohort_start").dt.month()
             + pl.col("periods_since")).alias("m")
        )  # fmt: skip
        per_month = (
            month.group_by("m").agg(pl.col("customers").sum(), pl.col("revenue").sum()).sort("m")
        )
        active = act.filter(pl.col("customers") > 0)
        assert per_month["customers"].to_list() == active["customers"].to_list()
        assert per_month["revenue"].to_list() == pytest.approx(
            active["revenue"].cast(pl.Float64).to_list()
        )
    assert (
        cells.filter(pl.col("periods_since") == 0)["cohort_size"].sum()
        == act["new_customers"].sum()
    )
    assert cells["revenue"].sum() == pytest.approx(float(act["revenue"].sum()))


@settings(
    max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=stores, seed=st.integers(0, 1_000))
def test_row_order_does_not_matter(engine: Engine, rows, seed) -> None:  # type: ignore[no-untyped-def]
    if not has_purchase(rows):
        return
    orders = to_table(rows)
    shuffled = orders.take(np.random.default_rng(seed).permutation(orders.num_rows))
    a = run(engine, orders, Granularity.WEEK, 30)
    b = run(engine, shuffled, Granularity.WEEK, 30)
    assert a[1].equals(b[1]) and a[2].equals(b[2])


def test_reference_agrees_on_a_known_case() -> None:
    """The oracle itself: two purchases 10 days apart, window 5 days, one period."""
    orders = pd.DataFrame(
        {"id": [1, 2], "customer_id": [7, 7], "placed_at": [0, 10 * DAY_US], "currency": "USD",
         "total_minor": [100, 50], "refunded_minor": [0, 0], "status": "paid"}
    )  # fmt: skip
    ref = compute(orders, "USD", [0, 20], 5, month_index=False).periods.iloc[0]
    assert (ref["orders"], ref["customers_at_start"], ref["customers_at_end"]) == (2, 0, 0)
