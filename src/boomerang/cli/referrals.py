"""`boomerang referrals ...`: referral codes, share texts, sign-ups, the release job, reviews
and the funnel (docs/referrals.md)."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Any

import typer

from boomerang.cli.common import DbOption, StoreOption, console
from boomerang.cli.loyalty import ActorOption, AtOption, CustomerArg, KeyOption, _session
from boomerang.cli.segments import moment
from boomerang.domain.clock import from_micros
from boomerang.errors import InputError

app = typer.Typer(
    help="Two-sided referrals: codes and share links, sign-ups, rewards, fraud review, funnel.",
    no_args_is_help=True,
)

EmailOption = Annotated[
    str | None, typer.Option("--email", help="Email seen (compared after normalising).")
]
PhoneOption = Annotated[str | None, typer.Option("--phone", help="Phone number seen.")]
AddressOption = Annotated[str | None, typer.Option("--address", help="Shipping address seen.")]
PaymentOption = Annotated[
    str | None, typer.Option("--payment", help="Payment fingerprint (e.g. the card's).")
]
DeviceOption = Annotated[str | None, typer.Option("--device", help="Device id seen.")]


def _signals(
    email: str | None,
    phone: str | None,
    address: str | None,
    payment: str | None,
    device: str | None,
) -> dict[str, str | None]:
    given = {
        "email": email,
        "phone": phone,
        "address": address,
        "payment": payment,
        "device": device,
    }
    return {k: v for k, v in given.items() if v}


def _readable(value: Any) -> Any:
    """Times (``*_at`` and ``since``/``until`` epoch micros) as ISO 8601 for people."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {
            k: from_micros(v).isoformat()
            if (k.endswith("_at") or k in ("since", "until")) and isinstance(v, int)
            else _readable(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_readable(v) for v in value]
    return value


def _print(result: Any) -> None:
    console.print_json(json.dumps(_readable(result)))


@app.command("code")
def code_command(
    customer: CustomerArg,
    at: AtOption = None,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """A customer's referral code (made on first use), share link and share texts."""
    from boomerang.services import referrals as service
    from boomerang.services.loyalty import resolve_customer

    with _session(db, store) as (engine, store_name):
        cid = resolve_customer(engine, store_name, customer)
        _print(service.referral_code(engine, store_name, cid, now=moment(at, "--at")))


@app.command("signals")
def signals_command(
    customer: CustomerArg,
    email: EmailOption = None,
    phone: PhoneOption = None,
    address: AddressOption = None,
    payment: PaymentOption = None,
    device: DeviceOption = None,
    at: AtOption = None,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Record identity signals seen for a customer (only hashes are kept)."""
    from boomerang.services import referrals as service
    from boomerang.services.loyalty import resolve_customer

    with _session(db, store) as (engine, store_name):
        cid = resolve_customer(engine, store_name, customer)
        n = service.record_signals(
            engine, store_name, cid, _signals(email, phone, address, payment, device),
            now=moment(at, "--at"),
        )  # fmt: skip
    console.print(f"{n} signals recorded")


@app.command("share")
def share_command(
    customer: CustomerArg,
    channel: Annotated[
        str, typer.Argument(help="email, facebook, messenger, sms, whatsapp or copy.")
    ],
    key: KeyOption,
    at: AtOption = None,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Count a share of the customer's link (once per key)."""
    from boomerang.services import referrals as service
    from boomerang.services.loyalty import resolve_customer

    with _session(db, store) as (engine, store_name):
        cid = resolve_customer(engine, store_name, customer)
        _print(
            service.record_share(engine, store_name, cid, channel, key=key, now=moment(at, "--at"))
        )


@app.command("click")
def click_command(
    code: Annotated[str, typer.Argument(help="The referral code in the link.")],
    key: KeyOption,
    at: AtOption = None,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Count a click on a share link (once per key, e.g. visitor and day)."""
    from boomerang.services import referrals as service

    with _session(db, store) as (engine, store_name):
        _print(service.record_click(engine, store_name, code, key=key, now=moment(at, "--at")))


@app.command("signup")
def signup_command(
    code: Annotated[str, typer.Argument(help="The referral code the friend used.")],
    friend: Annotated[str, typer.Argument(help="The friend: external id, email or numeric id.")],
    email: EmailOption = None,
    phone: PhoneOption = None,
    address: AddressOption = None,
    payment: PaymentOption = None,
    device: DeviceOption = None,
    at: AtOption = None,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """A friend signed up with a code: the referral, checked for self-referral."""
    from boomerang.services import referrals as service
    from boomerang.services.loyalty import resolve_customer

    with _session(db, store) as (engine, store_name):
        cid = resolve_customer(engine, store_name, friend)
        _print(
            service.sign_up(
                engine, store_name, code, cid,
                signals=_signals(email, phone, address, payment, device), now=moment(at, "--at"),
            )
        )  # fmt: skip


@app.command("order")
def order_command(
    friend: Annotated[str, typer.Argument(help="The friend: external id, email or numeric id.")],
    order_ref: Annotated[str, typer.Argument(help="Order id as imported (e.g. #1001).")],
    email: EmailOption = None,
    phone: PhoneOption = None,
    address: AddressOption = None,
    payment: PaymentOption = None,
    device: DeviceOption = None,
    at: AtOption = None,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """A referred friend's order arrived: the first qualifying one starts the refund window."""
    from boomerang.services import referrals as service
    from boomerang.services.loyalty import resolve_customer

    with _session(db, store) as (engine, store_name):
        cid = resolve_customer(engine, store_name, friend)
        result = service.friend_order(
            engine, store_name, cid, order_ref,
            signals=_signals(email, phone, address, payment, device), now=moment(at, "--at"),
        )  # fmt: skip
    _print(result if result is not None else {"note": "this customer was not referred"})


@app.command("release")
def release_command(at: AtOption = None, db: DbOption = None, store: StoreOption = None) -> None:
    """The daily job: pay referrals whose refund window has passed (void refunded ones).
    Idempotent; safe as concurrent copies."""
    from boomerang.services import referrals as service

    with _session(db, store) as (engine, store_name):
        result = service.release_due(engine, store_name, now=moment(at, "--at"))
    console.print(
        f"{result.rewarded:,} referrals rewarded, {result.void:,} void, "
        f"{result.flagged:,} flagged for review, {result.resumed:,} half-paid runs finished"
    )


@app.command("status")
def status_command(customer: CustomerArg, db: DbOption = None, store: StoreOption = None) -> None:
    """A customer's code, link, share texts, referrals and rewards earned."""
    from boomerang.services import referrals as service
    from boomerang.services.loyalty import resolve_customer

    with _session(db, store) as (engine, store_name):
        cid = resolve_customer(engine, store_name, customer)
        _print(service.status(engine, store_name, cid))


@app.command("review")
def review_command(
    referral_id: Annotated[
        int | None, typer.Argument(help="The referral to decide; none: list the flagged ones.")
    ] = None,
    approve: Annotated[bool, typer.Option("--approve", help="Approve: pay it at release.")] = False,
    reject: Annotated[bool, typer.Option("--reject", help="Reject: never pay it.")] = False,
    actor: ActorOption = "cli",
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Referrals held for review (with their reasons), or decide one."""
    from boomerang.services import referrals as service

    if referral_id is not None and approve == reject:
        raise InputError("pass exactly one of --approve and --reject", hint="e.g. --approve")
    if referral_id is None and (approve or reject):
        raise InputError("name the referral to decide", hint="list them: `referrals review`")
    with _session(db, store) as (engine, store_name):
        if referral_id is None:
            _print(service.flagged(engine, store_name))
            return
        decision = "approve" if approve else "reject"
        _print(service.review(engine, store_name, referral_id, decision, actor=actor))


@app.command("funnel")
def funnel_command(
    since: Annotated[
        str | None, typer.Option("--from", help="Start of the window (YYYY-MM-DD), inclusive.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--to", help="End of the window (YYYY-MM-DD), exclusive.")
    ] = None,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Shares by channel, clicks, sign-ups and what became of them, rewards paid, rates."""
    from boomerang.services import referrals as service

    with _session(db, store) as (engine, store_name):
        _print(
            service.funnel(
                engine, store_name, since=moment(since, "--from"), until=moment(until, "--to")
            )
        )
