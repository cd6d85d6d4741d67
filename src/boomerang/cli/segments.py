"""`boomerang segments ...`: define, refresh, explain and export segments; RFM."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from boomerang.cli.common import DbOption, StoreOption, console, err_console, resolve
from boomerang.domain.clock import from_micros, now_micros, to_micros
from boomerang.errors import InputError

if TYPE_CHECKING:
    pass

app = typer.Typer(
    help="Customer segments: RFM, built-in retention segments and your own rules.",
    no_args_is_help=True,
)

AsOfOption = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        help="Evaluate as of this moment (YYYY-MM-DD = UTC midnight, or ISO time); default now.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def moment(text: str | None, option: str = "--as-of") -> int | None:
    """YYYY-MM-DD (UTC midnight) or an ISO 8601 timestamp -> epoch micros."""
    if text is None:
        return None
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            return to_micros(datetime(d.year, d.month, d.day, tzinfo=UTC))
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            f"{option} {text!r} is not a date", hint="write YYYY-MM-DD or 2026-11-01T12:00:00Z"
        ) from None
    return to_micros(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))


def _when(micros: int) -> str:
    return from_micros(micros).isoformat()


@app.command("list")
def list_command(
    db: DbOption = None, store: StoreOption = None, as_json: JsonOption = False
) -> None:
    """List the store's segments with their current member counts."""
    from boomerang.services import segments as service

    db_url, store_name = resolve(db, store)
    infos = service.list_segments(db_url, store_name)
    if as_json:
        console.print_json(json.dumps([i.__dict__ for i in infos]))
        return
    table = Table("name", "kind", "members", "title")
    for i in infos:
        table.add_row(i.name, i.kind, f"{i.members:,}", i.title)
    console.print(table)


@app.command("show")
def show_command(
    name: Annotated[str, typer.Argument(help="Segment name (see `segments list`).")],
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Show one segment: its rule in the text syntax, description and member count."""
    from boomerang.services import segments as service

    db_url, store_name = resolve(db, store)
    info = service.show_segment(db_url, store_name, name)
    console.print(f"[bold]{info.name}[/] ({info.kind}) — {info.title}", highlight=False)
    if info.description:
        console.print(info.description, highlight=False)
    console.print(f"rule: {info.rule}", highlight=False, soft_wrap=True)
    console.print(f"members: {info.members:,}")


@app.command("create")
def create_command(
    file: Annotated[Path, typer.Argument(help="YAML or JSON file with one or more definitions.")],
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Create or update segments from a file (validated before anything is written)."""
    from boomerang.services import segments as service

    db_url, store_name = resolve(db, store)
    result = service.create_segments(db_url, store_name, file)
    for what in ("created", "updated", "unchanged"):
        names = getattr(result, what)
        if names:
            console.print(f"{what}: {', '.join(names)}", highlight=False)
    console.print("run `boomerang segments refresh` to compute their members")


@app.command("delete")
def delete_command(
    name: Annotated[str, typer.Argument(help="Segment to delete (its history is kept).")],
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Delete a segment: its members exit (with events) and the definition is retired."""
    from boomerang.services import segments as service

    db_url, store_name = resolve(db, store)
    exited = service.delete_segment(db_url, store_name, name)
    console.print(f"deleted {name}; {exited:,} members exited")


@app.command("refresh")
def refresh_command(
    db: DbOption = None,
    store: StoreOption = None,
    as_of: AsOfOption = None,
    customer: Annotated[
        str | None,
        typer.Option(
            "--customer", help="Re-evaluate only this customer (external id, email or id)."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Re-evaluate every segment and write who entered and who exited (nothing if unchanged)."""
    from boomerang.services import segments as service

    db_url, store_name = resolve(db, store)
    if customer is not None:
        live = service.reevaluate(db_url, store_name, customer, at=moment(as_of))
        if as_json:
            console.print_json(json.dumps(live.__dict__))
            return
        console.print(
            f"customer {live.customer_id}: entered {live.entered or '-'}, exited "
            f"{live.exited or '-'}; member of {len(live.members)} segments",
            highlight=False,
        )
        return
    result = service.refresh(
        db_url,
        store_name,
        as_of=moment(as_of),
        progress=lambda text: err_console.print(f"[dim]{text}[/]", highlight=False),
    )
    if as_json:
        console.print_json(json.dumps(result.__dict__))
        return
    table = Table("segment", "members", "entered", "exited")
    for name, count in sorted(result.members.items()):
        table.add_row(
            name,
            f"{count:,}",
            f"{result.entered_by_segment.get(name, 0):,}",
            f"{result.exited_by_segment.get(name, 0):,}",
        )
    console.print(table)
    timing = ", ".join(f"{k} {v:.2f}s" for k, v in result.seconds.items())
    what = "written" if result.written else "nothing changed, nothing written"
    console.print(
        f"{result.segments} segments over {result.customers:,} customers as of "
        f"{_when(result.as_of)}: {result.entered:,} entered, {result.exited:,} exited ({what}; {timing})",
        highlight=False,
    )


@app.command("why")
def why_command(
    customer: Annotated[str, typer.Argument(help="Customer: external id, email or numeric id.")],
    segment: Annotated[str, typer.Argument(help="Segment name.")],
    db: DbOption = None,
    store: StoreOption = None,
    as_of: AsOfOption = None,
) -> None:
    """Explain a membership condition by condition: the customer's value and whether it holds."""
    from boomerang.services import segments as service

    db_url, store_name = resolve(db, store)
    result = service.why(db_url, store_name, customer, segment, as_of=moment(as_of))
    verdict = "IS" if result.member_now else "is NOT"
    console.print(
        f"customer {customer} {verdict} in {segment} as of {_when(result.as_of)} "
        f"(stored membership: {'member' if result.stored_member else 'not a member'})",
        highlight=False,
    )
    for depth, node in result.explanation.lines()[1:]:
        mark = "[green]✓[/]" if node.holds else "[red]✗[/]"
        value = "" if node.value is None and node.children else f"  (value: {node.value})"
        console.print(f"{'  ' * (depth - 1)}{mark} {node.text}{value}", highlight=False)


@app.command("export")
def export_command(
    name: Annotated[str, typer.Argument(help="Segment name.")],
    out: Annotated[Path, typer.Option("--out", help="File to write.")] = Path("segment.csv"),
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Export the current members with identity and key metrics (orders, revenue, RFM...)."""
    from boomerang.services import segments as service

    db_url, store_name = resolve(db, store)
    path, rows = service.export_segment(db_url, store_name, name, out, fmt=fmt)
    console.print(f"wrote {rows:,} members to {path}")


@app.command("fields")
def fields_command() -> None:
    """List every field a rule can test, with its type and options."""
    from boomerang.segments.fields import all_fields

    table = Table("field", "type", "window", "options", "meaning")
    for spec in all_fields().values():
        table.add_row(
            spec.name,
            spec.kind.value,
            "yes" if spec.window else "",
            ", ".join(sorted(spec.params)),
            spec.doc,
        )
    console.print(table)


@app.command("rfm")
def rfm_command(
    db: DbOption = None,
    store: StoreOption = None,
    as_of: AsOfOption = None,
    compare: Annotated[
        str | None,
        typer.Option("--compare", help="Earlier date: show movement between segments since then."),
    ] = None,
    moved_from: Annotated[
        str | None, typer.Option("--from", help="With --compare and --to: list who moved.")
    ] = None,
    moved_to: Annotated[str | None, typer.Option("--to", help="Destination segment.")] = None,
    as_json: JsonOption = False,
) -> None:
    """RFM segment sizes and revenue share, the R x FM grid, and movement between two dates."""
    from boomerang.services import segments as service

    db_url, store_name = resolve(db, store)
    at, before = moment(as_of), moment(compare, "--compare")
    if moved_from or moved_to:
        if not (moved_from and moved_to and before is not None):
            raise InputError("--from and --to need each other and --compare", hint="give all three")
        movers = service.rfm_movers(
            db_url, store_name, as_of=at or now_micros(), compare=before,
            from_segment=moved_from, to_segment=moved_to,
        )  # fmt: skip
        console.print(movers)
        return
    summary = service.rfm_summary(db_url, store_name, as_of=at, compare=before)
    if as_json:
        console.print_json(json.dumps(summary.__dict__))
        return
    table = Table("segment", "customers", "share", f"revenue ({summary.currency})", "revenue share")
    for s in summary.segments:
        table.add_row(
            s["segment"], f"{s['customers']:,}", f"{s['share']:.1%}", f"{s['revenue']:,.2f}",
            f"{s['revenue_share']:.1%}",
        )  # fmt: skip
    console.print(table)
    if summary.movement:
        moves = Table("from", "to", "customers", title=f"since {_when(summary.compare_as_of or 0)}")
        for m in summary.movement[:30]:
            if m["from"] != m["to"]:
                moves.add_row(m["from"], m["to"], f"{m['customers']:,}")
        console.print(moves)
