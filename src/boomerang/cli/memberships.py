"""`boomerang memberships ...`: paid membership plans, subscriptions, payments, the
lifecycle job, savings statements and the report figures (docs/memberships.md)."""

from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer

from boomerang.cli.common import DbOption, StoreOption, console, resolve
from boomerang.cli.loyalty import AtOption, CustomerArg, KeyOption, _session
from boomerang.cli.segments import moment
from boomerang.domain.clock import from_micros
from boomerang.domain.money import currency_exponent

app = typer.Typer(
    help="Paid memberships: plans, subscribe, pay, cancel, the lifecycle job, statements.",
    no_args_is_help=True,
)
plans_app = typer.Typer(help="Membership plans: show them, or set them from a file.")
app.add_typer(plans_app, name="plans")


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, Decimal):
        return str(value)
    return value.__dict__


def _print(result: object) -> None:
    console.print_json(json.dumps(result, default=_plain))


@plans_app.callback(invoke_without_command=True)
def plans_default(ctx: typer.Context, db: DbOption = None, store: StoreOption = None) -> None:
    """The store's plans (as `plans show`)."""
    from boomerang.services import memberships as service

    if ctx.invoked_subcommand is None:
        with _session(db, store) as (engine, store_name):
            _print(service.plans(engine, store_name))


@plans_app.command("show")
def plans_show(db: DbOption = None, store: StoreOption = None) -> None:
    """Every plan: fee, interval, trial, grace, benefits; inactive ones are flagged."""
    from boomerang.services import memberships as service

    with _session(db, store) as (engine, store_name):
        _print(service.plans(engine, store_name))


@plans_app.command("set")
def plans_set(
    file: Annotated[Path, typer.Argument(help="YAML or JSON plans file (docs/memberships.md).")],
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Validate a plans file and store it: upsert by key; plans left out become inactive.
    Nothing changes when the file is invalid."""
    from boomerang.services import memberships as service

    db_url, store_name = resolve(db, store)
    _print(service.set_plans(db_url, store_name, file))


@app.command("subscribe")
def subscribe_command(
    customer: CustomerArg,
    plan: Annotated[str, typer.Argument(help="Plan key (see `memberships plans`).")],
    key: KeyOption,
    at: AtOption = None,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Start a membership: the plan's free trial (first membership only), else the first
    period, paid."""
    from boomerang.services import loyalty as loyalty_service
    from boomerang.services import memberships as service

    with _session(db, store) as (engine, store_name):
        cid = loyalty_service.resolve_customer(engine, store_name, customer)
        _print(service.subscribe(engine, store_name, cid, plan, key=key, now=moment(at, "--at")))


@app.command("pay")
def pay_command(
    customer: CustomerArg,
    key: KeyOption,
    failed: Annotated[
        bool, typer.Option("--failed", help="The charge failed (the member goes past due).")
    ] = False,
    amount: Annotated[
        int | None,
        typer.Option("--amount", help="Amount charged in minor units (default: the plan fee)."),
    ] = None,
    at: AtOption = None,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Record the payment processor's notice for the next period due."""
    from boomerang.services import loyalty as loyalty_service
    from boomerang.services import memberships as service

    with _session(db, store) as (engine, store_name):
        cid = loyalty_service.resolve_customer(engine, store_name, customer)
        _print(
            service.record_payment(
                engine, store_name, cid, key=key, status="failed" if failed else "paid",
                amount_minor=amount, now=moment(at, "--at"),
            )
        )  # fmt: skip


@app.command("cancel")
def cancel_command(
    customer: CustomerArg,
    now: Annotated[
        bool,
        typer.Option("--now", help="End at once (benefits too) instead of at the period end."),
    ] = False,
    at: AtOption = None,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Cancel the customer's membership (by default at the end of the paid period or trial)."""
    from boomerang.services import loyalty as loyalty_service
    from boomerang.services import memberships as service

    with _session(db, store) as (engine, store_name):
        cid = loyalty_service.resolve_customer(engine, store_name, customer)
        _print(
            service.cancel(engine, store_name, cid, at_period_end=not now, now=moment(at, "--at"))
        )


@app.command("status")
def status_command(
    customer: CustomerArg, at: AtOption = None, db: DbOption = None, store: StoreOption = None
) -> None:
    """The customer's membership, its history and payments, and the benefits in force."""
    from boomerang.services import loyalty as loyalty_service
    from boomerang.services import memberships as service

    with _session(db, store) as (engine, store_name):
        cid = loyalty_service.resolve_customer(engine, store_name, customer)
        _print(service.status(engine, store_name, cid, now=moment(at, "--at")))


@app.command("statement")
def statement_command(
    customer: CustomerArg,
    year: Annotated[
        int | None, typer.Option("--year", help="Calendar year (UTC); default this year.")
    ] = None,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """The savings statement: "you saved $X this year", order by order, net of fees."""
    from boomerang.services import loyalty as loyalty_service
    from boomerang.services import memberships as service

    with _session(db, store) as (engine, store_name):
        cid = loyalty_service.resolve_customer(engine, store_name, customer)
        result = service.statement(
            engine, store_name, cid, year if year is not None else datetime.now(UTC).year
        )
    exponent = currency_exponent(result.currency)
    saved = Decimal(result.saved_minor).scaleb(-exponent)
    net = Decimal(result.net_saved_minor).scaleb(-exponent)
    console.print(
        f"You saved {saved:,.{exponent}f} {result.currency} in {result.year} "
        f"({net:,.{exponent}f} after membership fees).",
        highlight=False,
    )
    _print(result.as_dict())


@app.command("tick")
def tick_command(at: AtOption = None, db: DbOption = None, store: StoreOption = None) -> None:
    """The lifecycle job: notices, renewals, past due, expiry, renewal bonus points.
    Idempotent; safe as concurrent copies."""
    from boomerang.services import memberships as service

    with _session(db, store) as (engine, store_name):
        _print(service.tick(engine, store_name, now=moment(at, "--at")))


@app.command("report")
def report_command(
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Report as of this date (default now).")
    ] = None,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Members per plan, membership revenue per month, retention of members vs others."""
    from boomerang.services import memberships as service

    db_url, store_name = resolve(db, store)
    report = service.membership_report(db_url, store_name, as_of=moment(as_of, "--as-of"))
    out = asdict(report)
    for name in ("as_of", "window_start", "window_end"):
        out[name] = from_micros(int(out[name])).isoformat()
    out["revenue_total_minor"] = report.revenue_total_minor
    _print(out)
