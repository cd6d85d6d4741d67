"""Paid memberships (Amazon Prime / Thrive Market): plans, periods, the lifecycle, savings.

Pure: no database. The services layer (`services.memberships`) loads rows, calls these
functions under a row lock and writes back what they return, so the rules live in one
place and can be tested by hand (docs/memberships.md).

- **Plans** are validated here (pydantic) from a YAML ``plans:`` list; a bad file names
  the field (``plans.0.fee_minor (plan 'monthly'): Input should be ...``).
- **Periods.** A membership's paid periods are laid on a grid from its *anchor* (the end of
  the trial, or the start when there is none): the n-th period ends n calendar months (or
  years) after the anchor, the day clamped to the month's length, so a membership anchored
  on Jan 31 renews Feb 28 (29), Mar 31, Apr 30, ... and never drifts.
- **Lifecycle.** ``trial -> active -> past_due -> cancelled | expired`` as a function of
  the stored state, ``now`` and the periods that have been paid: `advance`.
- **Benefit windows** (`benefit_windows`): when the member actually had the benefits (the
  trial, and each paid period from the moment it was paid), which the savings statement
  and the points multiplier both use.
"""

from __future__ import annotations

import math
from calendar import monthrange
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from boomerang.domain.clock import MICROS_PER_DAY, from_micros, to_micros
from boomerang.errors import InputError
from boomerang.loyalty.program import order_base_minor

Interval = Literal["month", "year"]
Status = Literal["trial", "active", "past_due", "cancelled", "expired"]

TRIAL: Status = "trial"
ACTIVE: Status = "active"
PAST_DUE: Status = "past_due"
CANCELLED: Status = "cancelled"
EXPIRED: Status = "expired"
#: A membership in one of these states is *live*: a customer has at most one.
LIVE: tuple[Status, ...] = (TRIAL, ACTIVE, PAST_DUE)
#: The states whose members enjoy the plan's benefits.
BENEFIT_STATES: tuple[Status, ...] = (TRIAL, ACTIVE)

# Events for campaigns (written to `loyalty_events`, each once: see `advance`).
STARTED = "membership_started"
TRIAL_ENDING = "membership_trial_ending"
RENEWING = "membership_renewing"
RENEWED = "membership_renewed"
PAST_DUE_EVENT = "membership_past_due"
EXPIRED_EVENT = "membership_expired"
CANCELLED_EVENT = "membership_cancelled"


# -- plans -----------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Benefits(_Model):
    """What a member gets while the membership is in trial or active."""

    free_shipping: bool = False
    shipping_value_minor: int = Field(
        0, ge=0, description="the standard shipping fee a member is spared (for the statement)"
    )
    member_discount_bps: int = Field(0, ge=0, le=10_000, description="basis points off items")
    points_multiplier: Decimal = Field(Decimal(1), ge=1, description="on loyalty order points")
    early_access: bool = False


class Plan(_Model):
    """A membership plan: its fee per interval, the free trial, grace and notices."""

    key: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    name: str = Field(min_length=1, max_length=200)
    interval: Interval
    fee_minor: int = Field(ge=0, description="minor units of the store currency per interval")
    trial_days: int = Field(0, ge=0, le=366)
    grace_days: int = Field(7, ge=0, le=366, description="past due this long, then expired")
    renew_notice_days: int = Field(7, ge=0, le=366, description="renewing event this far ahead")
    trial_notice_days: int = Field(3, ge=0, le=366, description="trial-ending event this far ahead")
    benefits: Benefits = Benefits()

    @property
    def extras(self) -> dict[str, Any]:
        """What the `membership_plans.benefits` JSON column holds (benefits + notices)."""
        return {
            **self.benefits.model_dump(mode="json"),
            "renew_notice_days": self.renew_notice_days,
            "trial_notice_days": self.trial_notice_days,
        }


class PlansFile(_Model):
    plans: list[Plan]

    @field_validator("plans")
    @classmethod
    def _unique(cls, plans: list[Plan]) -> list[Plan]:
        keys = [p.key for p in plans]
        dup = next((k for k in keys if keys.count(k) > 1), None)
        if dup is not None:
            raise ValueError(f"plan key {dup!r} appears twice")
        return plans


def parse_plans(raw: Any, origin: str = "plans") -> list[Plan]:
    """Validate plain data (YAML/JSON: ``{plans: [...]}``) into plans; errors name the field."""
    try:
        return PlansFile.model_validate(raw if raw is not None else {}).plans
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = first["loc"]
        where = ".".join(str(p) for p in loc) or "(top level)"
        named = ""
        if len(loc) >= 2 and loc[0] == "plans" and isinstance(loc[1], int):
            try:
                key = raw["plans"][loc[1]].get("key")
            except (AttributeError, IndexError, KeyError, TypeError):
                key = None
            if isinstance(key, str):
                named = f" (plan {key!r})"
        raise InputError(
            f"{origin}: {where}{named}: {first['msg']}",
            hint="fix that field (docs/memberships.md lists every field and its default)",
        ) from None


def plan_from_row(row: dict[str, Any]) -> Plan:
    """A stored `membership_plans` row back into a Plan."""
    extras = dict(row["benefits"]) if isinstance(row["benefits"], dict) else {}
    renew = extras.pop("renew_notice_days", 7)
    trial = extras.pop("trial_notice_days", 3)
    return Plan(
        key=row["key"], name=row["name"], interval=row["interval"],
        fee_minor=int(row["fee_minor"]), trial_days=int(row["trial_days"]),
        grace_days=int(row["grace_days"]), renew_notice_days=int(renew),
        trial_notice_days=int(trial), benefits=Benefits.model_validate(extras),
    )  # fmt: skip


# -- periods ---------------------------------------------------------------------------------


def add_interval(moment: datetime, interval: Interval, n: int) -> datetime:
    """``moment`` plus ``n`` calendar months (or years), the day clamped to the month."""
    months = n if interval == "month" else 12 * n
    index = moment.year * 12 + (moment.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    day = min(moment.day, monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def period_end(anchor: int, start: int, interval: Interval) -> int:
    """The end of the period that starts at ``start`` on the grid laid from ``anchor``:
    the first grid point after ``start``."""
    base = from_micros(anchor)
    at = from_micros(start)
    steps = (at.year - base.year) * 12 + (at.month - base.month)
    n = max(0, steps if interval == "month" else steps // 12)
    # Land on the grid point at or before ``start``, then step once past it.
    while n > 0 and to_micros(add_interval(base, interval, n)) > start:
        n -= 1
    while to_micros(add_interval(base, interval, n)) <= start:
        n += 1
    return to_micros(add_interval(base, interval, n))


def days(n: int) -> int:
    return n * MICROS_PER_DAY


# -- the lifecycle ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Membership:
    """A membership row, as the lifecycle sees it."""

    id: int
    customer_id: int
    plan_key: str
    status: Status
    started_at: int
    trial_ends_at: int | None
    period_start: int
    period_end: int
    cancel_at_period_end: bool = False
    ended_at: int | None = None

    @property
    def anchor(self) -> int:
        """Where the grid of paid periods starts: the trial's end, else the start."""
        return self.trial_ends_at if self.trial_ends_at is not None else self.started_at

    @property
    def live(self) -> bool:
        return self.status in LIVE

    def next_period(self, plan: Plan) -> tuple[int, int]:
        """The period the next payment is for: from the current period's end (for a past-due
        membership, the unpaid period it is waiting for)."""
        return self.period_end, period_end(self.anchor, self.period_end, plan.interval)


@dataclass(frozen=True)
class LifecycleEvent:
    """An event for campaigns; ``dedupe_key`` makes it happen once however often computed."""

    kind: str
    dedupe_key: str
    payload: dict[str, Any] = field(default_factory=dict)


def event_key(membership_id: int, what: str, at: int | None = None) -> str:
    return f"membership:{membership_id}:{what}" + ("" if at is None else f":{at}")


def _payload(m: Membership, plan: Plan, **extra: Any) -> dict[str, Any]:
    return {"membership_id": m.id, "plan": plan.key, **extra}


def advance(
    m: Membership, plan: Plan, now: int, paid_starts: frozenset[int] | set[int]
) -> tuple[Membership, list[LifecycleEvent]]:
    """Everything due at ``now``: the new state and the events the transitions emit.

    ``paid_starts``: the starts of the periods with a paid payment. At the end of the
    trial or of a period: cancelled when the member asked to stop at the period end; else
    active for the next period when it is paid; else past due (the due date stays in
    ``period_end``). Past due: active again (the period starting at the due date) once that
    period is paid; expired ``grace_days`` after the due date. A jump over several
    boundaries (time travel, a job that did not run) takes every step in order. Then the
    notices of the state reached: ``trial_ending`` within ``trial_notice_days`` of the trial's
    end, ``renewing`` within ``renew_notice_days`` of an active period's end (not when the
    member is cancelling). Pure and deterministic: the dedupe keys name the membership and
    the date each event is about, so recomputing never writes an event twice.
    """
    events: list[LifecycleEvent] = []
    s = m
    for _ in range(10_000):  # a bound, not a limit anyone reaches: ~800 years of months
        if s.status in (TRIAL, ACTIVE):
            if now < s.period_end:
                break
            if s.cancel_at_period_end:
                s = replace(s, status=CANCELLED, ended_at=s.period_end)
                events.append(
                    LifecycleEvent(
                        CANCELLED_EVENT,
                        event_key(s.id, "cancelled"),
                        _payload(s, plan, ended_at=s.period_end, at_period_end=True),
                    )
                )
                break
            if s.period_end in paid_starts:
                s = _renew(s, plan, events)
                continue
            s = replace(s, status=PAST_DUE)
            events.append(
                LifecycleEvent(
                    PAST_DUE_EVENT,
                    event_key(s.id, "past_due", s.period_end),
                    _payload(
                        s,
                        plan,
                        due_at=s.period_end,
                        fee_minor=plan.fee_minor,
                        expires_at=s.period_end + days(plan.grace_days),
                    ),
                )
            )
            continue
        if s.status == PAST_DUE:
            if s.period_end in paid_starts:
                s = _renew(s, plan, events)
                continue
            deadline = s.period_end + days(plan.grace_days)
            if now >= deadline:
                s = replace(s, status=EXPIRED, ended_at=deadline)
                events.append(
                    LifecycleEvent(
                        EXPIRED_EVENT,
                        event_key(s.id, "expired"),
                        _payload(s, plan, due_at=s.period_end, ended_at=deadline),
                    )
                )
        break
    if (
        s.status == TRIAL
        and s.trial_ends_at is not None
        and 0 < s.trial_ends_at - now <= days(plan.trial_notice_days)
    ):
        events.append(
            LifecycleEvent(
                TRIAL_ENDING,
                event_key(s.id, "trial_ending", s.trial_ends_at),
                _payload(
                    s,
                    plan,
                    trial_ends_at=s.trial_ends_at,
                    will_renew=not s.cancel_at_period_end,
                    fee_minor=plan.fee_minor,
                ),
            )
        )
    if (
        s.status == ACTIVE
        and not s.cancel_at_period_end
        and 0 < s.period_end - now <= days(plan.renew_notice_days)
    ):
        events.append(
            LifecycleEvent(
                RENEWING,
                event_key(s.id, "renewing", s.period_end),
                _payload(s, plan, renews_at=s.period_end, fee_minor=plan.fee_minor),
            )
        )
    return s, events


def _renew(s: Membership, plan: Plan, events: list[LifecycleEvent]) -> Membership:
    start, end = s.next_period(plan)
    events.append(
        LifecycleEvent(
            RENEWED,
            event_key(s.id, "renewed", start),
            _payload(s, plan, period_start=start, period_end=end, previous=s.status),
        )
    )
    return replace(s, status=ACTIVE, period_start=start, period_end=end)


# -- benefits --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Payment:
    period_start: int
    period_end: int
    amount_minor: int
    status: str  # paid | failed | refunded
    occurred_at: int


def benefit_windows(m: Membership, payments: list[Payment]) -> list[tuple[int, int]]:
    """When the member had the plan's benefits, as [start, end) windows: the trial, and each
    paid period from the moment it was paid (a late payment does not give back the days spent
    past due), all cut at ``ended_at`` (an immediate cancellation)."""
    stop = m.ended_at if m.ended_at is not None else math.inf
    out: list[tuple[int, int]] = []
    if m.trial_ends_at is not None:
        end = min(m.trial_ends_at, stop)
        if m.started_at < end:
            out.append((m.started_at, int(end)))
    for p in payments:
        if p.status != "paid":
            continue
        start, end = max(p.period_start, p.occurred_at), min(p.period_end, stop)
        if start < end:
            out.append((start, int(end)))
    return sorted(out)


def in_windows(at: int, windows: list[tuple[int, int]]) -> bool:
    return any(start <= at < end for start, end in windows)


# -- savings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderSaving:
    order_ref: str
    placed_at: int
    plan_key: str
    shipping_saved_minor: int
    discount_saved_minor: int
    extra_points: int

    @property
    def saved_minor(self) -> int:
        return self.shipping_saved_minor + self.discount_saved_minor


def order_saving(
    plan: Plan,
    order: dict[str, Any],
    *,
    points_per_unit: Decimal = Decimal(1),
    spend_basis: str = "net",
    exponent: int = 2,
) -> OrderSaving:
    """What the membership saved on one order placed while it gave benefits:

    - free shipping: the plan's ``shipping_value_minor`` when the order was shipped free
      (``shipping_minor == 0``); an order that paid shipping saved nothing;
    - member discount: ``member_discount_bps`` of the order's item subtotal (list prices,
      before any discount), rounded half up to the minor unit, per order;
    - extra points (informational, not money): the loyalty points the multiplier adds,
      ⌊points base × points_per_unit × (multiplier − 1)⌋ on the program's spend basis.
    """
    b = plan.benefits
    shipping = (
        b.shipping_value_minor if b.free_shipping and int(order["shipping_minor"]) == 0 else 0
    )
    discount = int(
        (Decimal(int(order["subtotal_minor"])) * b.member_discount_bps / Decimal(10_000)).quantize(
            Decimal(1), rounding=ROUND_HALF_UP
        )
    )
    base = Decimal(order_base_minor(order, spend_basis)) / Decimal(10**exponent)
    extra = math.floor(base * points_per_unit * (b.points_multiplier - 1))
    return OrderSaving(
        str(order["external_id"]), int(order["placed_at"]), plan.key, shipping, discount, extra
    )


@dataclass(frozen=True)
class Statement:
    """A member's savings over a calendar year (UTC): "you saved $X this year"."""

    customer_id: int
    year: int
    currency: str
    orders: list[OrderSaving]
    fees_paid_minor: int

    @property
    def shipping_saved_minor(self) -> int:
        return sum(o.shipping_saved_minor for o in self.orders)

    @property
    def discount_saved_minor(self) -> int:
        return sum(o.discount_saved_minor for o in self.orders)

    @property
    def saved_minor(self) -> int:
        return self.shipping_saved_minor + self.discount_saved_minor

    @property
    def net_saved_minor(self) -> int:
        """Savings minus the membership fees paid in the year (negative: it cost more)."""
        return self.saved_minor - self.fees_paid_minor

    @property
    def extra_points(self) -> int:
        return sum(o.extra_points for o in self.orders)

    def as_dict(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "year": self.year,
            "currency": self.currency,
            "member_orders": len(self.orders),
            "shipping_saved_minor": self.shipping_saved_minor,
            "discount_saved_minor": self.discount_saved_minor,
            "saved_minor": self.saved_minor,
            "fees_paid_minor": self.fees_paid_minor,
            "net_saved_minor": self.net_saved_minor,
            "extra_points": self.extra_points,
            "orders": [
                {
                    "order": o.order_ref,
                    "placed_at": from_micros(o.placed_at).isoformat(),
                    "plan": o.plan_key,
                    "shipping_saved_minor": o.shipping_saved_minor,
                    "discount_saved_minor": o.discount_saved_minor,
                    "extra_points": o.extra_points,
                }
                for o in self.orders
            ],
        }
