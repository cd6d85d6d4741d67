"""One ADBC connection per bulk job: Arrow in and out, one transaction, either engine.

Why ADBC: it streams Arrow batches into SQLite (prepared inserts in C) and PostgreSQL (COPY)
and reads query results back as Arrow, so a million rows never become Python objects.
Staging tables are TEMPORARY: a killed job leaves nothing behind.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
from sqlalchemy import Engine

from boomerang.store.engine import SQLITE_BUSY_TIMEOUT_MS

SQLITE_CACHE_KIB = 262_144  # 256 MiB page cache: index inserts of big batches stay in memory
# The ADBC SQLite driver types each column from the first batch of rows (1,024 by default): a
# nullable text column whose first batch is all NULL then fails with "Type mismatch". Large
# batches make that practically impossible (the driver caps the option at 2**31 - 1).
SQLITE_BATCH_ROWS = 1_000_000


class BulkSession:
    """A transaction on an ADBC connection with the few operations bulk jobs need."""

    def __init__(self, cursor: Any, dialect: str) -> None:
        self._cur = cursor
        self.dialect = dialect
        self._tag = secrets.token_hex(4)
        self._staged = 0
        if dialect == "sqlite":
            cursor.adbc_statement.set_options(
                **{"adbc.sqlite.query.batch_rows": str(SQLITE_BATCH_ROWS)}
            )

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def execute(self, sql: str) -> int:
        """Run a statement; return the affected row count when the driver reports it."""
        self._cur.execute(sql)
        count = self._cur.rowcount
        return int(count) if count is not None and count >= 0 else 0

    def scalar(self, sql: str) -> Any:
        self._cur.execute(sql)
        row = self._cur.fetchone()
        return None if row is None else row[0]

    def fetch_arrow(self, sql: str) -> pa.Table:
        self._cur.execute(sql)
        return self._cur.fetch_arrow_table()

    def stage(self, name: str, table: pa.Table) -> str:
        """Load ``table`` into a new temporary table; return its (unique) name."""
        self._staged += 1
        target = f"_stage_{self._tag}_{self._staged}_{name}"
        self._cur.adbc_ingest(target, table, mode="create", temporary=True)
        return target

    def append(self, table_name: str, table: pa.Table) -> None:
        """Append rows straight into a real table (columns matched by name)."""
        if table.num_rows:
            self._cur.adbc_ingest(table_name, table, mode="append")

    def distinct_from(self, a: str, b: str) -> str:
        """Null-safe inequality in this dialect."""
        return f"({a} IS NOT {b})" if self.is_sqlite else f"({a} IS DISTINCT FROM {b})"


def _connect(engine: Engine) -> tuple[Any, str]:
    url = engine.url
    if url.get_backend_name() == "sqlite":
        import adbc_driver_sqlite.dbapi as adbc_sqlite

        if not url.database or url.database == ":memory:":
            raise ValueError("bulk jobs need a SQLite file, not an in-memory database")
        return adbc_sqlite.connect(url.database, autocommit=True), "sqlite"
    import adbc_driver_postgresql.dbapi as adbc_pg

    plain = url.set(drivername="postgresql").render_as_string(hide_password=False)
    # The driver's built-in type table: by default each connection first reads the
    # server's whole catalog (pg_type, pg_attribute) to learn its types, ~50 ms a
    # connection; the store's columns are all built-in types (no enums, composites, arrays).
    options = {"adbc.postgresql.type_resolver_mode": "builtin"}
    return adbc_pg.connect(plain, autocommit=True, db_kwargs=options), "postgresql"


@contextmanager
def bulk_transaction(engine: Engine, lock_key: int | None = None) -> Iterator[BulkSession]:
    """Commit on success, roll back on any exception; ``lock_key`` serialises jobs per store."""
    conn, dialect = _connect(engine)
    cur = conn.cursor()
    try:
        if dialect == "sqlite":
            cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA synchronous = NORMAL")
            cur.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
            cur.execute("PRAGMA temp_store = MEMORY")
            cur.execute("PRAGMA foreign_keys = ON")
            cur.execute("BEGIN IMMEDIATE")
        else:
            cur.execute("BEGIN")
            if lock_key is not None:
                cur.execute(f"SELECT pg_advisory_xact_lock({int(lock_key)})")
        session = BulkSession(cur, dialect)
        try:
            yield session
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")
    finally:
        cur.close()
        conn.close()


def read_arrow(engine: Engine, sql: str) -> pa.Table:
    """Run one read-only query and return its result as Arrow (analytics loads use this)."""
    conn, dialect = _connect(engine)
    cur = conn.cursor()
    try:
        BulkSession(cur, dialect)  # applies the driver options
        cur.execute(sql)
        table: pa.Table = cur.fetch_arrow_table()
        return table
    finally:
        cur.close()
        conn.close()
