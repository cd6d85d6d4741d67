"""A store's loyalty program: earn rules, bonus campaigns, rewards, tiers, expiry.

Written as YAML/JSON (docs/loyalty.md) and validated here (pydantic) before it is stored,
so a bad file names the field and nothing changes. The arithmetic that turns an order into
points lives here too, so the ledger, the simulator of a proposed program and the docs
agree on one definition.
"""

from __future__ import annotations

import math
import string
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from boomerang.domain.clock import MICROS_PER_DAY, to_micros
from boomerang.errors import InputError

RewardKind = Literal[
    "amount_off", "percent_off", "free_shipping", "free_product", "store_credit", "donation",
    "early_access",
]  # fmt: skip


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EarnRules(_Model):
    """Points for spending and for actions (docs/loyalty.md#earn-rules)."""

    points_per_unit: Decimal = Field(Decimal(1), ge=0, description="points per 1 currency unit")
    # What the points are computed on (not `on:`, which YAML reads as true): "net" = items after discounts (no shipping, no tax),
    # "total" = what the customer paid, "subtotal" = items before discounts.
    spend_basis: Literal["net", "total", "subtotal"] = "net"
    first_order_bonus: int = Field(0, ge=0)
    account_created: int = Field(0, ge=0)
    newsletter_signup: int = Field(0, ge=0)
    review_written: int = Field(0, ge=0)
    social_share: int = Field(0, ge=0)
    birthday: int = Field(0, ge=0)
    referral: int = Field(0, ge=0)
    custom: dict[str, int] = Field(default_factory=dict)  # event type -> points
    # Chase's renewal-approaching bonus: points when a membership renewal is this close.
    renewal_bonus: int = Field(0, ge=0)
    renewal_days_before: int = Field(30, ge=1)
    pending_days: int = Field(0, ge=0, description="return window before points are spendable")


class Bonus(_Model):
    """A bonus campaign: multiply points earned on orders placed within [starts, ends)."""

    name: str
    multiplier: Decimal = Field(gt=0)
    starts: date
    ends: date

    @model_validator(mode="after")
    def _window(self) -> Bonus:
        if self.ends <= self.starts:
            raise ValueError(f"bonus {self.name!r} ends before it starts")
        return self


class Reward(_Model):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    name: str
    kind: RewardKind
    cost: int = Field(gt=0, description="points")
    value: int = Field(0, ge=0, description="minor units, or basis points for percent_off")
    per_customer_limit: int | None = Field(None, ge=1)
    tiers: list[str] = Field(default_factory=list, description="only these tiers (empty: all)")
    coupon_days: int = Field(30, ge=1, description="the coupon's validity")


class Tier(_Model):
    name: str
    threshold: int = Field(ge=0)
    multiplier: Decimal = Field(Decimal(1), gt=0)
    entry_points: int = Field(0, ge=0)
    perks: list[str] = Field(default_factory=list)


class Tiers(_Model):
    basis: Literal["points", "spend", "orders"] = "points"
    period: Literal["lifetime", "rolling_365", "calendar_year"] = "lifetime"
    levels: list[Tier] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ordered(self) -> Tiers:
        thresholds = [t.threshold for t in self.levels]
        if thresholds != sorted(thresholds) or len(set(thresholds)) != len(thresholds):
            raise ValueError("tier thresholds must increase strictly, lowest tier first")
        if len({t.name for t in self.levels}) != len(self.levels):
            raise ValueError("tier names must be unique")
        return self


class Expiry(_Model):
    # "lot": each lot expires `days` after it was earned; "inactivity": the whole balance
    # after `days` without earning or spending; "none": never.
    mode: Literal["none", "lot", "inactivity"] = "none"
    days: int = Field(365, ge=1)
    warn_days: int = Field(30, ge=0)


class ReferralReward(_Model):
    """What one side of a referral gets: a coupon (amount/percent off, free shipping),
    points, or store credit."""

    kind: Literal["amount_off", "percent_off", "free_shipping", "points", "store_credit"]
    value: int = Field(0, ge=0, description="minor units, basis points, or points")
    coupon_days: int = Field(60, ge=1, description="validity of a coupon reward")


SHARE_CHANNELS = ("email", "facebook", "messenger", "sms", "whatsapp", "copy")
SHARE_PLACEHOLDERS = ("first_name", "link", "friend_reward")


class Referrals(_Model):
    """Two-sided referrals (seed 000: the referrer gets $125 off, the friend $25)."""

    enabled: bool = False
    referrer_reward: ReferralReward | None = None
    friend_reward: ReferralReward | None = None
    min_order_minor: int = Field(0, ge=0, description="smallest first order that qualifies")
    refund_window_days: int = Field(30, ge=0, description="rewards wait until it passes")
    fraud_window_days: int = Field(365, ge=1, description="how far back device/payment match")
    link_base: str = Field("https://shop.example/r/", description="share link = base + code")
    share_texts: dict[str, str] = Field(
        default_factory=dict,
        description="per channel (email, facebook, messenger, sms, whatsapp, copy): a text "
        "with {first_name}, {link}, {friend_reward}; missing channels use the defaults",
    )

    @field_validator("share_texts")
    @classmethod
    def _share_texts(cls, texts: dict[str, str]) -> dict[str, str]:
        """Caught when the program is set, not when a customer first asks for their link."""
        for channel, text in texts.items():
            if channel not in SHARE_CHANNELS:
                raise ValueError(
                    f"unknown share channel {channel!r} (use {', '.join(SHARE_CHANNELS)})"
                )
            try:
                names = {n for _, n, _, _ in string.Formatter().parse(text) if n is not None}
            except ValueError as exc:
                raise ValueError(f"{channel}: {exc} (write {{{{ and }}}} for a brace)") from None
            unknown = names - set(SHARE_PLACEHOLDERS)
            if unknown:
                raise ValueError(
                    f"{channel}: unknown placeholder {{{sorted(unknown)[0]}}} "
                    "(use {first_name}, {link}, {friend_reward})"
                )
        return texts


class Program(_Model):
    earn: EarnRules = EarnRules()
    referrals: Referrals = Referrals()
    bonuses: list[Bonus] = Field(default_factory=list)
    rewards: list[Reward] = Field(default_factory=list)
    tiers: Tiers = Tiers()
    expiry: Expiry = Expiry()
    negative_balance: Literal["allow", "floor"] = "floor"

    @model_validator(mode="after")
    def _references(self) -> Program:
        if self.expiry.mode == "lot" and self.expiry.days <= self.earn.pending_days:
            raise ValueError(
                "expiry.days must be longer than earn.pending_days (the return window)"
            )
        names = {t.name for t in self.tiers.levels}
        for reward in self.rewards:
            unknown = set(reward.tiers) - names
            if unknown:
                raise ValueError(f"reward {reward.id!r} names unknown tier {sorted(unknown)[0]!r}")
        if len({r.id for r in self.rewards}) != len(self.rewards):
            raise ValueError("reward ids must be unique")
        return self

    def reward(self, reward_id: str) -> Reward:
        for reward in self.rewards:
            if reward.id == reward_id:
                return reward
        raise InputError(
            f"no reward {reward_id!r} in the program",
            hint="see `boomerang loyalty program show` for the catalogue",
        )

    def tier_named(self, name: str | None) -> Tier | None:
        return next((t for t in self.tiers.levels if t.name == name), None)


def parse_program(raw: Any, origin: str = "program") -> Program:
    """Validate plain data (YAML/JSON) into a Program; errors name the field."""
    try:
        return Program.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise InputError(
            f"{origin}: {where}: {first['msg']}",
            hint="fix that field (docs/loyalty.md lists every field and its default)",
        ) from None


# -- arithmetic ------------------------------------------------------------------------------


def order_base_minor(order: dict[str, int], on: str) -> int:
    """The amount points are computed on, in minor units, before refunds."""
    if on == "total":
        return int(order["total_minor"])
    if on == "subtotal":
        return int(order["subtotal_minor"])
    return max(0, int(order["subtotal_minor"]) - int(order["discount_minor"]))


def order_points(
    program: Program,
    order: dict[str, Any],
    *,
    exponent: int,
    tier: str | None = None,
    first_order: bool = False,
) -> int:
    """Points an order earns: base x points_per_unit x tier x bonus, pro-rata to what was
    not refunded, floored; plus the first-order bonus. Cancelled orders earn nothing."""
    if order["status"] == "cancelled":
        return 0
    base = order_base_minor(order, program.earn.spend_basis)
    total = int(order["total_minor"])
    refunded = int(order["refunded_minor"])
    kept = Decimal(1) if total <= 0 else max(Decimal(0), Decimal(total - refunded) / Decimal(total))
    multiplier = Decimal(1)
    level = program.tier_named(tier)
    if level is not None:
        multiplier *= level.multiplier
    placed = int(order["placed_at"])
    for bonus in program.bonuses:
        if _micros(bonus.starts) <= placed < _micros(bonus.ends):
            multiplier *= bonus.multiplier
    points = (
        Decimal(base) / Decimal(10**exponent) * program.earn.points_per_unit * multiplier * kept
    )
    award = math.floor(points)
    if first_order and kept > 0:
        award += program.earn.first_order_bonus
    return award


def _micros(day: date) -> int:
    return to_micros(datetime(day.year, day.month, day.day, tzinfo=UTC))


def lot_expiry(program: Program, earned_at: int) -> int | None:
    return (
        earned_at + program.expiry.days * MICROS_PER_DAY if program.expiry.mode == "lot" else None
    )


def action_points(program: Program, action: str) -> int:
    """Points for an action (account_created, newsletter_signup, review_written, ...)."""
    rules = program.earn
    fixed = {
        "account_created": rules.account_created,
        "newsletter_signup": rules.newsletter_signup,
        "review_written": rules.review_written,
        "social_share": rules.social_share,
        "birthday": rules.birthday,
        "referral": rules.referral,
    }
    if action in fixed:
        return fixed[action]
    if action in rules.custom:
        return rules.custom[action]
    raise InputError(
        f"the program gives no points for {action!r}",
        hint="actions: " + ", ".join([*fixed, *rules.custom]),
    )


def tier_for(program: Program, measure: int) -> str | None:
    """The highest tier whose threshold the measure reaches (None without tiers)."""
    reached = [t for t in program.tiers.levels if measure >= t.threshold]
    return reached[-1].name if reached else None
