"""Bulk-load Arrow tables into uniquely named staging tables through ADBC.

Why: inserting a million rows through Python objects costs seconds; ADBC streams Arrow
batches straight into SQLite or PostgreSQL (COPY). Staging tables are committed on their
own connection and then consumed and dropped inside the caller's write transaction, so a
killed import leaves at most an orphaned staging table that the next import removes.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping

import pyarrow as pa
from sqlalchemy import Connection, Engine, inspect, text

from boomerang.config import database_url

STAGING_PREFIX = "_stage_"
ORPHAN_AGE_SECONDS = 6 * 3600


def new_prefix() -> str:
    """A staging-table prefix carrying its creation time, so orphans can be aged out."""
    return f"{STAGING_PREFIX}{int(time.time())}_{secrets.token_hex(4)}_"


def _adbc_connect(engine: Engine):  # type: ignore[no-untyped-def]
    url = engine.url
    if url.get_backend_name() == "sqlite":
        import adbc_driver_sqlite.dbapi as adbc_sqlite

        return adbc_sqlite.connect(url.database or ":memory:")
    import adbc_driver_postgresql.dbapi as adbc_pg

    plain = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return adbc_pg.connect(plain)


def stage_tables(engine: Engine, prefix: str, tables: Mapping[str, pa.Table]) -> dict[str, str]:
    """Write each Arrow table to ``prefix + name``; return name -> staging table name."""
    if database_url(str(engine.url)).startswith("sqlite") and engine.url.database in (
        None,
        "",
        ":memory:",
    ):
        raise ValueError("bulk staging needs a SQLite file, not an in-memory database")
    names: dict[str, str] = {}
    conn = _adbc_connect(engine)
    try:
        with conn.cursor() as cur:
            for name, table in tables.items():
                target = prefix + name
                cur.adbc_ingest(target, table, mode="create")
                names[name] = target
        conn.commit()
    finally:
        conn.close()
    return names


def drop_orphans(conn: Connection) -> None:
    """Drop staging tables left by imports that were killed more than a few hours ago."""
    cutoff = time.time() - ORPHAN_AGE_SECONDS
    for name in inspect(conn).get_table_names():
        if not name.startswith(STAGING_PREFIX):
            continue
        stamp = name[len(STAGING_PREFIX) :].split("_", 1)[0]
        if stamp.isdigit() and int(stamp) < cutoff:
            conn.execute(text(f'DROP TABLE IF EXISTS "{name}"'))


def drop(conn: Connection, names: Mapping[str, str]) -> None:
    for target in names.values():
        conn.execute(text(f'DROP TABLE IF EXISTS "{target}"'))
