"""Campaign use cases: store flows, let customers in, advance runs, dispatch the outbox.

Three jobs, each safe to repeat and to run as several copies at once:

- `enter`: scan each active flow's trigger from its cursor to now; one run per entry key
  (an order, an event, a date), so a rescan inserts nothing.
- `tick`: advance due runs in batches; in one transaction per batch the runs move on and
  their messages are queued in the outbox, unique by (run, step). A crash before the
  commit redoes the batch; after it, nothing is redone.
- `dispatch`: claim ready messages, let the arbiter decide, render the batch, mark ``sending``,
  deliver, mark ``sent``. A worker killed mid-delivery leaves its message ``sending``;
  recovery marks it ``in_doubt`` (listed by `boomerang outbox in-doubt`), never resends
  it. Claimed messages that never reached a provider go back to the queue.

docs/campaigns.md describes the model, the arbiter's rules and the guarantees.
"""

from __future__ import annotations

import gc
import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
import yaml
from sqlalchemy import Connection, Engine

from boomerang.campaigns.arbiter import ArbiterSettings, Candidate, Decision, decide
from boomerang.campaigns.channels.base import (
    Channel,
    Message,
    PermanentFailure,
    TemporaryFailure,
)
from boomerang.campaigns.engine import Facts, Outgoing, RunState, advance, in_holdout
from boomerang.campaigns.flow import (
    Broadcast,
    BrowseAbandoned,
    CheckoutAbandoned,
    DateProperty,
    Flow,
    Inactivity,
    LoyaltyEvent,
    OrderPlaced,
    ReplenishmentDue,
    SegmentChange,
    SimpleTrigger,
    SiteEvent,
    SupportEvent,
    parse_flow,
    rules,
)
from boomerang.domain.clock import MICROS_PER_DAY, now_micros
from boomerang.errors import InputError, NotFoundError
from boomerang.loyalty.program import lot_expiry
from boomerang.services import loyalty as loyalty_service
from boomerang.services.campaign_messages import address_for
from boomerang.services.context import open_engine
from boomerang.services.segments import rule_flags
from boomerang.store.repos import campaign_triggers as triggers
from boomerang.store.repos import campaign_web as settings_repo
from boomerang.store.repos import campaigns as repo
from boomerang.store.repos import stores as stores_repo
from boomerang.store.repos.campaign_triggers import Entry

HOUR = 3_600_000_000
#: A claimed message untouched this long belonged to a worker that died.
LEASE = 10 * 60 * 1_000_000
MAX_ATTEMPTS = 5
TRANSACTIONAL_PRIORITY = 100
#: SQLite page cache of the tick's connection (KiB).
TICK_CACHE_KIB = 262_144

#: Builds the messages of a batch of outbox rows (given their customers' contact facts):
#: outbox id -> message, or the exception that prevented it (`campaign_messages`).
Builder = Callable[
    [list[dict[str, Any]], dict[int, dict[str, Any]]], dict[int, Message | Exception]
]


# -- flows -----------------------------------------------------------------------------------


def read_flow_files(paths: Iterable[Path]) -> list[Flow]:
    """Flows from YAML/JSON files (a file holds one flow, or a list under ``flows:``)."""
    out: list[Flow] = []
    for path in paths:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{path}: no such file", hint="check the path") from None
        except yaml.YAMLError as exc:
            raise InputError(f"{path}: not valid YAML ({exc})", hint="fix the syntax") from None
        items = raw.get("flows") if isinstance(raw, dict) and "flows" in raw else [raw]
        if not isinstance(items, list):
            raise InputError(f"{path}: flows: must be a list", hint="- name: welcome ...")
        for i, item in enumerate(items):
            origin = path.name if len(items) == 1 else f"{path.name}: flows[{i}]"
            out.append(parse_flow(item, origin))
    names = [f.name for f in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"flow {dupes[0]!r} is defined twice", hint="flow names are unique")
    return out


@dataclass
class FlowSaved:
    name: str
    version: int
    changed: bool


def save_flows(
    engine: Engine, store: str, flows: list[Flow], *, start: int | None = None
) -> list[FlowSaved]:
    """Store flows (all or none); a new flow sees triggers from ``start`` (default now)."""
    at = now_micros()
    out = []
    with engine.begin() as conn:
        row = stores_repo.get(conn, store)
        for flow in flows:
            for segment in _segments_named(flow):
                if not triggers.segment_known(conn, row.id, segment):
                    raise InputError(
                        f"flow {flow.name!r} names segment {segment!r}, which this store lacks",
                        hint="create it (`boomerang segments create`) or run `segments refresh` "
                        "for the built-ins",
                    )
            saved, changed = repo.upsert_flow(
                conn, row.id, flow.name, flow.model_dump(mode="json"),
                at if start is None else start, at,
            )  # fmt: skip
            out.append(FlowSaved(flow.name, saved.version, changed))
    return out


def _segments_named(flow: Flow) -> list[str]:
    t = flow.trigger
    return [t.segment] if isinstance(t, SegmentChange | Broadcast) else []


def set_flows(
    db: str, store: str, paths: list[Path], *, start: int | None = None
) -> list[FlowSaved]:
    engine = open_engine(db)
    try:
        return save_flows(engine, store, read_flow_files(paths), start=start)
    finally:
        engine.dispose()


def set_status(db: str, store: str, name: str, status: str) -> None:
    engine = open_engine(db)
    try:
        with engine.begin() as conn:
            row = stores_repo.get(conn, store)
            found = repo.flow_by_name(conn, row.id, name)
            if found is None:
                raise NotFoundError(f"no flow {name!r}", hint="see `boomerang flows list`")
            repo.set_flow_status(conn, found.id, status, now_micros())
    finally:
        engine.dispose()


_FLOWS: dict[str, Flow] = {}


def _flow_of(row: repo.FlowRow) -> Flow:
    """Parsed once per definition (keyed by its text: ids repeat across databases)."""
    key = json.dumps(row.definition, sort_keys=True)
    if key not in _FLOWS:
        if len(_FLOWS) > 256:
            _FLOWS.clear()
        _FLOWS[key] = parse_flow(row.definition, f"stored flow {row.name}")
    return _FLOWS[key]


# -- entering ---------------------------------------------------------------------------------


def _entries(conn: Connection, store_id: int, flow: Flow, since: int, until: int) -> list[Entry]:
    t = flow.trigger
    if isinstance(t, OrderPlaced):
        return triggers.order_placed(conn, store_id, since, until, t.which, t.n)
    if isinstance(t, CheckoutAbandoned):
        return triggers.abandoned(
            conn, store_id, since, until, start_type="checkout_started", follow_types=(),
            hours=t.hours, per_day=False,
        )  # fmt: skip
    if isinstance(t, BrowseAbandoned):
        return triggers.abandoned(
            conn, store_id, since, until, start_type="product_viewed",
            follow_types=("add_to_cart", "checkout_started"), hours=t.hours, per_day=True,
            min_count=t.min_views,
        )  # fmt: skip
    if isinstance(t, SimpleTrigger) and t.type == "account_created":
        return triggers.accounts_created(conn, store_id, since, until)
    if isinstance(t, SimpleTrigger):
        return triggers.event_entries(
            conn, store_id, ("signed_up", "newsletter_signup"), since, until, "signup"
        )
    if isinstance(t, SegmentChange):
        kind = "entered" if t.type == "segment_entered" else "exited"
        return triggers.segment_changes(conn, store_id, t.segment, kind, since, until)
    if isinstance(t, Inactivity):
        return triggers.inactive(conn, store_id, t.days, t.of, since, until)
    if isinstance(t, ReplenishmentDue):
        learned = None if t.source == "lifespan" else _learned_intervals(conn, store_id)
        return triggers.lifespans_due(
            conn, store_id, t.days_before, since, until, learned, t.source != "learned"
        )
    if isinstance(t, DateProperty) and t.property == "birthday":
        return triggers.birthdays(conn, store_id, t.days_before, since, until)
    if isinstance(t, DateProperty):
        return triggers.renewals(conn, store_id, t.days_before, since, until)
    if isinstance(t, LoyaltyEvent):
        found = triggers.loyalty(conn, store_id, t.event, since, until)
        return [e for e in found if _matches(e.context.get("payload"), t.where)]
    if isinstance(t, SupportEvent):
        return triggers.event_entries(conn, store_id, (t.event,), since, until, "support")
    if isinstance(t, SiteEvent):
        found = triggers.event_entries(conn, store_id, (t.event,), since, until, "event")
        return [e for e in found if _matches(e.context.get("properties"), t.where)]
    assert isinstance(t, Broadcast)
    return _broadcast(conn, store_id, t, since, until)


def _matches(properties: Any, where: dict[str, list[Any]]) -> bool:
    """An event's properties (JSON text) against ``where``: each named property's value,
    compared as text, is one of the listed values."""
    if not where:
        return True
    try:
        found = json.loads(properties) if isinstance(properties, str) else (properties or {})
    except ValueError:
        return False
    if not isinstance(found, dict):
        return False
    return all(
        key in found and _text(found[key]) in {_text(v) for v in allowed}
        for key, allowed in where.items()
    )


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _broadcast(
    conn: Connection, store_id: int, t: Broadcast, since: int, until: int
) -> list[Entry]:
    start = int(t.at.timestamp() * 1_000_000)
    step = (t.every_days or 0) * MICROS_PER_DAY
    out: list[Entry] = []
    occurrence = start
    if step and occurrence < since:
        occurrence += ((since - occurrence + step - 1) // step) * step
    while since <= occurrence < until:
        expires = None if t.expires_hours is None else occurrence + t.expires_hours * HOUR
        for cid in triggers.segment_members(conn, store_id, t.segment, occurrence):
            out.append(Entry(cid, f"broadcast:{occurrence}", occurrence, {"expires_at": expires}))
        if not step:
            break
        occurrence += step
    return out


_LEARNED: dict[tuple[str, int, int], dict[str, int]] = {}


def _learned_intervals(conn: Connection, store_id: int) -> dict[str, int]:
    """Per product, the median days between a customer's repeat purchases of it (products
    bought again at least 3 times across the store), computed once per store and day."""
    from boomerang.campaigns.replenish import reorder_intervals

    key = (str(conn.engine.url), store_id, now_micros() // MICROS_PER_DAY)
    if key not in _LEARNED:
        _LEARNED.clear()
        _LEARNED[key] = reorder_intervals(triggers.purchase_times(conn, store_id))
    return _LEARNED[key]


@dataclass
class EnterResult:
    entered: dict[str, int] = field(default_factory=dict)


def enter(engine: Engine, store: str, until: int) -> EnterResult:
    """Let in everyone each active flow's trigger admits up to ``until``."""
    out = EnterResult()
    with engine.begin() as conn:
        row = stores_repo.get(conn, store)
        for flow_row in repo.list_flows(conn, row.id, active_only=True):
            since = flow_row.cursor_at if flow_row.cursor_at is not None else until
            if since >= until:
                continue
            flow = _flow_of(flow_row)
            entries = sorted(
                _entries(conn, row.id, flow, since, until), key=lambda e: (e.at, e.key)
            )
            runs = _admit(conn, row.id, flow_row.id, flow, entries, until)
            out.entered[flow.name] = repo.insert_runs(conn, runs)
            repo.set_cursor(conn, flow_row.id, until)
    return out


def _admit(
    conn: Connection, store_id: int, flow_id: int, flow: Flow, entries: list[Entry], now: int
) -> list[dict[str, Any]]:
    """Apply the re-entry policy and draw the holdout."""
    last = repo.latest_entries(conn, flow_id, [e.customer_id for e in entries])
    window = flow.reentry_days * MICROS_PER_DAY
    runs = []
    for e in entries:
        before = last.get(e.customer_id)
        if before is not None and (
            flow.reentry == "never" or (flow.reentry == "after" and e.at - before < window)
        ):
            continue
        last[e.customer_id] = e.at
        context: dict[str, Any] = {"trigger": {"key": e.key, **e.context}}
        runs.append({
            "store_id": store_id, "flow_id": flow_id, "customer_id": e.customer_id,
            "entry_key": e.key, "status": "active",
            "holdout": int(in_holdout(flow.name, e.customer_id, flow.holdout)),
            "step_id": flow.first(), "due_at": e.at, "entered_at": e.at, "updated_at": now,
            "version": 0, "exit_reason": None, "context": json.dumps(context, sort_keys=True),
        })  # fmt: skip
    return runs


# -- ticking ---------------------------------------------------------------------------------


class _StepEffects:
    """A step's side effects, in the tick's transaction (so they commit with the step)."""

    def __init__(self, conn: Connection, store: stores_repo.Store) -> None:
        self.conn, self.store = conn, store

    def coupon(self, run: RunState, step_id: str, spec: Any, at: int) -> dict[str, Any]:
        coupon = loyalty_service.issue_coupon_in(
            self.conn, self.store.id, kind=spec.kind, value=spec.value,
            currency=self.store.currency if spec.kind == "amount_off" else None,
            customer_id=run.customer_id, max_uses=1, per_customer=None,
            expires_at=at + spec.expires_days * MICROS_PER_DAY,
            source=f"flow-run:{run.run_id}:{step_id}", at=at, once=True,
        )  # fmt: skip
        return {
            "code": loyalty_service.format_code(coupon.code),
            "kind": coupon.kind,
            "value": coupon.value,
            "expires_at": coupon.expires_at,
        }

    def points(self, run: RunState, step_id: str, spec: Any, at: int) -> None:
        program = loyalty_service.load_program(self.conn, self.store.id)
        loyalty_service.earn_in(
            self.conn, self.store.id, run.customer_id, spec.points,
            key=f"flow-run:{run.run_id}:{step_id}", reason=spec.reason, actor="campaign",
            expires_at=lot_expiry(program, at), order_ref=None, at=at, system=True,
        )  # fmt: skip

    def credit(self, run: RunState, step_id: str, spec: Any, at: int) -> dict[str, Any]:
        granted = loyalty_service.grant_credit_in(
            self.conn, self.store, run.customer_id, spec.amount,
            key=f"flow-run:{run.run_id}:{step_id}", reason=spec.reason, actor="campaign",
            at=at, system=True,
        )  # fmt: skip
        return {"amount": spec.amount, "currency": self.store.currency, "balance": granted.balance}

    def task(self, run: RunState, step_id: str, spec: Any, at: int) -> None:
        repo.add_task(self.conn, {
            "store_id": self.store.id, "run_id": run.run_id, "customer_id": run.customer_id,
            "task_key": f"run:{run.run_id}:{step_id}", "title": spec.title, "body": spec.body,
            "status": "open", "created_at": at,
        })  # fmt: skip

    def profile(self, run: RunState, step_id: str, spec: Any, at: int) -> None:
        found = repo.customer_profile(self.conn, self.store.id, run.customer_id)
        if found is None:
            return
        tags = list(json.loads(found["tags"])) if found["tags"] else []
        tags = [t for t in tags if t not in spec.remove_tags]
        tags += [t for t in spec.add_tags if t not in tags]
        attrs = dict(json.loads(found["attributes"])) if found["attributes"] else {}
        attrs.update(spec.attributes)
        repo.set_customer_profile(
            self.conn, self.store.id, run.customer_id,
            json.dumps(tags) if tags else None, json.dumps(attrs, sort_keys=True) if attrs else None,
        )  # fmt: skip


@dataclass
class TickResult:
    advanced: int = 0
    queued: int = 0
    done: int = 0
    exited: int = 0
    batches: int = 0


def tick(engine: Engine, store: str, now: int, *, batch: int = 5000) -> TickResult:
    """Advance every run due by ``now``, a batch per transaction (all on one connection,
    so SQLite does not open, configure and checkpoint a connection per batch)."""
    out = TickResult()
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            # The batch's random reads and index writes over big tables: keep pages in
            # memory (this connection only; the default is 2 MiB).
            conn.exec_driver_sql(f"PRAGMA cache_size = -{TICK_CACHE_KIB}")
            conn.commit()
        while True:
            with conn.begin(), _no_gc():
                row = stores_repo.get(conn, store)
                claimed = repo.claim_due_runs(conn, row.id, now, batch)
                if not claimed:
                    return out
                _advance_batch(conn, row, claimed, now, out)
            out.batches += 1
            if len(claimed) < batch:
                return out


@contextmanager
def _no_gc() -> Iterator[None]:
    """The cyclic garbage collector paused for one batch (and restored after it): a batch
    keeps thousands of new containers alive until its writes, and the collector would walk
    the growing heap again and again meanwhile (it cost as much as advancing the runs).
    Garbage in cycles is collected by the next collection after the batch."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@dataclass(frozen=True)
class _Needs:
    """The facts a flow's steps and exits read: only those are gathered for a batch."""

    orders: bool  # exit on an order: the customers' order times
    rules: tuple[str, ...]  # segment rules (exit rule, splits): their flags
    timezone: bool  # a wait until a time of day: the customer's timezone
    dates: frozenset[str]  # waits until a date property: those dates

    @staticmethod
    def of(flow: Flow) -> _Needs:
        from boomerang.campaigns.flow import Wait

        waits = [s.wait for s in flow.steps if isinstance(s, Wait)]
        return _Needs(
            orders=flow.exit.placed_order,
            rules=tuple(dict.fromkeys(t for _, t in rules(flow))),
            timezone=any(w.until_time is not None for w in waits),
            dates=frozenset(w.until for w in waits if w.until is not None),
        )


_NO_FACTS = Facts()


def _encode_run(context: dict[str, Any]) -> str:
    return orjson.dumps(context, option=orjson.OPT_SORT_KEYS).decode()


def _advance_batch(
    conn: Connection, store: stores_repo.Store, claimed: list[repo.DueRun], now: int,
    out: TickResult,
) -> None:  # fmt: skip
    """Advance the claimed runs and queue their messages, in the caller's transaction.

    Facts are gathered only for what the batch's flows read (order times for an exit on
    an order, rule flags, timezones and dates for such waits); the runs are written with
    one prepared UPDATE per row (optimistic: the version read must still be there) and
    the messages with one INSERT per row that ignores a (run, step) already queued."""
    rows_by_id = {f.id: f for f in repo.list_flows(conn, store.id)}
    flows: dict[int, Flow] = {}
    needs: dict[int, _Needs] = {}
    members: dict[int, list[int]] = {}
    for r in claimed:
        if r.flow_id not in flows:
            flows[r.flow_id] = _flow_of(rows_by_id[r.flow_id])
            needs[r.flow_id] = _Needs.of(flows[r.flow_id])
            members[r.flow_id] = []
        members[r.flow_id].append(r.customer_id)
    times: dict[int, tuple[int, ...]] = {}
    with_orders = [c for f, n in needs.items() if n.orders for c in members[f]]
    if with_orders:
        earliest = min(r.entered_at for r in claimed if needs[r.flow_id].orders)
        times = repo.order_times(conn, store.id, with_orders, earliest, now)
    contact: dict[int, dict[str, Any]] = {}
    with_contact = [c for f, n in needs.items() if n.timezone or n.dates for c in members[f]]
    if with_contact:
        renewals = any("membership_renewal" in n.dates for n in needs.values())
        contact = repo.run_contacts(conn, store.id, with_contact, renewals=renewals)
    flags: dict[int, dict[int, dict[str, bool]]] = {}
    for fid, n in needs.items():
        if n.rules:
            flags[fid] = rule_flags(conn, store, list(n.rules), members[fid], now)
    effects = _StepEffects(conn, store)
    changes: list[repo.RunChange] = []
    messages: list[repo.NewMessage] = []
    loads, dumps, change = orjson.loads, _encode_run, repo.RunChange
    done = exited = 0
    for rid, fid, cid, step_id, due_at, entered_at, holdout, version, text in claimed:
        flow, need = flows[fid], needs[fid]
        run = RunState(rid, cid, step_id, due_at, entered_at, bool(holdout), loads(text))
        facts = _NO_FACTS  # the flow reads nothing, or there is nothing to know
        if need.rules or need.timezone or need.dates:
            facts_of = contact.get(cid, {})
            facts = Facts(
                order_times=times.get(cid, ()),
                rules=flags.get(fid, {}).get(cid, {}),
                timezone=facts_of.get("timezone"),
                dates=_dates(facts_of, due_at) if need.dates else {},
            )
        elif cid in times:
            facts = Facts(order_times=times[cid])
        result = advance(flow, run, facts, now, effects)
        changes.append(change(
            result.step_id, result.due_at, result.status, result.exit_reason,
            text if result.context is run.context else dumps(result.context), now, rid, version,
        ))  # fmt: skip
        if result.outgoing:
            expires = run.context.get("trigger", {}).get("expires_at")
            for m in result.outgoing:
                # A message that carries the run's whole context, unchanged, carries its text.
                same = m.context is run.context or _same_context(m.context, run.context)
                messages.append(
                    _outbox_row(store.id, fid, flow, run, m, expires, now, text if same else None)
                )
        if result.status != "active":
            done += result.status == "done"
            exited += result.status == "exited"
    out.done += done
    out.exited += exited
    out.queued += repo.insert_messages(conn, messages)
    updated = repo.update_runs(conn, changes)
    if updated != len(changes):  # another worker moved a run we read: undo the whole batch
        raise RuntimeError(f"{len(changes) - updated} runs changed under this tick; retry")
    out.advanced += updated


def _dates(contact: dict[str, Any], after: int) -> dict[str, int | None]:
    from boomerang.store.repos.campaign_triggers import next_birthday_after

    return {
        "birthday": next_birthday_after(contact.get("birthday"), after),
        "membership_renewal": contact.get("renews_at"),
    }


def _same_context(message: dict[str, Any], run: dict[str, Any]) -> bool:
    """The message's context is the run's (same keys, the very same values: nothing was
    added since the run's context was read)."""
    return len(message) == len(run) and all(message.get(k) is v for k, v in run.items())


_ENCODE = json.JSONEncoder(sort_keys=True, default=str).encode


def _outbox_row(
    store_id: int, flow_id: int, flow: Flow, run: RunState, m: Outgoing, expires: Any, now: int,
    context_text: str | None = None,
) -> repo.NewMessage:  # fmt: skip
    return repo.NewMessage(
        store_id, f"run:{run.run_id}:{m.step_id}", flow_id, run.run_id, m.step_id,
        run.customer_id, m.channel, m.template, int(m.transactional),
        TRANSACTIONAL_PRIORITY if m.transactional else flow.priority, int(run.holdout),
        "queued", None, m.not_before, expires, 0,
        _ENCODE(m.context) if context_text is None else context_text, now, now,
    )  # fmt: skip


# -- dispatching -----------------------------------------------------------------------------


def arbiter_settings(conn: Connection, store_id: int) -> ArbiterSettings:
    config = settings_repo.load_config(conn, store_id)
    return ArbiterSettings.model_validate(config.get("arbiter", {}))


@dataclass
class DispatchResult:
    sent: int = 0
    skipped: int = 0
    deferred: int = 0
    failed: int = 0
    retried: int = 0
    requeued: int = 0
    in_doubt: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def recover(
    engine: Engine, store: str, now: int | None = None, *, lease: int = LEASE
) -> tuple[int, int]:
    """Claims older than the lease: back to the queue, or in-doubt if mid-delivery.

    Leases are stamped and measured on the wall clock (``now`` defaults to it), never on
    a simulated ``now``: a pass that runs long, or a simulation of last month, must not
    make a live worker's claims look abandoned."""
    wall = now_micros() if now is None else now
    with engine.begin() as conn:
        row = stores_repo.get(conn, store)
        return repo.recover_stale(conn, row.id, wall - lease, wall)


def dispatch(
    engine: Engine,
    store: str,
    now: int,
    *,
    channels: Callable[[str], Channel],
    build: Builder,
    worker: str | None = None,
    limit: int = 200,
) -> DispatchResult:
    """Deliver what is ready by ``now`` (one claim of up to ``limit`` messages).

    One connection serves the whole call; every step is still its own transaction: the
    claim; then the messages that will not be sent (skipped, deferred, not renderable),
    together; then, per message sent, one transaction that records the outcome of the
    message delivered just before (sent, failed, retry) and marks this one ``sending``
    after re-reading the consent and taking the capped slot. So a worker has at most one
    message ``sending`` at any time, and one kill leaves at most one message in doubt."""
    me = worker or uuid.uuid4().hex[:16]
    out = DispatchResult()
    with engine.connect() as conn:
        with conn.begin():
            row = stores_repo.get(conn, store)
            settings = arbiter_settings(conn, row.id)
            claimed = repo.claim_messages(conn, row.id, me, now, limit, lease_at=now_micros())
            cids = [int(m["customer_id"]) for m in claimed]
            contacts = repo.contact_facts(conn, row.id, cids, now) if claimed else {}
            slots = repo.last_marketing_many(
                conn, row.id, [(int(m["customer_id"]), str(m["channel"])) for m in claimed]
            )
            rivals = repo.outranking(conn, row.id, claimed, now) if claimed else {}
        if not claimed:
            return out
        decided = []
        for m in claimed:
            cid, channel = int(m["customer_id"]), str(m["channel"])
            candidate = _candidate(m, contacts.get(cid, {}), slots.get((cid, channel)))
            if int(m["id"]) in rivals:
                candidate = replace(candidate, outranked_by=rivals[int(m["id"])])
            decided.append((m, candidate, decide(candidate, settings, now)))
        to_send = [m for m, _, d in decided if d.action == "send"]
        built = build(to_send, contacts) if to_send else {}
        sends = []
        with conn.begin():  # what will not be sent, settled together
            for m, candidate, decision in decided:
                message = built.get(int(m["id"]))
                if decision.action == "send" and isinstance(message, Message):
                    sends.append((m, candidate, message))
                elif decision.action == "send":  # a template error fails this message only
                    _finish(conn, int(m["id"]), me, now, "failed", f"render: {message}"[:200])
                    out.failed += 1
                else:
                    _settle(conn, int(m["id"]), me, now, decision, out)
        sender = _Sender(conn, row.id, settings, now, me, channels, out)
        try:
            for m, candidate, message in sends:
                sender.send(m, candidate, message)
        finally:
            sender.flush()
    return out


def _candidate(m: dict[str, Any], contact: dict[str, Any], last: int | None) -> Candidate:
    channel = str(m["channel"])
    return Candidate(
        channel=channel, transactional=bool(m["transactional"]), priority=int(m["priority"]),
        holdout=bool(m["holdout"]), expires_at=m["expires_at"],
        address=address_for(channel, contact, json.loads(m["context"])) or None,
        consent=contact.get("consent", {}).get(channel) if channel != "webhook" else "granted",
        last_marketing_at=None if m["attempts"] else last, timezone=contact.get("timezone"),
        created_at=int(m["created_at"]),
    )  # fmt: skip


def _note(out: DispatchResult, decision: Decision) -> None:
    out.reasons[decision.reason] = out.reasons.get(decision.reason, 0) + 1


def _settle(
    conn: Connection, oid: int, me: str, now: int, decision: Decision, out: DispatchResult
) -> None:
    """A claimed message that is not sent: skipped (with the reason) or back in the queue
    until ``decision.until``."""
    if decision.action == "skip":
        _finish(conn, oid, me, now, "skipped", decision.reason)
        out.skipped += 1
    else:
        repo.set_message(conn, oid, expect="claimed", worker=me, now=now, status="queued",
                         not_before=decision.until, reason=decision.reason,
                         claimed_by=None, claimed_at=None)  # fmt: skip
        out.deferred += 1
    _note(out, decision)


def _finish(conn: Connection, oid: int, me: str, now: int, status: str, reason: str) -> None:
    repo.set_message(conn, oid, expect="claimed", worker=me, now=now, status=status,
                     reason=reason)  # fmt: skip


@dataclass
class _Outcome:
    """How a delivery ended, to be written (``sending`` -> status) in the next transaction."""

    oid: int
    values: dict[str, Any]
    counter: str  # the `DispatchResult` field it counts in


class _Sender:
    """Marks messages ``sending`` and delivers them one at a time on one connection; the
    outcome of a delivery is written in the transaction that marks the next message (or
    by `flush`)."""

    def __init__(
        self, conn: Connection, store_id: int, settings: ArbiterSettings, now: int, me: str,
        channels: Callable[[str], Channel], out: DispatchResult,
    ) -> None:  # fmt: skip
        self.conn, self.store_id, self.settings = conn, store_id, settings
        self.now, self.me, self.channels, self.out = now, me, channels, out
        self.pending: _Outcome | None = None
        self.renewed = now_micros()

    def _renew(self) -> None:
        """Keep this worker's remaining claims fresh when a slow batch has used a third of
        the lease, so no other worker recovers them."""
        wall = now_micros()
        if wall - self.renewed > LEASE // 3:
            with self.conn.begin():
                repo.renew_claims(self.conn, self.store_id, self.me, wall)
            self.renewed = wall

    def _write_pending(self) -> _Outcome | None:
        done = self.pending
        if done is not None:
            repo.set_message(self.conn, done.oid, expect="sending", worker=self.me, now=self.now,
                             **done.values)  # fmt: skip
        return done

    def _count(self, done: _Outcome | None) -> None:
        if done is not None:
            setattr(self.out, done.counter, getattr(self.out, done.counter) + 1)
            if self.pending is done:
                self.pending = None

    def flush(self) -> None:
        if self.pending is None:
            return
        with self.conn.begin():
            done = self._write_pending()
        self._count(done)

    def send(self, m: dict[str, Any], candidate: Candidate, message: Message) -> None:
        conn, now, me, out = self.conn, self.now, self.me, self.out
        oid, channel, cid = int(m["id"]), str(m["channel"]), int(m["customer_id"])
        marketing = not candidate.transactional
        done = self.pending
        check = repo.start_delivery(conn, repo.DeliveryStart(
            self.store_id, oid, me, cid, channel,
            check_consent=marketing and channel != "webhook",
            take_slot=marketing and not m["attempts"], cap=self.settings.cap_micros(channel),
            now=now, lease_at=now_micros(),
        ), None if done is None else (done.oid, done.values))  # fmt: skip
        self._count(done)
        if not check.consent_ok:  # withdrawn since the decision: the unsubscribe wins
            with conn.begin():
                _settle(conn, oid, me, now,
                        Decision("skip", f"no {channel} marketing consent (withdrawn)"), out)  # fmt: skip
        elif not check.held:
            pass  # recovered from under us: its new owner sends it (and takes the slot)
        elif not check.slot:  # another worker took the slot since we looked: decide again
            with conn.begin():
                taken = repo.last_marketing(conn, self.store_id, cid, channel)
                decision = decide(replace(candidate, last_marketing_at=taken), self.settings, now)
                if decision.action == "send":  # pragma: no cover - the slot was just refused
                    decision = Decision("defer", "frequency cap: queued", now + HOUR)
                _settle(conn, oid, me, now, decision, out)
        if check.marked:
            self._renew()
            self.pending = _deliver(m, message, now, self.channels)


def _deliver(
    m: dict[str, Any], message: Message, now: int, channels: Callable[[str], Channel]
) -> _Outcome:
    """Hand the message (marked ``sending``) to its channel; what happened, to be recorded."""
    oid = int(m["id"])
    try:
        delivery = channels(str(m["channel"])).send(message)
    except TemporaryFailure as exc:
        attempts = int(m["attempts"]) + 1
        if attempts >= MAX_ATTEMPTS:
            reason = f"gave up after {attempts}: {exc}"[:200]
            return _Outcome(oid, {"status": "failed", "attempts": attempts, "reason": reason},
                            "failed")  # fmt: skip
        return _Outcome(oid, {
            "status": "queued", "attempts": attempts, "not_before": now + 2**attempts * 60_000_000,
            "claimed_by": None, "claimed_at": None, "reason": f"retry: {exc}"[:200],
        }, "retried")  # fmt: skip
    except PermanentFailure as exc:
        return _Outcome(oid, {"status": "failed", "reason": f"rejected: {exc}"[:200]}, "failed")
    return _Outcome(oid, {"status": "sent", "sent_at": now,
                          "provider_id": delivery.provider_id[:200]}, "sent")  # fmt: skip


def in_doubt(db: str, store: str) -> list[dict[str, Any]]:
    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            row = stores_repo.get(conn, store)
            return repo.messages(conn, row.id, status="in_doubt")
    finally:
        engine.dispose()


# -- running ---------------------------------------------------------------------------------


@dataclass
class RunSummary:
    started_at: int
    until: int
    steps: int = 0
    entered: dict[str, int] = field(default_factory=dict)
    tick: TickResult = field(default_factory=TickResult)
    dispatch: DispatchResult = field(default_factory=DispatchResult)


def _merge(total: DispatchResult, part: DispatchResult) -> None:
    for name in ("sent", "skipped", "deferred", "failed", "retried", "requeued", "in_doubt"):
        setattr(total, name, getattr(total, name) + getattr(part, name))
    for reason, n in part.reasons.items():
        total.reasons[reason] = total.reasons.get(reason, 0) + n


def _add_ticks(total: TickResult, part: TickResult) -> None:
    for name in ("advanced", "queued", "done", "exited", "batches"):
        setattr(total, name, getattr(total, name) + getattr(part, name))


def cycle(
    engine: Engine,
    store: str,
    now: int,
    summary: RunSummary,
    *,
    channels: Callable[[str], Channel],
    build: Builder,
    worker: str,
    enter_until: int | None = None,
) -> None:
    """One pass of the worker at ``now``: enter (triggers up to ``enter_until``, default
    now), tick, then dispatch until nothing is ready."""
    for name, n in enter(
        engine, store, now if enter_until is None else enter_until
    ).entered.items():
        summary.entered[name] = summary.entered.get(name, 0) + n
    _add_ticks(summary.tick, tick(engine, store, now))
    while True:
        part = dispatch(engine, store, now, channels=channels, build=build, worker=worker)
        _merge(summary.dispatch, part)
        if not (part.sent or part.skipped or part.deferred or part.failed or part.retried):
            return


def _next_due(engine: Engine, store: str) -> int | None:
    with engine.connect() as conn:
        row = stores_repo.get(conn, store)
        times = [repo.next_run_due(conn, row.id), repo.next_message_at(conn, row.id)]
        conn.rollback()
    found = [t for t in times if t is not None]
    return min(found) if found else None


def run_until(
    engine: Engine,
    store: str,
    until: int,
    *,
    channels: Callable[[str], Channel],
    build: Builder,
    step: int = HOUR,
    scan: int = MICROS_PER_DAY,
) -> RunSummary:
    """Advance simulated time from the flows' cursors to ``until`` on a grid of ``step``,
    doing at each point what a worker would do then (demos and tests).

    Triggers are scanned a ``scan`` window ahead (runs that enter later simply wait for
    their time), and grid points where nothing is due are skipped: the result is the same
    as visiting every point, without the cost of the empty ones.
    """
    with engine.connect() as conn:
        row = stores_repo.get(conn, store)
        cursors = [f.cursor_at for f in repo.list_flows(conn, row.id, active_only=True)]
        conn.rollback()
    start = min((c for c in cursors if c is not None), default=until)
    summary = RunSummary(started_at=start, until=until)
    worker = f"sim-{uuid.uuid4().hex[:8]}"
    recover(engine, store, lease=0)  # a crashed earlier run: its claims
    t, horizon = start, start
    while t < until:
        t = min(until, t + step)
        if t > horizon:
            horizon = min(until, max(t, horizon + scan))
        cycle(engine, store, t, summary, channels=channels, build=build, worker=worker,
              enter_until=horizon)  # fmt: skip
        summary.steps += 1
        due = _next_due(engine, store)
        target = min(horizon, until) if due is None else min(max(due, t), horizon, until)
        if target > t + step:  # jump to the last grid point before the next thing due
            t = start + ((target - start) // step) * step
            t = min(t, until)
            if t >= target:
                t -= step
    return summary


def add_summary(total: RunSummary, part: RunSummary) -> None:
    total.steps += part.steps
    total.until = max(total.until, part.until)
    for name, n in part.entered.items():
        total.entered[name] = total.entered.get(name, 0) + n
    _add_ticks(total.tick, part.tick)
    _merge(total.dispatch, part.dispatch)


@dataclass
class FlowInfo:
    name: str
    status: str
    version: int
    trigger: str
    runs: dict[str, int]
    messages: dict[str, int]


def list_flows(db: str, store: str) -> list[FlowInfo]:
    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            row = stores_repo.get(conn, store)
            runs = repo.run_counts(conn, row.id)
            sent = repo.outbox_counts(conn, row.id)
            flows = repo.list_flows(conn, row.id)
    finally:
        engine.dispose()
    return [
        FlowInfo(
            f.name,
            f.status,
            f.version,
            str(f.definition["trigger"]["type"]),
            {s: n for (name, s), n in runs.items() if name == f.name},
            {s: n for (name, s), n in sent.items() if name == f.name},
        )
        for f in flows
    ]


def staff_tasks(db: str, store: str, *, status: str | None = "open") -> list[dict[str, Any]]:
    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            row = stores_repo.get(conn, store)
            return repo.tasks(conn, row.id, status=status)
    finally:
        engine.dispose()


def outbox(db: str, store: str, *, status: str | None, limit: int) -> list[dict[str, Any]]:
    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            row = stores_repo.get(conn, store)
            return repo.messages(conn, row.id, status=status, limit=limit)
    finally:
        engine.dispose()


def send_steps(
    db: str, store: str, name: str, only: str | None = None
) -> list[tuple[str, str, str]]:
    """(step id, channel, template) of a stored flow's send steps (for previews)."""
    from boomerang.campaigns.flow import Send

    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            row = stores_repo.get(conn, store)
            found = repo.flow_by_name(conn, row.id, name)
    finally:
        engine.dispose()
    if found is None:
        raise NotFoundError(f"no flow {name!r}", hint="see `boomerang flows list`")
    flow = _flow_of(found)
    steps: list[tuple[str, str, str]] = [
        (s.id, str(s.send.channel), s.send.template) for s in flow.steps if isinstance(s, Send)
    ]
    if only is not None:
        steps = [s for s in steps if s[0] == only]
        if not steps:
            raise InputError(f"flow {name!r} has no send step {only!r}", hint="see the flow file")
    return steps


def templates_dir(db: str, store: str) -> str | None:
    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            row = stores_repo.get(conn, store)
            value = settings_repo.load_config(conn, row.id).get("templates_dir")
    finally:
        engine.dispose()
    return None if value is None else str(value)
