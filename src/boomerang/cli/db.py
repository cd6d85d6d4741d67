"""`boomerang db ...`: schema management."""

from __future__ import annotations

import typer

from boomerang.cli.common import DbOption, console, resolve

app = typer.Typer(help="Manage the operational database (schema migrations).", no_args_is_help=True)


@app.command("upgrade")
def upgrade(db: DbOption = None) -> None:
    """Create or migrate the database schema to the newest version (safe to repeat)."""
    from boomerang.services import admin

    path, _ = resolve(db, None)
    revision = admin.upgrade_schema(path)
    console.print(f"database {path} is at schema revision {revision}")
