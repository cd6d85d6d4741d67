"""Apply the recorded Alembic migrations to a database (``boomerang db upgrade``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from boomerang.errors import SchemaError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        rev = MigrationContext.configure(conn).get_current_revision()
        conn.rollback()
        return rev


def upgrade(engine: Engine) -> str | None:
    """Bring the database to the newest schema; a no-op when it is already there."""
    head = head_revision(engine)
    current = current_revision(engine)
    if current == head:
        return head
    script = ScriptDirectory.from_config(alembic_config(engine))
    if current is not None and script.get_revision(current) is None:
        raise SchemaError(
            f"database schema {current} is newer than this Boomerang",
            hint="upgrade Boomerang before using this database",
        )
    command.upgrade(alembic_config(engine), "head")
    return head
