"""Counts per store, for `boomerang stores` and the demo's totals."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, Table, func, select

from boomerang.store.schema import customers, events, orders, stores


@dataclass(frozen=True)
class StoreCounts:
    name: str
    currency: str
    customers: int
    orders: int
    events: int
    net_revenue_minor: int


def store_counts(conn: Connection) -> list[StoreCounts]:
    def count(table: Table, sid: int) -> int:
        return int(conn.execute(select(func.count()).where(table.c.store_id == sid)).scalar_one())

    out = []
    for s in conn.execute(select(stores).order_by(stores.c.id)).all():
        revenue = conn.execute(
            select(
                func.coalesce(func.sum(orders.c.total_minor - orders.c.refunded_minor), 0)
            ).where(orders.c.store_id == s.id, orders.c.status != "cancelled")
        ).scalar_one()
        out.append(
            StoreCounts(
                s.name,
                s.currency,
                count(customers, s.id),
                count(orders, s.id),
                count(events, s.id),
                int(revenue),
            )
        )
    return out
