"""Acquisition cohorts × periods since acquisition: customers retained and revenue.

A customer's cohort is the calendar period of their first purchase (month by default);
"periods since" counts calendar periods from it (0 = the acquisition period). Cells count
customers with at least one purchase in that period and their net revenue. Percentages are
of the cohort's size (customers) and of the cohort's period-0 revenue (revenue).
"""

from __future__ import annotations

import polars as pl
from ibis import _

from boomerang.analytics.periods import from_day, period_start
from boomerang.analytics.prepare import Prepared


def _frame(table: object) -> pl.DataFrame:
    frame = pl.from_arrow(table)  # type: ignore[arg-type]
    assert isinstance(frame, pl.DataFrame)
    return frame


def cohort_table(p: Prepared, scale: float) -> pl.DataFrame:
    """Long format: cohort_start, periods_since, cohort_size, customers, revenue and the %s."""
    # No window needed: a customer's first purchase has the smallest n and pidx.
    base = p.base
    firsts = base.group_by(f_customer="customer_id").aggregate(
        first_n=_.n.min(), first_pidx=_.pidx.min()
    )
    rows = base.join(firsts, base.customer_id == firsts.f_customer).filter(
        _.first_n >= 1, _.n <= p.k
    )
    cells = rows.group_by("customer_id", cohort="first_pidx", age=_.pidx - _.first_pidx).aggregate(
        revenue=_.net.sum()
    )
    matrix = cells.group_by("cohort", "age").aggregate(customers=_.count(), revenue=_.revenue.sum())
    frame = _frame(p.engine.arrow(matrix)).sort("cohort", "age")
    if frame.height == 0:
        return pl.DataFrame(
            schema={
                "cohort_start": pl.Date,
                "periods_since": pl.Int64,
                "cohort_size": pl.Int64,
                "customers": pl.Int64,
                "customers_pct": pl.Float64,
                "revenue": pl.Float64,
                "revenue_pct": pl.Float64,
            }
        )
    base = frame.filter(pl.col("age") == 0).select(
        "cohort", pl.col("customers").alias("cohort_size"), pl.col("revenue").alias("revenue0")
    )
    frame = frame.join(base, on="cohort", how="left")
    g = p.periods.granularity
    starts = [from_day(int(d)) for d in period_start(frame["cohort"].to_numpy(), g)]
    return frame.select(
        pl.Series("cohort_start", starts, dtype=pl.Date),
        pl.col("age").cast(pl.Int64).alias("periods_since"),
        pl.col("cohort_size").cast(pl.Int64),
        pl.col("customers").cast(pl.Int64),
        (pl.col("customers") / pl.col("cohort_size") * 100).alias("customers_pct"),
        (pl.col("revenue").cast(pl.Float64) * scale).alias("revenue"),
        pl.when(pl.col("revenue0") > 0)
        .then(pl.col("revenue") / pl.col("revenue0") * 100)
        .otherwise(None)
        .alias("revenue_pct"),
    )


def pivot(cohorts: pl.DataFrame, value: str) -> pl.DataFrame:
    """Wide matrix: one row per cohort, one column per period since acquisition."""
    if cohorts.height == 0:
        return pl.DataFrame({"cohort_start": [], "cohort_size": []})
    wide = cohorts.pivot(
        on="periods_since", index=["cohort_start", "cohort_size"], values=value, sort_columns=False
    )
    ages = sorted(int(c) for c in wide.columns if c not in ("cohort_start", "cohort_size"))
    return wide.select("cohort_start", "cohort_size", *[str(a) for a in ages]).sort("cohort_start")
