"""Entry point: builds the Typer app and turns `BoomerangError` into one line and exit code."""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from boomerang.cli import (
    calendar,
    clv,
    cohorts,
    customers,
    db,
    demo,
    flow_stats,
    flows,
    imports,
    library,
    loyalty,
    memberships,
    metrics,
    referrals,
    report,
    segments,
    serve,
    simulate,
    stores,
)
from boomerang.cli.common import err_console
from boomerang.errors import BoomerangError

app = typer.Typer(
    name="boomerang",
    help="Boomerang: retention analytics, segments, loyalty and campaigns for your store.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db.app, name="db")
app.command("import")(imports.import_file)
app.command("simulate")(simulate.simulate)
app.command("stores")(stores.list_stores)
app.command("demo")(demo.demo)
app.add_typer(customers.app, name="customers")
app.command("metrics")(metrics.metrics_command)
app.command("cohorts")(cohorts.cohorts_command)
app.command("report")(report.report_command)
app.add_typer(clv.app, name="clv")
app.add_typer(segments.app, name="segments")
app.add_typer(loyalty.app, name="loyalty")
app.add_typer(loyalty.coupons_app, name="coupons")
app.add_typer(memberships.app, name="memberships")
app.add_typer(referrals.app, name="referrals")
flows.app.command("stats")(flow_stats.stats)
flows.app.command("experiments")(flow_stats.experiments)
flows.app.add_typer(library.app, name="library")
app.add_typer(flows.app, name="flows")
app.add_typer(calendar.app, name="calendar")
app.add_typer(flows.outbox_app, name="outbox")
app.command("worker")(flows.worker)
app.command("serve")(serve.serve)


def main() -> None:
    """Run the CLI; known errors print one line (code, what, what to do) and exit 1."""
    try:
        app()
    except BoomerangError as exc:
        err_console.print(
            f"[bold red]error[/] ({exc.code}) {escape(exc.one_line())}", highlight=False
        )
        sys.exit(1)
