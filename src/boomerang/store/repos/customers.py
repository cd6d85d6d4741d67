"""Customers: look-ups and the per-customer aggregates a profile shows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, or_, select

from boomerang.store.schema import consents, customers, orders


def find(conn: Connection, store_id: int, ref: str) -> dict[str, Any] | None:
    """A customer by external id, email or numeric id, within one store."""
    conds = [customers.c.external_id == ref, customers.c.email == ref.lower()]
    if ref.isdigit():
        conds.append(customers.c.id == int(ref))
    row = conn.execute(
        select(customers).where(customers.c.store_id == store_id, or_(*conds)).limit(1)
    ).first()
    return dict(row._mapping) if row else None


def order_aggregates(conn: Connection, store_id: int, customer_id: int) -> dict[str, Any]:
    """Lifetime figures over non-cancelled orders: count, first/last, gross and net revenue."""
    live = orders.c.status != "cancelled"
    row = conn.execute(
        select(
            func.count().label("orders"),
            func.min(orders.c.placed_at).label("first_order_at"),
            func.max(orders.c.placed_at).label("last_order_at"),
            func.coalesce(func.sum(orders.c.total_minor), 0).label("gross_minor"),
            func.coalesce(func.sum(orders.c.refunded_minor), 0).label("refunded_minor"),
            func.min(orders.c.currency).label("currency"),
        ).where(orders.c.store_id == store_id, orders.c.customer_id == customer_id, live)
    ).one()
    return dict(row._mapping)


def latest_consents(conn: Connection, customer_id: int) -> dict[str, str]:
    """Channel -> latest consent status (absence means no marketing consent)."""
    rows = conn.execute(
        select(consents.c.channel, consents.c.status)
        .where(consents.c.customer_id == customer_id)
        .order_by(consents.c.occurred_at, consents.c.id)
    ).all()
    return {r.channel: r.status for r in rows}
