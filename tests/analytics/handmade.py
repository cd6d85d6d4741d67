"""A tiny store whose every metric is worked out by hand in docs/metrics.md-style comments.

Shared by the analytics tests (imported as a helper module, not collected as tests).
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from boomerang.ingest.batch import conform


def us(text: str) -> int:
    """'2024-01-05 08:10' (UTC) -> epoch microseconds."""
    return (
        int(datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC).timestamp()) * 1_000_000
    )


CUSTOMERS = {"A": "a@example.com", "B": "b@example.com", "C": "c@example.com",
             "D": "d@example.com", "E": "e@example.com"}  # fmt: skip
COUNTRY = {"A": "FR", "B": "GB", "C": "FR", "D": "DE", "E": "FR"}

# name, customer, placed, currency, total (cents), refunded (cents), status
ORDERS = [
    ("A1", "A", "2024-01-05 08:10", "USD", 10_000, 0, "paid"),
    ("A2", "A", "2024-01-20 12:00", "USD", 5_000, 0, "paid"),
    ("A3", "A", "2024-03-10 09:30", "USD", 8_000, 0, "paid"),
    ("AX", "A", "2024-02-01 10:00", "EUR", 99_900, 0, "paid"),  # other currency: excluded
    ("B1", "B", "2024-01-15 11:05", "USD", 20_000, 5_000, "partially_refunded"),
    ("B2", "B", "2024-04-02 15:00", "USD", 4_000, 0, "paid"),
    ("C1", "C", "2024-02-10 10:00", "USD", 6_000, 0, "paid"),
    ("C2", "C", "2024-02-12 10:00", "USD", 3_000, 0, "cancelled"),  # never revenue
    ("D1", "D", "2024-03-01 09:00", "USD", 12_000, 0, "paid"),
    ("D2", "D", "2024-03-05 09:00", "USD", 10_000, 10_000, "refunded"),  # an order, net 0
    ("E1", "E", "2024-04-20 18:00", "USD", 7_000, 0, "paid"),
    ("G1", None, "2024-02-14 16:00", "USD", 2_500, 0, "paid"),  # guest order
]

# visitor, customer, type, time
EVENTS = [
    ("v1", "A", "visit", "2024-01-05 08:00"),
    ("v1", "A", "added_to_cart", "2024-01-05 08:05"),
    ("v1", "A", "order_placed", "2024-01-05 08:10"),
    ("v1", "A", "visit", "2024-02-20 10:00"),
    ("v1", "A", "added_to_cart", "2024-02-20 10:02"),
    ("v1", "A", "visit", "2024-03-10 09:00"),
    ("v1", "A", "order_placed", "2024-03-10 09:30"),
    ("v2", None, "visit", "2024-02-01 12:00"),
    ("v2", None, "visit", "2024-02-02 12:00"),
    ("v2", None, "added_to_cart", "2024-02-02 12:03"),
    ("v3", "B", "visit", "2024-01-15 11:00"),
    ("v3", "B", "added_to_cart", "2024-01-15 11:01"),
    ("v3", "B", "order_placed", "2024-01-15 11:05"),
]


def frames(orders: list[tuple] | None = None) -> dict[str, pl.DataFrame]:  # type: ignore[type-arg]
    """The store as import frames (see ingest.batch.FRAME_SCHEMAS)."""
    rows = ORDERS if orders is None else orders
    customers = pl.DataFrame(
        {
            "external_id": list(CUSTOMERS.values()),
            "email": list(CUSTOMERS.values()),
            "country": [COUNTRY[k] for k in CUSTOMERS],
            "account_status": ["registered"] * len(CUSTOMERS),
        }
    )
    orders_frame = pl.DataFrame(
        {
            "external_id": [r[0] for r in rows],
            "customer_key": [CUSTOMERS[r[1]] if r[1] else None for r in rows],
            "email": [CUSTOMERS[r[1]] if r[1] else None for r in rows],
            "placed_at": [us(r[2]) for r in rows],
            "currency": [r[3] for r in rows],
            "subtotal_minor": [r[4] for r in rows],
            "discount_minor": [0] * len(rows),
            "shipping_minor": [0] * len(rows),
            "tax_minor": [0] * len(rows),
            "total_minor": [r[4] for r in rows],
            "refunded_minor": [r[5] for r in rows],
            "status": [r[6] for r in rows],
            "channel": ["online"] * len(rows),
            "source": ["test"] * len(rows),
            "lines_digest": [f"d-{r[0]}" for r in rows],
        }
    )
    events = pl.DataFrame(
        {
            "customer_key": [CUSTOMERS[e[1]] if e[1] else None for e in EVENTS],
            "anonymous_id": [e[0] for e in EVENTS],
            "type": [e[2] for e in EVENTS],
            "occurred_at": [us(e[3]) for e in EVENTS],
            "properties": [None] * len(EVENTS),
            "dedupe_key": [f"e{i}" for i in range(len(EVENTS))],
        },
        schema_overrides={"properties": pl.String},
    )
    return {
        "customers": conform("customers", customers),
        "orders": conform("orders", orders_frame),
        "events": conform("events", events),
    }
