"""Customer retention (CRR with S, E, N), churn by count and by revenue, per tenure band.

Definitions (docs/metrics.md): a customer "is a customer" at a boundary b when they bought in
[b − W, b), W the activity window. S = customers at the period start, E = at its end,
N = customers at the end who were not at the start (new or won back), CRR = (E − N) / S.
Revenue retention compares, for the customers at the start, their revenue in the window
before the end with their revenue in the window before the start (NRR; GRR caps each
customer at their earlier revenue, so it never counts growth).

How (all integer group-bys): each purchase at day d covers the boundaries whose index is in
[n(d), n(d + W)); a customer's coverage is the union of their purchases' ranges, split into
segments where it breaks. Counting segment starts and ends per boundary gives S, N and the
churned customers; tenure bands are index ranges per customer ([0, cut1) short, [cut1, cut2)
medium, [cut2, ...) long), so every range is clipped per band before counting.
"""

from __future__ import annotations

from dataclasses import dataclass

import ibis
import numpy as np
import polars as pl
from ibis import _
from numpy.typing import NDArray

from boomerang.analytics.prepare import Prepared

BANDS = ("short", "medium", "long")
F64 = NDArray[np.float64]


@dataclass
class RetentionArrays:
    """Per boundary (0..K) and per period (0..K-1), by band (rows: short, medium, long)."""

    at_boundary: NDArray[np.int64]  # customers at each boundary, (3, K+1)
    churned: NDArray[np.int64]  # (3, K)
    new: NDArray[np.int64]  # (K,)
    reactivated: NDArray[np.int64]  # (K,)
    revenue_start: F64  # (3, K+1): window revenue before each boundary, minor units
    revenue_delta: F64  # (3, K): R1 - R0 for the customers at the start
    revenue_contraction: F64  # (3, K): sum of min(0, R1 - R0), <= 0


def _band_of(k: ibis.Value, cut1: ibis.Value, cut2: ibis.Value) -> ibis.Value:
    return ibis.cases((k < cut1, "short"), (k < cut2, "medium"), else_="long")


def _banded_ranges(t: ibis.Table, lo: str, hi: str, weight: ibis.Value) -> list[ibis.Table]:
    """+weight at each band's clipped start, −weight at its clipped end."""
    pieces = []
    for band, (a, b) in zip(BANDS, ((0, "cut1"), ("cut1", "cut2"), ("cut2", None)), strict=True):
        low = t[a] if isinstance(a, str) else ibis.literal(a)
        top = t[b] if isinstance(b, str) else ibis.literal(10**9)
        start = ibis.greatest(low, ibis.least(top, t[lo]))
        end = ibis.greatest(low, ibis.least(top, t[hi]))
        pieces.append(t.select(band=ibis.literal(band), pos=start, w=weight))
        pieces.append(t.select(band=ibis.literal(band), pos=end, w=-weight))
    return pieces


def _accumulate(rows: pl.DataFrame, k: int, *, cumulative: bool) -> F64:
    out = np.zeros((3, k + 2), dtype=np.float64)
    for band, pos, w in rows.iter_rows():
        if 0 <= pos <= k + 1:
            out[BANDS.index(band), pos] += w
    if cumulative:
        out = np.cumsum(out, axis=1)
    return out[:, : k + 1]


def retention_arrays(p: Prepared) -> RetentionArrays:
    """Compute S/E/N, churned customers and revenue retention inputs for every period."""
    k = p.k
    run = p.engine.arrow
    rows = p.purchases
    # Segments of each customer's coverage: a start where it breaks, an end where the next
    # purchase does not continue it; the i-th start pairs with the i-th end.
    starts = rows.filter(_.prev_nw.isnull() | (_.n > _.prev_nw)).select(
        "customer_id", "cut1", "cut2", a="n", is_first=_.prev_nw.isnull()
    )
    starts = starts.mutate(
        r=ibis.row_number().over(ibis.window(group_by="customer_id", order_by="a"))
    )
    ends = rows.filter(_.next_n.isnull() | (_.next_n > _.n_w)).select(
        e_customer="customer_id", e="n_w", t="t"
    )
    ends = ends.mutate(r_e=ibis.row_number().over(ibis.window(group_by="e_customer", order_by="t")))
    seg = starts.join(ends, [starts.customer_id == ends.e_customer, starts.r == ends.r_e]).select(
        "customer_id", "cut1", "cut2", "a", "e", "is_first"
    )
    seg = p.engine.cache(seg)

    # Band each distinct (cuts, range) once: those are boundary indices, so few distinct rows.
    seg_ranges = seg.group_by("cut1", "cut2", "a", "e").aggregate(k=_.count())
    coverage = ibis.union(*_banded_ranges(seg_ranges, "a", "e", seg_ranges.k))
    s_rows = pl.from_arrow(run(coverage.group_by("band", "pos").aggregate(w=_.w.sum())))
    at_boundary = _accumulate(_frame(s_rows), k, cumulative=True).astype(np.int64)

    live = seg.filter(_.e > _.a)
    gone = live.filter(_.e <= k).mutate(kk=_.e - 1)
    churn_rows = _frame(
        pl.from_arrow(
            run(
                gone.group_by(band=_band_of(gone.kk, gone.cut1, gone.cut2), pos=gone.kk).aggregate(
                    w=_.count()
                )
            )
        )
    )
    churned = _accumulate(churn_rows, k, cumulative=False)[:, :k].astype(np.int64)

    gained = live.filter(_.a >= 1, _.a <= k)
    g_rows = _frame(
        pl.from_arrow(
            run(gained.group_by(pos=gained.a - 1, first=gained.is_first).aggregate(w=_.count()))
        )
    )
    new = np.zeros(k, dtype=np.int64)
    reactivated = np.zeros(k, dtype=np.int64)
    for pos, first, count in g_rows.select("pos", "first", "w").iter_rows():
        (new if first else reactivated)[pos] += count

    rev_ranges = rows.group_by("cut1", "cut2", "n", "n_w").aggregate(v=_.net.sum().cast("float64"))
    window_rev = ibis.union(*_banded_ranges(rev_ranges, "n", "n_w", rev_ranges.v))
    r_rows = pl.from_arrow(run(window_rev.group_by("band", "pos").aggregate(w=_.w.sum())))
    revenue_start = _accumulate(_frame(r_rows), k, cumulative=True)

    delta, contraction = _revenue_changes(p)
    return RetentionArrays(
        at_boundary=at_boundary,
        churned=churned,
        new=new,
        reactivated=reactivated,
        revenue_start=revenue_start,
        revenue_delta=delta,
        revenue_contraction=contraction,
    )


def _frame(df: pl.DataFrame | pl.Series) -> pl.DataFrame:
    assert isinstance(df, pl.DataFrame)
    return df


def _revenue_changes(p: Prepared) -> tuple[F64, F64]:
    """Per band and period: Σ(R1 − R0) and Σ min(0, R1 − R0) over the customers at the start.

    R1 − R0 = A − D, where A is the customer's revenue that enters the window during the
    period and D the revenue that leaves it; each purchase enters once and leaves once.
    """
    k = p.k
    rows = p.purchases
    big = k + 10

    def band_code(kk: ibis.Value) -> ibis.Value:
        return ibis.cases((kk < rows.cut1, 0), (kk < rows.cut2, 1), else_=2).cast("int64")

    # One union of contributions, one group-by: entering revenue (A) at k = n − 1 for every
    # purchase in range, with the previous purchase's n_w for membership; leaving revenue
    # (D) at k = n_w − 1 (D rows always belong to a customer at the start).
    entering = rows.filter(rows.n >= 1, rows.n <= k).select(
        "customer_id",
        kk=(rows.n - 1).cast("int64"),
        band=band_code(rows.n - 1),
        a=ibis.ifelse(rows.n_w >= rows.n + 1, rows.net, 0).cast("float64"),
        d=ibis.literal(0.0),
        mem=(rows.prev_nw.fill_null(-1) - rows.n).cast("int64"),
    )
    leaving = rows.filter(rows.n_w > rows.n, rows.n_w >= 1, rows.n_w <= k).select(
        "customer_id",
        kk=(rows.n_w - 1).cast("int64"),
        band=band_code(rows.n_w - 1),
        a=ibis.literal(0.0),
        d=rows.net.cast("float64"),
        mem=ibis.literal(big, "int64"),
    )
    pairs = (
        ibis.union(entering, leaving)
        .group_by("customer_id", "kk", "band")
        .aggregate(a=_.a.sum(), d=_.d.sum(), mem=_.mem.min())
        .filter(_.mem >= 0)  # a customer at the start of period kk
    )
    delta = pairs.a - pairs.d
    agg = pairs.group_by("band", pos=pairs.kk).aggregate(
        delta=delta.sum(), contraction=ibis.least(delta, 0).sum()
    )
    out = _frame(pl.from_arrow(p.engine.arrow(agg)))
    delta = np.zeros((3, k), dtype=np.float64)
    contraction = np.zeros((3, k), dtype=np.float64)
    for band, pos, d, c in out.select("band", "pos", "delta", "contraction").iter_rows():
        delta[band, pos] += d
        contraction[band, pos] += c
    return delta, contraction


def _pct(num: F64, den: F64) -> F64:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1) * 100.0, np.nan)


def retention_table(p: Prepared, arrays: RetentionArrays, scale: float) -> pl.DataFrame:
    """Per period: CRR with S/E/N and churn, count and revenue, overall (band 'all')."""
    k = p.k
    s_all = arrays.at_boundary.sum(axis=0)
    s = s_all[:k].astype(np.float64)
    e = s_all[1:].astype(np.float64)
    gained = (arrays.new + arrays.reactivated).astype(np.float64)
    churned = arrays.churned.sum(axis=0).astype(np.float64)
    r0 = arrays.revenue_start.sum(axis=0)[:k]
    r1 = r0 + arrays.revenue_delta.sum(axis=0)
    kept = r0 + arrays.revenue_contraction.sum(axis=0)
    grr = _pct(kept, r0)
    return pl.DataFrame(
        {
            "customers_at_start": s.astype(np.int64),
            "customers_at_end": e.astype(np.int64),
            "customers_gained": gained.astype(np.int64),
            "reactivated_customers": arrays.reactivated,
            "churned_customers": churned.astype(np.int64),
            "customer_retention_rate": _pct(e - gained, s),
            "customer_churn_rate": _pct(churned, s),
            "revenue_at_start": r0 * scale,
            "revenue_retained": r1 * scale,
            "net_revenue_retention": _pct(r1, r0),
            "gross_revenue_retention": grr,
            "revenue_churn_rate": 100.0 - grr,
        },
        nan_to_null=True,
    )


def churn_by_tenure(p: Prepared, arrays: RetentionArrays, scale: float) -> pl.DataFrame:
    """Long table: one row per (period, band) plus band 'all' — never one blended figure."""
    k = p.k
    frames = []
    starts, ends = p.periods.starts(), p.periods.ends()
    for i, band in enumerate((*BANDS, "all")):
        if band == "all":
            s = arrays.at_boundary.sum(axis=0)[:k].astype(np.float64)
            ch = arrays.churned.sum(axis=0).astype(np.float64)
            r0 = arrays.revenue_start.sum(axis=0)[:k]
            dr = arrays.revenue_delta.sum(axis=0)
            con = arrays.revenue_contraction.sum(axis=0)
        else:
            s = arrays.at_boundary[i, :k].astype(np.float64)
            ch = arrays.churned[i].astype(np.float64)
            r0 = arrays.revenue_start[i, :k]
            dr = arrays.revenue_delta[i]
            con = arrays.revenue_contraction[i]
        grr = _pct(r0 + con, r0)
        frames.append(
            pl.DataFrame(
                {
                    "period_start": starts,
                    "period_end": ends,
                    "tenure_band": [band] * k,
                    "customers_at_start": s.astype(np.int64),
                    "churned_customers": ch.astype(np.int64),
                    "customer_churn_rate": _pct(ch, s),
                    "revenue_at_start": r0 * scale,
                    "revenue_retained": (r0 + dr) * scale,
                    "net_revenue_retention": _pct(r0 + dr, r0),
                    "gross_revenue_retention": grr,
                    "revenue_churn_rate": 100.0 - grr,
                },
                nan_to_null=True,
            )
        )
    return pl.concat(frames).sort("period_start", "tenure_band")
