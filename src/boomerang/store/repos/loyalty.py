"""Ledger storage: accounts, idempotent transactions, entries, lots, coupons, events.

Concurrency (docs/loyalty.md): on SQLite every write transaction starts with BEGIN
IMMEDIATE, so writers are serialised; on PostgreSQL the customer accounts a transaction
touches are locked with SELECT ... FOR UPDATE in ascending key order (a fixed order, so two
transactions never wait on each other in a cycle). Program accounts are never locked or
updated: their balance is the sum of their entries, computed when read, so they are not a
hot row every earn would queue on. Idempotency keys are claimed with INSERT ... ON
CONFLICT DO NOTHING: a concurrent duplicate waits for the first and then replays its
stored result.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from boomerang.store.schema import (
    coupon_redemptions,
    coupons,
    customers,
    loyalty_accounts,
    loyalty_entries,
    loyalty_events,
    loyalty_lots,
    loyalty_members,
    loyalty_programs,
    loyalty_transactions,
    orders,
)


def _dialect(conn: Connection) -> str:
    return "postgresql" if conn.dialect.name == "postgresql" else "sqlite"


def _insert(conn: Connection, table: Any) -> Any:
    return _DIALECTS[_dialect(conn)].insert(table)


# The statements of every ledger call (earn, redeem, expire, ...), built once with their
# values bound at execution: building a Core statement and its cache key costs several
# times what running its cached compiled form does, and each call runs about ten. The
# ON CONFLICT ones exist per dialect (`_dialect(conn)` picks).
_DIALECTS: dict[str, Any] = {"postgresql": postgresql, "sqlite": sqlite}
_ACCOUNTS_ADD = {
    name: d.insert(loyalty_accounts).on_conflict_do_nothing(
        index_elements=["store_id", "account_key"]
    )
    for name, d in _DIALECTS.items()
}
_CLAIM = {
    name: d.insert(loyalty_transactions)
    .on_conflict_do_nothing(index_elements=["store_id", "idempotency_key"])
    .returning(loyalty_transactions.c.id)
    for name, d in _DIALECTS.items()
}
_EVENT_ADD = {
    name: d.insert(loyalty_events)
    .on_conflict_do_nothing(index_elements=["store_id", "dedupe_key"])
    .returning(loyalty_events.c.id)
    for name, d in _DIALECTS.items()
}
_ACCOUNT = select(loyalty_accounts.c.id, loyalty_accounts.c.balance).where(
    loyalty_accounts.c.store_id == bindparam("store"),
    loyalty_accounts.c.account_key == bindparam("key"),
)
_ACCOUNT_LOCKED = _ACCOUNT.with_for_update()
_CLAIMED = select(loyalty_transactions.c.request_hash, loyalty_transactions.c.result).where(
    loyalty_transactions.c.store_id == bindparam("store"),
    loyalty_transactions.c.idempotency_key == bindparam("key"),
)
_CUSTOMER_IN_STORE = select(customers.c.id).where(
    customers.c.id == bindparam("customer"), customers.c.store_id == bindparam("store")
)
_FINISH = (
    update(loyalty_transactions)
    .where(loyalty_transactions.c.id == bindparam("tx"))
    .values(result=bindparam("body"))
)
_ENTRIES_ADD = insert(loyalty_entries)
_BALANCE_MOVE = (
    update(loyalty_accounts)
    .where(loyalty_accounts.c.id == bindparam("account"))
    .values(balance=loyalty_accounts.c.balance + bindparam("amount"))
)
_ORDER_TRANSACTIONS = (
    select(loyalty_transactions)
    .where(
        loyalty_transactions.c.store_id == bindparam("store"),
        loyalty_transactions.c.order_ref == bindparam("order"),
    )
    .order_by(loyalty_transactions.c.id)
)
_OPEN_LOTS = select(loyalty_lots).where(
    loyalty_lots.c.account_id == bindparam("account"), loyalty_lots.c.remaining > 0
)
_LOT_ADD = insert(loyalty_lots).returning(loyalty_lots.c.id)
_LOT_TAKE = (
    update(loyalty_lots)
    .where(loyalty_lots.c.id == bindparam("lot"))
    .values(remaining=loyalty_lots.c.remaining - bindparam("take"))
)
_LOT_REMAINING = select(loyalty_lots.c.remaining).where(loyalty_lots.c.id == bindparam("lot"))


# -- programs --------------------------------------------------------------------------------


def get_program(conn: Connection, store_id: int) -> tuple[dict[str, Any], int] | None:
    row = conn.execute(
        select(loyalty_programs.c.config, loyalty_programs.c.version).where(
            loyalty_programs.c.store_id == store_id
        )
    ).first()
    return None if row is None else (json.loads(row.config), int(row.version))


def set_program(conn: Connection, store_id: int, config: dict[str, Any], now: int) -> int:
    body = json.dumps(config, sort_keys=True)
    found = get_program(conn, store_id)
    if found is None:
        conn.execute(
            insert(loyalty_programs).values(
                store_id=store_id, config=body, version=1, updated_at=now
            )
        )
        return 1
    if json.dumps(found[0], sort_keys=True) == body:
        return found[1]
    conn.execute(
        update(loyalty_programs)
        .where(loyalty_programs.c.store_id == store_id)
        .values(config=body, version=found[1] + 1, updated_at=now)
    )
    return found[1] + 1


# -- accounts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    id: int
    key: str
    balance: int


def accounts(
    conn: Connection,
    store_id: int,
    wanted: list[tuple[str, int | None, str, str]],
    now: int,
    *,
    lock: bool,
) -> dict[str, Account]:
    """Get or create accounts (key, customer_id, kind, unit); lock the customer ones.

    Created with ON CONFLICT DO NOTHING (a concurrent creator wins quietly), then read, in
    ascending key order, FOR UPDATE when ``lock`` (PostgreSQL; SQLite is serialised).
    """
    ordered = sorted(wanted)
    conn.execute(
        _ACCOUNTS_ADD[_dialect(conn)],
        [
            {"store_id": store_id, "customer_id": cid, "kind": kind, "unit": unit,
             "account_key": key, "balance": 0, "created_at": now}
            for key, cid, kind, unit in ordered
        ],
    )  # fmt: skip
    out: dict[str, Account] = {}
    for key, cid, _, _ in ordered:
        locked = lock and cid is not None and conn.dialect.name == "postgresql"
        query = _ACCOUNT_LOCKED if locked else _ACCOUNT
        row = conn.execute(query, {"store": store_id, "key": key}).one()
        out[key] = Account(int(row.id), key, int(row.balance))
    return out


def find_account(conn: Connection, store_id: int, key: str) -> Account | None:
    row = conn.execute(_ACCOUNT, {"store": store_id, "key": key}).first()
    return None if row is None else Account(int(row.id), key, int(row.balance))


def program_balances(conn: Connection, store_id: int) -> dict[str, int]:
    """Program accounts' balances: sums of their entries (they keep no running balance)."""
    rows = conn.execute(
        select(loyalty_accounts.c.account_key, func.coalesce(func.sum(loyalty_entries.c.amount), 0))
        .select_from(
            loyalty_accounts.outerjoin(
                loyalty_entries, loyalty_entries.c.account_id == loyalty_accounts.c.id
            )
        )
        .where(loyalty_accounts.c.store_id == store_id, loyalty_accounts.c.customer_id.is_(None))
        .group_by(loyalty_accounts.c.account_key)
    )
    return {str(k): int(v) for k, v in rows}


# -- transactions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A claimed idempotency key (``id``), or the stored transaction it already names."""

    id: int | None
    stored_hash: str | None = None
    stored_result: dict[str, Any] | None = None


def claim(
    conn: Connection,
    store_id: int,
    *,
    key: str,
    request_hash: str,
    kind: str,
    customer_id: int | None,
    order_ref: str | None,
    reason: str,
    actor: str,
    now: int,
) -> Claim:
    new_id = conn.execute(
        _CLAIM[_dialect(conn)],
        {
            "store_id": store_id, "idempotency_key": key, "request_hash": request_hash,
            "kind": kind, "customer_id": customer_id, "order_ref": order_ref,
            "reason": reason, "actor": actor, "occurred_at": now, "result": "{}",
        },
    ).scalar()  # fmt: skip
    if new_id is not None:
        return Claim(int(new_id))
    row = conn.execute(_CLAIMED, {"store": store_id, "key": key}).one()
    return Claim(None, str(row.request_hash), json.loads(row.result))


def customer_in_store(conn: Connection, store_id: int, customer_id: int) -> bool:
    found = conn.execute(_CUSTOMER_IN_STORE, {"customer": customer_id, "store": store_id})
    return found.first() is not None


def finish(conn: Connection, transaction_id: int, result: dict[str, Any]) -> None:
    conn.execute(_FINISH, {"tx": transaction_id, "body": json.dumps(result, sort_keys=True)})


def post(
    conn: Connection,
    store_id: int,
    transaction_id: int,
    entries: list[tuple[Account, int, int | None]],
) -> None:
    """Write entries (account, amount, lot id) that sum to zero and move customer balances."""
    if sum(amount for _, amount, _ in entries) != 0:
        raise ValueError("a ledger transaction must sum to zero")
    conn.execute(
        _ENTRIES_ADD,
        [
            {"store_id": store_id, "transaction_id": transaction_id, "account_id": acc.id,
             "lot_id": lot, "amount": amount}
            for acc, amount, lot in entries
        ],
    )  # fmt: skip
    moves: dict[int, int] = {}
    for acc, amount, _ in entries:
        if not acc.key.startswith("p:"):
            moves[acc.id] = moves.get(acc.id, 0) + amount
    for account_id, amount in sorted(moves.items()):
        conn.execute(_BALANCE_MOVE, {"account": account_id, "amount": amount})


def order_transactions(conn: Connection, store_id: int, order_ref: str) -> list[dict[str, Any]]:
    rows = conn.execute(_ORDER_TRANSACTIONS, {"store": store_id, "order": order_ref}).mappings()
    return [dict(r) for r in rows]


# -- lots ------------------------------------------------------------------------------------


def open_lots(conn: Connection, account_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(_OPEN_LOTS, {"account": account_id}).mappings()
    return [dict(r) for r in rows]


def add_lot(
    conn: Connection,
    store_id: int,
    account_id: int,
    transaction_id: int,
    amount: int,
    expires_at: int | None,
    now: int,
) -> int:
    new_id = conn.execute(
        _LOT_ADD,
        {
            "store_id": store_id, "account_id": account_id, "transaction_id": transaction_id,
            "amount": amount, "remaining": amount, "expires_at": expires_at, "created_at": now,
        },
    ).scalar()  # fmt: skip
    assert new_id is not None
    return int(new_id)


def take_from_lot(conn: Connection, lot_id: int, amount: int) -> None:
    conn.execute(_LOT_TAKE, {"lot": lot_id, "take": amount})


def due_lots(conn: Connection, store_id: int, before: int) -> list[dict[str, Any]]:
    """Customer lots with points left whose expiry is at or before ``before``."""
    rows = conn.execute(
        select(loyalty_lots, loyalty_accounts.c.customer_id)
        .join(loyalty_accounts, loyalty_accounts.c.id == loyalty_lots.c.account_id)
        .where(
            loyalty_lots.c.store_id == store_id,
            loyalty_accounts.c.kind == "points",  # pending lots expire once released
            loyalty_lots.c.remaining > 0,
            loyalty_lots.c.expires_at.is_not(None),
            loyalty_lots.c.expires_at <= before,
        )
        .order_by(loyalty_lots.c.expires_at, loyalty_lots.c.id)
    ).mappings()
    return [dict(r) for r in rows]


def lot_remaining(conn: Connection, lot_id: int) -> int:
    return int(conn.execute(_LOT_REMAINING, {"lot": lot_id}).scalar_one())


# -- events ----------------------------------------------------------------------------------


def add_event(
    conn: Connection,
    store_id: int,
    customer_id: int | None,
    kind: str,
    payload: dict[str, Any],
    dedupe_key: str,
    now: int,
) -> bool:
    """Write an event once per dedupe key; False when it was already there."""
    values = {
        "store_id": store_id, "customer_id": customer_id, "type": kind,
        "payload": json.dumps(payload, sort_keys=True), "dedupe_key": dedupe_key,
        "occurred_at": now,
    }  # fmt: skip
    return conn.execute(_EVENT_ADD[_dialect(conn)], values).scalar() is not None


def events_after(
    conn: Connection, store_id: int, after_id: int = 0, limit: int = 1000
) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(loyalty_events)
        .where(loyalty_events.c.store_id == store_id, loyalty_events.c.id > after_id)
        .order_by(loyalty_events.c.id)
        .limit(limit)
    ).mappings()
    return [dict(r) for r in rows]


# -- coupons ---------------------------------------------------------------------------------


def add_coupon(conn: Connection, values: dict[str, Any]) -> int:
    new_id = conn.execute(insert(coupons).values(**values).returning(coupons.c.id)).scalar()
    assert new_id is not None
    return int(new_id)


def coupon_for_update(conn: Connection, store_id: int, code: str) -> dict[str, Any] | None:
    query = select(coupons).where(coupons.c.store_id == store_id, coupons.c.code == code)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    return None if row is None else dict(row)


def coupon_by_source(conn: Connection, store_id: int, source: str) -> dict[str, Any] | None:
    row = (
        conn.execute(
            select(coupons).where(coupons.c.store_id == store_id, coupons.c.source == source)
        )
        .mappings()
        .first()
    )
    return None if row is None else dict(row)


def coupon_uses_by(conn: Connection, coupon_id: int, customer_id: int) -> int:
    return int(
        conn.execute(
            select(func.count()).where(
                coupon_redemptions.c.coupon_id == coupon_id,
                coupon_redemptions.c.customer_id == customer_id,
            )
        ).scalar_one()
    )


def redemption(conn: Connection, coupon_id: int, key: str) -> dict[str, Any] | None:
    row = (
        conn.execute(
            select(coupon_redemptions).where(
                coupon_redemptions.c.coupon_id == coupon_id,
                coupon_redemptions.c.idempotency_key == key,
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else dict(row)


def redeem_coupon(
    conn: Connection,
    store_id: int,
    coupon_id: int,
    customer_id: int | None,
    key: str,
    order_ref: str | None,
    now: int,
) -> None:
    conn.execute(
        insert(coupon_redemptions).values(
            store_id=store_id, coupon_id=coupon_id, customer_id=customer_id,
            idempotency_key=key, order_ref=order_ref, occurred_at=now,
        )
    )  # fmt: skip
    conn.execute(update(coupons).where(coupons.c.id == coupon_id).values(uses=coupons.c.uses + 1))


# -- members and tiers -----------------------------------------------------------------------


def member(conn: Connection, store_id: int, customer_id: int) -> dict[str, Any] | None:
    row = (
        conn.execute(
            select(loyalty_members).where(
                loyalty_members.c.store_id == store_id, loyalty_members.c.customer_id == customer_id
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else dict(row)


def set_member(
    conn: Connection, store_id: int, customer_id: int, tier: str | None, since: int, review_at: int
) -> None:
    stmt = _insert(conn, loyalty_members).values(
        store_id=store_id, customer_id=customer_id, tier=tier, since=since, review_at=review_at
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["store_id", "customer_id"],
            set_={"tier": tier, "since": since, "review_at": review_at},
        )
    )


def points_earned(conn: Connection, store_id: int, customer_id: int, since: int | None) -> int:
    """Points credited to the customer by earns and order awards (after `since`)."""
    query = (
        select(func.coalesce(func.sum(loyalty_entries.c.amount), 0))
        .select_from(
            loyalty_entries.join(
                loyalty_transactions, loyalty_transactions.c.id == loyalty_entries.c.transaction_id
            ).join(loyalty_accounts, loyalty_accounts.c.id == loyalty_entries.c.account_id)
        )
        .where(
            loyalty_transactions.c.store_id == store_id,
            loyalty_transactions.c.customer_id == customer_id,
            loyalty_transactions.c.kind.in_(["earn", "award"]),
            loyalty_accounts.c.customer_id == customer_id,
        )
    )
    if since is not None:
        query = query.where(loyalty_transactions.c.occurred_at >= since)
    return int(conn.execute(query).scalar_one())


def order_row(conn: Connection, store_id: int, external_id: str) -> dict[str, Any] | None:
    row = (
        conn.execute(
            select(orders).where(orders.c.store_id == store_id, orders.c.external_id == external_id)
        )
        .mappings()
        .first()
    )
    return None if row is None else dict(row)


def orders_before(conn: Connection, store_id: int, customer_id: int, placed_at: int) -> int:
    """The customer's non-cancelled orders placed before this moment."""
    return int(
        conn.execute(
            select(func.count()).where(
                orders.c.store_id == store_id,
                orders.c.customer_id == customer_id,
                orders.c.status != "cancelled",
                orders.c.placed_at < placed_at,
            )
        ).scalar_one()
    )


def spend_and_orders(
    conn: Connection, store_id: int, customer_id: int, since: int | None
) -> tuple[int, int]:
    """Net spend (minor units) and order count of the customer's non-cancelled orders."""
    query = select(
        func.coalesce(func.sum(orders.c.total_minor - orders.c.refunded_minor), 0), func.count()
    ).where(
        orders.c.store_id == store_id,
        orders.c.customer_id == customer_id,
        orders.c.status != "cancelled",
    )
    if since is not None:
        query = query.where(orders.c.placed_at >= since)
    spend, count = conn.execute(query).one()
    return int(spend), int(count)


def reward_redemptions(conn: Connection, store_id: int, customer_id: int, reward_id: str) -> int:
    return int(
        conn.execute(
            select(func.count()).where(
                coupons.c.store_id == store_id,
                coupons.c.customer_id == customer_id,
                coupons.c.source == f"reward:{reward_id}",
            )
        ).scalar_one()
    )


def redemptions_to_restore(conn: Connection, store_id: int, order_ref: str) -> list[dict[str, Any]]:
    """Redemptions made on an order that have not been restored yet."""
    restored = select(loyalty_transactions.c.idempotency_key).where(
        loyalty_transactions.c.store_id == store_id,
        loyalty_transactions.c.order_ref == order_ref,
        loyalty_transactions.c.kind == "restore",
    )
    keys = {str(k) for (k,) in conn.execute(restored)}
    rows = conn.execute(
        select(loyalty_transactions).where(
            loyalty_transactions.c.store_id == store_id,
            loyalty_transactions.c.order_ref == order_ref,
            loyalty_transactions.c.kind == "redeem",
        )
    ).mappings()
    return [dict(r) for r in rows if f"sys:restore:{r['id']}" not in keys]


def birthdays(conn: Connection, store_id: int, month_day: str) -> list[int]:
    """Customers whose birthday (YYYY-MM-DD or MM-DD) falls on ``month_day`` (MM-DD)."""
    rows = conn.execute(
        select(customers.c.id).where(
            customers.c.store_id == store_id,
            (customers.c.birthday == month_day) | customers.c.birthday.like(f"%-{month_day}"),
        )
    )
    return [int(r[0]) for r in rows]


def inactive_accounts(conn: Connection, store_id: int, before: int) -> list[dict[str, Any]]:
    """Customer points accounts with points whose last earn/spend was before ``before``."""
    last = (
        select(
            loyalty_transactions.c.customer_id,
            func.max(loyalty_transactions.c.occurred_at).label("last_at"),
            func.max(loyalty_transactions.c.id).label("last_id"),
        )
        .where(
            loyalty_transactions.c.store_id == store_id,
            loyalty_transactions.c.kind.in_(["earn", "award", "redeem", "adjust"]),
        )
        .group_by(loyalty_transactions.c.customer_id)
        .subquery()
    )
    rows = conn.execute(
        select(loyalty_accounts.c.id, loyalty_accounts.c.customer_id, last.c.last_id)
        .join(last, last.c.customer_id == loyalty_accounts.c.customer_id)
        .where(
            loyalty_accounts.c.store_id == store_id,
            loyalty_accounts.c.kind == "points",
            loyalty_accounts.c.balance > 0,
            last.c.last_at < before,
        )
    ).mappings()
    return [dict(r) for r in rows]


def last_activity_id(conn: Connection, store_id: int, customer_id: int) -> int | None:
    """The customer's latest earn/award/redeem/adjust transaction (what inactivity counts)."""
    value = conn.execute(
        select(func.max(loyalty_transactions.c.id)).where(
            loyalty_transactions.c.store_id == store_id,
            loyalty_transactions.c.customer_id == customer_id,
            loyalty_transactions.c.kind.in_(["earn", "award", "redeem", "adjust"]),
        )
    ).scalar()
    return None if value is None else int(value)


def pending_lots(conn: Connection, store_id: int, created_before: int) -> list[dict[str, Any]]:
    """Lots in customers' pending accounts, earned before ``created_before``, not released."""
    rows = conn.execute(
        select(loyalty_lots, loyalty_accounts.c.customer_id, loyalty_transactions.c.order_ref)
        .join(loyalty_accounts, loyalty_accounts.c.id == loyalty_lots.c.account_id)
        .join(loyalty_transactions, loyalty_transactions.c.id == loyalty_lots.c.transaction_id)
        .where(
            loyalty_lots.c.store_id == store_id,
            loyalty_accounts.c.kind == "pending",
            loyalty_lots.c.remaining > 0,
            loyalty_lots.c.created_at <= created_before,
        )
        .order_by(loyalty_lots.c.id)
    ).mappings()
    return [dict(r) for r in rows]


def credit_rewards(conn: Connection, store_id: int, customer_id: int, reward_id: str) -> int:
    """Store-credit rewards already given to the customer (for per-customer limits)."""
    return int(
        conn.execute(
            select(func.count()).where(
                loyalty_transactions.c.store_id == store_id,
                loyalty_transactions.c.customer_id == customer_id,
                loyalty_transactions.c.kind == "credit",
                loyalty_transactions.c.reason == f"reward {reward_id}",
            )
        ).scalar_one()
    )
