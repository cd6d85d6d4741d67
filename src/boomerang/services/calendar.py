"""The communication calendar: when each customer was last contacted and last interacted,
who has not heard from the store in a while, and one customer's timeline of orders,
messages, opens and clicks, loyalty and site events (docs/attribution.md#calendar).

- Last contact: the latest marketing message (not transactional) with status ``sent``.
  Holdout messages are never sent, so they never count.
- Last interaction: the latest order (any status), open or click of a message, or site /
  app event.
- Stale: customers with at least one non-cancelled order whose last contact is at least
  N days before ``as_of``, or who were never contacted.

``as_of`` defaults to the later of now and the store's latest order or message (so a
simulated store whose data runs ahead of the clock is read at its own end).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection

from boomerang.domain.clock import MICROS_PER_DAY, now_micros
from boomerang.domain.money import currency_exponent
from boomerang.errors import InputError, NotFoundError
from boomerang.services.context import open_engine
from boomerang.store.repos import calendar as repo
from boomerang.store.repos import campaign_stats as stats_repo
from boomerang.store.repos import customers as customers_repo
from boomerang.store.repos import stores as stores_repo

__all__ = ["StaleCustomer", "StaleResult", "Timeline", "TimelineItem", "stale", "timeline"]


@dataclass
class StaleCustomer:
    customer_id: int
    external_id: str
    email: str | None
    name: str
    orders: int
    last_order_at: int
    last_contact_at: int | None  # None: never contacted
    last_interaction_at: int | None
    consent: dict[str, str]  # channel -> latest status (absent: none recorded)


@dataclass
class StaleResult:
    store: str
    as_of: int
    days: int
    total: int
    customers: list[StaleCustomer]


@dataclass
class TimelineItem:
    at: int
    kind: str  # order | message | open | click | unsubscribe | bounce | loyalty | event
    summary: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Timeline:
    store: str
    customer_id: int
    external_id: str
    email: str | None
    last_contact_at: int | None
    last_interaction_at: int | None
    items: list[TimelineItem]  # oldest first: the latest ``limit`` items
    more: bool  # older items exist beyond the limit


def _as_of(conn: Connection, store_id: int, given: int | None) -> int:
    if given is not None:
        return given
    return max(now_micros(), stats_repo.latest_activity(conn, store_id) or 0)


def _name(row: dict[str, Any]) -> str:
    return " ".join(p for p in (row.get("first_name"), row.get("last_name")) if p)


def stale(
    db: str, store: str, *, days: int, as_of: int | None = None, limit: int = 100
) -> StaleResult:
    """`boomerang calendar stale --days N`: existing customers not contacted in N days."""
    if days < 1:
        raise InputError(f"--days must be at least 1 (got {days})", hint="e.g. --days 30")
    if limit < 1:
        raise InputError(f"--limit must be at least 1 (got {limit})", hint="e.g. --limit 100")
    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            row = stores_repo.get(conn, store)
            at = _as_of(conn, row.id, as_of)
            total, rows = repo.stale(
                conn, row.id, cutoff=at - days * MICROS_PER_DAY, as_of=at, limit=limit
            )
            ids = [int(r["customer_id"]) for r in rows]
            interactions = repo.last_interactions(conn, row.id, ids, at)
            consents = repo.consents_of(conn, row.id, ids)
    finally:
        engine.dispose()
    found = [
        StaleCustomer(
            customer_id=int(r["customer_id"]), external_id=str(r["external_id"]),
            email=r["email"], name=_name(r), orders=int(r["orders"]),
            last_order_at=int(r["last_order_at"]),
            last_contact_at=None if r["last_contact_at"] is None else int(r["last_contact_at"]),
            last_interaction_at=interactions.get(int(r["customer_id"])),
            consent=consents.get(int(r["customer_id"]), {}),
        )
        for r in rows
    ]  # fmt: skip
    return StaleResult(store, at, days, total, found)


def _money(minor: int, currency: str) -> str:
    exponent = currency_exponent(currency)
    return f"{Decimal(minor).scaleb(-exponent):,.{exponent}f} {currency}"


def _payload(text: Any) -> dict[str, Any]:
    if not text:
        return {}
    try:
        found = json.loads(text)
    except ValueError:
        return {"raw": str(text)}
    return found if isinstance(found, dict) else {"value": found}


def _items(parts: dict[str, list[dict[str, Any]]]) -> list[TimelineItem]:
    out = []
    for o in parts["orders"]:
        net = int(o["total_minor"]) - int(o["refunded_minor"])
        text = f"order {o['external_id']}: {_money(int(o['total_minor']), o['currency'])}"
        if int(o["refunded_minor"]):
            text += f" (net {_money(net, o['currency'])})"
        text += f", {o['status']}"
        if o["discount_code"]:
            text += f", code {o['discount_code']}"
        out.append(TimelineItem(int(o["at"]), "order", text, {**o, "net_minor": net}))
    for m in parts["messages"]:
        where = f"{m['flow']} · {m['step_id']}" if m["flow"] else "message"
        text = f"{m['channel']} {where} ({m['template']}): {m['status']}"
        if m["holdout"]:
            text += " (holdout)"
        if m["reason"] and m["status"] != "sent":
            text += f": {m['reason']}"
        out.append(TimelineItem(int(m["at"]), "message", text, dict(m)))
    for e in parts["message_events"]:
        where = f"{e['flow']} · {e['step_id']}" if e["flow"] else f"message {e['outbox_id']}"
        text = f"{e['type']} of {where}" + (f": {e['url']}" if e["url"] else "")
        out.append(TimelineItem(int(e["at"]), str(e["type"]), text, dict(e)))
    for e in parts["loyalty"]:
        payload = _payload(e["payload"])
        out.append(TimelineItem(int(e["at"]), "loyalty", f"loyalty: {e['type']}",
                                {"type": e["type"], "payload": payload}))  # fmt: skip
    for e in parts["events"]:
        props = _payload(e["properties"])
        out.append(TimelineItem(int(e["at"]), "event", f"event: {e['type']}",
                                {"type": e["type"], "properties": props}))  # fmt: skip
    order = {"order": 0, "message": 1}
    out.sort(key=lambda i: (i.at, order.get(i.kind, 2)))
    return out


def timeline(
    db: str, store: str, customer: str, *, limit: int = 50, as_of: int | None = None
) -> Timeline:
    """`boomerang calendar timeline CUSTOMER`: the latest ``limit`` things that happened
    between the store and the customer, oldest first."""
    if limit < 1:
        raise InputError(f"--limit must be at least 1 (got {limit})", hint="e.g. --limit 50")
    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            row = stores_repo.get(conn, store)
            found = customers_repo.find(conn, row.id, customer)
            if found is None:
                raise NotFoundError(
                    f"no customer {customer!r} in store {store!r}",
                    hint="give an external id, an email or a customer id",
                )
            cid = int(found["id"])
            at = _as_of(conn, row.id, as_of)
            take = limit + 1  # one more than shown tells whether there is more
            parts = {
                "orders": repo.timeline_orders(conn, row.id, cid, take),
                "messages": repo.timeline_messages(conn, row.id, cid, take),
                "message_events": repo.timeline_message_events(conn, row.id, cid, take),
                "loyalty": repo.timeline_loyalty(conn, row.id, cid, take),
                "events": repo.timeline_site_events(conn, row.id, cid, take),
            }
            contact = repo.last_contacts(conn, row.id, [cid], at).get(cid)
            interaction = repo.last_interactions(conn, row.id, [cid], at).get(cid)
    finally:
        engine.dispose()
    items = _items(parts)
    return Timeline(
        store=store, customer_id=cid, external_id=str(found["external_id"]),
        email=found["email"], last_contact_at=contact, last_interaction_at=interaction,
        items=items[-limit:], more=len(items) > limit,
    )  # fmt: skip
