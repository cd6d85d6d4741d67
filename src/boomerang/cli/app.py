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


def _root() -> typer.Typer:
    return typer.Typer(
        name="boomerang",
        help="Boomerang: retention analytics, segments, loyalty and campaigns for your store.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )


app = _root()
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


def _app_for(args: list[str]) -> typer.Typer:
    """The app that runs ``boomerang ARGS``. When the first argument names a command
    group (`boomerang loyalty redeem ...`), a root holding that group alone: Typer builds
    the click command of everything registered on every run, and building all ~80 costs
    each short-lived CLI process 60-100 ms (the loyalty group alone: under 20). Anything
    else (a top-level command, ``--help``, a typo) gets the whole app."""
    for group in app.registered_groups:
        if args[:1] == [group.name]:
            root = _root()
            root.registered_groups.append(group)
            return root
    return app


def main() -> None:
    """Run the CLI; known errors print one line (code, what, what to do) and exit 1."""
    try:
        _app_for(sys.argv[1:])()
    except BoomerangError as exc:
        err_console.print(
            f"[bold red]error[/] ({exc.code}) {escape(exc.one_line())}", highlight=False
        )
        sys.exit(1)
