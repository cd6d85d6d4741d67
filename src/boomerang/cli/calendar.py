"""`boomerang calendar ...`: the communication calendar — customers the store has not
contacted lately, and one customer's timeline (docs/attribution.md#calendar)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Table

from boomerang.cli.common import DbOption, StoreOption, console, resolve
from boomerang.cli.segments import moment
from boomerang.domain.clock import from_micros

app = typer.Typer(
    help="Communication calendar: who was contacted when, who has gone quiet.",
    no_args_is_help=True,
)

AsOfOption = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        help="Judge as of this date (default: now, or the store's latest order or message "
        "if later).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _when(micros: int | None) -> str:
    return "never" if micros is None else f"{from_micros(micros):%Y-%m-%d %H:%M}"


def _iso(micros: int | None) -> str | None:
    return None if micros is None else from_micros(micros).isoformat()


@app.command("stale")
def stale_command(
    days: Annotated[int, typer.Option("--days", help="Not contacted in this many days.")],
    limit: Annotated[int, typer.Option("--limit", help="List at most this many.")] = 100,
    as_of: AsOfOption = None,
    as_json: JsonOption = False,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Existing customers (at least one order) not sent a marketing message in --days
    days, or never: never contacted first, then the longest ago."""
    from boomerang.services import calendar

    db_url, store_name = resolve(db, store)
    result = calendar.stale(db_url, store_name, days=days, as_of=moment(as_of), limit=limit)
    if as_json:
        rows = [
            {**asdict(c), "last_order_at": _iso(c.last_order_at),
             "last_contact_at": _iso(c.last_contact_at),
             "last_interaction_at": _iso(c.last_interaction_at)}
            for c in result.customers
        ]  # fmt: skip
        console.print_json(json.dumps({
            "store": result.store, "as_of": _iso(result.as_of), "days": result.days,
            "total": result.total, "customers": rows,
        }))  # fmt: skip
        return
    table = Table(
        "customer", "email", "orders", "last order", "last contact", "last interaction",
        "consent",
        title=f"Not contacted in {days} days as of {_when(result.as_of)}",
    )  # fmt: skip
    for c in result.customers:
        consent = ", ".join(f"{ch} {st}" for ch, st in sorted(c.consent.items())) or "none"
        table.add_row(
            c.external_id, c.email or "", f"{c.orders:,}", _when(c.last_order_at),
            _when(c.last_contact_at), _when(c.last_interaction_at), consent,
        )  # fmt: skip
    console.print(table)
    shown = len(result.customers)
    more = f" (showing {shown:,}; --limit for more)" if shown < result.total else ""
    console.print(f"{result.total:,} customers not contacted in {days} days{more}")


@app.command("timeline")
def timeline_command(
    customer: Annotated[str, typer.Argument(help="External id, email or customer id.")],
    limit: Annotated[int, typer.Option("--limit", help="Show the latest this many items.")] = 50,
    as_of: AsOfOption = None,
    as_json: JsonOption = False,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """One customer's orders, messages (with their status), opens and clicks, loyalty and
    site events, oldest first."""
    from boomerang.services import calendar

    db_url, store_name = resolve(db, store)
    t = calendar.timeline(db_url, store_name, customer, limit=limit, as_of=moment(as_of))
    if as_json:
        console.print_json(json.dumps({
            "customer_id": t.customer_id, "external_id": t.external_id, "email": t.email,
            "last_contact_at": _iso(t.last_contact_at),
            "last_interaction_at": _iso(t.last_interaction_at), "more": t.more,
            "items": [{"at": _iso(i.at), "kind": i.kind, "summary": i.summary, "data": i.data}
                      for i in t.items],
        }, default=str))  # fmt: skip
        return
    console.print(
        f"[bold]{t.external_id}[/] ({t.email or 'no email'}): last contact "
        f"{_when(t.last_contact_at)}, last interaction {_when(t.last_interaction_at)}"
    )
    if t.more:
        console.print(f"(older items not shown; --limit {limit * 2} for more)")
    table = Table("when (UTC)", "what", "detail")
    for i in t.items:
        table.add_row(_when(i.at), i.kind, i.summary)
    console.print(table)
