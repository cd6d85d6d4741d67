"""Open the operational store once per use case: engine, migrated schema, named store."""

from __future__ import annotations

from sqlalchemy import Engine

from boomerang.store import migrate
from boomerang.store.engine import make_engine


def open_engine(db: str, *, upgrade: bool = True) -> Engine:
    """An engine on ``db`` whose schema is at the newest migration."""
    engine = make_engine(db)
    if upgrade:
        migrate.upgrade(engine)
    return engine
