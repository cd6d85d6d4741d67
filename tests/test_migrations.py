"""The recorded migrations build exactly the schema in `store/schema.py`, on both engines."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from boomerang.store import migrate
from boomerang.store.engine import make_engine
from boomerang.store.schema import metadata


def test_migrations_match_schema_and_upgrade_is_idempotent(empty_db: str) -> None:
    db = empty_db
    engine = make_engine(db)
    try:
        assert migrate.upgrade(engine) == migrate.head_revision(engine)
        assert migrate.upgrade(engine) == migrate.head_revision(engine)
        # the fast path's head (file names) is Alembic's head
        assert migrate.numbered_head() == migrate.head_revision(engine)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == []
    finally:
        engine.dispose()
