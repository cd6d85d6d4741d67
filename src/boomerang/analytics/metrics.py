"""The per-period metrics table: one row per period, snake_case columns named after the metric.

Definitions are in docs/metrics.md. Customer metrics count identified customers only; guest
orders are reported beside them (guest_orders, guest_revenue). Money columns are in the
store currency's major units, as float64 (aggregates only; storage stays exact).
"""

from __future__ import annotations

import ibis
import numpy as np
import polars as pl
from ibis import _

from boomerang.analytics.behaviour import returning_vs_first_time
from boomerang.analytics.lifetime_value import MONTH_US
from boomerang.analytics.periods import DAY_US
from boomerang.analytics.prepare import Prepared
from boomerang.analytics.retention import retention_arrays, retention_table
from boomerang.domain.money import currency_exponent


def money_scale(currency: str) -> float:
    """Minor units -> major units."""
    return float(10 ** -currency_exponent(currency))


def _frame(table: object) -> pl.DataFrame:
    frame = pl.from_arrow(table)  # type: ignore[arg-type]
    assert isinstance(frame, pl.DataFrame)
    return frame


def _by_period(p: Prepared, frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """Spread a frame keyed by ``k`` over all periods (absent periods -> 0)."""
    base = pl.DataFrame({"k": np.arange(p.k, dtype=np.int64)})
    if frame.height == 0:
        return base.with_columns(pl.lit(0).alias(c) for c in columns)
    return base.join(frame.cast({"k": pl.Int64}), on="k", how="left").with_columns(
        pl.col(c).fill_null(0) for c in columns
    )


def _ratio(num: pl.Expr, den: pl.Expr, factor: float = 1.0) -> pl.Expr:
    return pl.when(den > 0).then(num.cast(pl.Float64) / den * factor).otherwise(None)


def activity(p: Prepared) -> pl.DataFrame:
    """Orders, customers, revenue and acquisition per period (integer minor units)."""
    k = p.k
    rows = p.purchases.filter(_.n >= 1, _.n <= k)
    days = p.options.second_purchase_days
    first = rows.seq == 1
    eligible = first & (rows.t + days * DAY_US <= p.end_us)
    converted = eligible & rows.next_t.notnull() & (rows.next_t - rows.t <= days * DAY_US)
    # One pass, grouped by period only: each customer's first purchase in a period (the
    # previous one is in an earlier period) counts them once; their next purchase in the
    # same period makes them a repeat customer of it.
    opens = rows.prev_n.isnull() | (rows.prev_n != rows.n)
    agg = rows.group_by(k=rows.n - 1).aggregate(
        customers=ibis.ifelse(opens, 1, 0).sum(),
        orders=rows.count(),
        repeat_customers=ibis.ifelse(opens & (rows.next_n == rows.n), 1, 0).sum(),
        revenue=rows.net.sum(),
        gross=rows.gross.sum(),
        new_customers=ibis.ifelse(first, 1, 0).sum(),
        returning_revenue=ibis.ifelse(rows.first_n == rows.n, 0, rows.net).sum(),
        first_orders=ibis.ifelse(first, 1, 0).sum(),
        first_order_revenue=ibis.ifelse(first, rows.net, 0).sum(),
        repeat_orders=ibis.ifelse(first, 0, 1).sum(),
        repeat_order_revenue=ibis.ifelse(first, 0, rows.net).sum(),
        second_eligible=ibis.ifelse(eligible, 1, 0).sum(),
        second_converted=ibis.ifelse(converted, 1, 0).sum(),
    )
    guests = (
        p.guests.filter(_.n >= 1, _.n <= k)
        .group_by(k=_.n - 1)
        .aggregate(guest_orders=_.count(), guest_revenue=_.net.sum())
    )
    cancelled = (
        p.cancelled.filter(_.n >= 1, _.n <= k)
        .group_by(k=_.n - 1)
        .aggregate(cancelled_orders=_.count())
    )
    out = pl.DataFrame({"k": np.arange(k, dtype=np.int64)})
    for expr in (agg, guests, cancelled):
        frame = _frame(p.engine.arrow(expr))
        cols = [c for c in frame.columns if c != "k"]
        out = out.join(_by_period(p, frame, cols), on="k", how="left")
    return out


def clv_by_acquisition(p: Prepared) -> pl.DataFrame:
    """Average revenue per customer within h months of their first purchase, per period of
    acquisition, over customers observed for at least h months (else null)."""
    k = p.k
    rows = p.purchases.filter(_.first_n >= 1, _.first_n <= k, _.n <= k)
    aggs = {}
    for h in p.options.clv_horizons_months:
        aggs[f"v{h}"] = ibis.ifelse(_.t - _.first_t < h * MONTH_US, _.net, 0).sum()
    per_customer = rows.group_by("customer_id", "first_t", kk=_.first_n - 1).aggregate(**aggs)
    sums = {}
    for h in p.options.clv_horizons_months:
        ok = per_customer.first_t + h * MONTH_US <= p.end_us
        sums[f"s{h}"] = ibis.ifelse(ok, per_customer[f"v{h}"], 0).sum()
        sums[f"c{h}"] = ibis.ifelse(ok, 1, 0).sum()
    frame = _frame(p.engine.arrow(per_customer.group_by(k="kk").aggregate(**sums)))
    cols = [c for c in frame.columns if c != "k"]
    return _by_period(p, frame, cols)


def metrics_table(p: Prepared, *, with_events: bool = True) -> pl.DataFrame:
    """Every per-period metric of docs/metrics.md, one row per period."""
    scale = money_scale(p.data.currency)
    act = activity(p)
    arrays = retention_arrays(p)
    ret = retention_table(p, arrays, scale)
    clv = clv_by_acquisition(p)
    col = pl.col
    frame = pl.concat([act.join(clv, on="k"), ret], how="horizontal")
    money = ["revenue", "gross", "returning_revenue", "first_order_revenue",
             "repeat_order_revenue", "guest_revenue"]  # fmt: skip
    frame = frame.with_columns((col(c).cast(pl.Float64) * scale).alias(c) for c in money)
    out = frame.select(
        pl.Series("period_start", p.periods.starts()),
        pl.Series("period_end", p.periods.ends()),
        pl.Series("complete_period", p.periods.complete()),
        "customers",
        "orders",
        col("revenue"),
        col("gross").alias("gross_revenue"),
        (col("gross") - col("revenue")).alias("refunds"),
        _ratio(col("revenue"), col("orders")).alias("average_order_value"),
        _ratio(col("orders"), col("customers")).alias("purchase_frequency"),
        _ratio(col("repeat_customers"), col("customers"), 100).alias("repeat_customer_rate"),
        _ratio(col("revenue"), col("customers")).alias("customer_value"),
        "repeat_customers",
        "new_customers",
        (col("customers") - col("new_customers")).alias("returning_customers"),
        _ratio(col("returning_revenue"), col("revenue"), 100).alias(
            "returning_customer_revenue_share"
        ),
        _ratio(col("repeat_order_revenue"), col("revenue"), 100).alias(
            "repeat_order_revenue_share"
        ),
        _ratio(col("first_order_revenue"), col("first_orders")).alias("first_order_value"),
        _ratio(col("repeat_order_revenue"), col("repeat_orders")).alias("repeat_order_value"),
        "customers_at_start",
        "customers_at_end",
        "customers_gained",
        "reactivated_customers",
        "customer_retention_rate",
        "churned_customers",
        "customer_churn_rate",
        "revenue_at_start",
        "revenue_retained",
        "net_revenue_retention",
        "gross_revenue_retention",
        "revenue_churn_rate",
        _ratio(col("second_converted"), col("second_eligible"), 100).alias("second_purchase_rate"),
        col("second_eligible").alias("second_purchase_eligible"),
        *(
            _ratio(col(f"s{h}") * scale, col(f"c{h}")).alias(f"clv_{h}m")
            for h in p.options.clv_horizons_months
        ),
        "guest_orders",
        "guest_revenue",
        "cancelled_orders",
    )
    if with_events:
        rvf = returning_vs_first_time(p)
        if rvf.per_period is not None:
            out = pl.concat([out, rvf.per_period], how="horizontal")
    return out
