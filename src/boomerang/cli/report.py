"""`boomerang report`: write the retention report, a self-contained HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from boomerang.cli.common import DbOption, StoreOption, console, resolve
from boomerang.cli.metrics import FromOption, ToOption, parse_day
from boomerang.errors import InputError

if TYPE_CHECKING:
    pass


def report_command(
    db: DbOption = None,
    store: StoreOption = None,
    out: Annotated[Path, typer.Option("--out", help="Where to write the HTML report.")] = Path(
        "report.html"
    ),
    start: FromOption = None,
    end: ToOption = None,
    window: Annotated[
        int, typer.Option("--window", help="Activity window in days: who counts as a customer.")
    ] = 365,
    what_if: Annotated[
        float, typer.Option("--what-if", help="Retention points added in the growth simulation.")
    ] = 5.0,
) -> None:
    """Write the retention report (KPIs, trends, cohorts, churn, growth, lifecycle) as HTML."""
    from boomerang.services.analytics import MetricOptions, build_report

    path, store_name = resolve(db, store)
    try:
        options = MetricOptions(activity_window_days=window)
    except ValueError as exc:
        raise InputError(str(exc), hint="pass --window 1 or more") from None
    with console.status("computing retention analytics"):
        result = build_report(
            path,
            store_name,
            out,
            start=parse_day(start, "--from"),
            end=parse_day(end, "--to"),
            options=options,
            what_if_points=what_if,
        )
    console.print(
        f"[bold]retention report[/] for store '{result.store}', {result.start} to {result.end}"
    )
    for label, value in result.headline.items():
        console.print(f"  {label}: {value}")
    console.print(f"  lifecycle stage: {result.stage}")
    for note in result.notes:
        console.print(f"note: {note}")
    console.print(f"report: {result.path}")
