"""Small helpers the store tests share: read rows and counts back, read a rejects file."""

from __future__ import annotations

import csv
from pathlib import Path

from sqlalchemy import text

from boomerang.store.engine import make_engine


def rows(db: str, sql: str) -> list[tuple[object, ...]]:
    """All rows of a query, as tuples."""
    engine = make_engine(db)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


def count(db: str, table: str) -> int:
    """Rows in a table; 0 when the table does not exist yet (nothing was migrated)."""
    engine = make_engine(db)
    try:
        with engine.connect() as conn:
            if table not in conn.dialect.get_table_names(conn):
                return 0
            return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


def read_rejects(path: Path) -> list[tuple[int, str, str, str]]:
    """(row, column, value, reason) of every line of a rejects CSV."""
    with path.open(encoding="utf-8") as fh:
        return [(int(r["row"]), r["column"], r["value"], r["reason"]) for r in csv.DictReader(fh)]
