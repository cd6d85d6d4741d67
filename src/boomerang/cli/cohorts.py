"""`boomerang cohorts`: acquisition cohorts × periods since, by customers or revenue."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from boomerang.cli.common import DbOption, StoreOption, console, resolve
from boomerang.cli.metrics import (
    AccountOption,
    CountryOption,
    FormatOption,
    FromOption,
    OutputFormat,
    PeriodOption,
    ToOption,
    customer_filter,
    emit,
    parse_day,
)

if TYPE_CHECKING:
    from boomerang.services.analytics import CohortsResult


class CohortMeasure(StrEnum):
    CUSTOMERS = "customers"
    REVENUE = "revenue"
    CLV = "clv"


def print_clv(result: CohortsResult) -> None:
    table = Table(
        title=f"store '{result.store}' · historical CLV per customer by acquisition {result.period} "
        f"({result.currency}, net revenue within h months of the first purchase)"
    )
    table.add_column("cohort")
    table.add_column("customers", justify="right")
    horizons = [c for c in result.table.columns if c.startswith("clv_")]
    for h in horizons:
        table.add_column(h.removeprefix("clv_"), justify="right")
    for row in result.table.to_dicts():
        cells = ["" if row[h] is None else f"{row[h]:,.2f}" for h in horizons]
        table.add_row(str(row["cohort_start"]), f"{row['customers']:,}", *cells)
    console.print(table)
    console.print("Empty cells: the cohort has not been observed that long yet.")


def print_matrix(result: CohortsResult, by: CohortMeasure, absolute: bool) -> None:
    value = by.value if absolute else f"{by.value}_pct"
    wide = result.matrix(value)
    what = (
        "customers who bought"
        if by is CohortMeasure.CUSTOMERS
        else f"net revenue ({result.currency})"
    )
    unit = (
        ""
        if absolute
        else " — % of " + ("cohort size" if by is CohortMeasure.CUSTOMERS else "period-0 revenue")
    )
    table = Table(
        title=f"store '{result.store}' · {what} by {result.period} since first purchase{unit}"
    )
    table.add_column("cohort")
    table.add_column("size", justify="right")
    ages = [c for c in wide.columns if c not in ("cohort_start", "cohort_size")]
    for a in ages:
        table.add_column(f"+{a}", justify="right")
    fmt = "{:,.0f}" if absolute else "{:.0f}%"
    for row in wide.to_dicts():
        cells = ["" if row[a] is None else fmt.format(row[a]) for a in ages]
        table.add_row(str(row["cohort_start"]), f"{row['cohort_size']:,}", *cells)
    console.print(table)
    for note in result.notes:
        console.print(f"note: {note}")


def cohorts_command(
    db: DbOption = None,
    store: StoreOption = None,
    by: Annotated[
        CohortMeasure,
        typer.Option("--by", help="Measure: customers retained, revenue, or historical CLV."),
    ] = CohortMeasure.CUSTOMERS,
    period: PeriodOption = "month",
    start: FromOption = None,
    end: ToOption = None,
    fmt: FormatOption = OutputFormat.TABLE,
    absolute: Annotated[
        bool, typer.Option("--absolute", help="Show counts/amounts instead of percentages (table).")
    ] = False,
    country: CountryOption = None,
    account_status: AccountOption = None,
) -> None:
    """Cohort matrix: customers (or revenue) of each acquisition cohort in each later period."""
    from boomerang.services.analytics import cohorts, historical_clv

    path, store_name = resolve(db, store)
    if by is CohortMeasure.CLV:
        clv = historical_clv(
            path,
            store_name,
            period=period,
            start=parse_day(start, "--from"),
            end=parse_day(end, "--to"),
            customers=customer_filter(country, account_status),
        )
        if fmt is OutputFormat.TABLE:
            print_clv(clv)
        else:
            emit(clv.records(), fmt, clv.table)
        return
    result = cohorts(
        path,
        store_name,
        period=period,
        start=parse_day(start, "--from"),
        end=parse_day(end, "--to"),
        customers=customer_filter(country, account_status),
    )
    if fmt is OutputFormat.TABLE:
        print_matrix(result, by, absolute)
    else:
        emit(result.records(), fmt, result.table)
