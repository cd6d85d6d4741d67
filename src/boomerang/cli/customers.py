"""`boomerang customers ...`: look at one customer's profile."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from boomerang.cli.common import DbOption, StoreOption, console, resolve

app = typer.Typer(help="Inspect customer profiles.", no_args_is_help=True)


@app.command("show")
def show(
    customer: Annotated[str, typer.Argument(help="Customer external id, email or numeric id.")],
    db: DbOption = None,
    store: StoreOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show a customer's identity, consents and lifetime order aggregates."""
    from boomerang.services import customer_profiles

    path, store_name = resolve(db, store)
    profile = customer_profiles.get_profile(path, store_name, customer)
    if as_json:
        console.print_json(json.dumps(profile))
        return
    table = Table("field", "value", show_header=False)
    for key, value in profile.items():
        table.add_row(key, "" if value is None else str(value))
    console.print(table)
