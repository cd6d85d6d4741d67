"""Stores: the tenant every other row belongs to."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, insert, select

from boomerang.domain.clock import now_micros
from boomerang.errors import NotFoundError
from boomerang.store.schema import stores


@dataclass(frozen=True, slots=True)
class Store:
    id: int
    name: str
    currency: str
    timezone: str


def get_or_create(conn: Connection, name: str, currency: str) -> Store:
    """The store called ``name``, created with ``currency`` on first use."""
    row = conn.execute(select(stores).where(stores.c.name == name)).first()
    if row is None:
        conn.execute(
            insert(stores).values(
                name=name, currency=currency.upper(), timezone="UTC", created_at=now_micros()
            )
        )
        row = conn.execute(select(stores).where(stores.c.name == name)).one()
    return Store(row.id, row.name, row.currency, row.timezone)


_BY_NAME = select(stores).where(stores.c.name == bindparam("name"))  # every ledger call: built once


def get(conn: Connection, name: str) -> Store:
    row = conn.execute(_BY_NAME, {"name": name}).first()
    if row is None:
        raise NotFoundError(
            f"no store named {name!r}", hint="list stores with `boomerang stores` or import first"
        )
    return Store(row.id, row.name, row.currency, row.timezone)


def list_all(conn: Connection) -> list[Store]:
    rows = conn.execute(select(stores).order_by(stores.c.id)).all()
    return [Store(r.id, r.name, r.currency, r.timezone) for r in rows]
