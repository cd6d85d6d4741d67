"""Paid memberships storage: plans, memberships, payments (docs/memberships.md).

Concurrency: a write to a membership first locks its row (SELECT ... FOR UPDATE on
PostgreSQL; SQLite transactions begin IMMEDIATE, so writers are serialised) and re-reads
it, so two lifecycle jobs, or a job and a payment notice, never both act on one state.
Subscribing locks the customer's row instead (there is no membership row yet), so two
subscriptions of one customer are serialised and the second sees the first. Events go
through `repos.loyalty.add_event` (ON CONFLICT DO NOTHING on the dedupe key).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, and_, exists, func, insert, select, update
from sqlalchemy.sql import Select

from boomerang.store.schema import (
    customers,
    loyalty_events,
    membership_payments,
    membership_plans,
    memberships,
    orders,
)

LIVE = ("trial", "active", "past_due")


def _lock(conn: Connection, query: Select[Any]) -> Select[Any]:
    return query.with_for_update() if conn.dialect.name == "postgresql" else query


def _plan(row: Any) -> dict[str, Any]:
    out = dict(row)
    out["benefits"] = json.loads(out["benefits"])
    out["active"] = bool(out["active"])
    return out


# -- plans -----------------------------------------------------------------------------------


def plans(conn: Connection, store_id: int, *, active_only: bool = False) -> list[dict[str, Any]]:
    query = select(membership_plans).where(membership_plans.c.store_id == store_id)
    if active_only:
        query = query.where(membership_plans.c.active == 1)
    rows = conn.execute(query.order_by(membership_plans.c.id)).mappings()
    return [_plan(r) for r in rows]


def plan_by_key(conn: Connection, store_id: int, key: str) -> dict[str, Any] | None:
    row = (
        conn.execute(
            select(membership_plans).where(
                membership_plans.c.store_id == store_id, membership_plans.c.key == key
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else _plan(row)


def plans_by_id(conn: Connection, store_id: int) -> dict[int, dict[str, Any]]:
    return {int(p["id"]): p for p in plans(conn, store_id)}


def has_plans(conn: Connection, store_id: int) -> bool:
    found = conn.execute(
        select(membership_plans.c.id).where(membership_plans.c.store_id == store_id).limit(1)
    ).first()
    return found is not None


def upsert_plan(
    conn: Connection, store_id: int, values: dict[str, Any], currency: str, now: int
) -> str:
    """Insert or update a plan by key (reactivating it). Returns created|updated|unchanged."""
    body = {
        "name": values["name"],
        "interval": values["interval"],
        "fee_minor": int(values["fee_minor"]),
        "currency": currency,
        "trial_days": int(values["trial_days"]),
        "grace_days": int(values["grace_days"]),
        "benefits": json.dumps(values["benefits"], sort_keys=True),
        "active": 1,
    }
    current = conn.execute(
        select(membership_plans).where(
            membership_plans.c.store_id == store_id, membership_plans.c.key == values["key"]
        )
    ).mappings().first()  # fmt: skip
    if current is None:
        conn.execute(
            insert(membership_plans).values(
                store_id=store_id, key=values["key"], created_at=now, updated_at=now, **body
            )
        )
        return "created"
    if all(current[k] == v for k, v in body.items()):
        return "unchanged"
    conn.execute(
        update(membership_plans)
        .where(membership_plans.c.id == current["id"])
        .values(updated_at=now, **body)
    )
    return "updated"


def deactivate_plans_except(conn: Connection, store_id: int, keep: list[str], now: int) -> int:
    """Plans not in ``keep`` become inactive (never deleted: memberships refer to them)."""
    result = conn.execute(
        update(membership_plans)
        .where(
            membership_plans.c.store_id == store_id,
            membership_plans.c.active == 1,
            membership_plans.c.key.not_in(keep),
        )
        .values(active=0, updated_at=now)
    )
    return int(result.rowcount or 0)


# -- memberships -----------------------------------------------------------------------------


def lock_customer(conn: Connection, store_id: int, customer_id: int) -> bool:
    """Lock the customer's row (serialises subscriptions); False when not in the store."""
    found = conn.execute(
        _lock(
            conn,
            select(customers.c.id).where(
                customers.c.id == customer_id, customers.c.store_id == store_id
            ),
        )
    ).first()
    return found is not None


def live_membership(
    conn: Connection, store_id: int, customer_id: int, *, lock: bool = False
) -> dict[str, Any] | None:
    query = select(memberships).where(
        memberships.c.store_id == store_id,
        memberships.c.customer_id == customer_id,
        memberships.c.status.in_(LIVE),
    )
    if lock:
        query = _lock(conn, query)
    row = conn.execute(query.order_by(memberships.c.id.desc())).mappings().first()
    return None if row is None else dict(row)


def membership(
    conn: Connection, store_id: int, membership_id: int, *, lock: bool = False
) -> dict[str, Any] | None:
    query = select(memberships).where(
        memberships.c.store_id == store_id, memberships.c.id == membership_id
    )
    if lock:
        query = _lock(conn, query)
    row = conn.execute(query).mappings().first()
    return None if row is None else dict(row)


def customer_memberships(conn: Connection, store_id: int, customer_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(memberships)
        .where(memberships.c.store_id == store_id, memberships.c.customer_id == customer_id)
        .order_by(memberships.c.id)
    ).mappings()
    return [dict(r) for r in rows]


def all_memberships(conn: Connection, store_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(memberships).where(memberships.c.store_id == store_id).order_by(memberships.c.id)
    ).mappings()
    return [dict(r) for r in rows]


def add_membership(conn: Connection, values: dict[str, Any]) -> int:
    new_id = conn.execute(insert(memberships).values(**values).returning(memberships.c.id)).scalar()
    assert new_id is not None
    return int(new_id)


def update_membership(conn: Connection, membership_id: int, values: dict[str, Any]) -> None:
    conn.execute(update(memberships).where(memberships.c.id == membership_id).values(**values))


def due_memberships(conn: Connection, store_id: int, before: int) -> list[int]:
    """Live memberships whose period ends at or before ``before`` (the lifecycle job's work)."""
    rows = conn.execute(
        select(memberships.c.id)
        .where(
            memberships.c.store_id == store_id,
            memberships.c.status.in_(LIVE),
            memberships.c.period_end <= before,
        )
        .order_by(memberships.c.period_end, memberships.c.id)
    )
    return [int(r[0]) for r in rows]


# -- payments --------------------------------------------------------------------------------


def payments(conn: Connection, membership_ids: list[int]) -> list[dict[str, Any]]:
    if not membership_ids:
        return []
    rows = conn.execute(
        select(membership_payments)
        .where(membership_payments.c.membership_id.in_(membership_ids))
        .order_by(membership_payments.c.id)
    ).mappings()
    return [dict(r) for r in rows]


def store_payments(conn: Connection, store_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(membership_payments)
        .where(membership_payments.c.store_id == store_id)
        .order_by(membership_payments.c.id)
    ).mappings()
    return [dict(r) for r in rows]


def payment_by_key(conn: Connection, store_id: int, key: str) -> dict[str, Any] | None:
    row = (
        conn.execute(
            select(membership_payments).where(
                membership_payments.c.store_id == store_id,
                membership_payments.c.idempotency_key == key,
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else dict(row)


def add_payment(conn: Connection, values: dict[str, Any]) -> int:
    new_id = conn.execute(
        insert(membership_payments).values(**values).returning(membership_payments.c.id)
    ).scalar()
    assert new_id is not None
    return int(new_id)


# -- events ----------------------------------------------------------------------------------


def event_by_key(conn: Connection, store_id: int, dedupe_key: str) -> dict[str, Any] | None:
    row = (
        conn.execute(
            select(loyalty_events).where(
                loyalty_events.c.store_id == store_id, loyalty_events.c.dedupe_key == dedupe_key
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    out = dict(row)
    out["payload"] = json.loads(out["payload"])
    return out


def membership_events(conn: Connection, store_id: int) -> list[dict[str, Any]]:
    """Every membership_* event of the store, oldest first."""
    rows = conn.execute(
        select(loyalty_events)
        .where(loyalty_events.c.store_id == store_id, loyalty_events.c.type.like("membership_%"))
        .order_by(loyalty_events.c.id)
    ).mappings()
    return [{**dict(r), "payload": json.loads(r["payload"])} for r in rows]


# -- orders ----------------------------------------------------------------------------------


def customer_orders(
    conn: Connection, store_id: int, customer_id: int, start: int, end: int, currency: str
) -> list[dict[str, Any]]:
    """The customer's non-cancelled orders in the store currency placed in [start, end)."""
    rows = conn.execute(
        select(orders)
        .where(
            orders.c.store_id == store_id,
            orders.c.customer_id == customer_id,
            orders.c.status != "cancelled",
            orders.c.currency == currency,
            orders.c.placed_at >= start,
            orders.c.placed_at < end,
        )
        .order_by(orders.c.placed_at, orders.c.id)
    ).mappings()
    return [dict(r) for r in rows]


def first_orders_and_repeats(
    conn: Connection, store_id: int, start: int, end: int, horizon: int, currency: str
) -> list[tuple[int, int, bool]]:
    """(customer, first order time in [start, end), another order within ``horizon`` after
    it?) for every customer who ordered in the window; cancelled orders and other
    currencies do not count."""
    kept = and_(orders.c.store_id == store_id, orders.c.status != "cancelled",
                orders.c.currency == currency)  # fmt: skip
    first = (
        select(orders.c.customer_id, func.min(orders.c.placed_at).label("first_at"))
        .where(kept, orders.c.customer_id.is_not(None), orders.c.placed_at >= start,
               orders.c.placed_at < end)
        .group_by(orders.c.customer_id)
        .subquery()
    )  # fmt: skip
    later = orders.alias("later")
    again = exists(
        select(later.c.id).where(
            later.c.store_id == store_id,
            later.c.customer_id == first.c.customer_id,
            later.c.status != "cancelled",
            later.c.currency == currency,
            later.c.placed_at > first.c.first_at,
            later.c.placed_at <= first.c.first_at + horizon,
        )
    )
    rows = conn.execute(
        select(first.c.customer_id, first.c.first_at, again.label("again")).order_by(
            first.c.customer_id
        )
    )
    return [(int(c), int(t), bool(a)) for c, t, a in rows]
