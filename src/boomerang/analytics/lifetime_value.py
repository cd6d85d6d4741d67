"""Historical customer lifetime value: revenue within 3/6/12/24 months of the first purchase.

A month here is the average Gregorian month, 30.4375 days, so horizons are exact durations.
A customer (or cohort) gets a value for a horizon only once it has been observed that long.
Predicted CLV (BG/NBD, Gamma-Gamma) lives in `analytics.clv`.
"""

from __future__ import annotations

import ibis
import polars as pl
from ibis import _

from boomerang.analytics.periods import DAY_US, from_day, period_start
from boomerang.analytics.prepare import Prepared

MONTH_US = 2_629_800_000_000  # 30.4375 days in microseconds


def _frame(table: object) -> pl.DataFrame:
    frame = pl.from_arrow(table)  # type: ignore[arg-type]
    assert isinstance(frame, pl.DataFrame)
    return frame


def _per_customer(p: Prepared) -> ibis.Table:
    rows = p.purchases.filter(_.n <= p.k)
    aggs: dict[str, ibis.Value] = {
        "orders": _.count(),
        "revenue_to_date": _.net.sum(),
    }
    for h in p.options.clv_horizons_months:
        aggs[f"v{h}"] = ibis.ifelse(_.t - _.first_t < h * MONTH_US, _.net, 0).sum()
    return rows.group_by("customer_id", "first_t", "first_pidx", "first_n").aggregate(**aggs)


def customer_clv(p: Prepared, scale: float) -> pl.DataFrame:
    """One row per customer: first purchase, orders, revenue to date, clv_<h>m (or null)."""
    per = _per_customer(p)
    cols: dict[str, ibis.Value] = {
        "customer_id": per.customer_id,
        "first_day": per.first_t // DAY_US,
        "orders": per.orders,
        "revenue_to_date": per.revenue_to_date.cast("float64") * scale,
    }
    for h in p.options.clv_horizons_months:
        observed = per.first_t + h * MONTH_US <= p.end_us
        cols[f"clv_{h}m"] = ibis.ifelse(
            observed, per[f"v{h}"].cast("float64") * scale, ibis.null("float64")
        )
    frame = _frame(p.engine.arrow(per.select(**cols))).sort("customer_id")
    return frame.with_columns(
        pl.col("first_day").map_elements(from_day, return_dtype=pl.Date).alias("first_purchase")
    ).drop("first_day")


def cohort_clv(p: Prepared, scale: float) -> pl.DataFrame:
    """Per acquisition cohort (calendar period of the first purchase): customers and mean
    revenue per customer at each horizon, over the cohort's customers observed that long."""
    per = _per_customer(p).filter(_.first_n >= 1)
    sums: dict[str, ibis.Value] = {"customers": _.count()}
    for h in p.options.clv_horizons_months:
        ok = per.first_t + h * MONTH_US <= p.end_us
        sums[f"s{h}"] = ibis.ifelse(ok, per[f"v{h}"], 0).sum()
        sums[f"c{h}"] = ibis.ifelse(ok, 1, 0).sum()
    frame = _frame(p.engine.arrow(per.group_by(cohort="first_pidx").aggregate(**sums)))
    frame = frame.sort("cohort")
    g = p.periods.granularity
    starts = [from_day(int(d)) for d in period_start(frame["cohort"].to_numpy(), g)]
    out = frame.select(pl.Series("cohort_start", starts, dtype=pl.Date), "customers")
    for h in p.options.clv_horizons_months:
        out = out.with_columns(
            pl.when(frame[f"c{h}"] > 0)
            .then(frame[f"s{h}"].cast(pl.Float64) * scale / frame[f"c{h}"])
            .otherwise(None)
            .alias(f"clv_{h}m"),
            frame[f"c{h}"].alias(f"observed_{h}m"),
        )
    return out
