"""`boomerang import KIND FILE`: load a store export, idempotently, with a rejects report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from boomerang.cli.common import DbOption, StoreOption, console, err_console, resolve
from boomerang.errors import ImportRejectedError
from boomerang.ingest.kinds import IMPORT_KINDS, check_kind

if TYPE_CHECKING:
    from boomerang.services.imports import ImportSummary


def import_file(
    kind: Annotated[str, typer.Argument(help=f"Layout of the file: {', '.join(IMPORT_KINDS)}.")],
    file: Annotated[Path, typer.Argument(help="The export file to import.")],
    db: DbOption = None,
    store: StoreOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and count, then roll back.")
    ] = False,
    rejects: Annotated[
        Path | None,
        typer.Option(
            "--rejects", help="Where to write rejected rows (default FILE.rejects.csv here)."
        ),
    ] = None,
    mapping: Annotated[
        Path | None,
        typer.Option("--mapping", help="Column mapping (TOML or YAML) for the csv kind."),
    ] = None,
    allow_rejects: Annotated[
        int,
        typer.Option(
            "--allow-rejects", help="Apply the valid orders when at most N rows are rejected."
        ),
    ] = 0,
    currency: Annotated[
        str | None,
        typer.Option(
            "--currency",
            help="Currency for rows that name none (default: the layout's own, else USD).",
        ),
    ] = None,
    timezone: Annotated[
        str, typer.Option("--timezone", help="Timezone of timestamps that carry no offset.")
    ] = "UTC",
) -> None:
    """Import a store export; re-running the same file changes nothing."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    check_kind(kind)  # before the readers load (polars, pyarrow): a typo fails at once
    from boomerang.services.imports import run_import

    path, store_name = resolve(db, store)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        task = progress.add_task("import", total=None, rate="")

        def on_phase(name: str, rows: int) -> None:
            elapsed = progress.tasks[0].elapsed or 0.0
            rate = f"{rows / elapsed:,.0f} rows/s" if rows and elapsed else ""
            progress.update(task, description=name, rate=rate)

        try:
            summary = run_import(
                kind,
                file,
                db=path,
                store=store_name,
                currency=currency,
                timezone=timezone,
                mapping=mapping,
                dry_run=dry_run,
                rejects_path=rejects,
                allow_rejects=allow_rejects,
                on_phase=on_phase,
            )
        except ImportRejectedError:
            progress.stop()
            raise
    print_summary(summary)


def print_summary(s: ImportSummary) -> None:
    r = s.result
    verb = "would import (dry run)" if s.dry_run else "imported"
    console.print(f"[bold]{verb}[/] {s.file} as {s.kind} into store '{s.store}'")
    table = Table("", "inserted", "updated", "unchanged")
    for name, c in (("customers", r.customers), ("orders", r.orders), ("products", r.products)):
        table.add_row(name, f"{c.inserted:,}", f"{c.updated:,}", f"{c.unchanged:,}")
    console.print(table)
    console.print(
        f"rows read {s.rows_read:,} · rejected {s.rows_rejected:,} · guest orders {s.guest_orders:,} · "
        f"consents recorded {r.consents_recorded:,} · events inserted {r.events_inserted:,} "
        f"(duplicates {r.events_duplicate:,}) · {s.rows_per_second:,.0f} rows/s in {s.seconds:.2f} s"
    )
    if s.rejects_file:
        console.print(f"rejected rows: {s.rejects_file}")
    for note in s.notes:
        console.print(f"note: {note}")
