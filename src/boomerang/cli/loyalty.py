"""`boomerang loyalty ...` and `boomerang coupons ...`: the points ledger and coupon codes."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from boomerang.cli.common import DbOption, StoreOption, console, resolve
from boomerang.cli.metrics import parse_day
from boomerang.cli.segments import moment
from boomerang.domain.clock import from_micros
from boomerang.domain.money import Money, currency_exponent

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from boomerang.services import loyalty_simulator

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
    from boomerang.services.context import open_engine

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
    from boomerang.services import loyalty as service

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
    from boomerang.services import loyalty as service

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
    from boomerang.services import loyalty as service

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
    from boomerang.services import loyalty as service

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
    from boomerang.services import loyalty as service

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
    from boomerang.services import loyalty as service

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
    from boomerang.services import loyalty as service

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
    from boomerang.services import loyalty as service

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
    from boomerang.services import loyalty as service

    db_url, store_name = resolve(db, store)
    _print(service.show_program(db_url, store_name))


@program_app.command("set")
def program_set(
    file: Annotated[Path, typer.Argument(help="YAML or JSON program (docs/loyalty.md).")],
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Validate a program file and store it (nothing changes when it is invalid)."""
    from boomerang.services import loyalty as service

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
    from boomerang.services import loyalty as service

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
    from boomerang.services import loyalty as service

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
    from boomerang.services import loyalty as service

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
    from boomerang.services import loyalty as service

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
    from boomerang.services import loyalty as service

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
    from boomerang.services import loyalty as service

    with _session(db, store) as (engine, store_name):
        cid = service.resolve_customer(engine, store_name, customer)
        _print(service.spend_credit(engine, store_name, cid, amount, key=key, order_ref=order))


@app.command("simulate")
def simulate_command(
    file: Annotated[
        Path, typer.Argument(help="YAML or JSON program to try (docs/loyalty.md); not stored.")
    ],
    redemption_rate: Annotated[
        float | None,
        typer.Option(
            "--redemption-rate",
            min=0.0,
            max=1.0,
            help="Share of earned points customers redeem at most, 0 to 1 (default: the "
            "file's simulation.redemption_rate, else 0.6).",
        ),
    ] = None,
    point_value: Annotated[
        float | None,
        typer.Option(
            "--point-value",
            min=0.0,
            help="What one point costs the store, in minor units (1 = one cent); default "
            "the best value per point among the program's amount_off/store_credit rewards.",
        ),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option("--from", help="Launch day (YYYY-MM-DD); default the first order's."),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option("--to", help="Last day (YYYY-MM-DD), inclusive; default the last order's."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Replay a proposed program over the store's past orders: points issued, redeemed and
    expired, outstanding liability, tier mix and cost as % of revenue (nothing is stored)."""
    db_url, store_name = resolve(db, store)
    with console.status("replaying the orders", spinner="dots") if not as_json else nullcontext():
        from boomerang.services import loyalty_simulator

        result = loyalty_simulator.simulate_program(
            db_url, store_name, file, redemption_rate=redemption_rate,
            point_value_minor=point_value, start=parse_day(start, "--from"),
            end=parse_day(end, "--to"),
        )  # fmt: skip
    if as_json:
        sys.stdout.write(json.dumps({"store": store_name, **result.records()}, indent=2) + "\n")
        return
    _print_simulation(store_name, result)


def _money(minor: int, currency: str) -> str:
    m = Money.from_minor(minor, currency)
    return f"{m.amount:,} {m.currency}"


def _print_simulation(store_name: str, r: loyalty_simulator.SimulationResult) -> None:
    cur = r.currency
    first, last = from_micros(r.start).date(), from_micros(r.end - 1).date()

    def worth(points: int) -> str:
        return _money(round(points * r.point_value_minor), cur)

    def share(part: float, whole: float, digits: int = 1) -> str:
        return f"{part / whole:.{digits}%}" if whole else "n/a"

    def of_revenue(minor: int) -> str:
        return share(minor, r.revenue_minor, 2)

    table = Table(title=f"program simulation · store '{store_name}' · {first} to {last}")
    for name in ("figure", "points", cur, "% of revenue"):
        table.add_column(name, justify="left" if name == "figure" else "right")
    table.add_row("revenue (net of refunds)", "", _money(r.revenue_minor, cur), "100.00%")
    table.add_row(
        "points issued", f"{r.points_issued:,}", worth(r.points_issued),
        of_revenue(round(r.points_issued * r.point_value_minor)),
    )  # fmt: skip
    table.add_row(
        "points redeemed", f"{r.points_redeemed:,}", _money(r.redemption_cost_minor, cur),
        of_revenue(r.redemption_cost_minor),
    )  # fmt: skip
    table.add_row(
        "points expired", f"{r.points_expired:,}", worth(r.points_expired),
        of_revenue(round(r.points_expired * r.point_value_minor)),
    )  # fmt: skip
    table.add_row(
        "outstanding liability", f"{r.points_outstanding:,}", _money(r.liability_minor, cur),
        of_revenue(r.liability_minor),
    )  # fmt: skip
    table.add_row(
        "[bold]cost (redeemed + liability)[/]", "", f"[bold]{_money(r.cost_minor, cur)}[/]",
        f"[bold]{of_revenue(r.cost_minor)}[/]",
    )  # fmt: skip
    table.add_row(
        "expected cost (less breakage)", "", _money(r.expected_cost_minor, cur),
        of_revenue(r.expected_cost_minor),
    )  # fmt: skip
    console.print(table)
    src = r.issued_by_source
    value = r.point_value_minor.scaleb(-currency_exponent(cur))
    console.print(
        f"{r.members:,} members (customers with an order), {r.orders:,} orders. Issued: orders "
        f"{src['orders']:,}, first-order bonus {src['first_order_bonus']:,}, account "
        f"{src['account_created']:,}, tier entry {src['tier_entry']:,}. {r.redemptions:,} "
        f"rewards redeemed by {r.redeemers:,} customers "
        f"({share(r.points_redeemed, r.points_issued)} of the points issued)."
    )
    console.print(
        f"Assumptions: a customer redeems the cheapest reward open to them as soon as the "
        f"balance covers it, up to {r.redemption_rate:.0%} of the points they earned; one "
        f"point costs the store {value.normalize():f} {cur} ({r.point_value_source}). "
        "Liability = outstanding points x that value; expected cost counts only the part of "
        "the liability the redemption rate says will be redeemed."
    )
    if r.tier_mix:
        tiers = Table(title=f"tier mix on {last}")
        tiers.add_column("tier")
        tiers.add_column("customers", justify="right")
        tiers.add_column("share", justify="right")
        for name, count in r.tier_mix.items():
            tiers.add_row(name, f"{count:,}", share(count, r.members))
        console.print(tiers)
    for note in r.notes:
        console.print(f"note: {note}")
