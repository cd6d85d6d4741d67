"""Database administration use cases: migrations and per-store overview."""

from __future__ import annotations

from boomerang.services.context import open_engine
from boomerang.store import migrate
from boomerang.store.engine import make_engine
from boomerang.store.repos.overview import StoreCounts, store_counts


def upgrade_schema(db: str) -> str | None:
    engine = make_engine(db)
    try:
        return migrate.upgrade(engine)
    finally:
        engine.dispose()


def store_overview(db: str) -> list[StoreCounts]:
    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            return store_counts(conn)
    finally:
        engine.dispose()
