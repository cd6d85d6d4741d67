"""`boomerang flows library ...`: the ready-made flows (docs/flow-library.md): list them,
print one's YAML (to copy and edit), install them into a store."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from boomerang.cli.common import DbOption, StoreOption, console, err_console, resolve
from boomerang.cli.segments import moment

app = typer.Typer(
    help="The flow library: ready-made campaign flows to switch on.", no_args_is_help=True
)


@app.command("list")
def list_command() -> None:
    """Every library flow with its trigger and what it does."""
    from boomerang.services import flow_library

    table = Table("flow", "trigger", "title", "needs segment")
    for f in flow_library.library():
        table.add_row(f.name, f.trigger, f.title, f.segment or "-")
    console.print(table)


@app.command("show")
def show_command(name: str) -> None:
    """Print a library flow's YAML (redirect it to a file, edit, then `flows set`)."""
    from boomerang.services import flow_library

    typer.echo(flow_library.source(name), nl=False)


@app.command("install")
def install_command(
    names: Annotated[
        list[str] | None, typer.Argument(help="Library flows to install (default: all).")
    ] = None,
    start: Annotated[
        str | None,
        typer.Option("--from", help="New flows see triggers from this date (default now)."),
    ] = None,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Validate library flows and their templates and store them (a changed flow becomes a
    new version). Flows that need a segment the store lacks are not installed: named ones
    fail the command; with no names the rest are installed and the command exits 1."""
    from boomerang.services import flow_library

    db_url, store_name = resolve(db, store)
    result = flow_library.install(db_url, store_name, names or None, start=moment(start, "--from"))
    for saved in result.installed:
        state = "installed" if saved.changed else "unchanged"
        console.print(f"{saved.name}: version {saved.version} ({state})")
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    if result.missing_segments:
        for flow, segment in result.missing_segments.items():
            err_console.print(
                f"[bold red]not installed[/] {flow}: needs segment {segment!r}, which this "
                "store lacks",
                highlight=False,
            )
        skipped = " ".join(result.missing_segments)
        err_console.print(
            "Run `boomerang segments refresh` (it creates the built-in segments), then "
            f"`boomerang flows library install {skipped}`.",
            highlight=False,
        )
        raise typer.Exit(1)
