"""Build small stores for campaign tests: customers with an email (and a phone), a consent
record per channel when asked, a timezone, orders at given times (optionally with lines of
catalogue products), site events, and an account status."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import yaml
from sqlalchemy import text

from boomerang.domain.clock import to_micros
from boomerang.ingest.batch import conform
from boomerang.services.context import open_engine
from boomerang.services.imports import apply_frames

HOUR = 3_600_000_000
DAY = 24 * HOUR


def at(text: str) -> int:
    """'YYYY-MM-DD HH:MM' (UTC) -> epoch micros."""
    return to_micros(datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC))


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    price: int  # cents
    category: str = "General"
    lifespan_days: int | None = None


@dataclass
class Person:
    key: str
    email_consent: bool = True
    sms_consent: bool = False
    timezone: str = "UTC"
    phone: str | None = None
    birthday: str | None = None
    orders: list[tuple[str, int]] = field(default_factory=list)  # (placed, total cents)
    #: order index -> SKUs on that order (one of each, at the catalogue price)
    lines: dict[int, list[str]] = field(default_factory=dict)
    #: (when, type, properties): site events such as checkout_started, review_written
    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    account_status: str = "registered"


def build_store(
    db: str,
    store: str,
    people: list[Person],
    *,
    consent_at: int,
    products: list[Product] | None = None,
) -> None:
    customers = pl.DataFrame(
        {
            "external_id": [p.key for p in people],
            "email": [f"{p.key}@example.com" for p in people],
            "phone": [p.phone for p in people],
            "first_name": [p.key.split("-")[0].capitalize() for p in people],
            "timezone": [p.timezone for p in people],
            "birthday": [p.birthday for p in people],
            "account_status": [p.account_status for p in people],
            "created_at": [consent_at] * len(people),
        },
        schema_overrides={"phone": pl.String(), "birthday": pl.String()},
    )
    consents: list[dict[str, Any]] = []
    for p in people:
        for channel, given in (("email", p.email_consent), ("sms", p.sms_consent)):
            if given:
                consents.append({"customer_key": p.key, "channel": channel, "status": "granted",
                                 "source": "test", "occurred_at": consent_at})  # fmt: skip
    orders = [
        {"external_id": f"{p.key}-o{i}", "customer_key": p.key, "email": f"{p.key}@example.com",
         "placed_at": at(placed), "currency": "USD", "subtotal_minor": total,
         "discount_minor": 0, "shipping_minor": 0, "tax_minor": 0, "total_minor": total,
         "refunded_minor": 0, "status": "completed", "channel": "online", "source": "test",
         "lines_digest": f"d-{p.key}-{i}"}
        for p in people for i, (placed, total) in enumerate(p.orders)
    ]  # fmt: skip
    catalogue = {x.sku: x for x in products or []}
    lines = [
        {"order_external_id": f"{p.key}-o{i}", "line_no": n, "sku": sku,
         "name": catalogue[sku].name, "category": catalogue[sku].category, "quantity": 1,
         "unit_price_minor": catalogue[sku].price, "discount_minor": 0}
        for p in people for i, skus in sorted(p.lines.items())
        for n, sku in enumerate(skus, start=1)
    ]  # fmt: skip
    events = [
        {"customer_key": p.key, "type": kind, "occurred_at": at(when),
         "properties": json.dumps(props, sort_keys=True), "dedupe_key": f"{p.key}-e{i}"}
        for p in people for i, (when, kind, props) in enumerate(p.events)
    ]  # fmt: skip
    frames = {"customers": conform("customers", customers)}
    if catalogue:
        frames["products"] = conform("products", pl.DataFrame([
            {"sku": x.sku, "name": x.name, "category": x.category, "price_minor": x.price,
             "currency": "USD", "lifespan_days": x.lifespan_days}
            for x in catalogue.values()
        ], schema_overrides={"lifespan_days": pl.Int64()}))  # fmt: skip
    if lines:
        frames["lines"] = conform("lines", pl.DataFrame(lines))
    if events:
        frames["events"] = conform("events", pl.DataFrame(events))
    if consents:
        frames["consents"] = conform("consents", pl.DataFrame(consents))
    if orders:
        frames["orders"] = conform("orders", pl.DataFrame(orders))
    apply_frames(db, store, frames, currency="USD")


def write_flows(tmp: Path, flows: list[dict[str, Any]], name: str = "flows.yaml") -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump({"flows": flows}, sort_keys=False), encoding="utf-8")
    return path


def query(db: str, sql: str) -> list[tuple[Any, ...]]:
    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


def outbox_of(db: str, flow: str) -> dict[tuple[str, str], dict[str, Any]]:
    """A flow's messages by (customer external id, step id): channel, template, status,
    reason, not_before, sent_at, holdout and the run context they carry."""
    rows = query(db, f"""
        SELECT c.external_id, o.step_id, o.channel, o.template, o.status, o.reason,
               o.not_before, o.sent_at, o.holdout, o.context, o.expires_at
        FROM outbox o JOIN flows f ON f.id = o.flow_id JOIN customers c ON c.id = o.customer_id
        WHERE f.name = '{flow}'""")  # fmt: skip
    return {
        (str(key), str(step)): {
            "channel": channel, "template": template, "status": status, "reason": reason,
            "not_before": not_before, "sent_at": sent_at, "holdout": bool(held),
            "context": json.loads(str(context)), "expires_at": expires,
        }
        for key, step, channel, template, status, reason, not_before, sent_at, held, context,
        expires in rows
    }  # fmt: skip


def runs_of(db: str, flow: str) -> list[tuple[str, str, str | None, bool]]:
    """A flow's runs: (customer external id, status, exit reason, holdout), by customer."""
    rows = query(db, f"""
        SELECT c.external_id, r.status, r.exit_reason, r.holdout FROM flow_runs r
        JOIN flows f ON f.id = r.flow_id JOIN customers c ON c.id = r.customer_id
        WHERE f.name = '{flow}' ORDER BY c.external_id, r.entered_at""")  # fmt: skip
    return [(str(k), str(s), None if r is None else str(r), bool(h)) for k, s, r, h in rows]


def customer_ids(db: str) -> dict[str, int]:
    return {str(k): int(i) for k, i in query(db, "SELECT external_id, id FROM customers")}
