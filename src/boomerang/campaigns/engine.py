"""Advance one flow run: run its due steps until it waits, ends or exits.

Pure: the caller passes the facts it gathered for the run's customer (orders since entry,
which rules hold, the timezone, date properties) and an `Effects` port that applies what
the steps do (issue a coupon, grant points or store credit, create a task, update the
profile) inside the caller's transaction. Sends and webhooks come back as `Outgoing`
messages for the outbox.

Times are the run's *scheduled* times, not the tick's: a run that waited 1 day from a step
due at t continues at t + 1 day even when the tick comes later, so simulated time and a
late worker give the same schedule.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from typing import Any, Protocol

from boomerang.campaigns.arbiter import zone_of
from boomerang.campaigns.flow import (
    END,
    Ab,
    Flow,
    GrantCredit,
    GrantPoints,
    IssueCoupon,
    Send,
    Split,
    StaffTask,
    Step,
    UpdateProfile,
    Wait,
    Webhook,
    wait_micros,
)
from boomerang.domain.clock import MICROS_PER_DAY, from_micros, to_micros

#: A run that has executed this many steps in one advance is stopped: a guard against a
#: flow whose every step is instant (they are acyclic, so this only bounds long chains).
MAX_STEPS_PER_ADVANCE = 200


@dataclass(frozen=True)
class RunState:
    run_id: int
    customer_id: int
    step_id: str
    due_at: int
    entered_at: int
    holdout: bool
    context: dict[str, Any]


@dataclass(frozen=True)
class Facts:
    """What the engine needs to know about the run's customer at this tick."""

    order_times: tuple[int, ...] = ()  # the customer's order times up to now, ascending
    rules: dict[str, bool] = field(default_factory=dict)  # rule text -> holds now
    timezone: str | None = None
    dates: dict[str, int | None] = field(default_factory=dict)  # property -> next occurrence


@dataclass(frozen=True)
class Outgoing:
    """A message for the outbox (unique by run and step)."""

    step_id: str
    channel: str
    template: str
    transactional: bool
    not_before: int
    context: dict[str, Any]


@dataclass
class Advance:
    step_id: str
    due_at: int
    status: str  # active | done | exited
    exit_reason: str | None
    context: dict[str, Any]
    outgoing: list[Outgoing] = field(default_factory=list)
    executed: list[str] = field(default_factory=list)


class Effects(Protocol):
    """Applies a step's side effect for a run (idempotent by run and step)."""

    def coupon(self, run: RunState, step_id: str, spec: Any, at: int) -> dict[str, Any]: ...

    def points(self, run: RunState, step_id: str, spec: Any, at: int) -> None: ...

    def credit(self, run: RunState, step_id: str, spec: Any, at: int) -> dict[str, Any]: ...

    def task(self, run: RunState, step_id: str, spec: Any, at: int) -> None: ...

    def profile(self, run: RunState, step_id: str, spec: Any, at: int) -> None: ...


def variant_for(flow_name: str, step_id: str, customer_id: int, weights: list[int]) -> int:
    """A deterministic weighted choice: the same customer gets the same variant on every
    retry and every worker (sha256 of flow, step and customer)."""
    digest = hashlib.sha256(f"{flow_name}\x00{step_id}\x00{customer_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") % sum(weights)
    for i, w in enumerate(weights):
        if point < w:
            return i
        point -= w
    return len(weights) - 1


def in_holdout(flow_name: str, customer_id: int, share: float) -> bool:
    """Deterministic holdout membership per flow and customer (stable across entries, so a
    customer's group never flips between runs)."""
    digest = hashlib.sha256(f"holdout\x00{flow_name}\x00{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def next_local_time(after: int, hhmm: Any, timezone: str | None) -> int:
    """The first moment >= ``after`` that is ``hhmm`` on the customer's wall clock."""
    zone = zone_of(timezone)
    local = from_micros(after).astimezone(zone)
    candidate = local.replace(hour=hhmm.hour, minute=hhmm.minute, second=0, microsecond=0)
    if candidate < local:
        candidate = (candidate + timedelta(days=1)).replace(hour=hhmm.hour, minute=hhmm.minute)
    return to_micros(candidate.astimezone(UTC))


def advance(flow: Flow, run: RunState, facts: Facts, now: int, effects: Effects) -> Advance:
    """Run every step that is due by ``now``; stop at a wait that ends later, the end, or
    an exit condition (checked before every step).

    ``run.context`` is never modified: the result's ``context`` is that same dict when no
    step changed it, else a new one (a coupon, a credit or an A/B variant added), so a
    caller can tell "unchanged" with ``is``."""
    out = Advance(run.step_id, run.due_at, "active", None, run.context)
    plan = _plan(flow)
    # Whether an exit can apply at all (the facts do not change during the advance).
    exits = (flow.exit.placed_order and bool(facts.order_times)) or (
        bool(flow.exit.rule) and bool(facts.rules.get(flow.exit.rule or ""))
    )
    for _ in range(MAX_STEPS_PER_ADVANCE):
        if out.step_id == END:
            out.status = "done"
            return out
        if out.due_at > now:
            return out
        if exits:
            reason = _exit_reason(flow, run, facts, out.due_at)
            if reason is not None:
                out.status, out.exit_reason = "exited", reason
                return out
        node = plan[out.step_id]
        if node.wait is not None:  # a wait of a fixed length: the common step, inline
            out.executed.append(out.step_id)
            out.step_id, out.due_at = node.following, out.due_at + node.wait
            continue
        _run_step(flow, plan, run, facts, out, effects)
        if out.status != "active":
            return out
    return out


@dataclass(frozen=True, slots=True)
class _Node:
    """A step with what `advance` looks up at every visit, worked out once per flow."""

    step: Step
    following: str
    wait: int | None  # a duration wait's length (None: other steps, or not parsed)


_PLANS: dict[int, tuple[Flow, dict[str, _Node]]] = {}


def _plan(flow: Flow) -> dict[str, _Node]:
    """Step id -> node, cached per flow object (which the entry keeps alive, so its id
    cannot be reused while cached)."""
    found = _PLANS.get(id(flow))
    if found is not None and found[0] is flow:
        return found[1]
    plan: dict[str, _Node] = {}
    for step in flow.steps:
        length: int | None = None
        if isinstance(step, Wait):
            try:
                length = wait_micros(step.wait, f"steps.{step.id}.wait.duration")
            except Exception:  # reported when the step runs, as before
                length = None
        plan[step.id] = _Node(step, flow.following(step.id), length)
    if len(_PLANS) >= 256:
        _PLANS.clear()
    _PLANS[id(flow)] = (flow, plan)
    return plan


def _exit_reason(flow: Flow, run: RunState, facts: Facts, at: int) -> str | None:
    """Why the run leaves before its step due at ``at``: an order after entry and by that
    time (a late tick does not exit a run for an order placed after the step was due)."""
    if (
        flow.exit.placed_order
        and facts.order_times
        and any(run.entered_at < t <= at for t in facts.order_times)
    ):
        return "placed an order"
    if flow.exit.rule and facts.rules.get(flow.exit.rule):
        return f"exit rule: {flow.exit.rule}"
    return None


def _run_step(
    flow: Flow, plan: dict[str, _Node], run: RunState, facts: Facts, out: Advance,
    effects: Effects,
) -> None:  # fmt: skip
    node = plan[out.step_id]
    step = node.step
    at = out.due_at
    out.executed.append(step.id)
    following = node.following
    if isinstance(step, Wait):
        if node.wait is not None:
            out.step_id, out.due_at = following, at + node.wait
        else:
            out.step_id, out.due_at = following, _wait_until(step, at, facts, out)
        return
    if isinstance(step, Send):
        out.outgoing.append(
            Outgoing(step.id, step.send.channel, step.send.template, step.send.transactional,
                     at, _message_context(out.context))
        )  # fmt: skip
    elif isinstance(step, Webhook):
        context = {**_message_context(out.context), "url": step.webhook.url}
        out.outgoing.append(Outgoing(step.id, "webhook", "", False, at, context))
    elif isinstance(step, Split):
        out.step_id = step.split.then if facts.rules.get(step.split.rule) else step.split.otherwise
        return
    elif isinstance(step, Ab):
        weights = [v.weight for v in step.ab.variants]
        chosen = step.ab.variants[variant_for(flow.name, step.id, run.customer_id, weights)]
        _put(out, "variants", step.id, chosen.name)
        out.step_id = chosen.next
        return
    elif not run.holdout:  # the holdout gets no treatment at all: no coupon, no points
        if isinstance(step, IssueCoupon):
            issued = effects.coupon(run, step.id, step.coupon, at)
            _put(out, "coupons", step.coupon.name, issued)
        elif isinstance(step, GrantPoints):
            effects.points(run, step.id, step.points, at)
        elif isinstance(step, GrantCredit):
            granted = effects.credit(run, step.id, step.credit, at)
            _put(out, "credits", step.credit.name, granted)
        elif isinstance(step, StaffTask):
            effects.task(run, step.id, step.task, at)
        elif isinstance(step, UpdateProfile):
            effects.profile(run, step.id, step.update_profile, at)
    out.step_id = following


def _put(out: Advance, section: str, key: str, value: Any) -> None:
    """Set ``context[section][key]`` copy-on-write: the run's context and the messages
    already queued keep what they had (a message carries the coupons issued so far)."""
    context = dict(out.context)
    context[section] = {**context.get(section, {}), key: value}
    out.context = context


def _wait_until(step: Wait, at: int, facts: Facts, out: Advance) -> int:
    spec = step.wait
    length = wait_micros(spec, f"steps.{step.id}.wait.duration")
    if length is not None:
        return at + length
    if spec.until_time is not None:
        return next_local_time(at, spec.until_time, facts.timezone)
    assert spec.until is not None
    when = facts.dates.get(spec.until)
    if when is None:  # no such date for this customer: the flow cannot continue for them
        out.status, out.exit_reason = "exited", f"no {spec.until} known"
        out.step_id = END
        return at
    return max(at, when + spec.offset_days * MICROS_PER_DAY)


def _message_context(context: dict[str, Any]) -> dict[str, Any]:
    """What a message carries of its run (coupons issued and credits granted so far, chosen
    variants)."""
    if context.keys() <= _CARRIED:  # all of it: the very same dict (never modified)
        return context
    return {k: context[k] for k in _CARRIED if k in context}


_CARRIED = frozenset({"coupons", "credits", "variants", "trigger"})
