"""Segments, their membership history and entered/exited events.

Why this shape: a membership row is one stay (entered_at .. exited_at); the open stays are
the current members, at most one per segment and customer (a partial unique index). A
refresh or a live re-evaluation writes only the difference against the open stays, plus
one `segment_events` row per change — so repeating it with the same facts writes nothing,
and campaigns read the events in id order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import polars as pl
import pyarrow as pa
from sqlalchemy import Connection, and_, func, insert, select, text, update

from boomerang.store.bulk import BulkSession
from boomerang.store.schema import (
    segment_events,
    segment_memberships,
    segment_refreshes,
    segments,
)

#: Advisory-lock namespace of segment jobs (refresh, live), per store, on PostgreSQL.
LOCK_BASE = 0x5E6 << 32


def lock_key(store_id: int) -> int:
    return LOCK_BASE + int(store_id)


def lock_store(conn: Connection, store_id: int) -> None:
    """Serialise with refreshes of the same store (PostgreSQL advisory lock; SQLite's
    writes are already serialised by BEGIN IMMEDIATE)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key(store_id)})


@dataclass(frozen=True)
class SegmentRow:
    id: int
    name: str
    title: str
    description: str
    kind: str
    definition: dict[str, Any]
    created_at: int
    updated_at: int


def _row(r: Any) -> SegmentRow:
    return SegmentRow(
        id=int(r.id),
        name=r.name,
        title=r.title,
        description=r.description,
        kind=r.kind,
        definition=json.loads(r.definition),
        created_at=int(r.created_at),
        updated_at=int(r.updated_at),
    )


def list_segments(conn: Connection, store_id: int) -> list[SegmentRow]:
    rows = conn.execute(
        select(segments).where(segments.c.store_id == store_id).order_by(segments.c.name)
    )
    return [_row(r) for r in rows]


def upsert_segment(
    conn: Connection,
    store_id: int,
    *,
    name: str,
    title: str,
    description: str,
    kind: str,
    definition: dict[str, Any],
    now: int,
) -> tuple[int, str]:
    """Create or update by name; returns (id, "created" | "updated" | "unchanged")."""
    body = json.dumps(definition, sort_keys=True, default=str)
    found = conn.execute(
        select(segments).where(segments.c.store_id == store_id, segments.c.name == name)
    ).first()
    if found is None:
        new_id = conn.execute(
            insert(segments).values(
                store_id=store_id,
                name=name,
                title=title,
                description=description,
                kind=kind,
                definition=body,
                created_at=now,
                updated_at=now,
            )
        ).inserted_primary_key
        assert new_id is not None
        return int(new_id[0]), "created"
    if (found.title, found.description, found.kind, found.definition) == (
        title,
        description,
        kind,
        body,
    ):
        return int(found.id), "unchanged"
    conn.execute(
        update(segments)
        .where(segments.c.id == found.id)
        .values(title=title, description=description, kind=kind, definition=body, updated_at=now)
    )
    return int(found.id), "updated"  # fmt: skip


def delete_segment(conn: Connection, store_id: int, segment: SegmentRow, now: int) -> int:
    """Close every open stay (writing exited events) and retire the definition.

    The row stays (history references it) as kind ``deleted`` under a freed-up name.
    """
    exited = close_open(conn, store_id, segment.id, now)
    conn.execute(
        update(segments)
        .where(segments.c.id == segment.id)
        .values(kind="deleted", name=f"{segment.name}#{segment.id}", updated_at=now)
    )
    return exited


def close_open(conn: Connection, store_id: int, segment_id: int, at: int) -> int:
    rows = conn.execute(
        select(segment_memberships.c.id, segment_memberships.c.customer_id).where(
            segment_memberships.c.segment_id == segment_id,
            segment_memberships.c.exited_at.is_(None),
        )
    ).all()
    if not rows:
        return 0
    conn.execute(
        update(segment_memberships)
        .where(segment_memberships.c.id.in_([r.id for r in rows]))
        .values(exited_at=at)
    )
    conn.execute(
        insert(segment_events),
        [
            {"store_id": store_id, "segment_id": segment_id, "customer_id": r.customer_id,
             "type": "exited", "occurred_at": at, "origin": "refresh"}
            for r in rows
        ],
    )  # fmt: skip
    return len(rows)


# -- refreshes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefreshRow:
    id: int
    as_of: int
    started_at: int
    finished_at: int
    segments: int
    entered: int
    exited: int
    reference: dict[str, Any]


# Hot-path statements of a live update, built once (plain SQL: no construction per call).
_VERSIONS = text(
    "SELECT (SELECT MAX(id) FROM segment_refreshes WHERE store_id = :s), "
    "(SELECT COUNT(*) || ':' || MAX(updated_at) || ':' || MAX(id) FROM segments WHERE store_id = :s)"
)
_OPEN_FOR_CUSTOMER = text(
    "SELECT segment_id, id FROM segment_memberships "
    "WHERE customer_id = :c AND store_id = :s AND exited_at IS NULL"
)


def versions(conn: Connection, store_id: int) -> tuple[int | None, str]:
    """(latest refresh id, definitions version): both change when a cache must be dropped."""
    row = conn.execute(_VERSIONS, {"s": store_id}).one()
    return (None if row[0] is None else int(row[0])), str(row[1])


def latest_refresh(conn: Connection, store_id: int) -> RefreshRow | None:
    r = conn.execute(
        select(segment_refreshes)
        .where(segment_refreshes.c.store_id == store_id)
        .order_by(segment_refreshes.c.id.desc())
        .limit(1)
    ).first()
    if r is None:
        return None
    return RefreshRow(
        id=int(r.id), as_of=int(r.as_of), started_at=int(r.started_at),
        finished_at=int(r.finished_at), segments=int(r.segments), entered=int(r.entered),
        exited=int(r.exited), reference=json.loads(r.reference),
    )  # fmt: skip


# -- bulk apply (full refresh) ---------------------------------------------------------------


@dataclass(frozen=True)
class Applied:
    entered: int
    exited: int
    entered_by_segment: dict[int, int]
    exited_by_segment: dict[int, int]


def _frame(table: pa.Table) -> pl.DataFrame:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def apply_members(
    session: BulkSession,
    store_id: int,
    members: pl.DataFrame,
    segment_ids: list[int],
    at: int,
) -> Applied:
    """Make the open stays of ``segment_ids`` equal ``members`` (segment_id, customer_id).

    New pairs open a stay and write an ``entered`` event; open stays not in ``members``
    close at ``at`` and write ``exited``. Nothing else is touched.
    """
    sid = int(store_id)
    if not segment_ids:
        return Applied(0, 0, {}, {})
    listed = ", ".join(str(int(s)) for s in segment_ids)
    current = _frame(
        session.fetch_arrow(
            "SELECT id, segment_id, customer_id FROM segment_memberships "
            f"WHERE store_id = {sid} AND exited_at IS NULL AND segment_id IN ({listed})"
        )
    )
    schema = pl.Schema({"id": pl.Int64(), "segment_id": pl.Int64(), "customer_id": pl.Int64()})
    current = current.cast(schema) if current.height else pl.DataFrame(schema=schema)
    members = members.select(
        pl.col("segment_id").cast(pl.Int64), pl.col("customer_id").cast(pl.Int64)
    )
    entered = members.join(current, on=["segment_id", "customer_id"], how="anti")
    exited = current.join(members, on=["segment_id", "customer_id"], how="anti")
    if entered.height:
        session.append(
            "segment_memberships",
            entered.select(
                pl.lit(sid, pl.Int64).alias("store_id"), "segment_id", "customer_id",
                pl.lit(at, pl.Int64).alias("entered_at"),
            ).to_arrow(),
        )  # fmt: skip
    if exited.height:
        staged = session.stage("exits", exited.select("id").to_arrow())
        session.execute(
            f"UPDATE segment_memberships SET exited_at = {int(at)} "
            f"WHERE id IN (SELECT id FROM {staged})"
        )
    events = pl.concat(
        [
            entered.select("segment_id", "customer_id", pl.lit("entered").alias("type")),
            exited.select("segment_id", "customer_id", pl.lit("exited").alias("type")),
        ]
    )
    if events.height:
        session.append(
            "segment_events",
            events.select(
                pl.lit(sid, pl.Int64).alias("store_id"), "segment_id", "customer_id", "type",
                pl.lit(at, pl.Int64).alias("occurred_at"), pl.lit("refresh").alias("origin"),
            ).to_arrow(),
        )  # fmt: skip

    def per(frame: pl.DataFrame) -> dict[int, int]:
        counted = frame.group_by("segment_id").len()
        return dict(zip(counted["segment_id"].to_list(), counted["len"].to_list(), strict=True))

    return Applied(entered.height, exited.height, per(entered), per(exited))


def record_refresh(
    session: BulkSession,
    store_id: int,
    *,
    as_of: int,
    started_at: int,
    finished_at: int,
    segment_count: int,
    entered: int,
    exited: int,
    reference: dict[str, Any],
) -> None:
    body = json.dumps(reference, sort_keys=True).replace("'", "''")
    session.execute(
        "INSERT INTO segment_refreshes (store_id, as_of, started_at, finished_at, segments, "
        f"entered, exited, reference) VALUES ({int(store_id)}, {int(as_of)}, {int(started_at)}, "
        f"{int(finished_at)}, {int(segment_count)}, {int(entered)}, {int(exited)}, '{body}')"
    )


def latest_reference_text(session: BulkSession, store_id: int) -> str | None:
    value = session.scalar(
        f"SELECT reference FROM segment_refreshes WHERE store_id = {int(store_id)} "
        "ORDER BY id DESC LIMIT 1"
    )
    return None if value is None else str(value)


def latest_as_of(session: BulkSession, store_id: int) -> int | None:
    value = session.scalar(
        f"SELECT MAX(as_of) FROM segment_refreshes WHERE store_id = {int(store_id)}"
    )
    return None if value is None else int(value)


# -- one customer (live) ---------------------------------------------------------------------


def open_for_customer(conn: Connection, store_id: int, customer_id: int) -> dict[int, int]:
    """segment_id -> open stay id for one customer."""
    rows = conn.execute(_OPEN_FOR_CUSTOMER, {"c": customer_id, "s": store_id})
    return {int(r[0]): int(r[1]) for r in rows}


def apply_customer(
    conn: Connection,
    store_id: int,
    customer_id: int,
    enter: list[int],
    leave: dict[int, int],
    at: int,
) -> None:
    """Open stays in ``enter`` segments, close the stays in ``leave`` (segment -> stay id)."""
    if enter:
        conn.execute(
            insert(segment_memberships),
            [
                {
                    "store_id": store_id,
                    "segment_id": s,
                    "customer_id": customer_id,
                    "entered_at": at,
                }
                for s in enter
            ],
        )
    if leave:
        conn.execute(
            update(segment_memberships)
            .where(segment_memberships.c.id.in_(list(leave.values())))
            .values(exited_at=at)
        )
    changes = [(s, "entered") for s in enter] + [(s, "exited") for s in leave]
    if changes:
        conn.execute(
            insert(segment_events),
            [
                {"store_id": store_id, "segment_id": s, "customer_id": customer_id, "type": kind,
                 "occurred_at": at, "origin": "live"}
                for s, kind in changes
            ],
        )  # fmt: skip


# -- reading ---------------------------------------------------------------------------------


def member_counts(conn: Connection, store_id: int) -> dict[int, int]:
    rows = conn.execute(
        select(segment_memberships.c.segment_id, func.count())
        .where(
            segment_memberships.c.store_id == store_id, segment_memberships.c.exited_at.is_(None)
        )
        .group_by(segment_memberships.c.segment_id)
    )
    return {int(s): int(n) for s, n in rows}


def members(conn: Connection, store_id: int, segment_id: int) -> list[tuple[int, int]]:
    """(customer_id, entered_at) of the open stays, by customer id."""
    rows = conn.execute(
        select(segment_memberships.c.customer_id, segment_memberships.c.entered_at)
        .where(
            and_(
                segment_memberships.c.store_id == store_id,
                segment_memberships.c.segment_id == segment_id,
                segment_memberships.c.exited_at.is_(None),
            )
        )
        .order_by(segment_memberships.c.customer_id)
    )
    return [(int(c), int(e)) for c, e in rows]


def events_after(
    conn: Connection, store_id: int, after_id: int = 0, limit: int = 1000
) -> list[dict[str, Any]]:
    """Entered/exited events with id > after_id, in id order (the campaigns' cursor)."""
    rows = conn.execute(
        select(segment_events)
        .where(segment_events.c.store_id == store_id, segment_events.c.id > after_id)
        .order_by(segment_events.c.id)
        .limit(limit)
    ).mappings()
    return [dict(r) for r in rows]


def count_rows(conn: Connection, store_id: int) -> dict[str, int]:
    """Row counts of the history tables (tests and the CLI summary)."""
    out = {}
    for table in (segment_memberships, segment_events, segment_refreshes):
        out[table.name] = int(
            conn.execute(select(func.count()).where(table.c.store_id == store_id)).scalar() or 0
        )
    return out
