"""Attribution and holdout incrementality: pure functions over polars frames and numpy arrays.

Definitions (docs/attribution.md is the reference a marketer reads):

- A *touch* is a marketing message (not transactional, not a holdout row) with status
  ``sent`` at its ``sent_at``, or a click on such a message at the click's time.
- An order is attributed to **at most one** message: the message of the customer's latest
  *click* in the window before the order; when there is none, the message of the latest
  *send* in the window. "In the window" means ``0 < placed_at - touch_at <= window``: an
  order in the same microsecond as a send (the order that triggered it) is never credited.
  Ties between two touches at the same moment go to the higher message id (queued later).
- Incrementality compares a flow's entrants by the run's holdout flag (intent to treat:
  every non-holdout entrant counts as treated, reached or not). Each entrant's outcome is
  the net revenue (and whether they ordered) in ``(entered_at, entered_at + horizon]``;
  the incremental revenue is ``(mean treated - mean holdout) * treated entrants`` with a
  Welch t interval on the difference of means.

Money arrives as integer minor units; means, intervals and lifts are float64 (analytics
convention: aggregates may be floats, and say so).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
import polars as pl
from scipy import stats

from boomerang.campaigns.flow import END, Flow, Wait, wait_micros
from boomerang.domain.clock import MICROS_PER_DAY

__all__ = [
    "ATTRIBUTED_SCHEMA",
    "MIN_HOLDOUT",
    "Incrementality",
    "Span",
    "attribute",
    "flow_span",
    "incrementality",
    "reach_micros",
    "window_outcomes",
]

#: A holdout (or treated group) smaller than this gives an interval too rough to act on.
MIN_HOLDOUT = 30

ATTRIBUTED_SCHEMA = {
    "order_id": pl.Int64,
    "customer_id": pl.Int64,
    "placed_at": pl.Int64,
    "revenue_minor": pl.Int64,
    "outbox_id": pl.Int64,
    "touch": pl.String,
    "touch_at": pl.Int64,
}


def _latest_touch(orders: pl.DataFrame, touches: pl.DataFrame, window: int) -> pl.DataFrame:
    """Each order with the customer's latest touch strictly before it and at most
    ``window`` micros earlier (null outbox_id when none)."""
    # One touch per (customer, moment): the higher message id wins a tie.
    touches = (
        touches.sort(["customer_id", "touch_at", "outbox_id"])
        .unique(["customer_id", "touch_at"], keep="last", maintain_order=True)
        .sort("touch_at")
    )
    # Strictly before: match on placed_at - 1 (integer micros), so touch_at <= placed_at - 1;
    # the tolerance shrinks by the same microsecond: placed_at - touch_at <= window.
    left = orders.with_columns((pl.col("placed_at") - 1).alias("_probe")).sort("_probe")
    joined = left.join_asof(
        touches.rename({"touch_at": "_touch_at"}),
        left_on="_probe",
        right_on="_touch_at",
        by="customer_id",
        strategy="backward",
        tolerance=window - 1,
        check_sortedness=False,
    )
    return joined.drop("_probe").rename({"_touch_at": "touch_at"})


def attribute(
    orders: pl.DataFrame, sends: pl.DataFrame, clicks: pl.DataFrame, window: int
) -> pl.DataFrame:
    """Attribute orders to messages.

    ``orders``: order_id, customer_id, placed_at, revenue_minor (net, non-cancelled).
    ``sends``: outbox_id, customer_id, sent_at (sent marketing messages only).
    ``clicks``: outbox_id, customer_id, clicked_at (clicks on those messages).
    ``window``: micros (> 0). Returns the attributed orders only, with the message
    (outbox_id), how it was credited (``touch``: click | send) and the touch's time.
    """
    if window <= 0:
        raise ValueError("the attribution window must be positive")
    empty = pl.DataFrame(schema=ATTRIBUTED_SCHEMA)
    if orders.is_empty() or sends.is_empty():
        return empty
    orders = orders.select(
        pl.col("order_id").cast(pl.Int64),
        pl.col("customer_id").cast(pl.Int64),
        pl.col("placed_at").cast(pl.Int64),
        pl.col("revenue_minor").cast(pl.Int64),
    )
    send_touches = sends.select(
        pl.col("outbox_id").cast(pl.Int64),
        pl.col("customer_id").cast(pl.Int64),
        pl.col("sent_at").cast(pl.Int64).alias("touch_at"),
    )
    sent_ids = send_touches["outbox_id"]
    click_touches = clicks.filter(pl.col("outbox_id").is_in(sent_ids.implode())).select(
        pl.col("outbox_id").cast(pl.Int64),
        pl.col("customer_id").cast(pl.Int64),
        pl.col("clicked_at").cast(pl.Int64).alias("touch_at"),
    )
    parts = []
    rest = orders
    if not click_touches.is_empty():
        by_click = _latest_touch(orders, click_touches, window)
        hit = by_click.filter(pl.col("outbox_id").is_not_null())
        parts.append(hit.with_columns(pl.lit("click").alias("touch")))
        rest = orders.filter(~pl.col("order_id").is_in(hit["order_id"].implode()))
    if not rest.is_empty():
        by_send = _latest_touch(rest, send_touches, window)
        hit = by_send.filter(pl.col("outbox_id").is_not_null())
        parts.append(hit.with_columns(pl.lit("send").alias("touch")))
    if not parts:
        return empty
    out = pl.concat([p.select(list(ATTRIBUTED_SCHEMA)) for p in parts])
    return out.cast(ATTRIBUTED_SCHEMA).sort("order_id")  # type: ignore[arg-type]


def window_outcomes(entrants: pl.DataFrame, orders: pl.DataFrame) -> pl.DataFrame:
    """Per entrant (run_id, customer_id, start, end): net revenue and order count of the
    customer's orders placed in ``(start, end]``. Entrants without orders get zeros."""
    base = entrants.select(
        pl.col("run_id").cast(pl.Int64),
        pl.col("customer_id").cast(pl.Int64),
        pl.col("start").cast(pl.Int64),
        pl.col("end").cast(pl.Int64),
    )
    if orders.is_empty() or base.is_empty():
        return base.with_columns(
            pl.lit(0, pl.Int64).alias("revenue_minor"), pl.lit(0, pl.Int64).alias("orders")
        )
    hits = (
        base.join(
            orders.select(
                pl.col("customer_id").cast(pl.Int64),
                pl.col("placed_at").cast(pl.Int64),
                pl.col("revenue_minor").cast(pl.Int64),
            ),
            on="customer_id",
        )
        .filter((pl.col("placed_at") > pl.col("start")) & (pl.col("placed_at") <= pl.col("end")))
        .group_by("run_id")
        .agg(pl.col("revenue_minor").sum(), pl.len().cast(pl.Int64).alias("orders"))
    )
    return base.join(hits, on="run_id", how="left").with_columns(
        pl.col("revenue_minor").fill_null(0), pl.col("orders").fill_null(0)
    )


# -- incrementality ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Incrementality:
    """Treated (not holdout) vs holdout entrants over the same horizon.

    Revenue figures are minor units (float64 means). ``incremental_*`` =
    (mean difference and its Welch interval) x treated entrants; ``lift_pct`` =
    mean difference / holdout mean x 100 (None when the holdout spent nothing);
    conversion = share of entrants with at least one order in the horizon, its
    difference with a Wald (unpooled) interval and a pooled two-proportion z-test p-value.
    """

    treated: int
    holdout: int
    mean_treated_minor: float
    mean_holdout_minor: float
    incremental_minor: float
    incremental_low_minor: float | None
    incremental_high_minor: float | None
    p_value: float | None
    lift_pct: float | None
    conversion_treated: float
    conversion_holdout: float
    conversion_diff: float
    conversion_diff_low: float | None
    conversion_diff_high: float | None
    conversion_p_value: float | None
    confidence: float


def welch_interval(
    a: np.ndarray, b: np.ndarray, confidence: float = 0.95
) -> tuple[float, float | None, float | None, float | None]:
    """mean(a) - mean(b), its Welch-Satterthwaite t interval and two-sided p-value
    (None when either group has fewer than 2 values)."""
    na, nb = len(a), len(b)
    diff = float(np.mean(a) - np.mean(b)) if na and nb else 0.0
    if na < 2 or nb < 2:
        return diff, None, None, None
    va, vb = float(np.var(a, ddof=1)) / na, float(np.var(b, ddof=1)) / nb
    se = math.sqrt(va + vb)
    if se == 0.0:
        return diff, diff, diff, (1.0 if diff == 0.0 else 0.0)
    df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    q = float(stats.t.ppf(0.5 + confidence / 2, df))
    p = float(2 * stats.t.sf(abs(diff) / se, df))
    return diff, diff - q * se, diff + q * se, p


def proportion_diff(
    x1: int, n1: int, x2: int, n2: int, confidence: float = 0.95
) -> tuple[float, float | None, float | None, float | None]:
    """p1 - p2 with a Wald (unpooled) interval and the pooled two-proportion z-test
    p-value (None when a group is empty or every rate is 0 or 1)."""
    if n1 == 0 or n2 == 0:
        return 0.0, None, None, None
    p1, p2 = x1 / n1, x2 / n2
    diff = p1 - p2
    se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    pooled = (x1 + x2) / (n1 + n2)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    p_value = None if se0 == 0.0 else float(2 * stats.norm.sf(abs(diff) / se0))
    return diff, diff - z * se, diff + z * se, p_value


def incrementality(
    treated_revenue: np.ndarray,
    holdout_revenue: np.ndarray,
    treated_orders: np.ndarray,
    holdout_orders: np.ndarray,
    *,
    confidence: float = 0.95,
) -> Incrementality:
    """The holdout comparison of one flow (arrays: one value per entrant)."""
    t = np.asarray(treated_revenue, dtype=np.float64)
    h = np.asarray(holdout_revenue, dtype=np.float64)
    nt, nh = len(t), len(h)
    diff, low, high, p = welch_interval(t, h, confidence)
    mean_h = float(np.mean(h)) if nh else 0.0
    mean_t = float(np.mean(t)) if nt else 0.0
    ct = int(np.count_nonzero(np.asarray(treated_orders) > 0))
    ch = int(np.count_nonzero(np.asarray(holdout_orders) > 0))
    cdiff, clow, chigh, cp = proportion_diff(ct, nt, ch, nh, confidence)
    return Incrementality(
        treated=nt,
        holdout=nh,
        mean_treated_minor=mean_t,
        mean_holdout_minor=mean_h,
        incremental_minor=diff * nt,
        incremental_low_minor=None if low is None else low * nt,
        incremental_high_minor=None if high is None else high * nt,
        p_value=p,
        lift_pct=None if mean_h == 0.0 or not nt else diff / mean_h * 100.0,
        conversion_treated=ct / nt if nt else 0.0,
        conversion_holdout=ch / nh if nh else 0.0,
        conversion_diff=cdiff,
        conversion_diff_low=clow,
        conversion_diff_high=chigh,
        conversion_p_value=cp,
        confidence=confidence,
    )


# -- how long a flow lasts ----------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """The longest time (micros) from entering a flow to its end, over every path of
    duration waits; ``until_time`` waits count as up to one day; waits until a date (a
    birthday, a renewal) cannot be bounded and count as their offset only (``exact`` is
    then False)."""

    micros: int
    exact: bool

    @property
    def days(self) -> float:
        return self.micros / MICROS_PER_DAY


def _wait_bounds(step: Wait) -> tuple[int, int, bool]:
    """(shortest, longest, exact) length of a wait step in micros."""
    spec = step.wait
    length = wait_micros(spec)
    if length is not None:
        return length, length, True
    if spec.until_time is not None:
        return 0, MICROS_PER_DAY, True
    offset = max(0, spec.offset_days) * MICROS_PER_DAY
    return 0, offset, False


def flow_span(flow: Flow, start: str | None = None) -> Span:
    """The longest path from ``start`` (default the first step) to the end."""

    @cache
    def longest(step_id: str) -> tuple[int, bool]:
        if step_id == END:
            return 0, True
        step = flow.step(step_id)
        own, exact = 0, True
        if isinstance(step, Wait):
            _, own, exact = _wait_bounds(step)
        best, best_exact = 0, True
        for nxt in flow.successors(step_id):
            length, ok = longest(nxt)
            if length >= best:
                best = length
            best_exact = best_exact and ok
        return own + best, exact and best_exact

    micros, exact = longest(start or flow.first())
    return Span(micros, exact)


def reach_micros(flow: Flow, target: str) -> int | None:
    """The shortest scheduled time from entry to ``target`` (waits until a time of day or
    a date count as 0): a lower bound of when a run reaches the step; None if no path."""

    @cache
    def shortest(step_id: str) -> int | None:
        if step_id == target:
            return 0
        if step_id == END:
            return None
        step = flow.step(step_id)
        own = _wait_bounds(step)[0] if isinstance(step, Wait) else 0
        found = [s for s in (shortest(n) for n in flow.successors(step_id)) if s is not None]
        return own + min(found) if found else None

    return shortest(flow.first())
