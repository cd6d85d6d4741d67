"""Flows, flow runs, the outbox, contact slots and staff tasks (all SQL of the engine).

Claims: on PostgreSQL, due runs and ready messages are taken with ``FOR UPDATE SKIP
LOCKED`` so several workers never take the same row; on SQLite the caller's transaction
began with ``BEGIN IMMEDIATE`` and writers are serialised. Run updates carry the version
they read (optimistic), so a run advanced twice by mistake is caught, never duplicated.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    Connection,
    Text,
    and_,
    any_,
    bindparam,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from boomerang.store.schema import (
    consents,
    contact_slots,
    customers,
    flow_runs,
    flows,
    memberships,
    orders,
    outbox,
    staff_tasks,
)

#: SQLite allows 32,766 bound parameters; IN-lists and batches stay well below it.
CHUNK = 900


def _insert(conn: Connection, table: Any) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# -- flows -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlowRow:
    id: int
    name: str
    definition: dict[str, Any]
    version: int
    status: str
    cursor_at: int | None


def _flow(row: Any) -> FlowRow:
    return FlowRow(
        int(row.id), str(row.name), json.loads(row.definition), int(row.version),
        str(row.status), None if row.cursor_at is None else int(row.cursor_at),
    )  # fmt: skip


def list_flows(conn: Connection, store_id: int, *, active_only: bool = False) -> list[FlowRow]:
    query = select(flows).where(flows.c.store_id == store_id).order_by(flows.c.name)
    if active_only:
        query = query.where(flows.c.status == "active")
    return [_flow(r) for r in conn.execute(query)]


def flow_by_name(conn: Connection, store_id: int, name: str) -> FlowRow | None:
    row = conn.execute(
        select(flows).where(flows.c.store_id == store_id, flows.c.name == name)
    ).first()
    return None if row is None else _flow(row)


def upsert_flow(
    conn: Connection, store_id: int, name: str, definition: dict[str, Any], start: int, now: int
) -> tuple[FlowRow, bool]:
    """Store a flow; a changed definition is a new version (runs keep going on it)."""
    text = json.dumps(definition, sort_keys=True, default=str)
    found = flow_by_name(conn, store_id, name)
    if found is None:
        conn.execute(
            flows.insert().values(
                store_id=store_id, name=name, definition=text, version=1, status="active",
                cursor_at=start, created_at=now, updated_at=now,
            )
        )  # fmt: skip
        created = flow_by_name(conn, store_id, name)
        assert created is not None
        return created, True
    if json.dumps(found.definition, sort_keys=True, default=str) == text:
        return found, False
    conn.execute(
        update(flows)
        .where(flows.c.id == found.id)
        .values(definition=text, version=found.version + 1, updated_at=now)
    )
    changed = flow_by_name(conn, store_id, name)
    assert changed is not None
    return changed, True


def set_flow_status(conn: Connection, flow_id: int, status: str, now: int) -> None:
    conn.execute(update(flows).where(flows.c.id == flow_id).values(status=status, updated_at=now))


def set_cursor(conn: Connection, flow_id: int, cursor_at: int) -> None:
    conn.execute(update(flows).where(flows.c.id == flow_id).values(cursor_at=cursor_at))


# -- runs ------------------------------------------------------------------------------------


def latest_entries(conn: Connection, flow_id: int, customer_ids: Sequence[int]) -> dict[int, int]:
    """customer -> when they last entered this flow (for the re-entry policy)."""
    out: dict[int, int] = {}
    for part in _chunks(sorted(set(customer_ids))):
        rows = conn.execute(
            select(flow_runs.c.customer_id, func.max(flow_runs.c.entered_at))
            .where(flow_runs.c.flow_id == flow_id, flow_runs.c.customer_id.in_(part))
            .group_by(flow_runs.c.customer_id)
        )
        out.update({int(c): int(t) for c, t in rows})
    return out


def insert_runs(conn: Connection, rows: list[dict[str, Any]]) -> int:
    """New runs; an entry already recorded (same flow, customer, entry key) is ignored."""
    inserted = 0
    for part in _chunks(rows, 500):
        stmt = (
            _insert(conn, flow_runs)
            .values(list(part))
            .on_conflict_do_nothing(index_elements=["flow_id", "customer_id", "entry_key"])
            .returning(flow_runs.c.id)
        )
        inserted += len(conn.execute(stmt).all())
    return inserted


class DueRun(NamedTuple):
    """What the tick reads of a claimed run."""

    id: int
    flow_id: int
    customer_id: int
    step_id: str
    due_at: int
    entered_at: int
    holdout: int
    version: int
    context: str  # JSON


_RUN_COLUMNS = tuple(flow_runs.c[name] for name in DueRun._fields)


def claim_due_runs(conn: Connection, store_id: int, now: int, limit: int) -> list[DueRun]:
    """Up to ``limit`` active runs due by ``now`` (earliest first) of the store's active
    flows."""
    live = select(flows.c.id).where(flows.c.store_id == store_id, flows.c.status == "active")
    query = (
        select(*_RUN_COLUMNS)
        .where(
            flow_runs.c.store_id == store_id,
            flow_runs.c.status == "active",
            flow_runs.c.due_at <= now,
            flow_runs.c.flow_id.in_(live.scalar_subquery()),  # a paused flow's runs wait
        )
        .order_by(flow_runs.c.due_at, flow_runs.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(of=flow_runs, skip_locked=True)
    return list(map(DueRun._make, conn.execute(query).all()))


class RunChange(NamedTuple):
    """An advance to write: the run's new state, its id and the version it was read at."""

    step_id: str
    due_at: int
    status: str
    exit_reason: str | None
    context: str  # JSON
    updated_at: int
    rid: int
    read: int


_SQLITE_RUN_UPDATE = (
    "UPDATE flow_runs SET step_id = ?, due_at = ?, status = ?, exit_reason = ?, context = ?, "
    "updated_at = ?, version = version + 1 WHERE id = ? AND version = ?"
)
_PG_RUN_UPDATE = (
    "UPDATE flow_runs AS r SET step_id = v.step_id, due_at = v.due_at, status = v.status, "
    "exit_reason = v.exit_reason, context = v.context, updated_at = v.updated_at, "
    "version = r.version + 1 "
    "FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::text[], %s::text[], %s::bigint[], "
    "%s::bigint[], %s::bigint[]) "
    "AS v(step_id, due_at, status, exit_reason, context, updated_at, rid, read) "
    "WHERE r.id = v.rid AND r.version = v.read"
)


def update_runs(conn: Connection, changes: Sequence[RunChange]) -> int:
    """Apply advances; a run whose version moved on since it was read is not updated (the
    count tells). One prepared statement executed for every row on SQLite, one statement
    over arrays (``unnest``) on PostgreSQL."""
    if not changes:
        return 0
    if conn.dialect.name == "postgresql":
        columns = tuple(list(column) for column in zip(*changes, strict=True))
        return int(conn.exec_driver_sql(_PG_RUN_UPDATE, columns).rowcount)
    return int(conn.exec_driver_sql(_SQLITE_RUN_UPDATE, list(changes)).rowcount)


def run_counts(conn: Connection, store_id: int) -> dict[tuple[str, str], int]:
    rows = conn.execute(
        select(flows.c.name, flow_runs.c.status, func.count())
        .join(flows, flows.c.id == flow_runs.c.flow_id)
        .where(flow_runs.c.store_id == store_id)
        .group_by(flows.c.name, flow_runs.c.status)
    )
    return {(str(n), str(s)): int(c) for n, s, c in rows}


# -- facts for a batch of runs ---------------------------------------------------------------


def order_times(
    conn: Connection, store_id: int, customer_ids: Sequence[int], since: int, until: int
) -> dict[int, tuple[int, ...]]:
    """Each customer's non-cancelled order times in (since, until], ascending. One
    statement whatever the number of customers (their ids travel as one parameter)."""
    ids = sorted({int(c) for c in customer_ids})
    if not ids:
        return {}
    rows = conn.execute(
        select(orders.c.customer_id, orders.c.placed_at)
        .where(
            orders.c.store_id == store_id,
            _among(conn, orders.c.customer_id, ids),
            orders.c.status != "cancelled",
            orders.c.placed_at > since,
            orders.c.placed_at <= until,
        )
        .order_by(orders.c.placed_at)
    )
    out: dict[int, list[int]] = {}
    for c, t in rows:
        out.setdefault(int(c), []).append(int(t))
    return {c: tuple(ts) for c, ts in out.items()}


def _among(conn: Connection, column: Any, ids: list[int]) -> Any:
    """``column IN ids`` with the ids as one parameter (an array on PostgreSQL, a JSON
    array read by ``json_each`` on SQLite), so no statement grows with them."""
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam("among_ids", ids, type_=postgresql.ARRAY(BigInteger)))
    each = func.json_each(bindparam("among_ids", json.dumps(ids), type_=Text)).table_valued("value")
    return column.in_(select(each.c.value))


def contact_facts(
    conn: Connection, store_id: int, customer_ids: Sequence[int], now: int
) -> dict[int, dict[str, Any]]:
    """Per customer: email, phone, timezone, birthday and the latest consent per channel
    recorded by ``now``."""
    out: dict[int, dict[str, Any]] = {}
    for part in _chunks(sorted(set(customer_ids))):
        rows = conn.execute(
            select(
                customers.c.id, customers.c.email, customers.c.phone, customers.c.timezone,
                customers.c.birthday, customers.c.first_name, customers.c.attributes,
            ).where(customers.c.store_id == store_id, customers.c.id.in_(part))
        )  # fmt: skip
        for r in rows:
            attrs = json.loads(r.attributes) if r.attributes else {}
            out[int(r.id)] = {
                "email": r.email, "phone": r.phone, "timezone": r.timezone,
                "birthday": r.birthday, "first_name": r.first_name, "consent": {},
                "push_token": attrs.get("push_token") if isinstance(attrs, dict) else None,
                "renews_at": None,
            }  # fmt: skip
        found = conn.execute(
            select(consents.c.customer_id, consents.c.channel, consents.c.status)
            .where(
                consents.c.store_id == store_id,
                consents.c.customer_id.in_(part),
                consents.c.occurred_at <= now,
            )
            .order_by(consents.c.occurred_at, consents.c.id)
        )
        for cid, channel, status in found:
            if int(cid) in out:
                out[int(cid)]["consent"][str(channel)] = str(status)
        _add_renewals(conn, store_id, part, out)
    return out


def _add_renewals(
    conn: Connection, store_id: int, part: Sequence[int], out: dict[int, dict[str, Any]]
) -> None:
    """``renews_at``: the end of each customer's live (trial or active, not cancelling)
    membership, for the customers already in ``out``."""
    live = conn.execute(
        select(memberships.c.customer_id, func.max(memberships.c.period_end))
        .where(
            memberships.c.store_id == store_id,
            memberships.c.customer_id.in_(part),
            memberships.c.status.in_(("trial", "active")),
            memberships.c.cancel_at_period_end == 0,
        )
        .group_by(memberships.c.customer_id)
    )
    for cid, end in live:
        if int(cid) in out:
            out[int(cid)]["renews_at"] = int(end)


def run_contacts(
    conn: Connection, store_id: int, customer_ids: Sequence[int], *, renewals: bool
) -> dict[int, dict[str, Any]]:
    """What waits need of each customer: timezone, birthday and (``renewals``) the end of
    their live membership (``renews_at``), as `contact_facts` gives them."""
    out: dict[int, dict[str, Any]] = {}
    for part in _chunks(sorted(set(customer_ids))):
        rows = conn.execute(
            select(customers.c.id, customers.c.timezone, customers.c.birthday).where(
                customers.c.store_id == store_id, customers.c.id.in_(part)
            )
        )
        for cid, zone, birthday in rows:
            out[int(cid)] = {"timezone": zone, "birthday": birthday, "renews_at": None}
        if not renewals:
            continue
        _add_renewals(conn, store_id, part, out)
    return out


# -- outbox ----------------------------------------------------------------------------------


class NewMessage(NamedTuple):
    """A message for the outbox, as the tick queues it."""

    store_id: int
    message_key: str
    flow_id: int
    run_id: int
    step_id: str
    customer_id: int
    channel: str
    template: str
    transactional: int
    priority: int
    holdout: int
    status: str
    reason: str | None
    not_before: int
    expires_at: int | None
    attempts: int
    context: str  # JSON
    created_at: int
    updated_at: int


#: The PostgreSQL array type of each `NewMessage` field, in order.
_PG_MESSAGE_TYPES = (
    "bigint", "text", "bigint", "bigint", "text", "bigint", "text", "text", "int", "int", "int",
    "text", "text", "bigint", "bigint", "int", "text", "bigint", "bigint",
)  # fmt: skip
_SQLITE_OUTBOX_INSERT = (
    f"INSERT INTO outbox ({', '.join(NewMessage._fields)}) "
    f"VALUES ({', '.join('?' * len(NewMessage._fields))}) "
    "ON CONFLICT (store_id, message_key) DO NOTHING"
)
_PG_OUTBOX_INSERT = (
    f"INSERT INTO outbox ({', '.join(NewMessage._fields)}) SELECT * FROM unnest("
    + ", ".join(f"%s::{kind}[]" for kind in _PG_MESSAGE_TYPES)
    + ") ON CONFLICT (store_id, message_key) DO NOTHING"
)


def insert_messages(conn: Connection, rows: Sequence[NewMessage]) -> int:
    """Queue messages; a (run, step) already queued is ignored (exactly one row each).
    Returns how many were new."""
    if not rows:
        return 0
    if conn.dialect.name == "postgresql":
        columns = tuple(list(column) for column in zip(*rows, strict=True))
        return int(conn.exec_driver_sql(_PG_OUTBOX_INSERT, columns).rowcount)
    return int(conn.exec_driver_sql(_SQLITE_OUTBOX_INSERT, list(rows)).rowcount)


def claim_messages(
    conn: Connection, store_id: int, worker: str, now: int, limit: int, *, lease_at: int
) -> list[dict[str, Any]]:
    """Take up to ``limit`` ready messages for ``worker`` (highest priority first); the
    claim's lease is stamped ``lease_at`` (wall clock), ``now`` may be simulated."""
    pick = (
        select(outbox.c.id)
        .where(
            outbox.c.store_id == store_id,
            outbox.c.status == "queued",
            outbox.c.not_before <= now,
        )
        .order_by(outbox.c.priority.desc(), outbox.c.not_before, outbox.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    ids = [int(i) for i in conn.execute(pick).scalars()]
    if not ids:
        return []
    conn.execute(
        update(outbox)
        .where(outbox.c.id.in_(ids), outbox.c.status == "queued")
        .values(status="claimed", claimed_by=worker, claimed_at=lease_at, updated_at=now)
    )
    rows = conn.execute(
        select(outbox)
        .where(outbox.c.id.in_(ids), outbox.c.claimed_by == worker, outbox.c.status == "claimed")
        .order_by(outbox.c.priority.desc(), outbox.c.not_before, outbox.c.id)
    )
    return [dict(r) for r in rows.mappings()]


def set_message(
    conn: Connection,
    outbox_id: int,
    *,
    expect: str,
    worker: str | None,
    now: int,
    **values: Any,
) -> bool:
    """Move a message on only from the state (and worker) the caller holds it in."""
    key = (worker is not None, tuple(sorted(values)))
    stmt = _SET_MESSAGE.get(key)
    if stmt is None:  # one statement per shape, built once (the dispatcher's hot path)
        cond = [outbox.c.id == bindparam("w_id"), outbox.c.status == bindparam("w_status")]
        if worker is not None:
            cond.append(outbox.c.claimed_by == bindparam("w_worker"))
        sets: dict[str, Any] = {name: bindparam(f"v_{name}") for name in ("updated_at", *key[1])}
        stmt = _SET_MESSAGE[key] = update(outbox).where(*cond).values(sets)
    params = {f"v_{name}": value for name, value in values.items()}
    params.update(w_id=outbox_id, w_status=expect, v_updated_at=now)
    if worker is not None:
        params["w_worker"] = worker
    return int(conn.execute(stmt, params).rowcount) == 1


_SET_MESSAGE: dict[tuple[bool, tuple[str, ...]], Any] = {}


def _holds_claim(conn: Connection, outbox_id: int, worker: str) -> bool:
    """Whether ``worker`` still holds its claim on the message (SQLite: writers are
    serialised; PostgreSQL locks the row inside `_PG_START`)."""
    return conn.execute(_HOLDS, {"p_id": outbox_id, "p_worker": worker}).first() is not None


_HOLDS = select(outbox.c.id).where(
    outbox.c.id == bindparam("p_id"),
    outbox.c.status == "claimed",
    outbox.c.claimed_by == bindparam("p_worker"),
)


def renew_claims(conn: Connection, store_id: int, worker: str, lease_at: int) -> None:
    conn.execute(
        update(outbox)
        .where(
            outbox.c.store_id == store_id,
            outbox.c.status == "claimed",
            outbox.c.claimed_by == worker,
        )
        .values(claimed_at=lease_at)
    )


def recover_stale(conn: Connection, store_id: int, before: int, now: int) -> tuple[int, int]:
    """After a crash: claimed-but-untouched messages go back to the queue (they never
    reached a provider); messages caught mid-delivery become in-doubt (never resent)."""
    requeued = conn.execute(
        update(outbox)
        .where(
            outbox.c.store_id == store_id,
            outbox.c.status == "claimed",
            outbox.c.claimed_at < before,
        )
        .values(status="queued", claimed_by=None, claimed_at=None, updated_at=now)
    ).rowcount
    doubtful = conn.execute(
        update(outbox)
        .where(
            outbox.c.store_id == store_id,
            outbox.c.status == "sending",
            outbox.c.claimed_at < before,
        )
        .values(
            status="in_doubt",
            reason="the worker stopped during delivery; check the provider before resending",
            updated_at=now,
        )
    ).rowcount
    return int(requeued), int(doubtful)


def messages(
    conn: Connection, store_id: int, *, status: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    query = select(outbox).where(outbox.c.store_id == store_id).order_by(outbox.c.id)
    if status is not None:
        query = query.where(outbox.c.status == status)
    if limit is not None:
        query = query.limit(limit)
    return [dict(r) for r in conn.execute(query).mappings()]


def outbox_counts(conn: Connection, store_id: int) -> dict[tuple[str, str], int]:
    rows = conn.execute(
        select(func.coalesce(flows.c.name, ""), outbox.c.status, func.count())
        .select_from(outbox.outerjoin(flows, flows.c.id == outbox.c.flow_id))
        .where(outbox.c.store_id == store_id)
        .group_by(flows.c.name, outbox.c.status)
    )
    return {(str(n), str(s)): int(c) for n, s, c in rows}


def pending_message_count(conn: Connection, store_id: int) -> int:
    return int(
        conn.execute(
            select(func.count()).where(
                outbox.c.store_id == store_id, outbox.c.status.in_(("queued", "claimed"))
            )
        ).scalar_one()
    )


def next_message_at(conn: Connection, store_id: int) -> int | None:
    value = conn.execute(
        select(func.min(outbox.c.not_before)).where(
            outbox.c.store_id == store_id, outbox.c.status == "queued"
        )
    ).scalar()
    return None if value is None else int(value)


def next_run_due(conn: Connection, store_id: int) -> int | None:
    live = select(flows.c.id).where(flows.c.store_id == store_id, flows.c.status == "active")
    value = conn.execute(
        select(func.min(flow_runs.c.due_at)).where(
            flow_runs.c.store_id == store_id,
            flow_runs.c.status == "active",
            flow_runs.c.flow_id.in_(live.scalar_subquery()),
        )
    ).scalar()
    return None if value is None else int(value)


# -- the arbiter's slot ----------------------------------------------------------------------


def last_marketing(conn: Connection, store_id: int, customer_id: int, channel: str) -> int | None:
    value = conn.execute(
        select(contact_slots.c.last_marketing_at).where(
            contact_slots.c.store_id == store_id,
            contact_slots.c.customer_id == customer_id,
            contact_slots.c.channel == channel,
        )
    ).scalar()
    return None if value is None else int(value)


def last_marketing_many(
    conn: Connection, store_id: int, pairs: Sequence[tuple[int, str]]
) -> dict[tuple[int, str], int]:
    """(customer, channel) -> the last marketing send recorded, for the pairs that have one."""
    wanted = set(pairs)
    out: dict[tuple[int, str], int] = {}
    for part in _chunks(sorted({c for c, _ in wanted})):
        rows = conn.execute(
            select(
                contact_slots.c.customer_id, contact_slots.c.channel,
                contact_slots.c.last_marketing_at,
            ).where(contact_slots.c.store_id == store_id, contact_slots.c.customer_id.in_(part))
        )  # fmt: skip
        for cid, channel, at in rows:
            key = (int(cid), str(channel))
            if at is not None and key in wanted:
                out[key] = int(at)
    return out


def outranking(
    conn: Connection, store_id: int, claimed: Sequence[dict[str, Any]], now: int
) -> dict[int, int]:
    """Claimed message id -> the highest priority of another ready marketing message for
    the same customer and channel that is queued or held by another claim, where that
    priority is higher: the capped slot should go to that one, whichever worker has it."""
    mine = {int(m["id"]) for m in claimed}
    best: dict[tuple[int, str], int] = {}
    for part in _chunks(sorted({int(m["customer_id"]) for m in claimed})):
        rows = conn.execute(
            select(outbox.c.id, outbox.c.customer_id, outbox.c.channel, outbox.c.priority).where(
                outbox.c.store_id == store_id,
                outbox.c.customer_id.in_(part),
                outbox.c.status.in_(("queued", "claimed", "sending")),
                outbox.c.not_before <= now,
                outbox.c.transactional == 0,
                outbox.c.holdout == 0,
            )
        )
        for oid, cid, channel, priority in rows:
            if int(oid) not in mine:
                key = (int(cid), str(channel))
                best[key] = max(best.get(key, -1), int(priority))
    out: dict[int, int] = {}
    for m in claimed:
        rival = best.get((int(m["customer_id"]), str(m["channel"])))
        if rival is not None and rival > int(m["priority"]):
            out[int(m["id"])] = rival
    return out


def _consent_now(conn: Connection, store_id: int, customer_id: int, channel: str) -> str | None:
    """The channel's latest consent status (SQLite: read in the writer's transaction, so
    an unsubscribe committed before it is seen; PostgreSQL does this inside `_PG_START`,
    after a share lock on the customer)."""
    params = {"p_store": store_id, "p_customer": customer_id, "p_channel": channel}
    value = conn.execute(_CONSENT_NOW, params).scalar()
    return None if value is None else str(value)


_CONSENT_NOW = (
    select(consents.c.status)
    .where(
        consents.c.store_id == bindparam("p_store"),
        consents.c.customer_id == bindparam("p_customer"),
        consents.c.channel == bindparam("p_channel"),
    )
    .order_by(consents.c.occurred_at.desc(), consents.c.id.desc())
    .limit(1)
)


def take_slot(
    conn: Connection, store_id: int, customer_id: int, channel: str, now: int, cap: int | None
) -> bool:
    """Record a marketing send now, only if the last one is at least ``cap`` ago: one
    statement, so two workers can never both take the slot."""
    params = {"p_store": store_id, "p_customer": customer_id, "p_channel": channel, "p_now": now}
    created = conn.execute(_slot_insert(conn.dialect.name), params).first()
    if created is not None:
        return True
    params["p_limit"] = now if cap is None else now - cap
    return int(conn.execute(_SLOT_UPDATE, params).rowcount) == 1


_SLOT_INSERTS: dict[str, Any] = {}


def _slot_insert(dialect: str) -> Any:
    found = _SLOT_INSERTS.get(dialect)
    if found is None:
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        found = _SLOT_INSERTS[dialect] = (
            insert(contact_slots)
            .values(
                store_id=bindparam("p_store"),
                customer_id=bindparam("p_customer"),
                channel=bindparam("p_channel"),
                last_marketing_at=bindparam("p_now"),
            )
            .on_conflict_do_nothing(index_elements=["store_id", "customer_id", "channel"])
            .returning(contact_slots.c.customer_id)
        )
    return found


_SLOT_UPDATE = (
    update(contact_slots)
    .where(
        and_(
            contact_slots.c.store_id == bindparam("p_store"),
            contact_slots.c.customer_id == bindparam("p_customer"),
            contact_slots.c.channel == bindparam("p_channel"),
            or_(
                contact_slots.c.last_marketing_at.is_(None),
                contact_slots.c.last_marketing_at <= bindparam("p_limit"),
            ),
        )
    )
    .values(last_marketing_at=bindparam("p_now"))
)


class DeliveryStart(NamedTuple):
    """A claimed message about to be handed to its channel, and what must hold first."""

    store_id: int
    outbox_id: int
    worker: str
    customer_id: int
    channel: str
    check_consent: bool  # marketing: the channel's latest consent must be `granted`
    take_slot: bool  # marketing, first attempt: take the capped slot
    cap: int | None
    now: int
    lease_at: int  # wall clock, for the lease


class DeliveryCheck(NamedTuple):
    """What `start_delivery` found: marked ``sending`` only if all held."""

    consent_ok: bool
    held: bool  # the worker still held its claim
    slot: bool  # the capped slot was taken (or none was needed)
    marked: bool


#: Outcome columns a finished delivery may write (`start_delivery`'s ``pending``).
OUTCOME_COLUMNS = frozenset(
    {"status", "sent_at", "provider_id", "attempts", "not_before", "claimed_by", "claimed_at",
     "reason"}
)  # fmt: skip


def start_delivery(
    conn: Connection, start: DeliveryStart, pending: tuple[int, dict[str, Any]] | None
) -> DeliveryCheck:
    """One committed transaction: record the outcome of the worker's previous delivery
    (``pending``: its id and columns, moved on from ``sending``), then re-read the consent
    under a share lock on the customer (an unsubscribe takes it exclusively), check the
    claim is still the worker's, take the capped slot and mark the message ``sending``.

    The caller must not be in a transaction. On PostgreSQL this is one round trip (a
    pipeline: the lock, then one statement whose snapshot sees every consent committed
    before the lock was granted, then the commit); on SQLite the statements in turn
    under BEGIN IMMEDIATE."""
    if conn.dialect.name == "postgresql":
        return _start_delivery_pg(conn, start, pending)
    with conn.begin():
        if pending is not None:
            set_message(conn, pending[0], expect="sending", worker=start.worker, now=start.now,
                        **pending[1])  # fmt: skip
        if start.check_consent and (
            _consent_now(conn, start.store_id, start.customer_id, start.channel) != "granted"
        ):
            return DeliveryCheck(False, False, False, False)
        if not _holds_claim(conn, start.outbox_id, start.worker):
            return DeliveryCheck(True, False, False, False)
        if start.take_slot and not take_slot(
            conn, start.store_id, start.customer_id, start.channel, start.now, start.cap
        ):
            return DeliveryCheck(True, True, False, False)
        marked = set_message(conn, start.outbox_id, expect="claimed", worker=start.worker,
                             now=start.now, status="sending", claimed_at=start.lease_at)  # fmt: skip
        return DeliveryCheck(True, True, True, marked)


_PG_CUSTOMER_SHARE = (
    "SELECT id FROM customers WHERE store_id = %(store)s AND id = %(customer)s FOR SHARE"
)
_PG_START = """
WITH held AS (
    SELECT id FROM outbox
    WHERE id = %(oid)s AND status = 'claimed' AND claimed_by = %(worker)s
    FOR NO KEY UPDATE
), consent AS (
    SELECT status FROM consents
    WHERE store_id = %(store)s AND customer_id = %(customer)s AND channel = %(channel)s
    ORDER BY occurred_at DESC, id DESC LIMIT 1
), ok AS (
    SELECT NOT %(check)s OR coalesce((SELECT status FROM consent) = 'granted', false) AS yes
), allowed AS (
    SELECT held.id FROM held, ok WHERE ok.yes
), slot AS (
    INSERT INTO contact_slots (store_id, customer_id, channel, last_marketing_at)
    SELECT %(store)s, %(customer)s, %(channel)s, %(now)s FROM allowed WHERE %(take)s
    ON CONFLICT (store_id, customer_id, channel) DO UPDATE
        SET last_marketing_at = excluded.last_marketing_at
        WHERE contact_slots.last_marketing_at IS NULL
           OR contact_slots.last_marketing_at <= %(limit)s
    RETURNING 1
), marked AS (
    UPDATE outbox SET status = 'sending', claimed_at = %(lease)s, updated_at = %(now)s
    FROM allowed
    WHERE outbox.id = allowed.id AND (NOT %(take)s OR EXISTS (SELECT 1 FROM slot))
    RETURNING outbox.id
)
SELECT (SELECT yes FROM ok), EXISTS (SELECT 1 FROM held), EXISTS (SELECT 1 FROM slot),
       EXISTS (SELECT 1 FROM marked)
"""


def _pg_outcome(values: dict[str, Any]) -> str:
    unknown = set(values) - OUTCOME_COLUMNS
    if unknown:  # column names go into the SQL text: only known ones
        raise ValueError(f"not an outcome column: {sorted(unknown)}")
    sets = ", ".join(f"{name} = %(v_{name})s" for name in sorted(values))
    return (
        f"UPDATE outbox SET {sets}, updated_at = %(now)s "
        "WHERE id = %(id)s AND status = 'sending' AND claimed_by = %(worker)s"
    )


def _start_delivery_pg(
    conn: Connection, start: DeliveryStart, pending: tuple[int, dict[str, Any]] | None
) -> DeliveryCheck:
    raw = conn.connection.driver_connection
    assert raw is not None
    params = {
        "store": start.store_id, "customer": start.customer_id, "channel": start.channel,
        "oid": start.outbox_id, "worker": start.worker, "check": start.check_consent,
        "take": start.take_slot, "now": start.now, "lease": start.lease_at,
        "limit": start.now if start.cap is None else start.now - start.cap,
    }  # fmt: skip
    try:
        with raw.pipeline():
            if pending is not None:
                values = {f"v_{k}": v for k, v in pending[1].items()}
                raw.execute(_pg_outcome(pending[1]), {**values, "id": pending[0],
                            "worker": start.worker, "now": start.now})  # fmt: skip
            if start.check_consent:
                raw.execute(_PG_CUSTOMER_SHARE, params)
            found = raw.execute(_PG_START, params)
            raw.commit()
    except BaseException:
        raw.rollback()
        raise
    row = found.fetchone()
    assert row is not None
    consent_ok, held, slot, marked = (bool(v) for v in row)
    if not consent_ok:
        return DeliveryCheck(False, False, False, False)
    return DeliveryCheck(True, held, slot or not start.take_slot, marked)


# -- staff tasks and profile updates ---------------------------------------------------------


def add_task(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(
        _insert(conn, staff_tasks)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["store_id", "task_key"])
    )


def tasks(conn: Connection, store_id: int, *, status: str | None = "open") -> list[dict[str, Any]]:
    query = select(staff_tasks).where(staff_tasks.c.store_id == store_id)
    if status is not None:
        query = query.where(staff_tasks.c.status == status)
    return [dict(r) for r in conn.execute(query.order_by(staff_tasks.c.id)).mappings()]


def customer_profile(conn: Connection, store_id: int, customer_id: int) -> dict[str, Any] | None:
    row = conn.execute(
        select(customers.c.tags, customers.c.attributes).where(
            customers.c.store_id == store_id, customers.c.id == customer_id
        )
    ).first()
    return None if row is None else {"tags": row.tags, "attributes": row.attributes}


def set_customer_profile(
    conn: Connection, store_id: int, customer_id: int, tags: str | None, attributes: str | None
) -> None:
    conn.execute(
        update(customers)
        .where(customers.c.store_id == store_id, customers.c.id == customer_id)
        .values(tags=tags, attributes=attributes)
    )
