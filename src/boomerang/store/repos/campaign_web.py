"""Storage behind the links in a message: campaign settings (the signing key), the message
a token names, message events (open, click, unsubscribe), and consent changes from the
unsubscribe link and the preference centre.

Concurrency: on SQLite every write transaction starts with BEGIN IMMEDIATE, so writers are
serialised; on PostgreSQL `lock_customer` takes the customer row FOR UPDATE before a
consent is read and written, so two unsubscribe requests for one customer (a mail client's
one-click POST and the person's own click) never both write a consent row. The settings
row is created with ON CONFLICT DO NOTHING and read FOR UPDATE before it changes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from boomerang.store.schema import (
    campaign_settings,
    consents,
    customers,
    message_events,
    outbox,
    stores,
)


def _insert(conn: Connection, table: Any) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


# -- campaign settings -------------------------------------------------------------------------


def load_config(conn: Connection, store_id: int, *, lock: bool = False) -> dict[str, Any]:
    """The store's campaign settings (``{}`` when none were saved)."""
    query = select(campaign_settings.c.config).where(campaign_settings.c.store_id == store_id)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    text = conn.execute(query).scalar_one_or_none()
    if not text:
        return {}
    found = json.loads(text)
    return found if isinstance(found, dict) else {}


def merge_config(conn: Connection, store_id: int, changes: Mapping[str, Any], now: int) -> None:
    """Set some top-level keys of the settings, keeping the others (``None`` removes a key)."""
    conn.execute(
        _insert(conn, campaign_settings)
        .values(store_id=store_id, config="{}", updated_at=now)
        .on_conflict_do_nothing(index_elements=["store_id"])
    )
    config = load_config(conn, store_id, lock=True)
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    conn.execute(
        update(campaign_settings)
        .where(campaign_settings.c.store_id == store_id)
        .values(config=json.dumps(config, sort_keys=True), updated_at=now)
    )


def signing_key(conn: Connection, store_id: int) -> str | None:
    """The store's encoded signing key, when it has one."""
    value = load_config(conn, store_id).get("signing_key")
    return str(value) if value else None


def ensure_signing_key(conn: Connection, store_id: int, fresh: str, now: int) -> str:
    """The store's signing key; ``fresh`` becomes it when there is none yet (first caller
    wins: the settings row is locked, or SQLite's writer lock is held)."""
    conn.execute(
        _insert(conn, campaign_settings)
        .values(store_id=store_id, config="{}", updated_at=now)
        .on_conflict_do_nothing(index_elements=["store_id"])
    )
    config = load_config(conn, store_id, lock=True)
    existing = config.get("signing_key")
    if existing:
        return str(existing)
    config["signing_key"] = fresh
    conn.execute(
        update(campaign_settings)
        .where(campaign_settings.c.store_id == store_id)
        .values(config=json.dumps(config, sort_keys=True), updated_at=now)
    )
    return fresh


def store_id_named(conn: Connection, name: str) -> int | None:
    found = conn.execute(select(stores.c.id).where(stores.c.name == name)).scalar_one_or_none()
    return None if found is None else int(found)


def store_name(conn: Connection, store_id: int) -> str | None:
    found = conn.execute(select(stores.c.name).where(stores.c.id == store_id)).scalar_one_or_none()
    return None if found is None else str(found)


# -- the message and customer a token names -----------------------------------------------------


def message_of(
    conn: Connection, store_id: int, outbox_id: int, customer_id: int
) -> dict[str, Any] | None:
    """The outbox row's channel and status, when it is this store's and this customer's."""
    row = (
        conn.execute(
            select(outbox.c.id, outbox.c.channel, outbox.c.status).where(
                outbox.c.id == outbox_id,
                outbox.c.store_id == store_id,
                outbox.c.customer_id == customer_id,
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else dict(row)


def customer_contact(conn: Connection, store_id: int, customer_id: int) -> dict[str, Any] | None:
    """The customer's email, phone and first name (pages show them masked)."""
    row = (
        conn.execute(
            select(customers.c.email, customers.c.phone, customers.c.first_name).where(
                customers.c.id == customer_id, customers.c.store_id == store_id
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else dict(row)


def lock_customer(conn: Connection, store_id: int, customer_id: int) -> bool:
    """Take the customer row FOR UPDATE (PostgreSQL) before a consent change; False when
    there is no such customer in the store."""
    query = select(customers.c.id).where(
        customers.c.id == customer_id, customers.c.store_id == store_id
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).first() is not None


# -- consents -----------------------------------------------------------------------------------


def latest_consents(conn: Connection, store_id: int, customer_id: int) -> dict[str, str]:
    """Channel -> the latest consent status (absence: no consent recorded)."""
    return {
        c: status for c, (status, _) in latest_consent_rows(conn, store_id, customer_id).items()
    }


def latest_consent_rows(
    conn: Connection, store_id: int, customer_id: int
) -> dict[str, tuple[str, int]]:
    """Channel -> (latest status, its occurred_at)."""
    rows = conn.execute(
        select(consents.c.channel, consents.c.status, consents.c.occurred_at)
        .where(consents.c.store_id == store_id, consents.c.customer_id == customer_id)
        .order_by(consents.c.occurred_at, consents.c.id)
    ).all()
    return {r.channel: (r.status, int(r.occurred_at)) for r in rows}


def add_consents(
    conn: Connection,
    store_id: int,
    customer_id: int,
    changes: Iterable[tuple[str, str]],
    *,
    source: str,
    now: int,
) -> int:
    """Append consent rows (channel, status) from ``source``; returns how many."""
    values = [
        {"store_id": store_id, "customer_id": customer_id, "channel": channel,
         "status": status, "source": source, "occurred_at": now}
        for channel, status in changes
    ]  # fmt: skip
    if values:
        conn.execute(insert(consents), values)
    return len(values)


# -- message events -----------------------------------------------------------------------------


def add_event(
    conn: Connection,
    store_id: int,
    outbox_id: int,
    customer_id: int,
    kind: str,
    now: int,
    url: str | None = None,
) -> None:
    conn.execute(
        insert(message_events).values(
            store_id=store_id, outbox_id=outbox_id, customer_id=customer_id, type=kind,
            url=url, occurred_at=now,
        )
    )  # fmt: skip


def has_event(conn: Connection, outbox_id: int, kind: str) -> bool:
    query = select(message_events.c.id).where(
        message_events.c.outbox_id == outbox_id, message_events.c.type == kind
    )
    return conn.execute(query.limit(1)).first() is not None


def events(conn: Connection, outbox_id: int) -> list[dict[str, Any]]:
    """A message's events in order (type, url, occurred_at)."""
    rows = conn.execute(
        select(message_events.c.type, message_events.c.url, message_events.c.occurred_at)
        .where(message_events.c.outbox_id == outbox_id)
        .order_by(message_events.c.occurred_at, message_events.c.id)
    ).mappings()
    return [dict(r) for r in rows]
