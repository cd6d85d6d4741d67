"""The facts segments are evaluated on: Arrow tables for a full refresh, rows for one customer.

Both shapes carry the same columns, so the engine compiler (`segments.bulk`) and the
single-customer evaluator (`segments.single`) read the same facts. Event properties the
rules filter on arrive as text columns ``prop_<key>_<length>`` (values compared as text).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import pyarrow as pa

CUSTOMER_COLUMNS: dict[str, pa.DataType] = {
    "id": pa.int64(),
    "created_at": pa.int64(),
    "account_status": pa.string(),
    "country": pa.string(),
    "region": pa.string(),
    "city": pa.string(),
    "zip": pa.string(),
    "timezone": pa.string(),
    "tags": pa.list_(pa.string()),  # lower-cased
    "has_email": pa.bool_(),
    "has_phone": pa.bool_(),
}
CONSENT_COLUMNS: dict[str, pa.DataType] = {
    "id": pa.int64(),
    "customer_id": pa.int64(),
    "channel": pa.string(),
    "status": pa.string(),
    "occurred_at": pa.int64(),
}
ORDER_COLUMNS: dict[str, pa.DataType] = {
    "id": pa.int64(),
    "customer_id": pa.int64(),
    "placed_at": pa.int64(),
    "currency": pa.string(),
    "total_minor": pa.int64(),
    "refunded_minor": pa.int64(),
    "status": pa.string(),
}
LINE_COLUMNS: dict[str, pa.DataType] = {
    "order_id": pa.int64(),
    "sku": pa.string(),
    "category": pa.string(),
    "quantity": pa.int64(),
    "unit_price_minor": pa.int64(),
    "discount_minor": pa.int64(),
}
EVENT_COLUMNS: dict[str, pa.DataType] = {
    "customer_id": pa.int64(),
    "type": pa.string(),
    "occurred_at": pa.int64(),
}
PREDICTION_COLUMNS: dict[str, pa.DataType] = {
    "customer_id": pa.int64(),
    "p_alive": pa.float64(),
    "clv_minor": pa.int64(),
    "expected_purchases": pa.float64(),
    "next_order_at": pa.int64(),
    "risk_band": pa.string(),
}


def prop_column(key: str) -> str:
    """The text column an event property is extracted into (``prop_`` + key + length)."""
    return "prop_" + "".join(ch if ch.isalnum() else "_" for ch in key) + f"_{len(key)}"


def empty(columns: dict[str, pa.DataType]) -> pa.Table:
    return pa.table({c: pa.array([], t) for c, t in columns.items()})


def conform(table: pa.Table | None, columns: dict[str, pa.DataType]) -> pa.Table:
    """Exactly ``columns`` (missing ones null), plus any ``prop_*`` event-property columns."""
    if table is None:
        return empty(columns)
    n = table.num_rows
    out = {
        c: (table[c].cast(t) if c in table.column_names else pa.nulls(n, t))
        for c, t in columns.items()
    }
    for c in table.column_names:
        if c.startswith("prop_") and c not in out:
            out[c] = table[c].cast(pa.string())
    return pa.table(out)


@dataclass(frozen=True)
class SegmentData:
    """A store's facts as Arrow, for a full refresh (or a benchmark/simulator)."""

    currency: str
    customers: pa.Table
    orders: pa.Table
    consents: pa.Table | None = None
    lines: pa.Table | None = None
    events: pa.Table | None = None
    predictions: pa.Table | None = None
    predictions_model: str | None = None  # which CLV fit ``predictions`` holds


@dataclass
class CustomerFacts:
    """One customer's facts, as plain rows (dicts with the columns above)."""

    customer: dict[str, Any]
    orders: list[dict[str, Any]] = field(default_factory=list)
    lines: list[dict[str, Any]] = field(default_factory=list)
    consents: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # with a "props" dict
    prediction: dict[str, Any] | None = None
    extensions: dict[str, dict[Any, Any]] = field(default_factory=dict)


# -- from the store's raw columns ------------------------------------------------------------


def _tags() -> pl.Expr:
    """JSON text list -> lower-cased list (bad or empty JSON -> empty list)."""
    return (
        pl.col("tags")
        .str.json_decode(pl.List(pl.String))
        .list.eval(pl.element().str.to_lowercase())
        .alias("tags")
    )


def customers_from_store(raw: pa.Table) -> pa.Table:
    """The store's customer columns (tags as JSON text, flags as 0/1) -> CUSTOMER_COLUMNS."""
    frame = pl.from_arrow(raw)
    assert isinstance(frame, pl.DataFrame)
    frame = frame.with_columns(
        _tags(),
        pl.col("has_email").cast(pl.Boolean),
        pl.col("has_phone").cast(pl.Boolean),
    )
    return conform(frame.to_arrow(), CUSTOMER_COLUMNS)


def customer_from_row(row: dict[str, Any]) -> dict[str, Any]:
    """One customer row, normalised as `customers_from_store` does (pure Python: this runs
    on every live re-evaluation; a property test holds the two together)."""
    out = {c: row.get(c) for c in CUSTOMER_COLUMNS}
    raw = row.get("tags")
    out["tags"] = None if raw in (None, "") else [str(t).lower() for t in json.loads(raw)]
    out["has_email"] = None if row.get("has_email") is None else bool(row["has_email"])
    out["has_phone"] = None if row.get("has_phone") is None else bool(row["has_phone"])
    return out


_RAW_CUSTOMER = pa.schema(
    [
        ("id", pa.int64()),
        ("created_at", pa.int64()),
        ("account_status", pa.string()),
        ("country", pa.string()),
        ("region", pa.string()),
        ("city", pa.string()),
        ("zip", pa.string()),
        ("timezone", pa.string()),
        ("tags", pa.string()),
        ("has_email", pa.int64()),
        ("has_phone", pa.int64()),
    ]
)


def extract_properties(frame: pl.DataFrame, keys: set[str]) -> pl.DataFrame:
    """Raw ``properties`` JSON -> one text column per key (``prop_column``), compared as text."""
    if "properties" not in frame.columns:
        return frame
    # An empty SQLite result types the column from no rows (int64): make it text first.
    text = pl.col("properties").cast(pl.String)
    return frame.with_columns(
        text.str.json_path_match(f"$.{key}").alias(prop_column(key)) for key in sorted(keys)
    ).drop("properties")


def events_from_store(raw: pa.Table, keys: set[str]) -> pa.Table:
    frame = pl.from_arrow(raw)
    assert isinstance(frame, pl.DataFrame)
    return extract_properties(frame, keys).to_arrow()


def event_rows(rows: list[dict[str, Any]], keys: set[str]) -> list[dict[str, Any]]:
    """One customer's event rows with a ``props`` dict, extracted like `events_from_store`.

    Pure Python for text, integer and boolean values (what polars' JSON path gives for
    them); rows holding other values (floats, lists, objects) go through polars itself.
    """
    if not rows:
        return []
    if not keys or "properties" not in rows[0]:
        return [{**r, "props": {}} for r in rows]
    out = []
    for r in rows:
        props = _simple_props(r.get("properties"), keys)
        if props is None:
            frame = extract_properties(
                pl.DataFrame({"properties": [r["properties"]]}, schema={"properties": pl.String}),
                keys,
            )
            props = {k: frame[prop_column(k)][0] for k in keys}
            props = {k: v for k, v in props.items() if v is not None}
        out.append({**r, "props": props})
    return out


def _simple_props(text: str | None, keys: set[str]) -> dict[str, str] | None:
    if not text:
        return {}
    try:
        parsed = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(parsed, dict):
        return {}
    props: dict[str, str] = {}
    for key in keys:
        value = parsed.get(key)
        if value is None:
            continue
        if isinstance(value, bool):
            props[key] = "true" if value else "false"
        elif isinstance(value, str):
            props[key] = value
        elif isinstance(value, int):
            props[key] = str(value)
        else:
            return None
    return props
