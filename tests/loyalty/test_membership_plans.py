"""Paid memberships, the pure part (no database): plan files, period arithmetic, the
lifecycle state machine, benefit windows and the savings of one order, all by hand."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from boomerang.domain.clock import MICROS_PER_DAY, to_micros
from boomerang.errors import InputError
from boomerang.loyalty.memberships import (
    Benefits,
    Membership,
    Payment,
    Plan,
    advance,
    benefit_windows,
    order_saving,
    parse_plans,
    period_end,
    plan_from_row,
)

DAY = MICROS_PER_DAY
EXAMPLE = Path(__file__).parents[2] / "examples" / "membership-plans.yaml"


def us(y: int, m: int, d: int, h: int = 0) -> int:
    return to_micros(datetime(y, m, d, h, tzinfo=UTC))


# -- plan files ------------------------------------------------------------------------------


def test_example_file_parses() -> None:
    plans = parse_plans(yaml.safe_load(EXAMPLE.read_text()))
    monthly, annual = plans
    assert (monthly.key, monthly.interval, monthly.fee_minor, monthly.trial_days) == (
        "plus-monthly", "month", 999, 30,
    )  # fmt: skip
    assert (annual.interval, annual.fee_minor, annual.trial_days) == ("year", 9900, 0)
    assert annual.benefits == monthly.benefits == Benefits(
        free_shipping=True, shipping_value_minor=599, member_discount_bps=500,
        points_multiplier=Decimal(2), early_access=True,
    )  # fmt: skip
    assert monthly.grace_days == 7 and monthly.renew_notice_days == 7
    assert monthly.trial_notice_days == 3


def _plan(**over: Any) -> dict[str, Any]:
    return {"key": "m", "name": "Monthly", "interval": "month", "fee_minor": 999, **over}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"plans": [_plan(fee_minor=-1)]},
         "plans.0.fee_minor (plan 'm'): Input should be greater than or equal to 0"),
        ({"plans": [_plan(interval="week")]}, "plans.0.interval (plan 'm'): Input should be 'month' or 'year'"),
        ({"plans": [_plan(), _plan(key="y", benefits={"member_discount_bps": 10001})]},
         "plans.1.benefits.member_discount_bps (plan 'y'): Input should be less than or equal to 10000"),
        ({"plans": [_plan(benefits={"points_multiplier": "0.5"})]},
         "plans.0.benefits.points_multiplier (plan 'm'): Input should be greater than or equal to 1"),
        ({"plans": [_plan(benefits={"free_shiping": True})]},
         "plans.0.benefits.free_shiping (plan 'm'): Extra inputs are not permitted"),
        ({"plans": [_plan(key="Bad Key")]}, "plans.0.key (plan 'Bad Key'): String should match pattern"),
        ({"plans": [{"name": "No key", "interval": "year", "fee_minor": 1}]}, "plans.0.key: Field required"),
        ({"plans": [_plan(trial_days=-3)]}, "plans.0.trial_days (plan 'm'): Input should be greater"),
        ({"plans": [_plan(), _plan()]}, "plans: Value error, plan key 'm' appears twice"),
        (None, "plans: Field required"),
        ({"plan": []}, "plans: Field required"),
    ],
)  # fmt: skip
def test_plan_errors_name_the_field(raw: Any, message: str) -> None:
    with pytest.raises(InputError) as err:
        parse_plans(raw, origin="plans.yaml")
    assert err.value.message.startswith(f"plans.yaml: {message}"), err.value.message


def test_plan_round_trips_through_its_row() -> None:
    plan = parse_plans(yaml.safe_load(EXAMPLE.read_text()))[0]
    row = {**plan.model_dump(mode="json"), "benefits": plan.extras}
    assert plan_from_row(row) == plan


# -- periods ---------------------------------------------------------------------------------


def test_months_are_calendar_months_clamped_and_anchored() -> None:
    anchor = us(2027, 1, 31, 9)
    ends = []
    start = anchor
    for _ in range(4):
        start = period_end(anchor, start, "month")
        ends.append(start)
    # Feb has 28 days in 2027; the anchor day comes back in March (no drift).
    assert ends == [us(2027, 2, 28, 9), us(2027, 3, 31, 9), us(2027, 4, 30, 9), us(2027, 5, 31, 9)]
    assert period_end(us(2028, 1, 31), us(2028, 1, 31), "month") == us(2028, 2, 29)


def test_years_clamp_leap_days() -> None:
    anchor = us(2028, 2, 29)
    assert period_end(anchor, anchor, "year") == us(2029, 2, 28)
    assert period_end(anchor, us(2031, 2, 28), "year") == us(2032, 2, 29)
    assert period_end(us(2027, 3, 15), us(2027, 3, 15), "year") == us(2028, 3, 15)


# -- the lifecycle ---------------------------------------------------------------------------

PLAN = Plan(
    key="m", name="Monthly", interval="month", fee_minor=999, trial_days=30, grace_days=7,
    benefits=Benefits(free_shipping=True, shipping_value_minor=599, member_discount_bps=500,
                      points_multiplier=Decimal(2)),
)  # fmt: skip
T0 = us(2027, 1, 10)
TRIAL_END = T0 + 30 * DAY  # 2027-02-09
M = Membership(1, 7, "m", "trial", T0, TRIAL_END, T0, TRIAL_END)


def kinds(events: list[Any]) -> list[str]:
    return [e.kind for e in events]


def test_trial_notice_then_conversion() -> None:
    assert advance(M, PLAN, TRIAL_END - 4 * DAY, set()) == (M, [])
    same, events = advance(M, PLAN, TRIAL_END - 3 * DAY, set())
    assert same == M and kinds(events) == ["membership_trial_ending"]
    assert events[0].dedupe_key == f"membership:1:trial_ending:{TRIAL_END}"
    new, events = advance(M, PLAN, TRIAL_END, {TRIAL_END})
    assert (new.status, new.period_start, new.period_end) == ("active", TRIAL_END, us(2027, 3, 9))
    assert kinds(events) == ["membership_renewed"]


def test_unpaid_trial_goes_past_due_then_expires_after_grace() -> None:
    due, events = advance(M, PLAN, TRIAL_END, set())
    assert due.status == "past_due" and due.period_end == TRIAL_END
    assert kinds(events) == ["membership_past_due"]
    assert advance(due, PLAN, TRIAL_END + 7 * DAY - 1, set()) == (due, [])
    gone, events = advance(due, PLAN, TRIAL_END + 7 * DAY, set())
    assert (gone.status, gone.ended_at) == ("expired", TRIAL_END + 7 * DAY)
    assert kinds(events) == ["membership_expired"]


def test_a_jump_takes_every_step_in_order() -> None:
    # Paid for two periods, then nothing: a job that did not run for 70 days catches up.
    mar9, apr9 = us(2027, 3, 9), us(2027, 4, 9)
    new, events = advance(M, PLAN, apr9 + 8 * DAY, {TRIAL_END, mar9})
    assert kinds(events) == [
        "membership_renewed", "membership_renewed", "membership_past_due", "membership_expired",
    ]  # fmt: skip
    assert (new.status, new.period_start, new.period_end) == ("expired", mar9, apr9)


def test_renewing_notice_only_when_renewing() -> None:
    active = Membership(1, 7, "m", "active", T0, None, T0, us(2027, 2, 10))
    _, events = advance(active, PLAN, us(2027, 2, 3), set())
    assert kinds(events) == ["membership_renewing"]
    cancelling = Membership(1, 7, "m", "active", T0, None, T0, us(2027, 2, 10), True)
    assert advance(cancelling, PLAN, us(2027, 2, 3), set()) == (cancelling, [])
    ended, events = advance(cancelling, PLAN, us(2027, 2, 10), {us(2027, 2, 10)})
    assert (ended.status, ended.ended_at) == ("cancelled", us(2027, 2, 10))
    assert kinds(events) == ["membership_cancelled"]


def test_late_payment_reactivates_on_the_anchor() -> None:
    due = Membership(1, 7, "m", "past_due", T0, TRIAL_END, T0, TRIAL_END)
    new, events = advance(due, PLAN, TRIAL_END + 3 * DAY, {TRIAL_END})
    assert (new.status, new.period_start, new.period_end) == ("active", TRIAL_END, us(2027, 3, 9))
    assert kinds(events) == ["membership_renewed"]


# -- benefits and savings --------------------------------------------------------------------


def test_benefit_windows_skip_the_days_spent_past_due() -> None:
    mar9, apr9, mar15 = us(2027, 3, 9), us(2027, 4, 9), us(2027, 3, 15)
    payments = [
        Payment(TRIAL_END, mar9, 999, "paid", us(2027, 2, 1)),  # paid ahead
        Payment(mar9, apr9, 999, "failed", mar9),
        Payment(mar9, apr9, 999, "paid", mar15),  # paid late
    ]
    assert benefit_windows(M, payments) == [(T0, TRIAL_END), (TRIAL_END, mar9), (mar15, apr9)]
    cut = Membership(1, 7, "m", "cancelled", T0, TRIAL_END, T0, TRIAL_END, ended_at=T0 + DAY)
    assert benefit_windows(cut, payments) == [(T0, T0 + DAY)]


def _order(subtotal: int, discount: int, shipping: int) -> dict[str, Any]:
    return {"external_id": "#1", "placed_at": T0, "subtotal_minor": subtotal,
            "discount_minor": discount, "shipping_minor": shipping, "tax_minor": 0,
            "total_minor": subtotal - discount + shipping}  # fmt: skip


def test_order_saving_by_hand() -> None:
    free = order_saving(PLAN, _order(4000, 200, 0))
    # 599 shipping spared; 5% of 40.00 = 2.00; extra points: (40.00 - 2.00) x 1 x (2 - 1) = 38
    assert (free.shipping_saved_minor, free.discount_saved_minor, free.extra_points) == (
        599,
        200,
        38,
    )
    paid = order_saving(PLAN, _order(2999, 150, 599), points_per_unit=Decimal("1.5"))
    # shipping was charged: nothing spared; 5% of 29.99 = 1.4995 -> 1.50 (half up);
    # extra points: 28.49 x 1.5 x 1 = 42.735 -> 42
    assert (paid.shipping_saved_minor, paid.discount_saved_minor, paid.extra_points) == (0, 150, 42)
    yen = order_saving(PLAN, _order(1010, 0, 0), exponent=0, spend_basis="total")
    assert (yen.discount_saved_minor, yen.extra_points) == (51, 1010)  # 50.5 -> 51
