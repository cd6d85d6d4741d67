"""Paid memberships use cases: plans, subscribe, payments, cancel, the lifecycle job, the
savings statement and the report section (docs/memberships.md).

Every write is one database transaction that first locks what it changes (the membership
row; the customer row when subscribing) and brings the membership up to date with
`loyalty.memberships.advance` before acting, so a stale state (a lifecycle job that has not
run yet) never decides anything. Events go to `loyalty_events` with a dedupe key per cause:
running the job twice, or as concurrent copies, writes each event once. Every function takes
``now`` (epoch micros) so tests and the CLI (``--at``) can travel in time.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Connection, Engine

from boomerang.domain.clock import from_micros, now_micros, to_micros
from boomerang.domain.money import currency_exponent
from boomerang.errors import ConflictError, InputError, NotFoundError
from boomerang.loyalty import memberships as rules
from boomerang.loyalty.memberships import (
    ACTIVE,
    LIVE,
    TRIAL,
    Membership,
    Payment,
    Plan,
    Statement,
    benefit_windows,
    days,
    in_windows,
    order_saving,
    parse_plans,
    plan_from_row,
)
from boomerang.services import loyalty as loyalty_service
from boomerang.services.context import open_engine
from boomerang.store.repos import loyalty as loyalty_repo
from boomerang.store.repos import memberships as repo
from boomerang.store.repos import stores as stores_repo

#: Namespace of the payment keys this module makes itself (the first fee at subscribe).
SYSTEM_PREFIX = "sys:"
MAX_KEY = 150


def _store(conn: Connection, store: str) -> stores_repo.Store:
    return stores_repo.get(conn, store)


def _check_key(key: str) -> None:
    if not key or len(key) > MAX_KEY:
        raise InputError(
            f"an idempotency key of 1-{MAX_KEY} characters is required", hint="pass --key"
        )
    if key.startswith(SYSTEM_PREFIX):
        raise InputError(
            f"idempotency keys starting {SYSTEM_PREFIX!r} are reserved", hint="choose another key"
        )


def _when(micros: int | None) -> str | None:
    return None if micros is None else from_micros(micros).isoformat()


# -- plans -----------------------------------------------------------------------------------


def set_plans(db: str, store: str, path: Path, *, now: int | None = None) -> dict[str, Any]:
    """Validate a plans file and store it: plans upserted by key; a stored plan missing from
    the file becomes inactive (never deleted: its members keep it; nobody new can join)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file", hint="check the path") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML/JSON ({exc})", hint="fix the syntax") from None
    parsed = parse_plans(raw, origin=path.name)
    at = now_micros() if now is None else now
    engine = open_engine(db)
    out: dict[str, Any] = {"created": [], "updated": [], "unchanged": [], "deactivated": 0}
    try:
        with engine.begin() as conn:
            row = _store(conn, store)
            for plan in parsed:
                values = {**plan.model_dump(mode="json"), "benefits": plan.extras}
                out[repo.upsert_plan(conn, row.id, values, row.currency, at)].append(plan.key)
            out["deactivated"] = repo.deactivate_plans_except(
                conn, row.id, [p.key for p in parsed], at
            )
    finally:
        engine.dispose()
    return out


def plans(engine: Engine, store: str) -> list[dict[str, Any]]:
    """Every plan of the store (inactive ones too, flagged), as stored."""
    with engine.connect() as conn:
        row = _store(conn, store)
        found = repo.plans(conn, row.id)
    return [
        {
            **plan_from_row(p).model_dump(mode="json"),
            "currency": p["currency"],
            "active": p["active"],
        }
        for p in found
    ]


# -- the membership as the lifecycle sees it -------------------------------------------------


def _state(m: dict[str, Any], plan_key: str) -> Membership:
    return Membership(
        id=int(m["id"]), customer_id=int(m["customer_id"]), plan_key=plan_key,
        status=m["status"], started_at=int(m["started_at"]),
        trial_ends_at=None if m["trial_ends_at"] is None else int(m["trial_ends_at"]),
        period_start=int(m["period_start"]), period_end=int(m["period_end"]),
        cancel_at_period_end=bool(m["cancel_at_period_end"]),
        ended_at=None if m["ended_at"] is None else int(m["ended_at"]),
    )  # fmt: skip


def _payments(rows: list[dict[str, Any]]) -> list[Payment]:
    return [
        Payment(int(p["period_start"]), int(p["period_end"]), int(p["amount_minor"]),
                str(p["status"]), int(p["occurred_at"]))
        for p in rows
    ]  # fmt: skip


@dataclass
class MembershipResult:
    """A membership as a call left it (``replayed``: the call had been made before)."""

    id: int
    customer_id: int
    plan: str
    status: str
    started_at: str | None
    trial_ends_at: str | None
    period_start: str | None
    period_end: str | None
    cancel_at_period_end: bool
    ended_at: str | None
    replayed: bool = False
    events: list[str] = field(default_factory=list)

    @classmethod
    def of(
        cls, s: Membership, *, replayed: bool = False, events: list[str] | None = None
    ) -> MembershipResult:
        return cls(
            s.id, s.customer_id, s.plan_key, s.status, _when(s.started_at),
            _when(s.trial_ends_at), _when(s.period_start), _when(s.period_end),
            s.cancel_at_period_end, _when(s.ended_at), replayed, events or [],
        )  # fmt: skip


def _bring_up_to_date(
    conn: Connection, store_id: int, m: dict[str, Any], plan: Plan, at: int
) -> tuple[Membership, list[str]]:
    """Apply what is due at ``at`` to a locked membership row; the events newly written."""
    state = _state(m, plan.key)
    paid = {
        int(p["period_start"]) for p in repo.payments(conn, [state.id]) if p["status"] == "paid"
    }
    new, events = rules.advance(state, plan, at, paid)
    if new != state:
        repo.update_membership(
            conn, new.id,
            {"status": new.status, "period_start": new.period_start, "period_end": new.period_end,
             "ended_at": new.ended_at, "updated_at": at},
        )  # fmt: skip
    written = [
        e.kind
        for e in events
        if loyalty_repo.add_event(
            conn, store_id, new.customer_id, e.kind, e.payload, e.dedupe_key, at
        )
    ]
    return new, written


def _plan_of(conn: Connection, store_id: int, plan_id: int) -> Plan:
    found = repo.plans_by_id(conn, store_id).get(plan_id)
    assert found is not None, "a membership's plan is never deleted"
    return plan_from_row(found)


def _live_locked(
    conn: Connection, store_id: int, customer_id: int, at: int
) -> tuple[Membership, Plan, list[str]] | None:
    """The customer's live membership, locked and brought up to date (None if there is none
    or it has just ended)."""
    m = repo.live_membership(conn, store_id, customer_id, lock=True)
    if m is None:
        return None
    plan = _plan_of(conn, store_id, int(m["plan_id"]))
    state, written = _bring_up_to_date(conn, store_id, m, plan, at)
    return state, plan, written


# -- subscribe / pay / cancel ----------------------------------------------------------------


def subscribe(
    engine: Engine,
    store: str,
    customer_id: int,
    plan_key: str,
    *,
    key: str,
    now: int | None = None,
) -> MembershipResult:
    """Start a membership: a free trial when the plan has one and the customer never had a
    membership (one trial per customer), else active with the first period's fee recorded
    as paid. One live membership per customer: subscribing again while one is live is a
    `ConflictError`, unless it is the same key (then the stored membership is returned)."""
    _check_key(key)
    at = now_micros() if now is None else now
    with engine.begin() as conn:
        row = _store(conn, store)
        if not repo.lock_customer(conn, row.id, customer_id):
            raise NotFoundError(
                f"no customer {customer_id} in this store",
                hint="use the external id or email shown by an import",
            )
        started = repo.event_by_key(conn, row.id, _subscribe_key(key))
        if started is not None:
            payload = started["payload"]
            if (payload["customer_id"], payload["plan"]) != (customer_id, plan_key):
                raise ConflictError(
                    f"idempotency key {key!r} was already used for a different subscription",
                    hint="use a new key for a new request; reuse a key only to retry the same one",
                )
            m = repo.membership(conn, row.id, int(payload["membership_id"]))
            assert m is not None
            return MembershipResult.of(_state(m, plan_key), replayed=True)
        live = _live_locked(conn, row.id, customer_id, at)
        if live is not None and live[0].live:
            raise ConflictError(
                f"customer {customer_id} already has a {live[0].status} membership "
                f"(plan {live[0].plan_key!r})",
                hint="cancel it first (`boomerang memberships cancel --now`) to switch plans",
            )
        found = repo.plan_by_key(conn, row.id, plan_key)
        if found is None:
            raise NotFoundError(
                f"no membership plan {plan_key!r}", hint="see `boomerang memberships plans show`"
            )
        if not found["active"]:
            raise InputError(
                f"plan {plan_key!r} is no longer offered", hint="choose an active plan"
            )
        plan = plan_from_row(found)
        first_time = not repo.customer_memberships(conn, row.id, customer_id)
        trial = plan.trial_days if first_time else 0
        values: dict[str, Any]
        if trial:
            end = at + days(trial)
            values = {"status": TRIAL, "trial_ends_at": end, "period_end": end}
        else:
            end = rules.period_end(at, at, plan.interval)
            values = {"status": ACTIVE, "trial_ends_at": None, "period_end": end}
        mid = repo.add_membership(
            conn,
            {"store_id": row.id, "customer_id": customer_id, "plan_id": int(found["id"]),
             "started_at": at, "period_start": at, "cancel_at_period_end": 0,
             "ended_at": None, "updated_at": at, **values},
        )  # fmt: skip
        if not trial:
            repo.add_payment(
                conn,
                {"store_id": row.id, "membership_id": mid, "period_start": at, "period_end": end,
                 "amount_minor": plan.fee_minor, "currency": row.currency, "status": "paid",
                 "idempotency_key": f"{SYSTEM_PREFIX}subscribe:{key}", "occurred_at": at},
            )  # fmt: skip
        loyalty_repo.add_event(
            conn, row.id, customer_id, rules.STARTED,
            {"membership_id": mid, "customer_id": customer_id, "plan": plan.key,
             "status": values["status"], "trial_ends_at": values["trial_ends_at"],
             "period_end": end, "fee_minor": plan.fee_minor},
            _subscribe_key(key), at,
        )  # fmt: skip
        created = repo.membership(conn, row.id, mid)
        assert created is not None
        state = _state(created, plan.key)
    return MembershipResult.of(state, events=[rules.STARTED])


def _subscribe_key(key: str) -> str:
    return f"membership:subscribe:{key}"


@dataclass
class PaymentResult:
    payment_id: int
    status: str
    amount_minor: int
    period_start: str | None
    period_end: str | None
    membership: MembershipResult
    replayed: bool = False


def record_payment(
    engine: Engine,
    store: str,
    customer_id: int,
    *,
    key: str,
    status: str = "paid",
    amount_minor: int | None = None,
    now: int | None = None,
) -> PaymentResult:
    """A notice from the payment processor for the customer's live membership. It is for
    the next period due (from the current period's end; for a past-due membership, the
    period it is waiting for). ``paid``: the membership goes on into that period when it
    begins (at once when past due). ``failed``: recorded; the membership becomes past due
    when that period begins unpaid (at once if it already has). A notice for a period that
    is already paid, or for a member who is cancelling, is a `ConflictError`. The same key
    replays the stored payment; the same key for another notice is a `ConflictError`."""
    _check_key(key)
    if status not in ("paid", "failed"):
        raise InputError(f"payment status must be paid or failed, not {status!r}", hint="")
    if amount_minor is not None and amount_minor < 0:
        raise InputError("a payment amount cannot be negative", hint="amounts are minor units")
    at = now_micros() if now is None else now
    with engine.begin() as conn:
        row = _store(conn, store)
        if not loyalty_repo.customer_in_store(conn, row.id, customer_id):
            raise NotFoundError(f"no customer {customer_id} in this store", hint="")
        live = _live_locked(conn, row.id, customer_id, at)
        earlier = repo.payment_by_key(conn, row.id, key)
        if earlier is not None:
            m = repo.membership(conn, row.id, int(earlier["membership_id"]))
            assert m is not None
            if (
                int(m["customer_id"]) != customer_id
                or earlier["status"] != status
                or (amount_minor is not None and int(earlier["amount_minor"]) != amount_minor)
            ):
                raise ConflictError(
                    f"idempotency key {key!r} was already used for a different payment",
                    hint="use a new key for a new payment notice; reuse a key only to retry",
                )
            plan = _plan_of(conn, row.id, int(m["plan_id"]))
            return _payment_result(earlier, _state(m, plan.key), replayed=True)
        if live is None or not live[0].live:
            raise NotFoundError(
                f"customer {customer_id} has no live membership",
                hint="subscribe first (`boomerang memberships subscribe`)",
            )
        state, plan, _ = live
        if state.cancel_at_period_end:
            raise ConflictError(
                f"the membership ends at {_when(state.period_end)} (cancelled); nothing is due",
                hint="do not charge a cancelling member",
            )
        start, end = state.next_period(plan)
        paid = {
            int(p["period_start"]) for p in repo.payments(conn, [state.id]) if p["status"] == "paid"
        }
        if start in paid:
            raise ConflictError(
                f"the period {_when(start)} to {_when(end)} is already paid",
                hint="record a payment once per period",
            )
        pid = repo.add_payment(
            conn,
            {"store_id": row.id, "membership_id": state.id, "period_start": start,
             "period_end": end, "currency": row.currency, "status": status,
             "amount_minor": plan.fee_minor if amount_minor is None else amount_minor,
             "idempotency_key": key, "occurred_at": at},
        )  # fmt: skip
        m = repo.membership(conn, row.id, state.id, lock=True)
        assert m is not None
        state, written = _bring_up_to_date(conn, row.id, m, plan, at)
        stored = repo.payment_by_key(conn, row.id, key)
        assert stored is not None and int(stored["id"]) == pid
        result = _payment_result(stored, state)
        result.membership.events = written
    return result


def _payment_result(p: dict[str, Any], s: Membership, *, replayed: bool = False) -> PaymentResult:
    return PaymentResult(
        int(p["id"]), str(p["status"]), int(p["amount_minor"]), _when(int(p["period_start"])),
        _when(int(p["period_end"])), MembershipResult.of(s), replayed,
    )  # fmt: skip


def cancel(
    engine: Engine,
    store: str,
    customer_id: int,
    *,
    at_period_end: bool = True,
    now: int | None = None,
) -> MembershipResult:
    """Cancel the customer's live membership. At the period end (the default): benefits last
    until the trial or paid period ends, then it is cancelled (and nothing more is charged).
    Immediately (``at_period_end=False``, or when past due): cancelled now, benefits end now.
    Repeating a cancellation changes nothing."""
    at = now_micros() if now is None else now
    with engine.begin() as conn:
        row = _store(conn, store)
        live = _live_locked(conn, row.id, customer_id, at)
        if live is None or not live[0].live:
            raise NotFoundError(f"customer {customer_id} has no live membership to cancel", hint="")
        state, plan, written = live
        if at_period_end and state.status in (TRIAL, ACTIVE):
            if state.cancel_at_period_end:
                return MembershipResult.of(state, replayed=True, events=written)
            repo.update_membership(conn, state.id, {"cancel_at_period_end": 1, "updated_at": at})
            m = repo.membership(conn, row.id, state.id)
            assert m is not None
            return MembershipResult.of(_state(m, plan.key), events=written)
        repo.update_membership(
            conn, state.id,
            {"status": rules.CANCELLED, "ended_at": at, "cancel_at_period_end": 0, "updated_at": at},
        )  # fmt: skip
        if loyalty_repo.add_event(
            conn, row.id, customer_id, rules.CANCELLED_EVENT,
            {"membership_id": state.id, "plan": plan.key, "ended_at": at, "at_period_end": False},
            rules.event_key(state.id, "cancelled"), at,
        ):  # fmt: skip
            written.append(rules.CANCELLED_EVENT)
        m = repo.membership(conn, row.id, state.id)
        assert m is not None
        return MembershipResult.of(_state(m, plan.key), events=written)


# -- the lifecycle job -----------------------------------------------------------------------


@dataclass
class TickResult:
    """What one run of the lifecycle job did: memberships looked at and events written
    (by type); ``renewal_bonuses``: loyalty renewal bonuses granted."""

    checked: int = 0
    events: dict[str, int] = field(default_factory=dict)
    renewal_bonuses: int = 0


def tick(engine: Engine, store: str, *, now: int | None = None) -> TickResult:
    """The lifecycle job (run it daily, or more often): trial-ending and renewing notices,
    period ends (renewed, cancelled, past due), expiry after the grace days, and the loyalty
    program's renewal bonus (`services.loyalty.renewal_bonus`, once per renewal date).
    Idempotent and safe as concurrent copies: one transaction per membership under its row
    lock, events deduplicated by key."""
    at = now_micros() if now is None else now
    with engine.connect() as conn:
        row = _store(conn, store)
        plan_rows = repo.plans(conn, row.id)
        program = loyalty_service.load_program(conn, row.id)
        bonus_days = program.earn.renewal_days_before if program.earn.renewal_bonus else 0
        horizon = max(
            [bonus_days]
            + [max(plan_from_row(p).renew_notice_days, plan_from_row(p).trial_notice_days)
               for p in plan_rows]
        )  # fmt: skip
        due = repo.due_memberships(conn, row.id, at + days(horizon))
    out = TickResult()
    for mid in due:
        with engine.begin() as conn:
            m = repo.membership(conn, row.id, mid, lock=True)
            if m is None or m["status"] not in LIVE:
                continue
            plan = _plan_of(conn, row.id, int(m["plan_id"]))
            state, written = _bring_up_to_date(conn, row.id, m, plan, at)
        out.checked += 1
        for kind in written:
            out.events[kind] = out.events.get(kind, 0) + 1
        if (
            bonus_days
            and state.status == ACTIVE
            and not state.cancel_at_period_end
            and 0 < state.period_end - at <= days(bonus_days)
        ):
            granted = loyalty_service.renewal_bonus(
                engine, store, state.customer_id, state.period_end, now=at
            )
            if granted is not None and not granted.replayed:
                out.renewal_bonuses += 1
    return out


# -- reading: status, benefits, statement ----------------------------------------------------


def _windows(
    conn: Connection, store_id: int, members: list[dict[str, Any]]
) -> list[tuple[Membership, Plan, list[tuple[int, int]]]]:
    by_id = repo.plans_by_id(conn, store_id)
    pays: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for p in repo.payments(conn, [int(m["id"]) for m in members]):
        pays[int(p["membership_id"])].append(p)
    out = []
    for m in members:
        plan = plan_from_row(by_id[int(m["plan_id"])])
        state = _state(m, plan.key)
        out.append((state, plan, benefit_windows(state, _payments(pays[state.id]))))
    return out


def points_multiplier(
    bind: Engine | Connection, store_id: int, customer_id: int, at: int
) -> Decimal:
    """The membership points multiplier a customer has at ``at`` (1 when not a member then):
    for loyalty order awards. Takes an engine or a connection (to run inside the caller's
    transaction)."""
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return points_multiplier(conn, store_id, customer_id, at)
    members = repo.customer_memberships(bind, store_id, customer_id)
    for _, plan, windows in _windows(bind, store_id, members):
        if in_windows(at, windows):
            return plan.benefits.points_multiplier
    return Decimal(1)


def status(
    engine: Engine, store: str, customer_id: int, *, now: int | None = None
) -> dict[str, Any]:
    """The customer's memberships (latest first) as stored, their payments, and whether
    the benefits apply at ``now``."""
    at = now_micros() if now is None else now
    with engine.connect() as conn:
        row = _store(conn, store)
        members = repo.customer_memberships(conn, row.id, customer_id)
        found = _windows(conn, row.id, members)
        pays = repo.payments(conn, [int(m["id"]) for m in members])
    current = next(((s, p, w) for s, p, w in reversed(found) if s.live), None)
    benefits = next(((s, p) for s, p, w in found if in_windows(at, w)), None)
    return {
        "customer_id": customer_id,
        "membership": None if current is None else MembershipResult.of(current[0]).__dict__,
        "benefits_now": None if benefits is None else benefits[1].benefits.model_dump(mode="json"),
        "history": [MembershipResult.of(s).__dict__ for s, _, _ in reversed(found)],
        "payments": [
            {"membership_id": int(p["membership_id"]), "status": p["status"],
             "amount_minor": int(p["amount_minor"]), "period_start": _when(int(p["period_start"])),
             "period_end": _when(int(p["period_end"])), "at": _when(int(p["occurred_at"]))}
            for p in pays
        ],
    }  # fmt: skip


def _year_bounds(year: int) -> tuple[int, int]:
    return (
        to_micros(datetime(year, 1, 1, tzinfo=UTC)),
        to_micros(datetime(year + 1, 1, 1, tzinfo=UTC)),
    )


def statement(engine: Engine, store: str, customer_id: int, year: int) -> Statement:
    """The savings statement of a calendar year (UTC): for each of the customer's orders
    (not cancelled, store currency) placed while a membership gave benefits, the shipping
    and member discount it saved (`loyalty.memberships.order_saving`); the fees paid in the
    year; net = savings - fees."""
    start, end = _year_bounds(year)
    with engine.connect() as conn:
        row = _store(conn, store)
        if not loyalty_repo.customer_in_store(conn, row.id, customer_id):
            raise NotFoundError(f"no customer {customer_id} in this store", hint="")
        members = repo.customer_memberships(conn, row.id, customer_id)
        found = _windows(conn, row.id, members)
        pays = repo.payments(conn, [int(m["id"]) for m in members])
        placed = repo.customer_orders(conn, row.id, customer_id, start, end, row.currency)
        program = loyalty_service.load_program(conn, row.id)
    exponent = currency_exponent(row.currency)
    saved = []
    for order in placed:
        at = int(order["placed_at"])
        plan = next((p for _, p, w in found if in_windows(at, w)), None)
        if plan is not None:
            saved.append(
                order_saving(
                    plan, order, points_per_unit=program.earn.points_per_unit,
                    spend_basis=program.earn.spend_basis, exponent=exponent,
                )
            )  # fmt: skip
    fees = sum(
        int(p["amount_minor"])
        for p in pays
        if p["status"] == "paid" and start <= int(p["occurred_at"]) < end
    )
    return Statement(customer_id, year, row.currency, saved, fees)


# -- the report ------------------------------------------------------------------------------


@dataclass
class MembershipReport:
    """Members per plan, membership revenue per month, retention of members vs others.

    Retention: customers whose first order in the window [as_of - horizon - window,
    as_of - horizon) was placed while they were a member (trial/active) vs not; retained =
    another order within ``horizon_days`` after it (the window ends ``horizon_days`` before
    ``as_of`` so every customer is observed for the whole horizon).
    """

    store: str
    currency: str
    exponent: int
    as_of: int
    plans: list[dict[str, Any]]
    revenue: list[dict[str, Any]]
    window_start: int
    window_end: int
    horizon_days: int
    retention: dict[str, dict[str, Any]]

    @property
    def revenue_total_minor(self) -> int:
        return sum(int(r["amount_minor"]) for r in self.revenue)


def membership_report(
    db: str,
    store: str,
    *,
    as_of: int | None = None,
    window_days: int = 365,
    horizon_days: int = 90,
) -> MembershipReport:
    at = now_micros() if as_of is None else as_of
    window_end = at - days(horizon_days)
    window_start = window_end - days(window_days)
    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            row = _store(conn, store)
            plan_rows = repo.plans(conn, row.id)
            members = repo.all_memberships(conn, row.id)
            found = _windows(conn, row.id, members)
            pays = repo.store_payments(conn, row.id)
            firsts = repo.first_orders_and_repeats(
                conn, row.id, window_start, window_end, days(horizon_days), row.currency
            )
    finally:
        engine.dispose()
    counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for m in members:
        counts[int(m["plan_id"])][str(m["status"])] += 1
    plan_table = []
    for p in plan_rows:
        c = counts[int(p["id"])]
        plan_table.append(
            {"key": p["key"], "name": p["name"], "interval": p["interval"],
             "fee_minor": int(p["fee_minor"]), "offered": p["active"],
             **{s: c.get(s, 0) for s in ("trial", "active", "past_due", "cancelled", "expired")},
             "live": sum(c.get(s, 0) for s in LIVE)}
        )  # fmt: skip
    months: dict[str, dict[str, int]] = {}
    for p in pays:
        if p["status"] != "paid":
            continue
        month = from_micros(int(p["occurred_at"])).strftime("%Y-%m")
        slot = months.setdefault(month, {"payments": 0, "amount_minor": 0})
        slot["payments"] += 1
        slot["amount_minor"] += int(p["amount_minor"])
    windows: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for s, _, w in found:
        windows[s.customer_id] += w
    groups = {"members": [0, 0], "non_members": [0, 0]}
    for cid, first_at, again in firsts:
        g = groups["members" if in_windows(first_at, windows.get(cid, [])) else "non_members"]
        g[0] += 1
        g[1] += int(again)
    retention = {
        name: {"customers": n, "retained": r, "rate": (r / n) if n else None}
        for name, (n, r) in groups.items()
    }
    return MembershipReport(
        store=store, currency=row.currency, exponent=currency_exponent(row.currency), as_of=at,
        plans=plan_table,
        revenue=[{"month": k, **v} for k, v in sorted(months.items())],
        window_start=window_start, window_end=window_end, horizon_days=horizon_days,
        retention=retention,
    )  # fmt: skip


def membership_section(db: str, store: str, *, as_of: int | None = None) -> str:
    """The report's paid-memberships section (HTML fragment); "" when the store has no plans."""
    from boomerang.reports.memberships import render_membership_section

    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            offered = repo.has_plans(conn, _store(conn, store).id)
    finally:
        engine.dispose()
    if not offered:
        return ""
    report = membership_report(db, store, as_of=as_of)
    return render_membership_section(
        as_of=from_micros(report.as_of).strftime("%Y-%m-%d %H:%M UTC"),
        currency=report.currency,
        exponent=report.exponent,
        plans=report.plans,
        revenue=report.revenue,
        retention=report.retention,
        window=(
            from_micros(report.window_start).strftime("%Y-%m-%d"),
            from_micros(report.window_end).strftime("%Y-%m-%d"),
        ),
        horizon_days=report.horizon_days,
    )
