"""Apply the recorded Alembic migrations to a database (``boomerang db upgrade``).

Every use case opens its store through `upgrade`, so its common case (the database is
already at the newest revision) is one plain read of ``alembic_version``: Alembic is
imported and its scripts parsed only when there is something to do. Revisions are
numbered and each file name starts with its revision ("0006_campaigns.py" is "0006"),
so the head is the highest number on disk (`tests/test_migrations.py` checks that this
agrees with Alembic's own head)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from boomerang.errors import SchemaError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def numbered_head() -> str:
    """The newest revision by its file name (the numbering convention above)."""
    return max(p.name.split("_", 1)[0] for p in (MIGRATIONS_DIR / "versions").glob("[0-9]*.py"))


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision(engine: Engine) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        rev = MigrationContext.configure(conn).get_current_revision()
        conn.rollback()
        return rev


def _stored_revision(engine: Engine) -> str | None:
    """``alembic_version``'s row, or None when there is none (or no such table yet)."""
    try:
        with engine.connect() as conn:
            found = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
            conn.rollback()
    except DBAPIError:
        return None
    return str(found[0]) if len(found) == 1 else None


def upgrade(engine: Engine) -> str | None:
    """Bring the database to the newest schema; a no-op when it is already there."""
    if _stored_revision(engine) == numbered_head():
        return numbered_head()
    from alembic import command
    from alembic.script import ScriptDirectory

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
