"""Two-sided referrals: codes and share links, shares and clicks, sign-ups, the friend's
first order, the release job that pays both sides, reviews of flagged referrals, a
referrer's status and the funnel (docs/referrals.md).

Life of a referral: a friend signs up with a code (``signed_up``); their first qualifying
order sets ``qualifies_at`` = placed + the refund window (``ordered``); `release_due`, after
that moment, re-reads the order: refunded or cancelled -> ``void`` (nothing paid), else both
sides are paid (``rewarded``). Whenever a fraud rule matches (sign-up, order, release) the
referral is ``flagged`` and waits for `review`: approve moves it on, reject ends it.

Exactly once: the release job claims a referral with a conditional update (``ordered`` ->
``paying``, only one caller's update changes the row), writes what it will pay into the
row, pays each side with a write that is idempotent by itself (points and store credit
under a ledger idempotency key, a coupon under the referral's row lock after looking for
the coupon of that source), then moves ``paying`` -> ``rewarded``. A job that stops half way
leaves ``paying``; the next run finishes it, and the side already paid is not paid again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine

from boomerang.domain.clock import MICROS_PER_DAY, now_micros
from boomerang.errors import ConflictError, InputError, NotFoundError
from boomerang.loyalty import referrals as rules
from boomerang.loyalty.program import Program, ReferralReward, Referrals, lot_expiry
from boomerang.loyalty.referrals import Status
from boomerang.services.loyalty import (
    earn,
    format_code,
    grant_credit,
    issue_coupon_in,
    load_program,
    new_code,
    normalise_code,
)
from boomerang.store.repos import loyalty as loyalty_repo
from boomerang.store.repos import referrals as repo
from boomerang.store.repos import stores as stores_repo

Signals = Mapping[str, str | None]

#: Statuses a referral never leaves (besides ``paying``, which only the job moves on).
FINAL = frozenset({Status.REWARDED, Status.VOID, Status.REJECTED})
COUPON_REWARDS = frozenset({"amount_off", "percent_off", "free_shipping"})


def _salt(store_id: int) -> str:
    return f"store:{store_id}"


def _config(conn: Connection, store_id: int) -> tuple[Program, Referrals]:
    program = load_program(conn, store_id)
    return program, program.referrals


def _require_enabled(config: Referrals) -> None:
    if not config.enabled:
        raise InputError(
            "referrals are not enabled in the loyalty program",
            hint="set `referrals: {enabled: true, ...}` in the program file and store it with "
            "`boomerang loyalty program set`",
        )


def _customer(conn: Connection, store_id: int, customer_id: int) -> dict[str, Any]:
    found = repo.customer(conn, store_id, customer_id)
    if found is None:
        raise NotFoundError(
            f"no customer {customer_id} in this store",
            hint="use the external id or email shown by an import, or the numeric id",
        )
    return found


def _identity(customer: Mapping[str, Any], store_id: int) -> set[tuple[str, str]]:
    """Fingerprints of the customer's email and phone on file."""
    return rules.fingerprints(
        {"email": customer["email"], "phone": customer["phone"]},
        salt=_salt(store_id),
        region=customer["country"],
    )


def _record(
    conn: Connection, store_id: int, found: dict[int, set[tuple[str, str]]], at: int
) -> None:
    """Record fingerprints of several customers, in customer id order (a fixed lock order)."""
    for customer_id in sorted(found):
        repo.add_fingerprints(conn, store_id, customer_id, found[customer_id], at)


def _key(key: str) -> str:
    if not key or len(key) > 150:
        raise InputError("a key of 1-150 characters is required", hint="pass --key")
    return key


def _code_row(conn: Connection, store_id: int, code: str) -> dict[str, Any]:
    found = repo.find_code(conn, store_id, normalise_code(code))
    if found is None:
        raise NotFoundError(
            f"no referral code {code!r}", hint="check the code (`boomerang referrals status`)"
        )
    return found


def view(ref: Mapping[str, Any]) -> dict[str, Any]:
    """A referral as the faces show it."""
    return {
        "id": int(ref["id"]),
        "referrer_id": int(ref["referrer_id"]),
        "friend_id": int(ref["friend_id"]),
        "status": str(ref["status"]),
        "flags": list(ref["flags"]),
        "order_ref": ref["order_ref"],
        "qualifies_at": ref["qualifies_at"],
        "rewards": dict(ref["rewards"]),
        "decided_by": ref["decided_by"],
        "created_at": int(ref["created_at"]),
    }


def _check(
    conn: Connection,
    store_id: int,
    config: Referrals,
    ref: dict[str, Any],
    at: int,
) -> dict[str, Any]:
    """Compare the friend's fingerprints with the referrer's; a reason not yet on the
    referral flags it (held for review, a `referral_flagged` event). Reasons a reviewer
    already saw and approved do not flag it again; new ones do."""
    if ref["status"] in FINAL or ref["status"] == Status.PAYING:
        return ref
    reasons = rules.fraud_reasons(
        repo.fingerprints_of(conn, store_id, int(ref["referrer_id"])),
        {(k, v) for k, v, _ in repo.fingerprints_of(conn, store_id, int(ref["friend_id"]))},
        now=at,
        window_days=config.fraud_window_days,
    )
    new = [r for r in reasons if r not in ref["flags"]]
    if not new:
        return ref
    flags = sorted({*ref["flags"], *new})
    repo.set_referral(conn, int(ref["id"]), at, status=Status.FLAGGED.value, flags=flags)
    loyalty_repo.add_event(
        conn, store_id, int(ref["referrer_id"]), "referral_flagged",
        {"referral": int(ref["id"]), "friend": int(ref["friend_id"]), "reasons": new, "flags": flags},
        f"referral:{ref['id']}:flagged:{'+'.join(flags)}", at,
    )  # fmt: skip
    return {**ref, "status": Status.FLAGGED.value, "flags": flags}


# -- codes, shares, clicks -----------------------------------------------------------------------


@dataclass
class ReferralCode:
    """A referrer's code (shown as ABCD-EFGH-JKMN), share link and share texts."""

    customer_id: int
    code: str
    link: str
    created: bool
    shares: dict[str, dict[str, str]] = field(default_factory=dict)


def referral_code(
    engine: Engine,
    store: str,
    customer_id: int,
    *,
    signals: Signals | None = None,
    now: int | None = None,
) -> ReferralCode:
    """The customer's referral code, made on first use (later calls return the same one).
    Records the customer's email and phone (and any ``signals``) as fingerprints, for the
    self-referral checks of the friends who use it."""
    at = now_micros() if now is None else now
    with engine.begin() as conn:
        row = stores_repo.get(conn, store)
        _, config = _config(conn, row.id)
        _require_enabled(config)
        customer = _customer(conn, row.id, customer_id)
        found = repo.code_of(conn, row.id, customer_id)
        created = False
        for _ in range(3):  # a code collision (60 random bits) would only mean another try
            if found is not None:
                break
            code = new_code()
            repo.add_code(conn, row.id, customer_id, code, at)
            found = repo.code_of(conn, row.id, customer_id)
            created = found is not None and found["code"] == code
        assert found is not None
        seen = _identity(customer, row.id)
        seen |= rules.fingerprints(signals or {}, salt=_salt(row.id), region=customer["country"])
        _record(conn, row.id, {customer_id: seen}, at)
    code = str(found["code"])
    shares = rules.share_texts(
        config, code=code, first_name=customer["first_name"], currency=row.currency
    )
    return ReferralCode(
        customer_id, format_code(code), rules.referral_link(config.link_base, code), created, shares
    )


def record_signals(
    engine: Engine, store: str, customer_id: int, signals: Signals, *, now: int | None = None
) -> int:
    """Record identity signals seen for a customer (a checkout's card fingerprint, shipping
    address, device); only their hashes are kept. Returns how many were readable."""
    at = now_micros() if now is None else now
    with engine.begin() as conn:
        row = stores_repo.get(conn, store)
        customer = _customer(conn, row.id, customer_id)
        seen = rules.fingerprints(signals, salt=_salt(row.id), region=customer["country"])
        _record(conn, row.id, {customer_id: seen}, at)
    return len(seen)


def record_share(
    engine: Engine,
    store: str,
    customer_id: int,
    channel: str,
    *,
    key: str,
    now: int | None = None,
) -> dict[str, Any]:
    """Count a share of the customer's link on a channel, once per key (a
    `referral_shared` event the first time). The same key for another channel is a
    `ConflictError`."""
    if channel not in rules.CHANNELS:
        raise InputError(
            f"unknown share channel {channel!r}", hint="one of: " + ", ".join(rules.CHANNELS)
        )
    at = now_micros() if now is None else now
    with engine.begin() as conn:
        row = stores_repo.get(conn, store)
        code = repo.code_of(conn, row.id, customer_id)
        if code is None:
            raise NotFoundError(
                f"customer {customer_id} has no referral code yet",
                hint="make one with `boomerang referrals code CUSTOMER`",
            )
        dedupe = f"share:{code['id']}:{_key(key)}"
        recorded = repo.add_activity(conn, row.id, int(code["id"]), "share", channel, dedupe, at)
        if not recorded:
            earlier = repo.activity(conn, row.id, dedupe)
            if earlier is not None and earlier["channel"] != channel:
                raise ConflictError(
                    f"key {key!r} already recorded a share on {earlier['channel']}",
                    hint="use a new key for a new share; reuse a key only to retry",
                )
        else:
            loyalty_repo.add_event(
                conn, row.id, customer_id, "referral_shared",
                {"channel": channel, "code": format_code(str(code["code"]))}, f"referral:{dedupe}", at,
            )  # fmt: skip
    return {"customer_id": customer_id, "channel": channel, "recorded": recorded}


def record_click(
    engine: Engine, store: str, code: str, *, key: str, now: int | None = None
) -> dict[str, Any]:
    """Count a click on a share link, once per key (e.g. visitor and day)."""
    at = now_micros() if now is None else now
    with engine.begin() as conn:
        row = stores_repo.get(conn, store)
        found = _code_row(conn, row.id, code)
        recorded = repo.add_activity(
            conn, row.id, int(found["id"]), "click", None, f"click:{found['id']}:{_key(key)}", at
        )
    return {"code": format_code(str(found["code"])), "recorded": recorded}


# -- sign-up and the friend's order --------------------------------------------------------------


def sign_up(
    engine: Engine,
    store: str,
    code: str,
    friend_customer_id: int,
    *,
    signals: Signals | None = None,
    now: int | None = None,
) -> dict[str, Any]:
    """A friend signs up with a referrer's code: one referral per friend (a repeat with the
    same code returns it; another code is a `ConflictError`; the referrer's own code is
    refused). The friend's email and phone on file and the ``signals`` (email, phone,
    address, payment, device) are compared with the referrer's: a match flags it."""
    at = now_micros() if now is None else now
    with engine.begin() as conn:
        row = stores_repo.get(conn, store)
        _, config = _config(conn, row.id)
        _require_enabled(config)
        found = _code_row(conn, row.id, code)
        referrer_id = int(found["customer_id"])
        if friend_customer_id == referrer_id:
            raise InputError(
                "a customer cannot use their own referral code",
                hint="the friend must be another customer",
            )
        friend = _customer(conn, row.id, friend_customer_id)
        referrer = _customer(conn, row.id, referrer_id)
        salt = _salt(row.id)
        friend_seen = _identity(friend, row.id)
        friend_seen |= rules.fingerprints(signals or {}, salt=salt, region=friend["country"])
        _record(
            conn, row.id, {referrer_id: _identity(referrer, row.id), friend_customer_id: friend_seen}, at
        )  # fmt: skip
        new_id = repo.add_referral(
            conn, row.id, code_id=int(found["id"]), referrer_id=referrer_id,
            friend_id=friend_customer_id, status=Status.SIGNED_UP.value, flags=[], now=at,
        )  # fmt: skip
        ref = repo.referral_of_friend(conn, row.id, friend_customer_id, lock=True)
        assert ref is not None
        if new_id is None and ref["code_id"] != found["id"]:
            raise ConflictError(
                f"customer {friend_customer_id} already signed up with another referral code",
                hint="a friend is referred once; the first code used counts",
            )
        ref = _check(conn, row.id, config, ref, at)
    return {**view(ref), "replayed": new_id is None}


def friend_order(
    engine: Engine,
    store: str,
    friend_id: int,
    order_ref: str,
    *,
    signals: Signals | None = None,
    now: int | None = None,
) -> dict[str, Any] | None:
    """A referred friend's order arrived (read from the store by its external id). The
    first qualifying one (not cancelled or refunded, net >= `min_order_minor`, and the
    friend had no order before signing up) starts the refund window: rewards are due at
    placed + `refund_window_days`. Repeated deliveries change nothing. The order's email
    and ``signals`` are checked against the referrer's again. None: the customer was not
    referred."""
    at = now_micros() if now is None else now
    with engine.begin() as conn:
        row = stores_repo.get(conn, store)
        _, config = _config(conn, row.id)
        order = repo.order(conn, row.id, order_ref)
        if order is None:
            raise NotFoundError(f"no order {order_ref!r}", hint="import the order first")
        if order["customer_id"] != friend_id:
            raise InputError(
                f"order {order_ref!r} is not customer {friend_id}'s",
                hint="pass the customer who placed the order",
            )
        friend = _customer(conn, row.id, friend_id)
        given: dict[str, str | list[str] | None] = dict(signals or {})
        given["email"] = [e for e in (given.get("email"), order["email"]) if isinstance(e, str)]
        seen = rules.fingerprints(given, salt=_salt(row.id), region=friend["country"])
        # Fingerprints before the referral's row lock, as in `sign_up` (one lock order).
        _record(conn, row.id, {friend_id: seen | _identity(friend, row.id)}, at)
        ref = repo.referral_of_friend(conn, row.id, friend_id, lock=True)
        if ref is None:
            return None
        note: str | None = None
        if ref["order_ref"] == order_ref:
            note = "this order was seen before: nothing changed"
        elif ref["order_ref"] is not None:
            note = f"the referral already has its order {ref['order_ref']!r}"
        elif ref["status"] in (Status.SIGNED_UP, Status.FLAGGED):
            note = rules.disqualification(order, config.min_order_minor)
            if note is None and repo.live_orders_before(
                conn, row.id, friend_id, int(ref["created_at"])
            ):
                note = "the friend had ordered before signing up (not a new customer)"
            if note is None:
                due_at = rules.qualifies_at(int(order["placed_at"]), config.refund_window_days)
                status = Status.ORDERED if ref["status"] == Status.SIGNED_UP else Status.FLAGGED
                repo.set_referral(
                    conn, int(ref["id"]), at, order_ref=order_ref, qualifies_at=due_at,
                    status=status.value,
                )  # fmt: skip
                ref = {
                    **ref,
                    "order_ref": order_ref,
                    "qualifies_at": due_at,
                    "status": status.value,
                }
            else:
                note = f"order {order_ref!r} does not qualify: {note}"
        else:
            note = f"the referral is {ref['status']}: nothing changed"
        ref = _check(conn, row.id, config, ref, at)
    return {**view(ref), "note": note}


# -- the release job -----------------------------------------------------------------------------


@dataclass
class ReleaseResult:
    """What one run of the release job did."""

    rewarded: int = 0
    void: int = 0
    flagged: int = 0
    resumed: int = 0
    referrals: list[int] = field(default_factory=list)  # the ids it rewarded


def release_due(engine: Engine, store: str, *, now: int | None = None) -> ReleaseResult:
    """Pay the referrals whose refund window has passed (and finish any a stopped run left
    half paid). Safe to run twice or as concurrent copies: each side is paid once."""
    at = now_micros() if now is None else now
    with engine.connect() as conn:
        row = stores_repo.get(conn, store)
        program, config = _config(conn, row.id)
        due = repo.due(conn, row.id, at)
    out = ReleaseResult()
    for rid in due:
        with engine.begin() as conn:
            ref = repo.referral(conn, row.id, rid, lock=True)
            if ref is None:
                continue
            if ref["status"] == Status.ORDERED and int(ref["qualifies_at"]) <= at:
                order = repo.order(conn, row.id, str(ref["order_ref"]))
                reason = (
                    "the order is gone"
                    if order is None
                    else rules.disqualification(order, config.min_order_minor)
                )
                if reason is not None:
                    repo.move(conn, rid, Status.ORDERED, Status.VOID, at, rewards={"void": reason})
                    out.void += 1
                    continue
                ref = _check(conn, row.id, config, ref, at)  # signals seen since the order
                if ref["status"] == Status.FLAGGED:
                    out.flagged += 1
                    continue
                plan = {
                    side: reward.model_dump(mode="json")
                    for side, reward in (
                        ("referrer", config.referrer_reward),
                        ("friend", config.friend_reward),
                    )
                    if reward is not None
                }
                if not repo.move(
                    conn, rid, Status.ORDERED, Status.PAYING, at, rewards={"plan": plan}
                ):
                    continue
                ref = {**ref, "rewards": {"plan": plan}}
            elif ref["status"] == Status.PAYING:
                out.resumed += 1
            else:
                continue
        paid = {
            side: _pay(engine, store, program, row.currency, ref, side, ReferralReward(**spec), at)
            for side, spec in ref["rewards"]["plan"].items()
        }
        with engine.begin() as conn:
            if not repo.move(conn, rid, Status.PAYING, Status.REWARDED, at, rewards=paid):
                continue  # a concurrent copy finished it
            for side, who in (("referrer", ref["referrer_id"]), ("friend", ref["friend_id"])):
                loyalty_repo.add_event(
                    conn, row.id, int(who), "referral_completed",
                    {"referral": rid, "role": side, "order": ref["order_ref"],
                     "friend": int(ref["friend_id"]), "reward": paid.get(side)},
                    f"referral:{rid}:completed:{side}", at,
                )  # fmt: skip
            out.rewarded += 1
            out.referrals.append(rid)
    return out


def _pay(
    engine: Engine,
    store: str,
    program: Program,
    currency: str,
    ref: Mapping[str, Any],
    side: str,
    reward: ReferralReward,
    at: int,
) -> dict[str, Any]:
    """Pay one side once: points and store credit under a ledger key made from the
    referral and side; a coupon under the referral's row lock, reusing the coupon already
    issued for this source (a run that stopped after issuing it)."""
    rid = int(ref["id"])
    customer_id = int(ref["referrer_id"] if side == "referrer" else ref["friend_id"])
    source = f"referral:{rid}:{side}"
    reason = f"referral {rid} ({side})"
    if reward.kind == "points":
        if reward.value == 0:
            return {"kind": "points", "points": 0}
        result = earn(
            engine, store, customer_id, reward.value, key=source, system=True, reason=reason,
            expires_at=lot_expiry(program, at), now=at,
        )  # fmt: skip
        return {"kind": "points", "points": reward.value, "transaction_id": result.transaction_id}
    if reward.kind == "store_credit":
        if reward.value == 0:
            return {"kind": "store_credit", "amount_minor": 0, "currency": currency}
        credit = grant_credit(
            engine, store, customer_id, reward.value, key=source, reason=reason,
            actor="referrals", now=at, system=True,
        )  # fmt: skip
        return {
            "kind": "store_credit", "amount_minor": reward.value, "currency": currency,
            "transaction_id": credit.transaction_id,
        }  # fmt: skip
    with engine.begin() as conn:
        row = stores_repo.get(conn, store)
        repo.referral(conn, row.id, rid, lock=True)  # one payer of this referral at a time
        coupon = issue_coupon_in(
            conn, row.id, kind=reward.kind, value=reward.value, currency=currency,
            customer_id=customer_id, max_uses=1, per_customer=None,
            expires_at=at + reward.coupon_days * MICROS_PER_DAY, source=source, at=at, once=True,
        )  # fmt: skip
    return {
        "kind": "coupon", "coupon_kind": reward.kind, "value": coupon.value,
        "code": format_code(coupon.code), "expires_at": coupon.expires_at,
    }  # fmt: skip


# -- review --------------------------------------------------------------------------------------


def review(
    engine: Engine,
    store: str,
    referral_id: int,
    decision: str,
    *,
    actor: str,
    now: int | None = None,
) -> dict[str, Any]:
    """Decide a flagged referral: ``approve`` moves it on (``ordered`` when its order is in,
    else ``signed_up``; paid by the release job when the window has passed), ``reject``
    ends it (never paid). Repeating the same decision changes nothing."""
    if decision not in ("approve", "reject"):
        raise InputError(f"unknown decision {decision!r}", hint="approve or reject")
    if not actor.strip():
        raise InputError("a review needs an actor", hint="pass --actor NAME")
    at = now_micros() if now is None else now
    with engine.begin() as conn:
        row = stores_repo.get(conn, store)
        ref = repo.referral(conn, row.id, referral_id, lock=True)
        if ref is None:
            raise NotFoundError(
                f"no referral {referral_id}", hint="list flagged ones: `boomerang referrals review`"
            )
        status = ref["status"]
        if status == Status.FLAGGED:
            target = (
                Status.REJECTED
                if decision == "reject"
                else (Status.ORDERED if ref["order_ref"] else Status.SIGNED_UP)
            )
            repo.move(conn, referral_id, Status.FLAGGED, target, at, decided_by=actor)
            ref = {**ref, "status": target.value, "decided_by": actor}
            return {**view(ref), "replayed": False}
        approved = ref["decided_by"] is not None and status != Status.REJECTED
        if (decision == "reject" and status == Status.REJECTED) or (
            decision == "approve" and approved
        ):
            return {**view(ref), "replayed": True}
    raise ConflictError(
        f"referral {referral_id} is {status}, not flagged",
        hint="only flagged referrals are reviewed (`boomerang referrals review` lists them)",
    )


def flagged(engine: Engine, store: str) -> list[dict[str, Any]]:
    """Referrals held for review, with their reasons."""
    with engine.connect() as conn:
        row = stores_repo.get(conn, store)
        found = repo.referrals_where(conn, row.id, status=Status.FLAGGED.value)
    return [view(r) for r in found]


# -- status and funnel ---------------------------------------------------------------------------


def status(engine: Engine, store: str, customer_id: int) -> dict[str, Any]:
    """A customer as referrer (code, link, share texts, referrals, rewards earned) and, if
    they were referred, their own referral."""
    with engine.connect() as conn:
        row = stores_repo.get(conn, store)
        _, config = _config(conn, row.id)
        customer = _customer(conn, row.id, customer_id)
        code = repo.code_of(conn, row.id, customer_id)
        made = repo.referrals_where(conn, row.id, referrer_id=customer_id)
        referred = repo.referral_of_friend(conn, row.id, customer_id)
    out: dict[str, Any] = {
        "customer_id": customer_id,
        "enabled": config.enabled,
        "code": None,
        "link": None,
        "shares": {},
    }
    if code is not None:
        raw = str(code["code"])
        out["code"] = format_code(raw)
        out["link"] = rules.referral_link(config.link_base, raw)
        out["shares"] = rules.share_texts(
            config, code=raw, first_name=customer["first_name"], currency=row.currency
        )
    out["referrals"] = [view(r) for r in made]
    out["by_status"] = dict(Counter(str(r["status"]) for r in made))
    out["earned"] = _totals(
        [r["rewards"].get("referrer") for r in made if r["status"] == "rewarded"]
    )
    out["referred_by"] = None if referred is None else view(referred)
    return out


def _totals(paid: list[dict[str, Any] | None]) -> dict[str, int]:
    """Sum of payouts: sides paid, coupons, money (amount-off coupons + store credit, minor
    units), points."""
    out = {"payouts": 0, "coupons": 0, "money_minor": 0, "points": 0}
    for p in paid:
        if p is None:
            continue
        out["payouts"] += 1
        if p["kind"] == "coupon":
            out["coupons"] += 1
            if p["coupon_kind"] == "amount_off":
                out["money_minor"] += int(p["value"])
        elif p["kind"] == "store_credit":
            out["money_minor"] += int(p["amount_minor"])
        elif p["kind"] == "points":
            out["points"] += int(p["points"])
    return out


def _rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 4)


def funnel(
    engine: Engine, store: str, *, since: int | None = None, until: int | None = None
) -> dict[str, Any]:
    """The referral funnel over [since, until): shares (per channel) and clicks counted
    when they happened; sign-ups in the window and what became of them since (a cohort:
    first orders, flagged, held, rewarded, void, rejected, rewards paid); conversion rates."""
    with engine.connect() as conn:
        row = stores_repo.get(conn, store)
        counts = repo.activity_counts(conn, row.id, since, until)
        cohort = repo.referrals_where(conn, row.id, created_since=since, created_until=until)
    shares = {c: 0 for c in rules.CHANNELS}
    clicks = 0
    for kind, channel, n in counts:
        if kind == "share" and channel is not None:
            shares[channel] = shares.get(channel, 0) + n
        elif kind == "click":
            clicks += n
    by_status = Counter(str(r["status"]) for r in cohort)
    sign_ups = len(cohort)
    first_orders = sum(1 for r in cohort if r["order_ref"] is not None)
    rewarded = by_status[Status.REWARDED]
    paid = [
        r["rewards"].get(side)
        for r in cohort
        if r["status"] == Status.REWARDED
        for side in ("referrer", "friend")
    ]
    total_shares = sum(shares.values())
    return {
        "since": since,
        "until": until,
        "shares": total_shares,
        "shares_by_channel": shares,
        "clicks": clicks,
        "sign_ups": sign_ups,
        "first_orders": first_orders,
        "flagged": sum(1 for r in cohort if r["flags"]),
        "held_for_review": by_status[Status.FLAGGED],
        "waiting": by_status[Status.ORDERED] + by_status[Status.PAYING],
        "rewarded": rewarded,
        "void": by_status[Status.VOID],
        "rejected": by_status[Status.REJECTED],
        "rewards_paid": _totals(paid),
        "rates": {
            "click_per_share": _rate(clicks, total_shares),
            "sign_up_per_click": _rate(sign_ups, clicks),
            "first_order_per_sign_up": _rate(first_orders, sign_ups),
            "rewarded_per_first_order": _rate(rewarded, first_orders),
        },
    }
