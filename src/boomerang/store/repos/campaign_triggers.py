"""Who a flow's trigger lets in during [since, until): one query per trigger kind.

Each entry has a key naming what let the customer in (an order, an event, a segment
change, a date), so scanning the same window twice inserts nothing new. The time of an
entry is when the trigger happened (an abandonment: when its waiting time ran out).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, and_, exists, func, select
from sqlalchemy.orm import aliased

from boomerang.store.schema import (
    customers,
    events,
    loyalty_events,
    memberships,
    order_lines,
    orders,
    products,
    segment_events,
    segment_memberships,
    segments,
)

HOUR = 3_600_000_000
DAY = 24 * HOUR


@dataclass(frozen=True)
class Entry:
    customer_id: int
    key: str
    at: int
    context: dict[str, Any] = field(default_factory=dict)


def order_placed(
    conn: Connection, store_id: int, since: int, until: int, which: str, n: int | None
) -> list[Entry]:
    earlier = aliased(orders)
    rank = (
        select(func.count())
        .where(
            earlier.c.store_id == store_id,
            earlier.c.customer_id == orders.c.customer_id,
            earlier.c.status != "cancelled",
            (earlier.c.placed_at < orders.c.placed_at)
            | and_(earlier.c.placed_at == orders.c.placed_at, earlier.c.id < orders.c.id),
        )
        .scalar_subquery()
    )
    query = select(
        orders.c.customer_id, orders.c.external_id, orders.c.placed_at, orders.c.total_minor, rank
    ).where(
        orders.c.store_id == store_id,
        orders.c.customer_id.is_not(None),
        orders.c.status != "cancelled",
        orders.c.placed_at >= since,
        orders.c.placed_at < until,
    )
    wanted = 1 if which == "first" else n
    out = []
    for cid, ref, at, total, before in conn.execute(query):
        number = int(before) + 1
        if wanted is not None and number != wanted:
            continue
        out.append(
            Entry(int(cid), f"order:{ref}", int(at),
                  {"order": str(ref), "order_number": number, "total_minor": int(total)})
        )  # fmt: skip
    return out


def _props(raw: Any) -> Any:
    """An event's properties as data (templates read ``run.trigger.properties.cart``)."""
    if not isinstance(raw, str) or not raw:
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _event_rows(
    conn: Connection, store_id: int, types: tuple[str, ...], since: int, until: int
) -> Iterator[Any]:
    yield from conn.execute(
        select(events.c.id, events.c.customer_id, events.c.occurred_at, events.c.properties).where(
            events.c.store_id == store_id,
            events.c.customer_id.is_not(None),
            events.c.type.in_(types),
            events.c.occurred_at >= since,
            events.c.occurred_at < until,
        )
    )


def abandoned(
    conn: Connection,
    store_id: int,
    since: int,
    until: int,
    *,
    start_type: str,
    follow_types: tuple[str, ...],
    hours: int,
    per_day: bool,
    min_count: int = 1,
) -> list[Entry]:
    """``start_type`` events whose ``hours`` ran out in [since, until) with no order (and
    no ``follow_types`` event) by the customer in between."""
    wait = hours * HOUR
    later = aliased(events)
    followed = exists().where(
        later.c.store_id == store_id,
        later.c.customer_id == events.c.customer_id,
        later.c.type.in_(follow_types),
        later.c.occurred_at > events.c.occurred_at,
        later.c.occurred_at <= events.c.occurred_at + wait,
    )
    ordered = exists().where(
        orders.c.store_id == store_id,
        orders.c.customer_id == events.c.customer_id,
        orders.c.placed_at > events.c.occurred_at,
        orders.c.placed_at <= events.c.occurred_at + wait,
    )
    query = select(
        events.c.id, events.c.customer_id, events.c.occurred_at, events.c.properties
    ).where(
        events.c.store_id == store_id,
        events.c.customer_id.is_not(None),
        events.c.type == start_type,
        events.c.occurred_at >= since - wait,
        events.c.occurred_at < until - wait,
        ~ordered,
    )
    if follow_types:
        query = query.where(~followed)
    out: dict[str, Entry] = {}
    seen: dict[str, int] = {}
    for eid, cid, at, props in conn.execute(query.order_by(events.c.occurred_at, events.c.id)):
        day = datetime.fromtimestamp(int(at) / 1e6, UTC).date().isoformat()
        key = f"{start_type}:{cid}:{day}" if per_day else f"{start_type}:{eid}"
        seen[key] = seen.get(key, 0) + 1
        if key not in out:
            out[key] = Entry(
                int(cid), key, int(at) + wait, {"event": int(eid), "properties": _props(props)}
            )
    return [e for key, e in out.items() if seen[key] >= min_count]


def event_entries(
    conn: Connection, store_id: int, types: tuple[str, ...], since: int, until: int, prefix: str
) -> list[Entry]:
    return [
        Entry(
            int(cid), f"{prefix}:{eid}", int(at), {"event": int(eid), "properties": _props(props)}
        )
        for eid, cid, at, props in _event_rows(conn, store_id, types, since, until)
    ]


def accounts_created(conn: Connection, store_id: int, since: int, until: int) -> list[Entry]:
    rows = conn.execute(
        select(customers.c.id, customers.c.created_at).where(
            customers.c.store_id == store_id,
            customers.c.created_at >= since,
            customers.c.created_at < until,
        )
    )
    return [Entry(int(cid), "account", int(at)) for cid, at in rows]


def segment_changes(
    conn: Connection, store_id: int, segment: str, kind: str, since: int, until: int
) -> list[Entry]:
    rows = conn.execute(
        select(segment_events.c.id, segment_events.c.customer_id, segment_events.c.occurred_at)
        .join(segments, segments.c.id == segment_events.c.segment_id)
        .where(
            segment_events.c.store_id == store_id,
            segments.c.name == segment,
            segment_events.c.type == kind,
            segment_events.c.occurred_at >= since,
            segment_events.c.occurred_at < until,
        )
    )
    return [
        Entry(int(cid), f"segment:{eid}", int(at), {"segment": segment, "change": kind})
        for eid, cid, at in rows
    ]


def inactive(
    conn: Connection, store_id: int, days: int, of: str, since: int, until: int
) -> list[Entry]:
    """Customers whose order (or site event) at t was followed by none for ``days``, where
    t + days falls in the window; the key names that last activity, so a new order re-arms
    the trigger. Only activity before t + days counts, so a replayed history gives the
    same entries as a live store."""
    gap = days * DAY
    if of == "order":
        table, when, extra = orders, orders.c.placed_at, [orders.c.status != "cancelled"]
    else:
        table, when, extra = events, events.c.occurred_at, []
    later = aliased(table)
    later_when = later.c.placed_at if of == "order" else later.c.occurred_at
    followed = exists().where(
        later.c.store_id == store_id,
        later.c.customer_id == table.c.customer_id,
        later_when > when,
        later_when <= when + gap,
        *([later.c.status != "cancelled"] if of == "order" else []),
    )
    rows = conn.execute(
        select(table.c.customer_id, when)
        .where(
            table.c.store_id == store_id,
            table.c.customer_id.is_not(None),
            when >= since - gap,  # sargable: the index on the time column applies
            when < until - gap,
            ~followed,
            *extra,
        )
        .distinct()
    )
    return [
        Entry(int(cid), f"inactive:{of}:{t}", int(t) + gap, {"last_at": int(t), "days": days})
        for cid, t in rows
    ]


def lifespans_due(
    conn: Connection, store_id: int, days_before: int, since: int, until: int,
    learned: dict[str, int] | None, use_lifespan: bool,
) -> list[Entry]:  # fmt: skip
    """Order lines whose product runs out (lifespan, else learned interval) ``days_before``
    a day in the window, unless the customer bought that product again since."""
    rows = conn.execute(
        select(
            orders.c.customer_id, orders.c.external_id, orders.c.placed_at, order_lines.c.sku,
            order_lines.c.name, products.c.lifespan_days,
        )
        .join(order_lines, order_lines.c.order_id == orders.c.id)
        .outerjoin(products, and_(products.c.store_id == store_id, products.c.sku == order_lines.c.sku))
        .where(
            orders.c.store_id == store_id,
            orders.c.customer_id.is_not(None),
            orders.c.status != "cancelled",
            order_lines.c.sku.is_not(None),
            orders.c.placed_at < until,
        )
        .order_by(orders.c.placed_at)
    )  # fmt: skip
    bought: dict[tuple[int, str], list[int]] = {}
    candidates: list[tuple[tuple[int, str], int, Entry]] = []
    for cid, ref, at, sku, name, lifespan in rows:
        key = (int(cid), str(sku))
        bought.setdefault(key, []).append(int(at))
        interval = int(lifespan) if (use_lifespan and lifespan) else None
        if interval is None and learned is not None:
            interval = learned.get(str(sku))
        if not interval:
            continue
        due = int(at) + (interval - days_before) * DAY
        if since <= due < until:
            context = {"order": ref, "sku": sku, "product": name, "interval_days": interval}
            candidates.append(
                (key, int(at), Entry(int(cid), f"replenish:{ref}:{sku}", due, context))
            )
    return [
        e for key, at, e in candidates
        if not any(at < t <= e.at for t in bought[key])  # bought again before it ran out
    ]  # fmt: skip


def _next_birthday(text: str | None, year: int) -> int | None:
    if not text or len(text) < 5:
        return None
    try:
        month, day = int(text[-5:-3]), int(text[-2:])
        when = date(year, month, day)
    except ValueError:
        if text[-5:] == "02-29":  # a leap-day birthday is celebrated on Feb 28
            when = date(year, 2, 28)
        else:
            return None
    return int(datetime(when.year, when.month, when.day, tzinfo=UTC).timestamp() * 1_000_000)


def birthdays(
    conn: Connection, store_id: int, days_before: int, since: int, until: int
) -> list[Entry]:
    rows = conn.execute(
        select(customers.c.id, customers.c.birthday).where(
            customers.c.store_id == store_id, customers.c.birthday.is_not(None)
        )
    )
    first = datetime.fromtimestamp(since / 1e6, UTC).year
    last = datetime.fromtimestamp(until / 1e6, UTC).year + 1
    out = []
    for cid, text in rows:
        for year in range(first, last + 1):
            day = _next_birthday(text, year)
            if day is None:
                continue
            at = day - days_before * DAY
            if since <= at < until:
                out.append(Entry(int(cid), f"birthday:{year}", at, {"birthday_at": day}))
    return out


def renewals(
    conn: Connection, store_id: int, days_before: int, since: int, until: int
) -> list[Entry]:
    rows = conn.execute(
        select(memberships.c.id, memberships.c.customer_id, memberships.c.period_end).where(
            memberships.c.store_id == store_id,
            memberships.c.status.in_(("trial", "active")),
            memberships.c.cancel_at_period_end == 0,
            memberships.c.period_end - days_before * DAY >= since,
            memberships.c.period_end - days_before * DAY < until,
        )
    )
    return [
        Entry(int(cid), f"renewal:{mid}:{end}", int(end) - days_before * DAY,
              {"membership": int(mid), "renews_at": int(end)})
        for mid, cid, end in rows
    ]  # fmt: skip


def loyalty(conn: Connection, store_id: int, event: str, since: int, until: int) -> list[Entry]:
    rows = conn.execute(
        select(
            loyalty_events.c.id, loyalty_events.c.customer_id, loyalty_events.c.occurred_at,
            loyalty_events.c.payload,
        ).where(
            loyalty_events.c.store_id == store_id,
            loyalty_events.c.customer_id.is_not(None),
            loyalty_events.c.type == event,
            loyalty_events.c.occurred_at >= since,
            loyalty_events.c.occurred_at < until,
        )
    )  # fmt: skip
    return [
        Entry(int(cid), f"loyalty:{eid}", int(at), {"event": event, "payload": _props(payload)})
        for eid, cid, at, payload in rows
    ]


def segment_members(conn: Connection, store_id: int, segment: str, at: int) -> list[int]:
    """Who was in the segment at ``at`` (for a broadcast)."""
    rows = conn.execute(
        select(segment_memberships.c.customer_id)
        .join(segments, segments.c.id == segment_memberships.c.segment_id)
        .where(
            segment_memberships.c.store_id == store_id,
            segments.c.name == segment,
            segment_memberships.c.entered_at <= at,
            (segment_memberships.c.exited_at.is_(None)) | (segment_memberships.c.exited_at > at),
        )
    )
    return sorted({int(r[0]) for r in rows})


def segment_known(conn: Connection, store_id: int, segment: str) -> bool:
    found = conn.execute(
        select(segments.c.id).where(segments.c.store_id == store_id, segments.c.name == segment)
    ).first()
    return found is not None


def next_birthday_after(text: str | None, after: int) -> int | None:
    """The customer's next birthday (UTC midnight) at or after ``after``."""
    year = datetime.fromtimestamp(after / 1e6, UTC).year
    for y in (year, year + 1):
        day = _next_birthday(text, y)
        if day is not None and day >= after - DAY + 1:
            return day
    return None


def purchase_times(conn: Connection, store_id: int) -> list[tuple[int, str, int]]:
    """(customer, sku, placed_at) of every non-cancelled purchase line, for reorder rhythm."""
    rows = conn.execute(
        select(orders.c.customer_id, order_lines.c.sku, orders.c.placed_at)
        .join(order_lines, order_lines.c.order_id == orders.c.id)
        .where(
            orders.c.store_id == store_id,
            orders.c.customer_id.is_not(None),
            orders.c.status != "cancelled",
            order_lines.c.sku.is_not(None),
        )
    )
    return [(int(c), str(s), int(t)) for c, s, t in rows]
