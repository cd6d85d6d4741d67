"""`boomerang metrics`: every retention metric per period, as a table, JSON or CSV."""

from __future__ import annotations

import json
import sys
from datetime import date
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from boomerang.cli.common import DbOption, StoreOption, console, resolve
from boomerang.errors import InputError

if TYPE_CHECKING:
    import polars as pl

    from boomerang.services.analytics import CustomerFilter, MetricsResult


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


PeriodOption = Annotated[
    str, typer.Option("--period", help="Period granularity: day, week, month, quarter or year.")
]
FromOption = Annotated[
    str | None, typer.Option("--from", help="First day (YYYY-MM-DD); default the first order's.")
]
ToOption = Annotated[
    str | None,
    typer.Option("--to", help="Last day (YYYY-MM-DD), inclusive; default the last order's."),
]
FormatOption = Annotated[
    OutputFormat, typer.Option("--format", help="table for people, json or csv for scripts.")
]
CountryOption = Annotated[
    list[str] | None,
    typer.Option("--country", help="Only customers in this country (ISO code); repeatable."),
]
AccountOption = Annotated[
    list[str] | None,
    typer.Option(
        "--account-status", help="Only guest, registered or disabled customers; repeatable."
    ),
]


def parse_day(text: str | None, option: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InputError(
            f"{option} {text!r} is not a date", hint="write it as YYYY-MM-DD"
        ) from None


def customer_filter(country: list[str] | None, account: list[str] | None) -> CustomerFilter:
    from boomerang.services.analytics import CustomerFilter

    return CustomerFilter(countries=tuple(country or ()), account_statuses=tuple(account or ()))


ACTIVITY_COLUMNS = (
    ("customers", "cust.", "{:,.0f}"),
    ("orders", "orders", "{:,.0f}"),
    ("revenue", "net revenue", "{:,.2f}"),
    ("average_order_value", "AOV", "{:,.2f}"),
    ("purchase_frequency", "freq.", "{:.2f}"),
    ("repeat_customer_rate", "repeat %", "{:.1f}"),
    ("customer_value", "value", "{:,.2f}"),
)
RETENTION_COLUMNS = (
    ("customers_at_start", "S", "{:,.0f}"),
    ("customers_at_end", "E", "{:,.0f}"),
    ("customers_gained", "N", "{:,.0f}"),
    ("customer_retention_rate", "CRR %", "{:.1f}"),
    ("customer_churn_rate", "churn %", "{:.1f}"),
    ("net_revenue_retention", "NRR %", "{:.1f}"),
    ("gross_revenue_retention", "GRR %", "{:.1f}"),
)


def _cell(value: object, fmt: str) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    return fmt.format(value)


def print_table(result: MetricsResult) -> None:
    head = f"store '{result.store}' · {result.period}s · {result.currency} · {result.customers}"
    for title, columns in (("activity", ACTIVITY_COLUMNS), ("retention", RETENTION_COLUMNS)):
        table = Table(title=f"{head} · {title}")
        table.add_column("period", no_wrap=True, min_width=11)
        for _key, label, _fmt in columns:
            table.add_column(label, justify="right")
        for row in result.table.to_dicts():
            label = f"{row['period_start']}" + ("" if row["complete_period"] else "*")
            table.add_row(label, *(_cell(row[k], f) for k, _l, f in columns))
        console.print(table)
    console.print(
        "CRR = (E − N) / S × 100: S customers at the period start, E at its end, N gained during "
        f"it (new or won back). A customer bought in the last {result.options.activity_window_days} "
        "days. Revenue is net of refunds. * partial period."
    )
    for note in result.notes:
        console.print(f"note: {note}")


def emit(result_records: list[dict[str, object]], fmt: OutputFormat, frame: pl.DataFrame) -> None:
    """JSON or CSV for scripts; float64 aggregates are rounded to 6 decimals in both."""
    if fmt is OutputFormat.JSON:
        sys.stdout.write(json.dumps(result_records, indent=2) + "\n")
    else:
        import polars as pl

        frame.with_columns(pl.col(pl.Float64).round(6)).write_csv(sys.stdout)


def metrics_command(
    db: DbOption = None,
    store: StoreOption = None,
    period: PeriodOption = "month",
    start: FromOption = None,
    end: ToOption = None,
    fmt: FormatOption = OutputFormat.TABLE,
    window: Annotated[
        int, typer.Option("--window", help="Activity window in days: who counts as a customer.")
    ] = 365,
    country: CountryOption = None,
    account_status: AccountOption = None,
) -> None:
    """Retention metrics per period: CRR (with S, E, N), repeat rate, frequency, AOV, churn..."""
    from boomerang.services.analytics import MetricOptions, metrics

    path, store_name = resolve(db, store)
    try:
        options = MetricOptions(activity_window_days=window)
    except ValueError as exc:
        raise InputError(str(exc), hint="pass --window 1 or more") from None
    result = metrics(
        path,
        store_name,
        period=period,
        start=parse_day(start, "--from"),
        end=parse_day(end, "--to"),
        options=options,
        customers=customer_filter(country, account_status),
    )
    if fmt is OutputFormat.TABLE:
        print_table(result)
    else:
        emit(result.records(), fmt, result.table)
