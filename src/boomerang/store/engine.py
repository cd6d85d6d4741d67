"""Engines for the operational store: SQLite (embedded default) and PostgreSQL.

SQLite runs in WAL mode with a long busy timeout, and every transaction we open starts
with ``BEGIN IMMEDIATE`` so read-then-write code takes the write lock up front instead of
failing with "database is locked" when it tries to upgrade a read lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.pool import NullPool

from boomerang.config import database_url

SQLITE_BUSY_TIMEOUT_MS = 60_000


def make_engine(db: str) -> Engine:
    """Build an engine for a SQLite path or a database URL."""
    url = database_url(db)
    if url.startswith("sqlite"):
        engine = create_engine(url, poolclass=NullPool)
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so BEGIN is ours.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def is_sqlite(bind: Engine | Connection) -> bool:
    return bind.dialect.name == "sqlite"


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """One write transaction: committed on success, rolled back on any exception."""
    with engine.begin() as conn:
        yield conn
