"""`boomerang demo`: the main job on a simulated store (what `make demo` runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from boomerang.cli.common import console
from boomerang.cli.imports import print_summary
from boomerang.domain.clock import from_micros
from boomerang.domain.money import Money


def demo(
    directory: Annotated[
        Path, typer.Option("--dir", help="Folder for the demo store (recreated).")
    ] = Path("demo"),
    customers: Annotated[int, typer.Option("--customers", help="Simulated customers.")] = 20_000,
    days: Annotated[int, typer.Option("--days", help="Simulated days of history.")] = 730,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 7,
) -> None:
    """Simulate a store as Shopify exports, import them, and show what Boomerang sees."""
    from boomerang.services.demo import run_demo

    with console.status("demo") as status:
        result = run_demo(
            directory, customers=customers, days=days, seed=seed, on_step=status.update
        )
    console.rule("simulated store")
    for line in result.simulation:
        console.print(line)
    for summary in result.imports:
        console.rule(f"import {summary.kind}")
        print_summary(summary)
    totals = result.totals
    if totals is not None:
        console.rule("store totals")
        revenue = Money.from_minor(totals.net_revenue_minor, totals.currency)
        console.print(
            f"store '{totals.name}': {totals.customers:,} customers, {totals.orders:,} orders, "
            f"{totals.events:,} events, net revenue {revenue}"
        )
    refreshed = result.segments
    if refreshed is not None:
        console.rule(
            f"segments ({refreshed.segments}, as of {from_micros(refreshed.as_of):%Y-%m-%d %H:%M} UTC)"
        )
        shown = ("at-risk", "first-time-buyers", "repeat-buyers", "high-spenders", "lapsed",
                 "churned", "rfm-champions", "rfm-cant-lose-them")  # fmt: skip
        for name in shown:
            console.print(f"{name:<28} {refreshed.members.get(name, 0):,}")
        console.print(f"{refreshed.entered:,} memberships entered; see `boomerang segments list`")
    flows = result.flows
    if flows is not None:
        console.rule("campaign flows (simulated time)")
        from boomerang.cli.flows import print_summary as print_flows

        print_flows(flows)
        console.print(f"messages: {result.messages_dir} (one .eml per email sent)")
    report = result.report
    if report is not None:
        console.rule(f"retention, {report.start} to {report.end} (latest complete month)")
        for label, value in report.headline.items():
            console.print(f"{label:<28} {value}")
        console.print(f"lifecycle stage: {report.stage}")
        for note in report.notes:
            console.print(f"note: {note}")
        console.print(f"report: {report.path}")
    console.print(f"database: {result.db}")
