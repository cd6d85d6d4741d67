"""The flow model: a trigger, exit conditions, a re-entry policy, a holdout share and a
graph of steps (send, wait, split, A/B/n, profile update, coupon, points, store credit,
staff task, webhook), read from YAML/JSON or built in Python and validated before anything
runs.

Steps form a flat list with ids; each step continues to ``next`` (default: the step
below it), a split to ``yes``/``no``, an A/B/n split to its variants' ``next``. The graph
must be acyclic, so every run ends. docs/campaigns.md describes every field.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from boomerang.errors import InputError
from boomerang.segments.model import Node, parse_window
from boomerang.segments.text import parse_text

END = "end"
CHANNELS = ("email", "sms", "push", "webhook")
NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- triggers --------------------------------------------------------------------------------


class OrderPlaced(_Model):
    """An order: the first, any, or the n-th of the customer."""

    type: Literal["order_placed"]
    which: Literal["first", "any", "nth"] = "any"
    n: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _n(self) -> OrderPlaced:
        if (self.which == "nth") != (self.n is not None):
            raise ValueError("give n exactly when which is nth (e.g. which: nth, n: 2)")
        return self


class CheckoutAbandoned(_Model):
    """A checkout_started event with no order within ``hours``."""

    type: Literal["checkout_abandoned"]
    hours: int = Field(4, ge=1, le=24 * 14)


class BrowseAbandoned(_Model):
    """A product_viewed event with no add_to_cart (or order) within ``hours``."""

    type: Literal["browse_abandoned"]
    hours: int = Field(24, ge=1, le=24 * 14)
    min_views: int = Field(1, ge=1)


class SimpleTrigger(_Model):
    """Signed up (newsletter consent) or account created."""

    type: Literal["signed_up", "account_created"]


class SegmentChange(_Model):
    type: Literal["segment_entered", "segment_exited"]
    segment: str = Field(min_length=1)


class Inactivity(_Model):
    """No visit (any site event) or no order for ``days``."""

    type: Literal["inactivity"]
    days: int = Field(ge=1)
    of: Literal["visit", "order"] = "order"


class ReplenishmentDue(_Model):
    """A purchased product runs out: its lifespan attribute, else its learned reorder
    interval; fire ``days_before`` that day."""

    type: Literal["replenishment_due"]
    days_before: int = Field(7, ge=0)
    source: Literal["lifespan", "learned", "either"] = "either"


class DateProperty(_Model):
    """A date of the customer's: birthday, or a membership renewal."""

    type: Literal["date_property"]
    property: Literal["birthday", "membership_renewal"]
    days_before: int = Field(0, ge=0, le=366)


LOYALTY_EVENTS = (
    "points_earned",
    "points_expiring",
    "reward_redeemed",
    "tier_changed",
    "referral_shared",
    "referral_completed",
    "referral_flagged",
    "membership_trial_ending",
    "membership_renewing",
    "membership_past_due",
    "membership_expired",
)


class LoyaltyEvent(_Model):
    """A loyalty, referral or membership event; ``where`` filters its payload like the
    `event` trigger's (e.g. ``tier_changed`` with ``where: {direction: [up]}``)."""

    type: Literal["loyalty_event"]
    event: Literal[LOYALTY_EVENTS]  # type: ignore[valid-type]
    where: dict[str, list[str | int | float | bool]] = Field(default_factory=dict)


class SiteEvent(_Model):
    """Any event the store sends (``review_written``, ``app_installed``...), optionally only
    when its properties match (``where: {rating: [4, 5]}``: the property's value, as text,
    is one of the listed values)."""

    type: Literal["event"]
    event: str = Field(min_length=1, max_length=64)
    where: dict[str, list[str | int | float | bool]] = Field(default_factory=dict)


class SupportEvent(_Model):
    type: Literal["support_event"]
    event: Literal["complaint_logged"] = "complaint_logged"


class Broadcast(_Model):
    """A scheduled send to a segment: once ``at``, or every ``every_days`` from ``at``
    (a newsletter every 2-3 weeks); ``expires_hours`` for offers that end the same day."""

    type: Literal["broadcast"]
    segment: str = Field(min_length=1)
    at: datetime
    every_days: int | None = Field(None, ge=1)
    expires_hours: int | None = Field(None, ge=1)


Trigger = Annotated[
    OrderPlaced
    | CheckoutAbandoned
    | BrowseAbandoned
    | SimpleTrigger
    | SegmentChange
    | Inactivity
    | ReplenishmentDue
    | DateProperty
    | LoyaltyEvent
    | SiteEvent
    | SupportEvent
    | Broadcast,
    Field(discriminator="type"),
]


# -- steps -----------------------------------------------------------------------------------


class _Step(_Model):
    id: str = Field(pattern=NAME)
    next: str | None = None  # None: the step below (or the end)


class SendSpec(_Model):
    channel: Literal["email", "sms", "push", "webhook"]
    template: str = Field(min_length=1)
    transactional: bool = False


class Send(_Step):
    send: SendSpec


class WaitSpec(_Model):
    """One of: a duration (``2d``, ``36h``), a time of day in the customer's timezone
    (``until_time: "09:00"``), or a date property (``until: birthday``) plus an offset."""

    duration: str | None = None
    until_time: time | None = None
    until: Literal["birthday", "membership_renewal"] | None = None
    offset_days: int = 0

    @model_validator(mode="after")
    def _one(self) -> WaitSpec:
        given = [x for x in (self.duration, self.until_time, self.until) if x is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of duration, until_time, until")
        return self


class Wait(_Step):
    wait: WaitSpec


class SplitSpec(_Model):
    """Customers for whom ``rule`` holds go to ``then``, the rest to ``otherwise`` (not
    yes/no: YAML reads those as booleans)."""

    rule: str = Field(min_length=1)
    then: str
    otherwise: str


class Split(_Step):
    split: SplitSpec


class Variant(_Model):
    name: str = Field(pattern=NAME)
    weight: int = Field(ge=1)
    next: str


class AbSpec(_Model):
    variants: list[Variant] = Field(min_length=2)

    @field_validator("variants")
    @classmethod
    def _unique(cls, value: list[Variant]) -> list[Variant]:
        if len({v.name for v in value}) != len(value):
            raise ValueError("variant names must be unique")
        return value


class Ab(_Step):
    ab: AbSpec


class ProfileSpec(_Model):
    add_tags: list[str] = Field(default_factory=list)
    remove_tags: list[str] = Field(default_factory=list)
    attributes: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class UpdateProfile(_Step):
    update_profile: ProfileSpec


class CouponSpec(_Model):
    """A coupon from the loyalty coupon service, kept in the run under ``name`` for the
    templates (``{{ coupons.<name>.code }}``)."""

    kind: Literal["amount_off", "percent_off", "free_shipping"]
    value: int = Field(0, ge=0, description="minor units, or basis points for percent_off")
    expires_days: int = Field(7, ge=1)
    name: str = Field("offer", pattern=NAME)


class IssueCoupon(_Step):
    coupon: CouponSpec


class PointsSpec(_Model):
    points: int = Field(ge=1)
    reason: str = "campaign"


class GrantPoints(_Step):
    points: PointsSpec


class CreditSpec(_Model):
    """Store credit on the customer's loyalty ledger (no code: it is used at checkout), kept
    in the run under ``name`` for the templates (``{{ credits.<name>.amount | money }}``)."""

    amount: int = Field(ge=1, description="minor units of the store currency")
    reason: str = "campaign credit"
    name: str = Field("gift", pattern=NAME)

    @field_validator("amount", mode="before")
    @classmethod
    def _minor_units(cls, value: Any) -> Any:
        # 10.00 or "10.00" would silently become 10 cents: ask for whole minor units.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(
                f"give the amount in minor units of the store currency, a whole number "
                f"(1000 is $10.00 in a USD store), not {value!r}"
            )
        return value


class GrantCredit(_Step):
    credit: CreditSpec


class TaskSpec(_Model):
    title: str = Field(min_length=1)
    body: str = ""


class StaffTask(_Step):
    task: TaskSpec


class WebhookSpec(_Model):
    url: str = Field(pattern=r"^https?://")


class Webhook(_Step):
    webhook: WebhookSpec


Step = (
    Send
    | Wait
    | Split
    | Ab
    | UpdateProfile
    | IssueCoupon
    | GrantPoints
    | GrantCredit
    | StaffTask
    | Webhook
)
STEP_KINDS: dict[str, type[_Step]] = {
    "send": Send,
    "wait": Wait,
    "split": Split,
    "ab": Ab,
    "update_profile": UpdateProfile,
    "coupon": IssueCoupon,
    "points": GrantPoints,
    "credit": GrantCredit,
    "task": StaffTask,
    "webhook": Webhook,
}


def step_kind(step: Step) -> str:
    return next(k for k, cls in STEP_KINDS.items() if isinstance(step, cls))


# -- the flow --------------------------------------------------------------------------------


class Exit(_Model):
    """Leave the flow before the next step: on an order after entry, or when a segment
    rule holds."""

    placed_order: bool = False
    rule: str | None = None


class Flow(_Model):
    name: str = Field(pattern=NAME)
    title: str = ""
    description: str = ""
    kind: Literal["marketing", "transactional"] = "marketing"
    priority: int = Field(50, ge=0, le=100, description="higher wins when a cap blocks")
    enabled: bool = True
    trigger: Trigger
    exit: Exit = Exit()
    reentry: Literal["never", "always", "after"] = "never"
    reentry_days: int = Field(90, ge=1)
    holdout: float = Field(0.10, ge=0.0, lt=1.0)
    steps: list[Step] = Field(min_length=1)

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    def first(self) -> str:
        return self.steps[0].id

    def following(self, step_id: str) -> str:
        """Where a step without a branch continues: its ``next``, else the step below."""
        ids = [s.id for s in self.steps]
        step = self.step(step_id)
        if step.next is not None:
            return step.next
        at = ids.index(step_id)
        return ids[at + 1] if at + 1 < len(ids) else END

    def successors(self, step_id: str) -> list[str]:
        step = self.step(step_id)
        if isinstance(step, Split):
            return [step.split.then, step.split.otherwise]
        if isinstance(step, Ab):
            return [v.next for v in step.ab.variants]
        return [self.following(step_id)]


def _steps_from(raw: Any) -> Any:
    """Each step is ``{id?, next?, <kind>: {...}}``; ids default to s1, s2, ... and a bare
    ``wait: 2d`` is short for ``wait: {duration: 2d}``."""
    if not isinstance(raw, list):
        return raw
    out = []
    for i, item in enumerate(raw, start=1):
        if not isinstance(item, dict):
            out.append(item)
            continue
        step = dict(item)
        step.setdefault("id", f"s{i}")
        if isinstance(step.get("wait"), str):
            step["wait"] = {"duration": step["wait"]}
        kinds = [k for k in STEP_KINDS if k in step]
        if len(kinds) != 1:
            raise InputError(
                f"steps[{i - 1}]: a step needs exactly one of {', '.join(STEP_KINDS)}"
                + (f" (it has {', '.join(kinds)})" if kinds else ""),
                hint="e.g. - send: {channel: email, template: welcome}",
            )
        try:
            out.append(STEP_KINDS[kinds[0]].model_validate(step))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InputError(
                f"steps[{i - 1}] ({step['id']}).{where}: {first['msg']}",
                hint="fix that field (docs/campaigns.md lists every step kind)",
            ) from None
    return out


def parse_flow(raw: Any, origin: str = "flow") -> Flow:
    """Validate plain data into a Flow; an error names the file, the field and the fix."""
    if not isinstance(raw, dict):
        raise InputError(f"{origin}: a flow is a mapping", hint="see docs/campaigns.md")
    try:
        data = {**raw, "steps": _steps_from(raw.get("steps"))}
        flow = Flow.model_validate(data)
    except InputError as exc:
        raise InputError(f"{origin}: {exc.message}", hint=exc.hint) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise InputError(
            f"{origin}: {where}: {first['msg']}",
            hint="fix that field (docs/campaigns.md lists every field)",
        ) from None
    _check_graph(flow, origin)
    for path, text in rules(flow):
        parse_text(text, f"{origin}: {path}")
    for s in flow.steps:
        if isinstance(s, Wait) and s.wait.duration is not None:
            parse_window(s.wait.duration, f"{origin}: steps.{s.id}.wait.duration")
    return flow


def rules(flow: Flow) -> Iterator[tuple[str, str]]:
    """Every segment rule the flow uses, with where it is."""
    if flow.exit.rule:
        yield "exit.rule", flow.exit.rule
    for s in flow.steps:
        if isinstance(s, Split):
            yield f"steps.{s.id}.split.rule", s.split.rule


def rule_node(text: str) -> Node:
    return parse_text(text)


def _check_graph(flow: Flow, origin: str) -> None:
    ids = [s.id for s in flow.steps]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise InputError(f"{origin}: step id {dupes[0]!r} is used twice", hint="ids are unique")
    known = set(ids) | {END}
    for s in flow.steps:
        for target in flow.successors(s.id):
            if target not in known:
                raise InputError(
                    f"{origin}: step {s.id!r} continues to unknown step {target!r}",
                    hint="name a step id of this flow, or end",
                )
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(node: str, trail: list[str]) -> None:
        if node == END or state.get(node) == 2:
            return
        if state.get(node) == 1:
            loop = " -> ".join([*trail[trail.index(node) :], node])
            raise InputError(
                f"{origin}: the steps loop ({loop})",
                hint="flows are acyclic so every run ends; repeat with a new flow or re-entry",
            )
        state[node] = 1
        for nxt in flow.successors(node):
            visit(nxt, [*trail, node])
        state[node] = 2

    visit(flow.first(), [])
    unreachable = [i for i in ids if state.get(i) != 2]
    if unreachable:
        raise InputError(
            f"{origin}: step {unreachable[0]!r} can never be reached",
            hint="point a step's next (or a split) at it, or remove it",
        )


def wait_micros(spec: WaitSpec, path: str = "wait") -> int | None:
    """A duration wait's length (None for waits until a time or date)."""
    return None if spec.duration is None else parse_window(spec.duration, path)
