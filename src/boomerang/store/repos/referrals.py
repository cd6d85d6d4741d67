"""Referral storage: share codes, share/click activity, referrals, identity fingerprints.

Concurrency (docs/referrals.md): on SQLite every write transaction starts with BEGIN
IMMEDIATE, so writers are serialised; on PostgreSQL a referral is read FOR UPDATE before it
changes, and state changes are conditional updates (``... WHERE status IN (...)``), so two
copies of a job never both move one referral. Inserts that may race (a code, an activity
row, a referral, a fingerprint) use ON CONFLICT on their natural key.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, and_, case, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from boomerang.store.schema import (
    customer_fingerprints,
    customers,
    orders,
    referral_activity,
    referral_codes,
    referrals,
)


def _insert(conn: Connection, table: Any) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def _locked(conn: Connection, query: Any) -> Any:
    return query.with_for_update() if conn.dialect.name == "postgresql" else query


def _one(conn: Connection, query: Any) -> dict[str, Any] | None:
    row = conn.execute(query).mappings().first()
    return None if row is None else dict(row)


# -- customers -----------------------------------------------------------------------------------


def customer(conn: Connection, store_id: int, customer_id: int) -> dict[str, Any] | None:
    """The customer fields referrals use (name, email, phone, country), by numeric id."""
    return _one(
        conn,
        select(
            customers.c.id, customers.c.email, customers.c.phone, customers.c.country,
            customers.c.first_name, customers.c.external_id,
        ).where(customers.c.store_id == store_id, customers.c.id == customer_id),
    )  # fmt: skip


# -- codes ---------------------------------------------------------------------------------------


def add_code(conn: Connection, store_id: int, customer_id: int, code: str, now: int) -> None:
    """Give the customer ``code`` unless they have one (or the code is taken)."""
    conn.execute(
        _insert(conn, referral_codes)
        .values(store_id=store_id, customer_id=customer_id, code=code, created_at=now)
        .on_conflict_do_nothing()
    )


def code_of(conn: Connection, store_id: int, customer_id: int) -> dict[str, Any] | None:
    return _one(
        conn,
        select(referral_codes).where(
            referral_codes.c.store_id == store_id, referral_codes.c.customer_id == customer_id
        ),
    )


def find_code(conn: Connection, store_id: int, code: str) -> dict[str, Any] | None:
    return _one(
        conn,
        select(referral_codes).where(
            referral_codes.c.store_id == store_id, referral_codes.c.code == code
        ),
    )


# -- activity: shares and clicks -----------------------------------------------------------------


def add_activity(
    conn: Connection,
    store_id: int,
    code_id: int,
    kind: str,
    channel: str | None,
    dedupe_key: str,
    now: int,
) -> bool:
    """One share or click per dedupe key; False when the key was already there."""
    new_id = conn.execute(
        _insert(conn, referral_activity)
        .values(
            store_id=store_id, code_id=code_id, kind=kind, channel=channel,
            dedupe_key=dedupe_key, occurred_at=now,
        )
        .on_conflict_do_nothing(index_elements=["store_id", "dedupe_key"])
        .returning(referral_activity.c.id)
    ).scalar()  # fmt: skip
    return new_id is not None


def activity(conn: Connection, store_id: int, dedupe_key: str) -> dict[str, Any] | None:
    return _one(
        conn,
        select(referral_activity).where(
            referral_activity.c.store_id == store_id,
            referral_activity.c.dedupe_key == dedupe_key,
        ),
    )


def activity_counts(
    conn: Connection, store_id: int, since: int | None, until: int | None
) -> list[tuple[str, str | None, int]]:
    """(kind, channel, count) of shares and clicks that happened in [since, until)."""
    query = select(referral_activity.c.kind, referral_activity.c.channel, func.count()).where(
        referral_activity.c.store_id == store_id
    )
    if since is not None:
        query = query.where(referral_activity.c.occurred_at >= since)
    if until is not None:
        query = query.where(referral_activity.c.occurred_at < until)
    rows = conn.execute(query.group_by(referral_activity.c.kind, referral_activity.c.channel))
    return [(str(k), None if c is None else str(c), int(n)) for k, c, n in rows]


# -- fingerprints --------------------------------------------------------------------------------


def add_fingerprints(
    conn: Connection, store_id: int, customer_id: int, found: set[tuple[str, str]], now: int
) -> None:
    """Record (kind, hash) signals seen for a customer; ``seen_at`` keeps the latest sighting.
    Rows are written in sorted order, so concurrent writers lock them in one order."""
    if not found:
        return
    stmt = _insert(conn, customer_fingerprints)
    stmt = stmt.on_conflict_do_update(
        index_elements=["store_id", "customer_id", "kind", "value_hash"],
        set_={
            "seen_at": case(
                (stmt.excluded.seen_at > customer_fingerprints.c.seen_at, stmt.excluded.seen_at),
                else_=customer_fingerprints.c.seen_at,
            )
        },
    )
    for kind, value in sorted(found):
        conn.execute(
            stmt,
            {"store_id": store_id, "customer_id": customer_id, "kind": kind,
             "value_hash": value, "seen_at": now},
        )  # fmt: skip


def fingerprints_of(
    conn: Connection, store_id: int, customer_id: int
) -> list[tuple[str, str, int]]:
    """(kind, hash, last seen) of every signal recorded for a customer."""
    rows = conn.execute(
        select(
            customer_fingerprints.c.kind,
            customer_fingerprints.c.value_hash,
            customer_fingerprints.c.seen_at,
        ).where(
            customer_fingerprints.c.store_id == store_id,
            customer_fingerprints.c.customer_id == customer_id,
        )
    )
    return [(str(k), str(v), int(s)) for k, v, s in rows]


# -- referrals -----------------------------------------------------------------------------------


def _decode(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {**row, "flags": json.loads(row["flags"]), "rewards": json.loads(row["rewards"])}


def add_referral(
    conn: Connection,
    store_id: int,
    *,
    code_id: int,
    referrer_id: int,
    friend_id: int,
    status: str,
    flags: list[str],
    now: int,
) -> int | None:
    """A new referral (its id), or None when the friend already has one (first one wins)."""
    new_id = conn.execute(
        _insert(conn, referrals)
        .values(
            store_id=store_id, code_id=code_id, referrer_id=referrer_id, friend_id=friend_id,
            status=status, flags=json.dumps(flags), order_ref=None, qualifies_at=None,
            rewards="{}", created_at=now, updated_at=now, decided_by=None,
        )
        .on_conflict_do_nothing(index_elements=["store_id", "friend_id"])
        .returning(referrals.c.id)
    ).scalar()  # fmt: skip
    return None if new_id is None else int(new_id)


def referral(
    conn: Connection, store_id: int, referral_id: int, *, lock: bool = False
) -> dict[str, Any] | None:
    query = select(referrals).where(referrals.c.store_id == store_id, referrals.c.id == referral_id)
    return _decode(_one(conn, _locked(conn, query) if lock else query))


def referral_of_friend(
    conn: Connection, store_id: int, friend_id: int, *, lock: bool = False
) -> dict[str, Any] | None:
    query = select(referrals).where(
        referrals.c.store_id == store_id, referrals.c.friend_id == friend_id
    )
    return _decode(_one(conn, _locked(conn, query) if lock else query))


def set_referral(conn: Connection, referral_id: int, now: int, **values: Any) -> None:
    """Change a referral (flags and rewards given as Python values)."""
    for name in ("flags", "rewards"):
        if name in values:
            values[name] = json.dumps(values[name], sort_keys=True)
    conn.execute(
        update(referrals).where(referrals.c.id == referral_id).values(updated_at=now, **values)
    )


def move(
    conn: Connection, referral_id: int, from_status: str, to_status: str, now: int, **values: Any
) -> bool:
    """Move a referral from one status to another only if it is still in the first:
    the one caller whose update changed the row has it (True)."""
    for name in ("flags", "rewards"):
        if name in values:
            values[name] = json.dumps(values[name], sort_keys=True)
    result = conn.execute(
        update(referrals)
        .where(referrals.c.id == referral_id, referrals.c.status == str(from_status))
        .values(status=str(to_status), updated_at=now, **values)
    )
    return int(result.rowcount or 0) == 1


def due(conn: Connection, store_id: int, now: int) -> list[int]:
    """Referrals the release job should look at: ordered ones whose refund window has
    passed, and any left half-paid (``paying``) by a job that stopped."""
    rows = conn.execute(
        select(referrals.c.id)
        .where(
            referrals.c.store_id == store_id,
            or_(
                and_(referrals.c.status == "ordered", referrals.c.qualifies_at <= now),
                referrals.c.status == "paying",
            ),
        )
        .order_by(referrals.c.id)
    )
    return [int(r[0]) for r in rows]


def referrals_where(
    conn: Connection,
    store_id: int,
    *,
    referrer_id: int | None = None,
    status: str | None = None,
    created_since: int | None = None,
    created_until: int | None = None,
) -> list[dict[str, Any]]:
    query = select(referrals).where(referrals.c.store_id == store_id)
    if referrer_id is not None:
        query = query.where(referrals.c.referrer_id == referrer_id)
    if status is not None:
        query = query.where(referrals.c.status == status)
    if created_since is not None:
        query = query.where(referrals.c.created_at >= created_since)
    if created_until is not None:
        query = query.where(referrals.c.created_at < created_until)
    rows = conn.execute(query.order_by(referrals.c.id)).mappings()
    return [r for r in (_decode(dict(row)) for row in rows) if r is not None]


# -- orders and coupons --------------------------------------------------------------------------


def order(conn: Connection, store_id: int, external_id: str) -> dict[str, Any] | None:
    return _one(
        conn,
        select(orders).where(orders.c.store_id == store_id, orders.c.external_id == external_id),
    )


def live_orders_before(conn: Connection, store_id: int, customer_id: int, before: int) -> int:
    """The customer's orders not cancelled, placed before ``before``."""
    return int(
        conn.execute(
            select(func.count()).where(
                orders.c.store_id == store_id,
                orders.c.customer_id == customer_id,
                orders.c.status != "cancelled",
                orders.c.placed_at < before,
            )
        ).scalar_one()
    )
