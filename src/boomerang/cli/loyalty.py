"""`boomerang loyalty ...` and `boomerang coupons ...`: the points ledger and coupon codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import Engine

from boomerang.cli.common import DbOption, StoreOption, console, resolve
from boomerang.cli.segments import moment
from boomerang.services import loyalty as service
from boomerang.services.context import open_engine

app = typer.Typer(
    help="Loyalty points: balances, earn, redeem, adjust, expiry.", no_args_is_help=True
)
coupons_app = typer.Typer(help="Coupon codes: issue, validate, consume.", no_args_is_help=True)

CustomerArg = Annotated[str, typer.Argument(help="Customer: external id, email or numeric id.")]
KeyOption = Annotated[
    str,
    typer.Option("--key", help="Idempotency key: retrying with the same key never applies twice."),
]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why (kept in the audit trail).")]
ActorOption = Annotated[str, typer.Option("--actor", help="Who (kept in the audit trail).")]
AtOption = Annotated[
    str | None, typer.Option("--at", help="Act as of this time (YYYY-MM-DD or ISO); default now.")
]


@contextmanager
def _session(db: str | None, store: str | None) -> Iterator[tuple[Engine, str]]:
    """The --db/--store engine for one command, disposed afterwards."""
    db_url, store_name = resolve(db, store)
    engine = open_engine(db_url)
    try:
        yield engine, store_name
    finally:
        engine.dispose()


def _print(result: object) -> None:
    console.print_json(json.dumps(result, default=lambda o: o.__dict__))


@app.command("balance")
def balance_command(customer: CustomerArg, db: DbOption = None, store: StoreOption = None) -> None:
    """A customer's points balance and the lots it is made of (with their expiry)."""
    with _session(db, store) as (engine, store_name):
        cid = service.resolve_customer(engine, store_name, customer)
        _print(service.balance(engine, store_name, cid))


@app.command("earn")
def earn_command(
    customer: CustomerArg,
    points: Annotated[int, typer.Argument(help="Points to give (positive).")],
    key: KeyOption,
    reason: ReasonOption = "earn",
    actor: ActorOption = "cli",
    expires: Annotated[
        str | None, typer.Option("--expires", help="When these points expire (YYYY-MM-DD).")
    ] = None,
    at: AtOption = None,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Give a customer points (a new lot)."""
    with _session(db, store) as (engine, store_name):
        cid = service.resolve_customer(engine, store_name, customer)
        _print(
            service.earn(
                engine, store_name, cid, points, key=key, reason=reason, actor=actor,
                expires_at=moment(expires, "--expires"), now=moment(at, "--at"),
            )
        )  # fmt: skip


@app.command("redeem")
def redeem_command(
    customer: CustomerArg,
    points: Annotated[int, typer.Argument(help="Points to spend (positive).")],
    key: KeyOption,
    reason: ReasonOption = "redeem",
    actor: ActorOption = "cli",
    at: AtOption = None,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Spend a customer's points (soonest-expiring first); never below zero."""
    with _session(db, store) as (engine, store_name):
        cid = service.resolve_customer(engine, store_name, customer)
        _print(
            service.redeem(
                engine, store_name, cid, points, key=key, reason=reason, actor=actor,
                now=moment(at, "--at"),
            )
        )  # fmt: skip


@app.command("adjust")
def adjust_command(
    customer: CustomerArg,
    points: Annotated[int, typer.Argument(help="Points to add (or remove, negative).")],
    key: KeyOption,
    reason: ReasonOption,
    actor: ActorOption = "cli",
    allow_negative: Annotated[
        bool, typer.Option("--allow-negative", help="Let the balance go below zero.")
    ] = False,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Correct a balance by hand (the reason and actor are audited)."""
    with _session(db, store) as (engine, store_name):
        cid = service.resolve_customer(engine, store_name, customer)
        _print(
            service.adjust(
                engine, store_name, cid, points, key=key, reason=reason, actor=actor,
                allow_negative=allow_negative,
            )
        )  # fmt: skip


@app.command("expire")
def expire_command(
    at: AtOption = None,
    warn_days: Annotated[
        int, typer.Option("--warn-days", help="Also write points-expiring events this far ahead.")
    ] = 0,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """The daily job: release pending points past the return window, expire lots past
    their date (and idle balances when the program says so), birthday points,
    expiring-soon events. Idempotent; safe as concurrent copies."""
    with _session(db, store) as (engine, store_name):
        now = moment(at, "--at")
        result = service.expire(engine, store_name, now=now)
        idle = service.expire_inactive(engine, store_name, now=now)
        result.lots += idle.lots
        result.points += idle.points
        result.replayed += idle.replayed
        birthdays = service.birthday_points(engine, store_name, now=now)
        released = service.release_pending_due(engine, store_name, now=now)
        warned = (
            service.warn_expiring(engine, store_name, days=warn_days, now=now) if warn_days else 0
        )
    console.print(
        f"expired {result.points:,} points in {result.lots:,} lots "
        f"({result.replayed:,} already done); {warned:,} expiring-soon events; "
        f"birthday points to {birthdays:,} customers; {released:,} pending points released"
    )


@coupons_app.command("issue")
def issue_command(
    kind: Annotated[
        str,
        typer.Argument(
            help="amount_off, percent_off, free_shipping, free_product or store_credit."
        ),
    ],
    value: Annotated[
        int, typer.Argument(help="Minor units (amounts) or basis points (percent: 1000 = 10%).")
    ],
    max_uses: Annotated[int, typer.Option("--max-uses", help="How many times it can be used.")] = 1,
    customer: Annotated[
        str | None, typer.Option("--customer", help="Only this customer may use it.")
    ] = None,
    expires: Annotated[str | None, typer.Option("--expires", help="Expiry (YYYY-MM-DD).")] = None,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Issue a coupon code (12 random Crockford base32 characters: 60 bits)."""
    with _session(db, store) as (engine, store_name):
        cid = service.resolve_customer(engine, store_name, customer) if customer else None
        coupon = service.issue_coupon(
            engine, store_name, kind=kind, value=value, max_uses=max_uses, customer_id=cid,
            expires_at=moment(expires, "--expires"),
        )  # fmt: skip
    console.print(service.format_code(coupon.code))


@coupons_app.command("validate")
def validate_command(
    code: Annotated[str, typer.Argument(help="The code (case and dashes do not matter).")],
    customer: Annotated[str | None, typer.Option("--customer", help="Who wants to use it.")] = None,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Check a code can be used now (nothing is consumed)."""
    with _session(db, store) as (engine, store_name):
        cid = service.resolve_customer(engine, store_name, customer) if customer else None
        _print(service.validate_coupon(engine, store_name, code, customer_id=cid))


@coupons_app.command("consume")
def consume_command(
    code: Annotated[str, typer.Argument(help="The code.")],
    key: KeyOption,
    customer: Annotated[str | None, typer.Option("--customer", help="Who uses it.")] = None,
    order: Annotated[str | None, typer.Option("--order", help="The order it is used on.")] = None,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Use a code once (per key); limits hold under any number of concurrent checkouts."""
    with _session(db, store) as (engine, store_name):
        cid = service.resolve_customer(engine, store_name, customer) if customer else None
        _print(
            service.consume_coupon(
                engine, store_name, code, key=key, customer_id=cid, order_ref=order
            )
        )


program_app = typer.Typer(
    help="The loyalty program: earn rules, rewards, tiers, expiry.", no_args_is_help=True
)
app.add_typer(program_app, name="program")


@program_app.command("show")
def program_show(db: DbOption = None, store: StoreOption = None) -> None:
    """The stored program (defaults filled in) and the program accounts' totals."""
    db_url, store_name = resolve(db, store)
    _print(service.show_program(db_url, store_name))


@program_app.command("set")
def program_set(
    file: Annotated[Path, typer.Argument(help="YAML or JSON program (docs/loyalty.md).")],
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Validate a program file and store it (nothing changes when it is invalid)."""
    db_url, store_name = resolve(db, store)
    _, version = service.set_program(db_url, store_name, file)
    console.print(f"program stored (version {version})")


@app.command("award")
def award_command(
    order: Annotated[str, typer.Argument(help="Order id as imported (e.g. #1001).")],
    at: AtOption = None,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Points for an order as it stands (refunds claw back pro-rata, cancellation all)."""
    with _session(db, store) as (engine, store_name):
        result = service.award_order(engine, store_name, order, now=moment(at, "--at"))
    _print(result if result is not None else {"note": "guest order: no account to credit"})


@app.command("action")
def action_command(
    customer: CustomerArg,
    action: Annotated[
        str, typer.Argument(help="account_created, review_written, social_share, ...")
    ],
    key: KeyOption,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Points for an action the program rewards (once per key)."""
    with _session(db, store) as (engine, store_name):
        cid = service.resolve_customer(engine, store_name, customer)
        result = service.earn_action(engine, store_name, cid, action, key=key)
    _print(result if result is not None else {"note": f"{action} is worth 0 points"})


@app.command("reward")
def reward_command(
    customer: CustomerArg,
    reward: Annotated[str, typer.Argument(help="Reward id from the program's catalogue.")],
    key: KeyOption,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Redeem a catalogue reward: spend its points and get its coupon code."""
    with _session(db, store) as (engine, store_name):
        cid = service.resolve_customer(engine, store_name, customer)
        _print(service.redeem_reward(engine, store_name, cid, reward, key=key))


@app.command("tier")
def tier_command(
    customer: CustomerArg,
    at: AtOption = None,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Re-evaluate a customer's tier (up at once, down only at the review date)."""
    with _session(db, store) as (engine, store_name):
        cid = service.resolve_customer(engine, store_name, customer)
        _print(service.evaluate_tier(engine, store_name, cid, now=moment(at, "--at")))


@app.command("credit")
def credit_command(
    customer: CustomerArg,
    amount: Annotated[int, typer.Argument(help="Store credit in minor units (e.g. cents).")],
    key: KeyOption,
    reason: ReasonOption,
    actor: ActorOption = "cli",
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Give store credit (on the same ledger as points)."""
    with _session(db, store) as (engine, store_name):
        cid = service.resolve_customer(engine, store_name, customer)
        _print(
            service.grant_credit(
                engine, store_name, cid, amount, key=key, reason=reason, actor=actor
            )
        )


@app.command("spend-credit")
def spend_credit_command(
    customer: CustomerArg,
    amount: Annotated[int, typer.Argument(help="Minor units to use.")],
    key: KeyOption,
    order: Annotated[str | None, typer.Option("--order", help="The order it pays for.")] = None,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Use store credit; never below zero."""
    with _session(db, store) as (engine, store_name):
        cid = service.resolve_customer(engine, store_name, customer)
        _print(service.spend_credit(engine, store_name, cid, amount, key=key, order_ref=order))
