"""Replay a proposed loyalty program over a store's past orders, before launch.

Pure: a `Program`, an orders frame and the assumptions in, a `SimulationResult` out; no
database. The arithmetic is the ledger's (`order_points`, `lot_expiry`, `tier_for`, the
spending order of `plan_spend`), so what the simulator predicts is what the ledger would
book for the same orders. docs/loyalty.md#simulating-a-program-before-launch defines every
figure; in short:

* The program starts at ``start`` with every balance at zero; the orders in
  [start, end) are replayed in time order, each customer on their own.
* An order earns `order_points` as it finally stands (refunds pro-rata, cancelled 0): the
  return window and later clawbacks are not replayed, their net is booked at placement.
  The first-order bonus goes to the customer's first non-cancelled order in the whole
  history, as `services.loyalty.award_order` decides it (a customer who bought before the
  launch gets none).
* `earn.account_created` points go to every customer with an order in the window, at their
  first one (every buyer had an account). Other actions (newsletter, reviews, shares,
  birthdays, referrals, custom actions) and the renewal bonus are not in the order history
  and are not simulated.
* Tiers are evaluated as `services.loyalty.evaluate_tier` does, when each order arrives
  (before its points: a due downgrade applies to it) and after its points (an upgrade at
  once, with the tier's entry points, a lot expiring like any other), and at
  the end of the window. Points basis = points credited in the simulation; spend and
  orders bases = the store's non-cancelled orders (before the launch too) in the period.
* Expiry runs as if the daily job ran continuously: a lot at its `lot_expiry` (expires at
  or before a moment = gone at that moment); with ``inactivity`` the whole balance
  ``days`` after the last earn or redemption.
* Redemption (deterministic): after every order a customer redeems the cheapest reward open
  to their tier (and under its per-customer limit) while the balance covers its cost AND
  the points redeemed so far stay within ``redemption_rate`` x the points earned so far.
  A rate of 1 redeems whenever the balance allows, 0 never; 0.6 lets about 60% of earned
  points be redeemed (less what expires first). Spending takes soonest-expiring lots first.
* Money: one point costs the store ``point_value_minor`` (minor units): by default the
  most generous money reward of the catalogue (amount_off or store_credit: the highest
  value per point, what a customer choosing the best deal gets; prudent). Redemption cost
  = redeemed points x point value, whatever reward was taken; liability = outstanding
  points x point value; cost = both, as % of the window's revenue (non-cancelled orders'
  total - refunded, guests included).
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from boomerang.domain.clock import MICROS_PER_DAY, from_micros, to_micros
from boomerang.domain.money import currency_exponent
from boomerang.errors import InputError
from boomerang.loyalty.ledger import Lot, plan_spend
from boomerang.loyalty.program import Program, Reward, lot_expiry, order_points, tier_for

DEFAULT_REDEMPTION_RATE = Decimal("0.6")
REVIEW_MICROS = 365 * MICROS_PER_DAY  # a tier's review date: a year after the last change
MONEY_REWARDS = ("amount_off", "store_credit")
ORDER_COLUMNS = (
    "customer_id", "placed_at", "currency", "subtotal_minor", "discount_minor", "total_minor",
    "refunded_minor", "status",
)  # fmt: skip
NO_TIER = "(none)"


class Assumptions(BaseModel):
    """What the order history cannot tell: how much of the points gets redeemed and what
    a point costs. Also readable from a program file's optional ``simulation:`` section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    redemption_rate: Decimal = Field(
        DEFAULT_REDEMPTION_RATE, ge=0, le=1, description="fraction of earned points redeemed"
    )
    point_value_minor: Decimal | None = Field(
        None, ge=0, description="cost of one point in minor units; default from the rewards"
    )


def parse_assumptions(raw: Any, origin: str = "simulation") -> Assumptions:
    try:
        return Assumptions.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise InputError(
            f"{origin}: simulation.{where}: {first['msg']}",
            hint="simulation: takes redemption_rate (0 to 1) and point_value_minor (>= 0)",
        ) from None


@dataclass(frozen=True)
class MonthFigures:
    month: date  # the month's first day (UTC)
    issued: int
    redeemed: int
    expired: int


@dataclass
class SimulationResult:
    currency: str
    start: int  # epoch micros, inclusive
    end: int  # epoch micros, exclusive; balances are as of this moment
    redemption_rate: Decimal
    point_value_minor: Decimal  # exact for display; money below is computed exactly
    point_value_source: str  # "reward <id>" or "assumption"
    members: int  # customers with an order in the window
    orders: int  # orders in the window (store currency, guests and cancelled included)
    revenue_minor: int
    points_issued: int
    issued_by_source: dict[str, int]  # orders, first_order_bonus, account_created, tier_entry
    points_redeemed: int
    points_expired: int
    points_outstanding: int
    expected_outstanding_redeemed: int  # the part of the outstanding the rate says will go
    redemptions: int
    redemptions_by_reward: dict[str, int]
    redeemers: int  # customers with at least one redemption
    redemption_cost_minor: int
    liability_minor: int
    cost_minor: int  # redemption cost + liability
    cost_pct_of_revenue: float | None  # None without revenue
    expected_cost_minor: int  # redemption cost + the liability expected to be redeemed
    expected_cost_pct_of_revenue: float | None
    tier_mix: dict[str, int]  # tier -> customers at the end, program order
    monthly: list[MonthFigures] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def records(self) -> dict[str, Any]:
        """JSON-ready: money in integer minor units, times as ISO UTC, months as YYYY-MM."""
        return {
            "currency": self.currency,
            "start": from_micros(self.start).isoformat(),
            "end": from_micros(self.end).isoformat(),
            "redemption_rate": float(self.redemption_rate),
            "point_value_minor": float(self.point_value_minor),
            "point_value_source": self.point_value_source,
            "members": self.members,
            "orders": self.orders,
            "revenue_minor": self.revenue_minor,
            "points_issued": self.points_issued,
            "issued_by_source": self.issued_by_source,
            "points_redeemed": self.points_redeemed,
            "points_expired": self.points_expired,
            "points_outstanding": self.points_outstanding,
            "expected_outstanding_redeemed": self.expected_outstanding_redeemed,
            "redemptions": self.redemptions,
            "redemptions_by_reward": self.redemptions_by_reward,
            "redeemers": self.redeemers,
            "redemption_cost_minor": self.redemption_cost_minor,
            "liability_minor": self.liability_minor,
            "cost_minor": self.cost_minor,
            "cost_pct_of_revenue": _pct(self.cost_pct_of_revenue),
            "expected_cost_minor": self.expected_cost_minor,
            "expected_cost_pct_of_revenue": _pct(self.expected_cost_pct_of_revenue),
            "tier_mix": self.tier_mix,
            "monthly": [
                {
                    "month": m.month.strftime("%Y-%m"),
                    "issued": m.issued,
                    "redeemed": m.redeemed,
                    "expired": m.expired,
                }
                for m in self.monthly
            ],
            "notes": self.notes,
        }


def _pct(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def point_value(program: Program) -> tuple[Fraction, Reward] | None:
    """What a point costs the store: the highest value per point among the money rewards
    (amount_off, store_credit) of the catalogue; None when there is none."""
    priced = [r for r in program.rewards if r.kind in MONEY_REWARDS and r.value > 0]
    if not priced:
        return None
    best = max(priced, key=lambda r: (Fraction(r.value, r.cost), -r.cost))
    return Fraction(best.value, best.cost), best


# -- the replay --------------------------------------------------------------------------------


@dataclass
class _Lot:
    left: int
    expires: int | None
    at: int


@dataclass
class _Member:
    """One customer's simulated account."""

    lots: dict[int, _Lot] = field(default_factory=dict)  # open lots by id (creation order)
    credits: list[tuple[int, int]] = field(default_factory=list)  # (at, points) earned
    spend: list[tuple[int, int]] = field(default_factory=list)  # (at, net) non-cancelled
    active: bool = False  # has had an order in the window (a member)
    joined: bool = False  # has a tier record (evaluated at least once)
    tier: str | None = None
    review_at: int = 0
    earned: int = 0
    redeemed: int = 0
    last_activity: int | None = None
    uses: Counter[str] = field(default_factory=Counter)

    def balance(self) -> int:
        return sum(lot.left for lot in self.lots.values())


class _Replay:
    def __init__(
        self, program: Program, exponent: int, rate: Fraction, months: Counter[tuple[date, str]]
    ) -> None:
        self.p = program
        self.exponent = exponent
        self.rate_num, self.rate_den = rate.numerator, rate.denominator
        self.catalogue = sorted(program.rewards, key=lambda r: (r.cost, r.id))  # cheapest first
        self.months = months
        self.rank = {t.name: i for i, t in enumerate(program.tiers.levels)}
        self.sources: Counter[str] = Counter()
        self.redeemed_by: Counter[str] = Counter()
        self.expired = 0
        self.next_lot = 0

    # points in and out ----------------------------------------------------------------------

    def credit(self, m: _Member, points: int, at: int, expires: int | None, source: str) -> None:
        if points <= 0:
            return
        self.next_lot += 1
        m.lots[self.next_lot] = _Lot(points, expires, at)
        m.credits.append((at, points))
        m.earned += points
        m.last_activity = at
        self.sources[source] += points
        self.months[(_month(at), "issued")] += points

    def expire(self, m: _Member, now: int) -> None:
        """Everything due by ``now``: lots expiring at or before it; with `inactivity` the
        whole balance once ``days`` have passed since the last earn or redemption."""
        mode = self.p.expiry.mode
        if mode == "lot":
            due = [i for i, lot in m.lots.items() if lot.expires is not None and lot.expires <= now]
            for i in due:
                lot = m.lots.pop(i)
                self._expired(lot.left, int(lot.expires or 0))
        elif mode == "inactivity" and m.last_activity is not None and m.lots:
            deadline = m.last_activity + self.p.expiry.days * MICROS_PER_DAY
            if deadline < now:
                self._expired(m.balance(), deadline)
                m.lots.clear()

    def _expired(self, points: int, at: int) -> None:
        if points > 0:
            self.expired += points
            self.months[(_month(at), "expired")] += points

    def redeem(self, m: _Member, at: int) -> None:
        """Redeem the cheapest open reward while the balance covers it and the redeemed
        points stay within rate x earned."""
        while True:
            reward = next(
                (
                    r
                    for r in self.catalogue
                    if (not r.tiers or m.tier in r.tiers)
                    and (r.per_customer_limit is None or m.uses[r.id] < r.per_customer_limit)
                ),
                None,
            )
            if reward is None or m.balance() < reward.cost:
                return
            # redeemed + cost <= rate x earned, in integers (rate = num / den)
            if (m.redeemed + reward.cost) * self.rate_den > m.earned * self.rate_num:
                return
            lots = [Lot(i, v.left, v.expires, v.at) for i, v in m.lots.items()]
            takes, short = plan_spend(lots, reward.cost)
            assert short == 0
            for lot_id, taken in takes:
                m.lots[lot_id].left -= taken
                if m.lots[lot_id].left == 0:
                    del m.lots[lot_id]
            m.redeemed += reward.cost
            m.uses[reward.id] += 1
            m.last_activity = at
            self.redeemed_by[reward.id] += 1
            self.months[(_month(at), "redeemed")] += reward.cost

    # tiers -----------------------------------------------------------------------------------

    def measure(self, m: _Member, at: int) -> int:
        since = _period_start(self.p, at)
        if self.p.tiers.basis == "points":
            return sum(p for t, p in m.credits if since is None or t >= since)
        rows = [net for t, net in m.spend if (since is None or t >= since) and t <= at]
        return len(rows) if self.p.tiers.basis == "orders" else sum(rows)

    def evaluate(self, m: _Member, at: int) -> None:
        """`services.loyalty.evaluate_tier`: up at once (entry points), down only when the
        review date (a year after the last change) has come."""
        if not self.p.tiers.levels:
            return
        target = tier_for(self.p, self.measure(m, at))
        old = m.tier if m.joined else None
        up = target is not None and (old is None or self.rank.get(target, -1) > self.rank[old])
        down_due = m.joined and at >= m.review_at
        new = target if up or (down_due and target != old) else old
        if new != old or not m.joined:
            m.joined, m.tier, m.review_at = True, new, at + REVIEW_MICROS
        level = self.p.tier_named(new)
        if up and level is not None and level.entry_points:
            self.credit(m, level.entry_points, at, lot_expiry(self.p, at), "tier_entry")


def simulate(
    program: Program,
    orders: pl.DataFrame,
    *,
    currency: str,
    assumptions: Assumptions | None = None,
    start: int | None = None,
    end: int | None = None,
) -> SimulationResult:
    """Replay ``program`` over ``orders`` (columns: customer_id (null for guests),
    placed_at (epoch micros), currency, subtotal/discount/total/refunded_minor, status).

    ``start``/``end`` (epoch micros): the window, [start, end); default from the first order
    to the midnight (UTC) after the last. Orders before ``start`` only decide first-order
    bonuses and the spend/orders tier measures.
    """
    a = assumptions or Assumptions()
    missing = [c for c in ORDER_COLUMNS if c not in orders.columns]
    if missing:
        raise InputError(f"orders frame lacks {', '.join(missing)}", hint="see ORDER_COLUMNS")
    notes: list[str] = []
    valued = point_value(program)
    if a.point_value_minor is not None:
        pv, pv_source = Fraction(a.point_value_minor), "assumption"
    elif valued is not None:
        pv, pv_source = valued[0], f"reward {valued[1].id}"
    else:
        raise InputError(
            "the program has no amount_off or store_credit reward to price a point",
            hint="give the cost of one point in minor units (--point-value, or "
            "simulation.point_value_minor in the file)",
        )
    if not program.rewards:
        notes.append("the program has no rewards: nothing can be redeemed")

    code = currency.upper()
    other = orders.filter(pl.col("currency").str.to_uppercase() != code).height
    if other:
        notes.append(f"{other:,} orders in another currency than {code} were left out")
    ties = [c for c in ("id", "external_id") if c in orders.columns][:1]
    history = orders.filter(pl.col("currency").str.to_uppercase() == code).sort(
        ["customer_id", "placed_at", *ties], nulls_last=True, maintain_order=True
    )
    if history.height == 0:
        raise InputError(f"no orders in {code} to simulate on", hint="import the orders first")
    placed = history["placed_at"]
    first_at, last_at = int(placed.min()), int(placed.max())  # type: ignore[arg-type]
    begin = first_at if start is None else start
    stop = _next_midnight(last_at) if end is None else end
    window = history.filter((pl.col("placed_at") >= begin) & (pl.col("placed_at") < stop))
    if window.height == 0:
        raise InputError(
            f"no orders between {from_micros(begin):%Y-%m-%d} and {from_micros(stop):%Y-%m-%d}",
            hint="widen --from/--to (or leave them out for the whole history)",
        )
    live = window.filter(pl.col("status") != "cancelled")
    revenue = int((live["total_minor"] - live["refunded_minor"]).sum())
    guests = window.filter(pl.col("customer_id").is_null()).height
    if guests:
        notes.append(f"{guests:,} guest orders earn nothing (no account)")

    rate = Fraction(a.redemption_rate)
    months: Counter[tuple[date, str]] = Counter()
    replay = _Replay(program, currency_exponent(code), rate, months)
    members: dict[int, _Member] = {}
    rows = history.filter(pl.col("customer_id").is_not_null() & (pl.col("placed_at") < stop))
    for order in rows.iter_rows(named=True):
        cid, at = int(order["customer_id"]), int(order["placed_at"])
        cancelled = order["status"] == "cancelled"
        net = int(order["total_minor"]) - int(order["refunded_minor"])
        if at < begin:  # before the launch: only history
            m = members.setdefault(cid, _Member())
            if not cancelled:
                m.spend.append((at, net))
            continue
        m = members.setdefault(cid, _Member())
        replay.expire(m, at)
        if not m.active:  # the customer's first order in the window: the account's points
            m.active = True
            replay.credit(m, program.earn.account_created, at, lot_expiry(program, at), "account_created")  # fmt: skip
        replay.evaluate(m, at)
        first = not any(t < at for t, _ in m.spend)
        award = order_points(program, order, exponent=replay.exponent, tier=m.tier, first_order=first)  # fmt: skip
        bonus = 0
        if first and award:
            bonus = award - order_points(program, order, exponent=replay.exponent, tier=m.tier)
        replay.credit(m, award - bonus, at, lot_expiry(program, at), "orders")
        replay.credit(m, bonus, at, lot_expiry(program, at), "first_order_bonus")
        if not cancelled:
            m.spend.append((at, net))
        replay.evaluate(m, at)
        replay.redeem(m, at)

    active = {cid: m for cid, m in members.items() if m.active}
    for m in active.values():
        replay.expire(m, stop)
        replay.evaluate(m, stop)

    issued = sum(replay.sources.values())
    redeemed = sum(m.redeemed for m in active.values())
    outstanding = sum(m.balance() for m in active.values())
    if issued != redeemed + replay.expired + outstanding:  # pragma: no cover - a bug
        raise AssertionError("simulated points do not balance")
    expected_left = sum(
        min(m.balance(), max(0, math.floor(rate * m.earned - m.redeemed))) for m in active.values()
    )
    redemption_cost = round(redeemed * pv)
    liability = round(outstanding * pv)
    cost = round((redeemed + outstanding) * pv)
    expected_cost = round((redeemed + expected_left) * pv)
    mix: dict[str, int] = {}
    if program.tiers.levels:
        counts = Counter(m.tier or NO_TIER for m in active.values())
        mix = {t.name: counts.get(t.name, 0) for t in program.tiers.levels}
        if counts.get(NO_TIER):
            mix[NO_TIER] = counts[NO_TIER]
    notes.append(
        "not simulated: newsletter, review, share, birthday, referral and custom action "
        "points, the renewal bonus, the return window (refunds are booked at placement)"
    )
    return SimulationResult(
        currency=code,
        start=begin,
        end=stop,
        redemption_rate=a.redemption_rate,
        point_value_minor=Decimal(pv.numerator) / Decimal(pv.denominator),
        point_value_source=pv_source,
        members=len(active),
        orders=window.height,
        revenue_minor=revenue,
        points_issued=issued,
        issued_by_source={
            k: replay.sources.get(k, 0)
            for k in ("orders", "first_order_bonus", "account_created", "tier_entry")
        },
        points_redeemed=redeemed,
        points_expired=replay.expired,
        points_outstanding=outstanding,
        expected_outstanding_redeemed=expected_left,
        redemptions=sum(replay.redeemed_by.values()),
        redemptions_by_reward=dict(sorted(replay.redeemed_by.items())),
        redeemers=sum(1 for m in active.values() if m.redeemed),
        redemption_cost_minor=redemption_cost,
        liability_minor=liability,
        cost_minor=cost,
        cost_pct_of_revenue=_share(Fraction(cost), revenue),
        expected_cost_minor=expected_cost,
        expected_cost_pct_of_revenue=_share(Fraction(expected_cost), revenue),
        tier_mix=mix,
        monthly=_monthly(months, begin, stop),
        notes=notes,
    )


def _share(cost: Fraction, revenue: int) -> float | None:
    return float(cost * 100 / revenue) if revenue > 0 else None


def _period_start(program: Program, at: int) -> int | None:
    """The start of the tier measure's period (as `services.loyalty._period_start`)."""
    if program.tiers.period == "lifetime":
        return None
    if program.tiers.period == "rolling_365":
        return at - 365 * MICROS_PER_DAY
    return to_micros(datetime(from_micros(at).year, 1, 1, tzinfo=UTC))


def _month(at: int) -> date:
    return _month_of_day(at // MICROS_PER_DAY)


@functools.lru_cache(maxsize=4096)
def _month_of_day(day: int) -> date:
    return (date(1970, 1, 1) + timedelta(days=day)).replace(day=1)


def _next_midnight(at: int) -> int:
    return (at // MICROS_PER_DAY + 1) * MICROS_PER_DAY


def _monthly(months: Counter[tuple[date, str]], begin: int, stop: int) -> list[MonthFigures]:
    out: list[MonthFigures] = []
    month, last = _month(begin), _month(stop - 1)
    while month <= last:
        out.append(
            MonthFigures(
                month,
                months.get((month, "issued"), 0),
                months.get((month, "redeemed"), 0),
                months.get((month, "expired"), 0),
            )
        )
        month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return out
