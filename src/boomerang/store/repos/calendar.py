"""The communication calendar's queries: when each customer was last contacted (a sent
marketing message) and last interacted (an order, an open or click, a site event), the
customers not contacted lately, and one customer's merged timeline (docs/attribution.md#calendar).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, func, or_, select

from boomerang.store.schema import (
    consents,
    customers,
    events,
    flows,
    loyalty_events,
    message_events,
    orders,
    outbox,
)

#: SQLite allows 32,766 bound parameters; IN-lists stay well below it.
CHUNK = 900
#: Message events that count as the customer interacting (an unsubscribe or a bounce does not).
ENGAGED = ("open", "click")


def _contacts(store_id: int, as_of: int) -> Any:
    """Per customer, the latest marketing message sent by ``as_of``."""
    return (
        select(outbox.c.customer_id, func.max(outbox.c.sent_at).label("last_contact_at"))
        .where(
            outbox.c.store_id == store_id,
            outbox.c.status == "sent",
            outbox.c.transactional == 0,
            outbox.c.sent_at <= as_of,
        )
        .group_by(outbox.c.customer_id)
        .subquery("contact")
    )


def _buyers(store_id: int, as_of: int) -> Any:
    """Per customer with a non-cancelled order by ``as_of``: orders and the latest."""
    return (
        select(
            orders.c.customer_id,
            func.count().label("orders"),
            func.max(orders.c.placed_at).label("last_order_at"),
        )
        .where(
            orders.c.store_id == store_id,
            orders.c.customer_id.is_not(None),
            orders.c.status != "cancelled",
            orders.c.placed_at <= as_of,
        )
        .group_by(orders.c.customer_id)
        .subquery("bought")
    )


def stale(
    conn: Connection, store_id: int, *, cutoff: int, as_of: int, limit: int, offset: int = 0
) -> tuple[int, list[dict[str, Any]]]:
    """Customers with at least one non-cancelled order whose latest marketing message was
    sent at or before ``cutoff``, or never: (how many, one page of them). Never contacted
    first, then the longest ago; ties by the most recent order."""
    contact, bought = _contacts(store_id, as_of), _buyers(store_id, as_of)
    where = (
        customers.c.store_id == store_id,
        or_(contact.c.last_contact_at.is_(None), contact.c.last_contact_at <= cutoff),
    )
    base = (
        select(
            customers.c.id.label("customer_id"),
            customers.c.external_id,
            customers.c.email,
            customers.c.first_name,
            customers.c.last_name,
            bought.c.orders,
            bought.c.last_order_at,
            contact.c.last_contact_at,
        )
        .join(bought, bought.c.customer_id == customers.c.id)
        .outerjoin(contact, contact.c.customer_id == customers.c.id)
        .where(*where)
    )
    total = conn.execute(select(func.count()).select_from(base.subquery())).scalar_one()
    page = base.order_by(
        contact.c.last_contact_at.asc().nulls_first(),
        bought.c.last_order_at.desc(),
        customers.c.id,
    )
    rows = conn.execute(page.limit(limit).offset(offset)).mappings()
    return int(total), [dict(r) for r in rows]


def _chunks(ids: Sequence[int]) -> list[list[int]]:
    unique = sorted(set(ids))
    return [unique[i : i + CHUNK] for i in range(0, len(unique), CHUNK)]


def last_contacts(
    conn: Connection, store_id: int, customer_ids: Sequence[int], as_of: int
) -> dict[int, int]:
    """Customer -> the latest marketing message sent by ``as_of``."""
    out: dict[int, int] = {}
    for part in _chunks(customer_ids):
        rows = conn.execute(
            select(outbox.c.customer_id, func.max(outbox.c.sent_at))
            .where(
                outbox.c.store_id == store_id,
                outbox.c.customer_id.in_(part),
                outbox.c.status == "sent",
                outbox.c.transactional == 0,
                outbox.c.sent_at <= as_of,
            )
            .group_by(outbox.c.customer_id)
        )
        out.update({int(c): int(t) for c, t in rows if t is not None})
    return out


def last_interactions(
    conn: Connection, store_id: int, customer_ids: Sequence[int], as_of: int
) -> dict[int, int]:
    """Customer -> the latest of: an order (any status), an open or click of a message,
    a site or app event, all by ``as_of``."""
    out: dict[int, int] = {}
    for part in _chunks(customer_ids):
        queries = [
            select(orders.c.customer_id, func.max(orders.c.placed_at)).where(
                orders.c.store_id == store_id, orders.c.customer_id.in_(part),
                orders.c.placed_at <= as_of,
            ).group_by(orders.c.customer_id),
            select(message_events.c.customer_id, func.max(message_events.c.occurred_at)).where(
                message_events.c.store_id == store_id, message_events.c.customer_id.in_(part),
                message_events.c.type.in_(ENGAGED), message_events.c.occurred_at <= as_of,
            ).group_by(message_events.c.customer_id),
            select(events.c.customer_id, func.max(events.c.occurred_at)).where(
                events.c.store_id == store_id, events.c.customer_id.in_(part),
                events.c.occurred_at <= as_of,
            ).group_by(events.c.customer_id),
        ]  # fmt: skip
        for query in queries:
            for cid, at in conn.execute(query):
                if at is not None and int(at) > out.get(int(cid), -1):
                    out[int(cid)] = int(at)
    return out


def consents_of(
    conn: Connection, store_id: int, customer_ids: Sequence[int]
) -> dict[int, dict[str, str]]:
    """Customer -> channel -> the latest consent status."""
    out: dict[int, dict[str, str]] = {}
    for part in _chunks(customer_ids):
        rows = conn.execute(
            select(consents.c.customer_id, consents.c.channel, consents.c.status)
            .where(consents.c.store_id == store_id, consents.c.customer_id.in_(part))
            .order_by(consents.c.occurred_at, consents.c.id)
        )
        for cid, channel, status in rows:
            out.setdefault(int(cid), {})[str(channel)] = str(status)
    return out


# -- one customer's timeline ----------------------------------------------------------------------


def timeline_orders(
    conn: Connection, store_id: int, customer_id: int, limit: int
) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(
            orders.c.placed_at.label("at"),
            orders.c.external_id,
            orders.c.total_minor,
            orders.c.refunded_minor,
            orders.c.currency,
            orders.c.status,
            orders.c.discount_code,
        )
        .where(orders.c.store_id == store_id, orders.c.customer_id == customer_id)
        .order_by(orders.c.placed_at.desc(), orders.c.id.desc())
        .limit(limit)
    ).mappings()
    return [dict(r) for r in rows]


def timeline_messages(
    conn: Connection, store_id: int, customer_id: int, limit: int
) -> list[dict[str, Any]]:
    """Messages at their send time (else when they were due), with their flow."""
    at = func.coalesce(outbox.c.sent_at, outbox.c.not_before)
    rows = conn.execute(
        select(
            at.label("at"),
            outbox.c.id.label("outbox_id"),
            flows.c.name.label("flow"),
            outbox.c.step_id,
            outbox.c.channel,
            outbox.c.template,
            outbox.c.status,
            outbox.c.reason,
            outbox.c.transactional,
            outbox.c.holdout,
        )
        .outerjoin(flows, flows.c.id == outbox.c.flow_id)
        .where(outbox.c.store_id == store_id, outbox.c.customer_id == customer_id)
        .order_by(at.desc(), outbox.c.id.desc())
        .limit(limit)
    ).mappings()
    return [dict(r) for r in rows]


def timeline_message_events(
    conn: Connection, store_id: int, customer_id: int, limit: int
) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(
            message_events.c.occurred_at.label("at"),
            message_events.c.type,
            message_events.c.url,
            message_events.c.outbox_id,
            flows.c.name.label("flow"),
            outbox.c.step_id,
        )
        .join(outbox, outbox.c.id == message_events.c.outbox_id)
        .outerjoin(flows, flows.c.id == outbox.c.flow_id)
        .where(message_events.c.store_id == store_id, message_events.c.customer_id == customer_id)
        .order_by(message_events.c.occurred_at.desc(), message_events.c.id.desc())
        .limit(limit)
    ).mappings()
    return [dict(r) for r in rows]


def timeline_loyalty(
    conn: Connection, store_id: int, customer_id: int, limit: int
) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(
            loyalty_events.c.occurred_at.label("at"),
            loyalty_events.c.type,
            loyalty_events.c.payload,
        )
        .where(loyalty_events.c.store_id == store_id, loyalty_events.c.customer_id == customer_id)
        .order_by(loyalty_events.c.occurred_at.desc(), loyalty_events.c.id.desc())
        .limit(limit)
    ).mappings()
    return [dict(r) for r in rows]


def timeline_site_events(
    conn: Connection, store_id: int, customer_id: int, limit: int
) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(events.c.occurred_at.label("at"), events.c.type, events.c.properties)
        .where(events.c.store_id == store_id, events.c.customer_id == customer_id)
        .order_by(events.c.occurred_at.desc(), events.c.id.desc())
        .limit(limit)
    ).mappings()
    return [dict(r) for r in rows]
