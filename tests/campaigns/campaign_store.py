"""Build small stores for campaign tests: customers with an email (and a phone), a consent
record per channel when asked, a timezone, and orders at given times."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from boomerang.domain.clock import to_micros
from boomerang.ingest.batch import conform
from boomerang.services.imports import apply_frames

HOUR = 3_600_000_000
DAY = 24 * HOUR


def at(text: str) -> int:
    """'YYYY-MM-DD HH:MM' (UTC) -> epoch micros."""
    return to_micros(datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC))


@dataclass
class Person:
    key: str
    email_consent: bool = True
    sms_consent: bool = False
    timezone: str = "UTC"
    phone: str | None = None
    birthday: str | None = None
    orders: list[tuple[str, int]] = field(default_factory=list)  # (placed, total cents)


def build_store(db: str, store: str, people: list[Person], *, consent_at: int) -> None:
    customers = pl.DataFrame(
        {
            "external_id": [p.key for p in people],
            "email": [f"{p.key}@example.com" for p in people],
            "phone": [p.phone for p in people],
            "first_name": [p.key.split("-")[0].capitalize() for p in people],
            "timezone": [p.timezone for p in people],
            "birthday": [p.birthday for p in people],
            "account_status": ["registered"] * len(people),
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
    frames = {"customers": conform("customers", customers)}
    if consents:
        frames["consents"] = conform("consents", pl.DataFrame(consents))
    if orders:
        frames["orders"] = conform("orders", pl.DataFrame(orders))
    apply_frames(db, store, frames, currency="USD")


def write_flows(tmp: Path, flows: list[dict[str, Any]], name: str = "flows.yaml") -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump({"flows": flows}, sort_keys=False), encoding="utf-8")
    return path
