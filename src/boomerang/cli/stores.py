"""`boomerang stores`: what stores a database holds."""

from __future__ import annotations

from rich.table import Table

from boomerang.cli.common import DbOption, console, resolve


def list_stores(db: DbOption = None) -> None:
    """List the stores in the database with their customer and order counts."""
    from boomerang.services import admin

    path, _ = resolve(db, None)
    table = Table("store", "currency", "customers", "orders", "events")
    for row in admin.store_overview(path):
        table.add_row(
            row.name, row.currency, f"{row.customers:,}", f"{row.orders:,}", f"{row.events:,}"
        )
    console.print(table)
