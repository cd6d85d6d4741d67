"""`boomerang simulate`: a synthetic store for demos, tests and benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from boomerang.cli.common import DbOption, StoreOption, console, resolve

if TYPE_CHECKING:
    pass


def simulate(
    customers: Annotated[
        int,
        typer.Option(
            "--customers",
            help="How many customers: buyers plus newsletter subscribers who never buy "
            "(anonymous visitors come on top).",
        ),
    ] = 20_000,
    days: Annotated[
        int, typer.Option("--days", help="Length of the simulated history in days.")
    ] = 730,
    seed: Annotated[
        int, typer.Option("--seed", help="Random seed; the same seed gives the same store.")
    ] = 1,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out-dir",
            help="Write Shopify-layout exports here (orders_export.csv, customers_export.csv, "
            "events.jsonl, truth.json) instead of filling the database.",
        ),
    ] = None,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Generate a realistic store (orders, customers, events) with known true parameters.

    The model and every parameter are described in docs/simulator.md.
    """
    from boomerang.services import simulation

    path, store_name = resolve(db, store)
    result = simulation.run(
        customers=customers, days=days, seed=seed, out_dir=out_dir, db=path, store=store_name
    )
    for line in result.describe():
        console.print(line)
