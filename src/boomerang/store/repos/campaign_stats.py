"""Read-only queries behind flow statistics: flows, their runs, their messages and the
messages' events, and the orders attribution and incrementality are measured on
(docs/attribution.md). Rows come back as plain tuples in the documented column order;
the statistics themselves live in `campaigns.attribution` / `campaigns.experiments`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, func, select

from boomerang.store.schema import flow_runs, flows, message_events, orders, outbox

RUN_COLUMNS = ("run_id", "flow_id", "customer_id", "holdout", "entered_at", "status")
MESSAGE_COLUMNS = (
    "outbox_id", "flow_id", "run_id", "step_id", "customer_id", "status", "holdout",
    "transactional", "sent_at",
)  # fmt: skip
EVENT_COLUMNS = ("outbox_id", "customer_id", "type", "occurred_at")
ORDER_COLUMNS = ("order_id", "customer_id", "placed_at", "revenue_minor")


def list_flows(conn: Connection, store_id: int) -> list[dict[str, Any]]:
    """id, name, status and the parsed definition of every flow, by name."""
    rows = conn.execute(
        select(flows.c.id, flows.c.name, flows.c.status, flows.c.definition)
        .where(flows.c.store_id == store_id)
        .order_by(flows.c.name)
    )
    return [
        {"id": int(r.id), "name": str(r.name), "status": str(r.status),
         "definition": json.loads(r.definition)}
        for r in rows
    ]  # fmt: skip


def runs(
    conn: Connection, store_id: int, flow_ids: Sequence[int] | None = None
) -> list[tuple[int, int, int, int, int, str]]:
    """Every run (`RUN_COLUMNS`) of the store, or of some flows."""
    query = select(
        flow_runs.c.id, flow_runs.c.flow_id, flow_runs.c.customer_id, flow_runs.c.holdout,
        flow_runs.c.entered_at, flow_runs.c.status,
    ).where(flow_runs.c.store_id == store_id)  # fmt: skip
    if flow_ids is not None:
        query = query.where(flow_runs.c.flow_id.in_(list(flow_ids)))
    return [
        (int(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), str(r[5]))
        for r in conn.execute(query.order_by(flow_runs.c.id))
    ]


def run_contexts(conn: Connection, store_id: int, flow_id: int) -> list[tuple[int, str]]:
    """(run id, context JSON text) of a flow's runs that chose a variant somewhere (the
    engine writes ``"variants"`` into the context at an A/B step)."""
    query = (
        select(flow_runs.c.id, flow_runs.c.context)
        .where(
            flow_runs.c.store_id == store_id,
            flow_runs.c.flow_id == flow_id,
            flow_runs.c.context.like('%"variants"%'),
        )
        .order_by(flow_runs.c.id)
    )
    return [(int(r[0]), str(r[1])) for r in conn.execute(query)]


def messages(conn: Connection, store_id: int, until: int) -> list[tuple[Any, ...]]:
    """Flow messages created by ``until`` (`MESSAGE_COLUMNS`); ``sent_at`` is None unless
    the message was sent by ``until`` (the status is as stored now)."""
    query = select(
        outbox.c.id, outbox.c.flow_id, outbox.c.run_id, outbox.c.step_id, outbox.c.customer_id,
        outbox.c.status, outbox.c.holdout, outbox.c.transactional, outbox.c.sent_at,
    ).where(
        outbox.c.store_id == store_id, outbox.c.flow_id.is_not(None),
        outbox.c.created_at <= until,
    )  # fmt: skip
    out = []
    for r in conn.execute(query.order_by(outbox.c.id)):
        sent = r[8] is not None and int(r[8]) <= until
        out.append((
            int(r[0]), int(r[1]), None if r[2] is None else int(r[2]), r[3], int(r[4]),
            str(r[5]), int(r[6]), int(r[7]), int(r[8]) if sent else None,
        ))  # fmt: skip
    return out


def message_event_rows(conn: Connection, store_id: int, until: int) -> list[tuple[Any, ...]]:
    """Opens, clicks, unsubscribes, bounces of flow messages up to ``until`` (`EVENT_COLUMNS`)."""
    query = (
        select(
            message_events.c.outbox_id,
            message_events.c.customer_id,
            message_events.c.type,
            message_events.c.occurred_at,
        )
        .join(outbox, outbox.c.id == message_events.c.outbox_id)
        .where(
            message_events.c.store_id == store_id,
            outbox.c.flow_id.is_not(None),
            message_events.c.occurred_at <= until,
        )
        .order_by(message_events.c.id)
    )
    return [(int(r[0]), int(r[1]), str(r[2]), int(r[3])) for r in conn.execute(query)]


def order_rows(
    conn: Connection, store_id: int, currency: str, since: int, until: int
) -> list[tuple[int, int, int, int]]:
    """Customers' non-cancelled orders in the store currency placed in ``(since, until]``
    (`ORDER_COLUMNS`; revenue = total - refunded, minor units)."""
    query = (
        select(
            orders.c.id,
            orders.c.customer_id,
            orders.c.placed_at,
            (orders.c.total_minor - orders.c.refunded_minor).label("net"),
        )
        .where(
            and_(
                orders.c.store_id == store_id,
                orders.c.customer_id.is_not(None),
                orders.c.status != "cancelled",
                orders.c.currency == currency,
                orders.c.placed_at > since,
                orders.c.placed_at <= until,
            )
        )
        .order_by(orders.c.id)
    )
    return [(int(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in conn.execute(query)]


def latest_activity(conn: Connection, store_id: int) -> int | None:
    """The latest order placed or message sent in the store (None when there is none)."""
    found = [
        conn.execute(select(func.max(orders.c.placed_at)).where(orders.c.store_id == store_id))
        .scalar_one_or_none(),
        conn.execute(select(func.max(outbox.c.sent_at)).where(outbox.c.store_id == store_id))
        .scalar_one_or_none(),
        conn.execute(
            select(func.max(flow_runs.c.entered_at)).where(flow_runs.c.store_id == store_id)
        ).scalar_one_or_none(),
    ]  # fmt: skip
    values = [int(v) for v in found if v is not None]
    return max(values) if values else None


def has_flows(conn: Connection, store_id: int) -> bool:
    query = select(flows.c.id).where(flows.c.store_id == store_id).limit(1)
    return conn.execute(query).first() is not None
