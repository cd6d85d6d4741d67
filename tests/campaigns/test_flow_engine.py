"""Advancing one run (pure): scheduled times, exits before every step, splits, A/B/n,
holdout, waits until a local time or a date, and effects applied once per step (coupons,
points, store credit)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, time
from typing import Any

from boomerang.campaigns.engine import (
    Facts,
    RunState,
    advance,
    in_holdout,
    next_local_time,
    variant_for,
)
from boomerang.campaigns.flow import parse_flow
from boomerang.domain.clock import MICROS_PER_DAY, to_micros

DAY = MICROS_PER_DAY
HOUR = DAY // 24
T0 = to_micros(datetime(2026, 3, 2, 10, 0, tzinfo=UTC))


class Recorder:
    """Records each effect; a coupon gets a code that names the step."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, str, int]] = []

    def coupon(self, run: RunState, step_id: str, spec: Any, at: int) -> dict[str, Any]:
        self.calls.append(("coupon", run.run_id, step_id, at))
        return {"code": f"CODE-{step_id}", "expires_at": at + spec.expires_days * DAY}

    def points(self, run: RunState, step_id: str, spec: Any, at: int) -> None:
        self.calls.append(("points", run.run_id, step_id, at))

    def credit(self, run: RunState, step_id: str, spec: Any, at: int) -> dict[str, Any]:
        self.calls.append(("credit", run.run_id, step_id, at))
        return {"amount": spec.amount, "currency": "USD", "balance": 250 + spec.amount}

    def task(self, run: RunState, step_id: str, spec: Any, at: int) -> None:
        self.calls.append(("task", run.run_id, step_id, at))

    def profile(self, run: RunState, step_id: str, spec: Any, at: int) -> None:
        self.calls.append(("profile", run.run_id, step_id, at))


SERIES = parse_flow(
    {
        "name": "win-back",
        "trigger": {"type": "segment_entered", "segment": "at-risk"},
        "exit": {"placed_order": True},
        "steps": [
            {"coupon": {"kind": "amount_off", "value": 500, "expires_days": 7}},
            {"send": {"channel": "email", "template": "wb-1"}},
            {"wait": "1d"},
            {"send": {"channel": "email", "template": "wb-2"}},
            {"wait": "2d"},
            {"points": {"points": 50}},
            {"send": {"channel": "sms", "template": "wb-3"}},
        ],
    }
)


def run(holdout: bool = False, step: str = "s1", due: int = T0) -> RunState:
    return RunState(7, 42, step, due, T0, holdout, {"trigger": {"key": "segment:1"}})


def test_a_late_tick_keeps_the_schedule_and_runs_each_step_once() -> None:
    effects = Recorder()
    first = advance(SERIES, run(), Facts(), T0 + 5 * HOUR, effects)
    # Coupon, first send, then the 1-day wait: due at T0 + 1 day, not tick + 1 day.
    assert [m.template for m in first.outgoing] == ["wb-1"]
    assert first.outgoing[0].not_before == T0
    assert first.outgoing[0].context["coupons"]["offer"]["code"] == "CODE-s1"
    assert (first.step_id, first.due_at, first.status) == ("s4", T0 + DAY, "active")
    # A tick 10 days later catches up: wb-2 at its scheduled time, the 2-day wait, points, sms.
    later = RunState(7, 42, first.step_id, first.due_at, T0, False, first.context)
    second = advance(SERIES, later, Facts(), T0 + 10 * DAY, effects)
    assert [(m.template, m.not_before) for m in second.outgoing] == [
        ("wb-2", T0 + DAY), ("wb-3", T0 + 3 * DAY),
    ]  # fmt: skip
    assert second.status == "done"
    assert [c[:3] for c in effects.calls] == [("coupon", 7, "s1"), ("points", 7, "s6")]


def test_nothing_runs_before_its_time() -> None:
    effects = Recorder()
    result = advance(SERIES, run(step="s4", due=T0 + DAY), Facts(), T0 + DAY - 1, effects)
    assert (result.outgoing, result.executed, effects.calls) == ([], [], [])


def test_an_order_after_entry_exits_before_the_next_step() -> None:
    effects = Recorder()
    facts = Facts(order_times=(T0 + 3 * HOUR,))
    result = advance(SERIES, run(step="s4", due=T0 + DAY), facts, T0 + 2 * DAY, effects)
    assert (result.status, result.exit_reason, result.outgoing) == ("exited", "placed an order", [])
    # An order before entry does not count.
    before = Facts(order_times=(T0 - DAY,))
    assert advance(SERIES, run(step="s4", due=T0 + DAY), before, T0 + DAY, Recorder()).outgoing
    # A tick that comes late sends the step that was due before the order, then exits.
    late = Facts(order_times=(T0 + DAY + HOUR,))
    result = advance(SERIES, run(step="s4", due=T0 + DAY), late, T0 + 5 * DAY, Recorder())
    assert [m.template for m in result.outgoing] == ["wb-2"]
    assert (result.status, result.step_id) == ("exited", "s6")


def test_the_holdout_walks_the_flow_but_gets_no_treatment() -> None:
    effects = Recorder()
    result = advance(SERIES, run(holdout=True), Facts(), T0 + 10 * DAY, effects)
    assert [m.template for m in result.outgoing] == [
        "wb-1",
        "wb-2",
        "wb-3",
    ]  # all kept, skipped later
    assert effects.calls == []  # no coupon, no points
    assert "coupons" not in result.context


def test_holdout_share_and_variants_are_deterministic_and_weighted() -> None:
    held = sum(in_holdout("win-back", cid, 0.10) for cid in range(20_000))
    assert 1_800 <= held <= 2_200  # 10% of 20,000, within ~3.3 sigma
    assert [in_holdout("win-back", c, 0.1) for c in range(50)] == [
        in_holdout("win-back", c, 0.1) for c in range(50)
    ]
    counts = Counter(variant_for("welcome", "s1", cid, [1, 3]) for cid in range(20_000))
    assert 4_700 <= counts[0] <= 5_300 and counts[0] + counts[1] == 20_000
    assert variant_for("welcome", "s1", 99, [1, 3]) == variant_for("welcome", "s1", 99, [1, 3])


def test_split_and_ab_choose_a_branch() -> None:
    flow = parse_flow(
        {
            "name": "vip",
            "trigger": {"type": "order_placed"},
            "steps": [
                {"split": {"rule": "orders.count >= 3", "then": "ab", "otherwise": "plain"}},
                {"id": "ab", "ab": {"variants": [{"name": "credit", "weight": 1, "next": "c"},
                                                 {"name": "discount", "weight": 1, "next": "d"}]}},
                {"id": "c", "send": {"channel": "email", "template": "credit"}, "next": "end"},
                {"id": "d", "send": {"channel": "email", "template": "discount"}, "next": "end"},
                {"id": "plain", "send": {"channel": "email", "template": "thanks"}},
            ],
        }
    )  # fmt: skip
    vip = Facts(rules={"orders.count >= 3": True})
    chosen = advance(flow, run(), vip, T0, Recorder())
    variant = chosen.context["variants"]["ab"]
    assert [m.template for m in chosen.outgoing] == [
        "credit" if variant == "credit" else "discount"
    ]
    assert chosen.outgoing[0].context["variants"] == {"ab": variant}
    plain = advance(flow, run(), Facts(rules={"orders.count >= 3": False}), T0, Recorder())
    assert [m.template for m in plain.outgoing] == ["thanks"]


def test_wait_until_a_local_time_and_until_a_date() -> None:
    # 10:00 UTC is 05:00 in New York (EST): the next 09:00 there is 14:00 UTC the same day.
    assert next_local_time(T0, time(9, 0), "America/New_York") == T0 + 4 * HOUR
    # 10:00 UTC is 19:00 in Tokyo: the next 09:00 there is tomorrow 00:00 UTC.
    assert next_local_time(T0, time(9, 0), "Asia/Tokyo") == T0 + 14 * HOUR
    assert next_local_time(T0, time(9, 0), "Not/AZone") == T0 + 23 * HOUR  # UTC
    flow = parse_flow(
        {
            "name": "bday",
            "trigger": {"type": "order_placed"},
            "steps": [
                {"wait": {"until": "birthday", "offset_days": -1}},
                {"send": {"channel": "email", "template": "bday"}},
            ],
        }
    )
    birthday = T0 + 30 * DAY
    waiting = advance(flow, run(), Facts(dates={"birthday": birthday}), T0, Recorder())
    assert (waiting.step_id, waiting.due_at) == ("s2", birthday - DAY)
    unknown = advance(flow, run(), Facts(dates={}), T0, Recorder())
    assert (unknown.status, unknown.exit_reason) == ("exited", "no birthday known")


CREDIT = parse_flow(
    {
        "name": "birthday",
        "trigger": {"type": "date_property", "property": "birthday"},
        "steps": [
            {"id": "gift", "credit": {"amount": 1000, "name": "bday", "reason": "birthday gift"}},
            {"id": "card", "send": {"channel": "email", "template": "card"}},
            {"id": "later", "wait": "1d"},
            {"id": "again", "credit": {"amount": 500}},  # default name: gift
            {"id": "reminder", "send": {"channel": "sms", "template": "reminder"}},
        ],
    }
)


def test_a_credit_step_puts_the_grant_in_the_context_and_the_holdout_gets_none() -> None:
    effects = Recorder()
    first = advance(CREDIT, run(step="gift"), Facts(), T0, effects)
    # The grant (what the effect returned) is kept under credits.<name> and carried by the
    # message queued after it; the run's own context is left as it was.
    bday = {"amount": 1000, "currency": "USD", "balance": 1250}
    assert first.context["credits"] == {"bday": bday}
    assert [(m.template, m.context["credits"]) for m in first.outgoing] == [
        ("card", {"bday": bday})
    ]
    assert first.outgoing[0].context["trigger"] == {"key": "segment:1"}
    assert (first.step_id, first.due_at) == ("again", T0 + DAY)
    assert effects.calls == [("credit", 7, "gift", T0)]
    # A day later: the second grant (the default name "gift") joins the first; the card
    # queued before it still carries only the first.
    later = RunState(7, 42, first.step_id, first.due_at, T0, False, first.context)
    second = advance(CREDIT, later, Facts(), T0 + DAY, effects)
    gift = {"amount": 500, "currency": "USD", "balance": 750}
    assert second.outgoing[0].context["credits"] == {"bday": bday, "gift": gift}
    assert second.status == "done"
    assert first.outgoing[0].context["credits"] == {"bday": bday}
    assert effects.calls == [("credit", 7, "gift", T0), ("credit", 7, "again", T0 + DAY)]
    # The holdout walks the same steps and gets the same messages (skipped when sent), but
    # no credit: no effect called, nothing under credits.
    held = Recorder()
    result = advance(CREDIT, run(holdout=True, step="gift"), Facts(), T0 + 2 * DAY, held)
    assert [m.template for m in result.outgoing] == ["card", "reminder"]
    assert held.calls == []
    assert "credits" not in result.context
    assert all("credits" not in m.context for m in result.outgoing)
