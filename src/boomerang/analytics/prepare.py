"""Scope a store's orders for one analysis: currency, status, customers, dates, periods.

The result is one cached table of identified customers' purchases, each row carrying its
period lookups (see `Periods.calendar`), and — computed on first use, once — the same rows
with what the metrics need from their neighbours in the customer's history (previous/next
purchase, sequence number, first purchase). Computing that window once keeps every later
metric a plain group-by; a cohort matrix alone does not need it.

Conventions (docs/metrics.md): cancelled orders are ignored; revenue is net of refunds
(total − refunded); an order with a negative total is a return record (Online Retail
layout) and is netted against the customer's latest purchase at or before it; orders in
another currency than the store's are excluded with a note.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import ibis
from ibis import _

from boomerang.analytics.engine import Data, Engine
from boomerang.analytics.options import CustomerFilter, MetricOptions
from boomerang.analytics.periods import DAY_US, Granularity, Periods, to_day
from boomerang.errors import InputError


@dataclass
class Prepared:
    """Everything the metric functions read, for one (store, range, periods, filter)."""

    engine: Engine
    data: Data
    periods: Periods
    options: MetricOptions
    base: ibis.Table  # identified purchases with their day lookups (cached)
    guests: ibis.Table
    cancelled: ibis.Table
    customers: ibis.Table | None  # the filtered customers, when a filter is active
    calendar: ibis.Table
    data_start_day: int
    data_end_day: int  # the day after the last order: the "as of" of the data
    notes: list[str] = field(default_factory=list)
    _purchases: ibis.Table | None = None

    @property
    def purchases(self) -> ibis.Table:
        """The purchases with their neighbours in each customer's history (one window pass,
        computed on first use and cached: cohorts alone do not need it)."""
        if self._purchases is None:
            b = self.base
            w = ibis.window(group_by="customer_id", order_by=["t", "id"])
            self._purchases = self.engine.cache(
                b.select(
                    "customer_id",
                    "id",
                    "day",
                    "net",
                    "n",
                    "n_w",
                    "pidx",
                    "t",
                    "gross",
                    seq=ibis.row_number().over(w) + 1,
                    prev_t=b.t.lag().over(w),
                    next_t=b.t.lead().over(w),
                    prev_n=b.n.lag().over(w),
                    prev_nw=b.n_w.lag().over(w),
                    next_n=b.n.lead().over(w),
                    first_t=b.t.first().over(w),
                    first_n=b.n.first().over(w),
                    first_pidx=b.pidx.first().over(w),
                    cut1=b.cut1.first().over(w),
                    cut2=b.cut2.first().over(w),
                )
            )
        return self._purchases

    @property
    def k(self) -> int:
        return self.periods.count

    @property
    def end_us(self) -> int:
        return self.periods.end_day * DAY_US


def _int(value: object) -> int:
    return 0 if value is None else int(value)  # type: ignore[call-overload]


def prepare(
    engine: Engine,
    data: Data,
    granularity: Granularity = Granularity.MONTH,
    *,
    start: date | None = None,
    end: date | None = None,
    options: MetricOptions | None = None,
    customers: CustomerFilter | None = None,
) -> Prepared:
    """Scope orders to the store currency, live statuses, the customer filter and the range.

    ``start``/``end`` are inclusive dates; they default to the first and last order's days.
    """
    options = options or MetricOptions()
    o = data.orders
    notes: list[str] = []
    in_currency = o.filter(_.currency == data.currency)
    other = _int(engine.scalar(o.filter(_.currency != data.currency).count()))
    if other:
        notes.append(
            f"{other:,} order(s) in another currency than the store's {data.currency} are "
            "excluded (metrics are per the store's currency)"
        )
    live = in_currency.filter(_.status != "cancelled")
    span = engine.arrow(live.aggregate(lo=_.placed_at.min(), hi=_.placed_at.max())).to_pylist()[0]
    if span["lo"] is None:
        raise InputError(
            f"no orders in {data.currency} to measure",
            hint="import orders first (boomerang import ...)",
        )
    data_start = int(span["lo"]) // DAY_US
    data_end = int(span["hi"]) // DAY_US + 1
    first_day = to_day(start) if start else data_start
    end_day = min(to_day(end) + 1 if end else data_end, data_end)
    if end_day <= first_day:
        raise InputError(
            "the date range holds no data",
            hint=f"choose dates between {_iso(data_start)} and {_iso(data_end - 1)}",
        )
    periods = Periods.between(first_day, end_day, granularity)
    cal = engine.table(
        periods.calendar(data_start, data_end, options.activity_window_days, options.tenure_bands),
        "calendar",
    )
    end_us = end_day * DAY_US

    chosen = None
    if customers is not None and customers.active:
        c = data.customers
        if customers.countries:
            c = c.filter(c.country.isin([x.upper() for x in customers.countries]))
        if customers.account_statuses:
            c = c.filter(c.account_status.isin(list(customers.account_statuses)))
        if customers.customer_ids:
            c = c.filter(c.id.isin([int(x) for x in customers.customer_ids]))
        chosen = c.select(customer_key=c.id)
        live = live.semi_join(chosen, live.customer_id == chosen.customer_key)
        in_currency = in_currency.semi_join(chosen, in_currency.customer_id == chosen.customer_key)

    live = live.filter(_.placed_at < end_us).mutate(
        net=_.total_minor - _.refunded_minor, day=_.placed_at // DAY_US
    )
    ident = live.filter(_.customer_id.notnull())
    purchases = _attach_returns(engine, ident, notes)
    base = engine.cache(
        purchases.join(cal, "day").select(
            "customer_id",
            "id",
            "day",
            "net",
            "n",
            "n_w",
            "pidx",
            "cut1",
            "cut2",
            t=_.placed_at,
            gross=_.total_minor,
        )
    )
    guests = live.filter(_.customer_id.isnull(), _.total_minor >= 0).join(cal, "day")
    cancelled = (
        in_currency.filter(_.status == "cancelled", _.placed_at < end_us)
        .mutate(day=_.placed_at // DAY_US)
        .join(cal, "day")
    )
    return Prepared(
        engine=engine,
        data=data,
        periods=periods,
        options=options,
        base=base,
        guests=guests,
        cancelled=cancelled,
        customers=chosen,
        calendar=cal,
        data_start_day=data_start,
        data_end_day=data_end,
        notes=notes,
    )


def _attach_returns(engine: Engine, ident: ibis.Table, notes: list[str]) -> ibis.Table:
    """Net return records (negative totals) into the latest purchase at or before them."""
    returns = _int(engine.scalar(ident.filter(_.total_minor < 0).count()))
    if not returns:
        return ident.filter(_.total_minor >= 0)
    is_return = ibis.ifelse(ident.total_minor < 0, 1, 0)
    w = ibis.window(group_by="customer_id", order_by=["placed_at", is_return, "id"], rows=(None, 0))
    marked = ident.mutate(
        is_return=is_return, pc=ibis.ifelse(ident.total_minor >= 0, 1, 0).sum().over(w)
    )
    rets = marked.filter(_.is_return == 1)
    orphans = _int(engine.scalar(rets.filter(_.pc == 0).count()))
    if orphans:
        notes.append(
            f"{orphans:,} return record(s) precede any purchase by their customer and are ignored"
        )
    attached = (
        rets.filter(_.pc > 0)
        .group_by(r_customer="customer_id", r_pc="pc")
        .aggregate(returned=_.net.sum())
    )
    buys = marked.filter(_.is_return == 0)
    joined = buys.left_join(
        attached, [buys.customer_id == attached.r_customer, buys.pc == attached.r_pc]
    )
    notes.append(
        f"{returns:,} return record(s) are netted against the customer's latest purchase "
        "(revenue by order date)"
    )
    return joined.mutate(net=_.net + _.returned.fill_null(0)).drop(
        "r_customer", "r_pc", "returned", "is_return", "pc"
    )


def _iso(day: int) -> str:
    from boomerang.analytics.periods import from_day

    return from_day(day).isoformat()
