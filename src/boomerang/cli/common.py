"""Options and rendering shared by every command."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from boomerang.config import load_settings

console = Console()
err_console = Console(stderr=True, soft_wrap=True)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db", help="SQLite file or database URL (env BOOMERANG_DB; default ./boomerang.db)."
    ),
]
StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store", help="Store name inside the database (env BOOMERANG_STORE; default 'default')."
    ),
]


def resolve(db: str | None, store: str | None) -> tuple[str, str]:
    """--db/--store, else the environment, else the defaults."""
    settings = load_settings(db=db, store=store)
    return settings.db, settings.store
