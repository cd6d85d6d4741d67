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
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, or_, select, update
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


def claim_due_runs(conn: Connection, store_id: int, now: int, limit: int) -> list[dict[str, Any]]:
    live = select(flows.c.id).where(flows.c.store_id == store_id, flows.c.status == "active")
    query = (
        select(flow_runs)
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
    return [dict(r) for r in conn.execute(query).mappings()]


def update_runs(conn: Connection, changes: list[dict[str, Any]]) -> int:
    """Apply advances: each change names the run's id and the version it was read at."""
    if not changes:
        return 0
    stmt = (
        update(flow_runs)
        .where(flow_runs.c.id == bindparam("rid"), flow_runs.c.version == bindparam("read"))
        .values(
            step_id=bindparam("step_id"), due_at=bindparam("due_at"), status=bindparam("status"),
            exit_reason=bindparam("exit_reason"), context=bindparam("context"),
            updated_at=bindparam("updated_at"), version=flow_runs.c.version + 1,
        )
    )  # fmt: skip
    result = conn.execute(stmt, changes)
    return int(result.rowcount)


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
    """Each customer's non-cancelled order times in (since, until], ascending."""
    out: dict[int, list[int]] = {}
    for part in _chunks(sorted(set(customer_ids))):
        rows = conn.execute(
            select(orders.c.customer_id, orders.c.placed_at)
            .where(
                orders.c.store_id == store_id,
                orders.c.customer_id.in_(part),
                orders.c.status != "cancelled",
                orders.c.placed_at > since,
                orders.c.placed_at <= until,
            )
            .order_by(orders.c.placed_at)
        )
        for c, t in rows:
            out.setdefault(int(c), []).append(int(t))
    return {c: tuple(ts) for c, ts in out.items()}


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
    return out


# -- outbox ----------------------------------------------------------------------------------


def insert_messages(conn: Connection, rows: list[dict[str, Any]]) -> int:
    """Queue messages; a (run, step) already queued is ignored (exactly one row each)."""
    inserted = 0
    for part in _chunks(rows, 500):
        stmt = (
            _insert(conn, outbox)
            .values(list(part))
            .on_conflict_do_nothing(index_elements=["store_id", "message_key"])
            .returning(outbox.c.id)
        )
        inserted += len(conn.execute(stmt).all())
    return inserted


def claim_messages(
    conn: Connection, store_id: int, worker: str, now: int, limit: int
) -> list[dict[str, Any]]:
    """Take up to ``limit`` ready messages for ``worker`` (highest priority first)."""
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
        .values(status="claimed", claimed_by=worker, claimed_at=now, updated_at=now)
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
    cond = [outbox.c.id == outbox_id, outbox.c.status == expect]
    if worker is not None:
        cond.append(outbox.c.claimed_by == worker)
    result = conn.execute(update(outbox).where(*cond).values(updated_at=now, **values))
    return int(result.rowcount) == 1


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


def consent_now(conn: Connection, store_id: int, customer_id: int, channel: str) -> str | None:
    """The channel's latest consent status, read under a share lock on the customer row
    (PostgreSQL), which a consent change takes FOR UPDATE: a message marked ``sending``
    after an unsubscribe committed sees it."""
    lock = select(customers.c.id).where(
        customers.c.store_id == store_id, customers.c.id == customer_id
    )
    if conn.dialect.name == "postgresql":
        conn.execute(lock.with_for_update(read=True))
    value = conn.execute(
        select(consents.c.status)
        .where(
            consents.c.store_id == store_id,
            consents.c.customer_id == customer_id,
            consents.c.channel == channel,
        )
        .order_by(consents.c.occurred_at.desc(), consents.c.id.desc())
        .limit(1)
    ).scalar()
    return None if value is None else str(value)


def take_slot(
    conn: Connection, store_id: int, customer_id: int, channel: str, now: int, cap: int | None
) -> bool:
    """Record a marketing send now, only if the last one is at least ``cap`` ago: one
    statement, so two workers can never both take the slot."""
    created = conn.execute(
        _insert(conn, contact_slots)
        .values(store_id=store_id, customer_id=customer_id, channel=channel, last_marketing_at=now)
        .on_conflict_do_nothing(index_elements=["store_id", "customer_id", "channel"])
        .returning(contact_slots.c.customer_id)
    ).first()
    if created is not None:
        return True
    limit = now if cap is None else now - cap
    free = or_(
        contact_slots.c.last_marketing_at.is_(None), contact_slots.c.last_marketing_at <= limit
    )
    result = conn.execute(
        update(contact_slots)
        .where(
            and_(
                contact_slots.c.store_id == store_id,
                contact_slots.c.customer_id == customer_id,
                contact_slots.c.channel == channel,
                free,
            )
        )
        .values(last_marketing_at=now)
    )
    return int(result.rowcount) == 1


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
