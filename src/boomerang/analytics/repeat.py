"""Second purchases: how many first-time buyers come back, and how long they take.

Rates "within N days" count customers whose first purchase was at least N days before the
end of the range (so they had the full N days to come back).
"""

from __future__ import annotations

from dataclasses import dataclass

import ibis
import numpy as np
import polars as pl
from ibis import _

from boomerang.analytics.periods import DAY_US
from boomerang.analytics.prepare import Prepared

WITHIN_DAYS = (30, 60, 90, 180, 365)
BUCKETS = ((0, 7), (7, 14), (14, 30), (30, 60), (60, 90), (90, 180), (180, 365), (365, None))


@dataclass
class SecondPurchase:
    first_time_buyers: int
    repeat_buyers: int
    rates: pl.DataFrame  # within_days, eligible, converted, rate
    distribution: pl.DataFrame  # bucket, customers, share
    median_days: float | None
    p25_days: float | None
    p75_days: float | None


def _frame(table: object) -> pl.DataFrame:
    frame = pl.from_arrow(table)  # type: ignore[arg-type]
    assert isinstance(frame, pl.DataFrame)
    return frame


def second_purchase(p: Prepared, within: tuple[int, ...] = ()) -> SecondPurchase:
    """Second-purchase rates and the distribution of days from the 1st to the 2nd order."""
    days = tuple(sorted({*WITHIN_DAYS, p.options.second_purchase_days, *within}))
    firsts = p.purchases.filter(_.seq == 1, _.n >= 1, _.n <= p.k)
    gap = firsts.next_t - firsts.t
    aggs: dict[str, ibis.Value] = {"buyers": _.count()}
    for d in days:
        ok = firsts.t + d * DAY_US <= p.end_us
        aggs[f"e{d}"] = ibis.ifelse(ok, 1, 0).sum()
        aggs[f"c{d}"] = ibis.ifelse(ok & gap.notnull() & (gap <= d * DAY_US), 1, 0).sum()
    summary = _frame(p.engine.arrow(firsts.aggregate(**aggs))).row(0, named=True)
    gaps = _frame(
        p.engine.arrow(
            firsts.filter(_.next_t.notnull())
            .group_by(gap_days=(_.next_t - _.t) // DAY_US)
            .aggregate(customers=_.count())
        )
    ).sort("gap_days")
    rates = pl.DataFrame(
        {
            "within_days": list(days),
            "eligible": [int(summary[f"e{d}"] or 0) for d in days],
            "converted": [int(summary[f"c{d}"] or 0) for d in days],
        }
    ).with_columns(
        pl.when(pl.col("eligible") > 0)
        .then(pl.col("converted") / pl.col("eligible") * 100)
        .otherwise(None)
        .alias("rate")
    )
    g = gaps["gap_days"].to_numpy().astype(np.int64) if gaps.height else np.zeros(0, np.int64)
    c = gaps["customers"].to_numpy().astype(np.int64) if gaps.height else np.zeros(0, np.int64)
    total = int(c.sum())
    labels, counts = [], []
    for lo, hi in BUCKETS:
        mask = (g >= lo) & (g < hi) if hi is not None else g >= lo
        labels.append(f"{lo}–{hi - 1} days" if hi is not None else f"{lo}+ days")
        counts.append(int(c[mask].sum()))
    dist = pl.DataFrame({"bucket": labels, "customers": counts}).with_columns(
        (pl.col("customers") / max(total, 1) * 100).alias("share")
    )

    def quantile(q: float) -> float | None:
        if total == 0:
            return None
        cum = np.cumsum(c)
        return float(g[int(np.searchsorted(cum, q * total, side="left"))])

    return SecondPurchase(
        first_time_buyers=int(summary["buyers"] or 0),
        repeat_buyers=total,
        rates=rates,
        distribution=dist,
        median_days=quantile(0.5),
        p25_days=quantile(0.25),
        p75_days=quantile(0.75),
    )
