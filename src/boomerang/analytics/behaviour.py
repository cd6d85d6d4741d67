"""Returning buyers vs first-time visitors, from site events (seed 000's comparison).

A session starts at a ``visit`` event and holds the visitor's following events until their
next visit. A visitor is an anonymous id (stitched to a customer when any event carries
both) or, failing that, the customer id. A session is *returning* when its customer had a
purchase before the session started; every other session, anonymous ones included, is
*first-time*. Rates are shares of sessions with at least one ``added_to_cart`` (add-to-cart
rate) or ``order_placed`` (conversion rate). Spend per transaction compares net order values
of repeat purchases with first purchases (from orders, which carry the amounts).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ibis
import numpy as np
import polars as pl
from ibis import _

from boomerang.analytics.periods import DAY_US
from boomerang.analytics.prepare import Prepared
from boomerang.domain.enums import EventType
from boomerang.domain.money import currency_exponent

SEED_000_LIFTS = {
    "add_to_cart_rate": 65.16,
    "conversion_rate": 73.72,
    "spend_per_transaction": 16.15,
}


@dataclass
class Comparison:
    """Returning vs first-time over the whole range, and per period."""

    sessions: dict[str, int] = field(default_factory=dict)
    returning: dict[str, float | None] = field(default_factory=dict)
    first_time: dict[str, float | None] = field(default_factory=dict)
    lift: dict[str, float | None] = field(default_factory=dict)
    per_period: pl.DataFrame | None = None
    note: str = ""


def _frame(table: object) -> pl.DataFrame:
    frame = pl.from_arrow(table)  # type: ignore[arg-type]
    assert isinstance(frame, pl.DataFrame)
    return frame


def _sessions(p: Prepared) -> ibis.Table:
    ev = p.data.events.filter(
        _.occurred_at < p.end_us,
        _.type.isin(
            [EventType.VISIT.value, EventType.ADDED_TO_CART.value, EventType.ORDER_PLACED.value]
        ),
    )
    ev = ev.mutate(
        visitor=ibis.coalesce(ev.anonymous_id, ibis.literal("c:") + ev.customer_id.cast("string")),
        is_visit=ibis.ifelse(ev.type == EventType.VISIT.value, 1, 0),
    ).filter(_.visitor.notnull())
    w = ibis.window(
        group_by="visitor", order_by=[ev.occurred_at, ibis.desc(ev.is_visit)], rows=(None, 0)
    )
    ev = ev.mutate(session=ev.is_visit.sum().over(w))
    sessions = (
        ev.filter(_.session > 0)
        .group_by("visitor", "session")
        .aggregate(
            start=_.occurred_at.min(),
            cid=_.customer_id.max(),
            cart=(_.type == EventType.ADDED_TO_CART.value).any(),
            ordered=(_.type == EventType.ORDER_PLACED.value).any(),
        )
    )
    stitched = (
        p.data.events.filter(_.anonymous_id.notnull(), _.customer_id.notnull())
        .group_by(anon="anonymous_id")
        .aggregate(anon_cid=_.customer_id.min())
    )
    sessions = sessions.left_join(stitched, sessions.visitor == stitched.anon)
    sessions = sessions.mutate(customer=ibis.coalesce(_.cid, _.anon_cid))
    if p.customers is not None:
        sessions = sessions.semi_join(p.customers, sessions.customer == p.customers.customer_key)
    firsts = p.purchases.filter(_.seq == 1).select(f_customer="customer_id", f_t="t")
    sessions = sessions.left_join(firsts, sessions.customer == firsts.f_customer)
    sessions = sessions.mutate(
        returning=_.f_t.notnull() & (_.f_t < _.start), day=_.start // DAY_US
    ).join(p.calendar, "day")
    return sessions.filter(_.n >= 1, _.n <= p.k)


def returning_vs_first_time(p: Prepared) -> Comparison:
    """Add-to-cart rate, conversion rate and spend per transaction, with lifts in %."""
    k = p.k
    scale = float(10 ** -currency_exponent(p.data.currency))
    spend = _frame(
        p.engine.arrow(
            p.purchases.filter(_.n >= 1, _.n <= k)
            .group_by(kk=_.n - 1, returning=_.seq > 1)
            .aggregate(orders=_.count(), revenue=_.net.sum())
        )
    )
    has_events = int(p.engine.scalar(p.data.events.count()) or 0) > 0
    visits = (
        _frame(
            p.engine.arrow(
                _sessions(p)
                .group_by(kk=_.n - 1, returning=_.returning)
                .aggregate(
                    sessions=_.count(),
                    carts=ibis.ifelse(_.cart, 1, 0).sum(),
                    conversions=ibis.ifelse(_.ordered, 1, 0).sum(),
                )
            )
        )
        if has_events
        else pl.DataFrame()
    )

    out = Comparison()
    if not has_events or visits.height == 0:
        out.note = "no visit events in range: add-to-cart and conversion rates need site events"
    grid = np.zeros(
        (2, k, 5), dtype=np.float64
    )  # [returning][k][sessions, carts, conv, orders, rev]
    for row in visits.iter_rows(named=True) if visits.height else []:
        g = grid[1 if row["returning"] else 0, row["kk"]]
        g[0] += row["sessions"]
        g[1] += row["carts"]
        g[2] += row["conversions"]
    for row in spend.iter_rows(named=True):
        g = grid[1 if row["returning"] else 0, row["kk"]]
        g[3] += row["orders"]
        g[4] += row["revenue"] * scale

    def rates(v: np.ndarray) -> dict[str, float | None]:
        def div(a: float, b: float, f: float = 1.0) -> float | None:
            return float(a / b * f) if b > 0 else None

        return {
            "add_to_cart_rate": div(v[1], v[0], 100),
            "conversion_rate": div(v[2], v[0], 100),
            "spend_per_transaction": div(v[4], v[3]),
        }

    total = grid.sum(axis=1)
    out.sessions = {"returning": int(total[1, 0]), "first_time": int(total[0, 0])}
    out.returning = rates(total[1])
    out.first_time = rates(total[0])
    for key in out.returning:
        r, f = out.returning[key], out.first_time[key]
        out.lift[key] = (r - f) / f * 100 if r is not None and f else None
    cols: dict[str, list[float | None]] = {}
    for who, idx in (("returning", 1), ("first_time", 0)):
        per = [rates(grid[idx, i]) for i in range(k)]
        for key in ("add_to_cart_rate", "conversion_rate", "spend_per_transaction"):
            cols[f"{who}_{key}"] = [r[key] for r in per]
    out.per_period = pl.DataFrame(cols, schema={c: pl.Float64 for c in cols})
    return out
