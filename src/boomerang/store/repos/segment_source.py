"""What segment rules read, straight from the store: whole tables (refresh) or one customer.

A full refresh reads Arrow through ADBC, only the sources, event types and look-back the
rules need (`Needs`); re-evaluating one customer reads that customer's rows through the
SQLAlchemy connection of the caller's transaction (indexed look-ups, a few milliseconds).
Nullable columns are read with sentinels on the ADBC path (see analytics_source).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from sqlalchemy import Connection, Engine, text

from boomerang.store.bulk import read_arrow
from boomerang.store.repos.analytics_source import restore_nulls


@dataclass(frozen=True)
class Needs:
    """Which facts a set of rules reads (built by the segments capability from its plan)."""

    consents: bool = False
    lines: bool = False
    predictions: bool = False
    # event type (None = every type) -> earliest occurred_at needed (None = all history)
    events: dict[str | None, int | None] = field(default_factory=dict)
    event_properties: bool = False
    predictions_model: str | None = None  # which fit's rows (the last refresh's)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


CUSTOMER_SQL = (
    "SELECT id, COALESCE(created_at, -1) AS created_at, account_status, "
    "COALESCE(country, '') AS country, COALESCE(region, '') AS region, "
    "COALESCE(city, '') AS city, COALESCE(zip, '') AS zip, COALESCE(timezone, '') AS timezone, "
    "COALESCE(tags, '') AS tags, "
    "CASE WHEN email IS NULL OR email = '' THEN 0 ELSE 1 END AS has_email, "
    "CASE WHEN phone IS NULL OR phone = '' THEN 0 ELSE 1 END AS has_phone "
    "FROM customers"
)
CUSTOMER_TEXTS = ("country", "region", "city", "zip", "timezone", "tags")


def read_customers(engine: Engine, store_id: int) -> pa.Table:
    table = read_arrow(engine, f"{CUSTOMER_SQL} WHERE store_id = {int(store_id)}")
    return restore_nulls(table, ints=("created_at",), texts=CUSTOMER_TEXTS)


def read_consents(engine: Engine, store_id: int) -> pa.Table:
    return read_arrow(
        engine,
        "SELECT id, customer_id, channel, status, occurred_at FROM consents "
        f"WHERE store_id = {int(store_id)}",
    )


ORDER_SQL = (
    "SELECT id, COALESCE(customer_id, -1) AS customer_id, placed_at, currency, total_minor, "
    "refunded_minor, status FROM orders"
)


def read_orders(engine: Engine, store_id: int) -> pa.Table:
    table = read_arrow(engine, f"{ORDER_SQL} WHERE store_id = {int(store_id)}")
    return restore_nulls(table, ints=("customer_id",))


LINE_SQL = (
    "SELECT l.order_id, COALESCE(l.sku, '') AS sku, COALESCE(l.category, '') AS category, "
    "l.quantity, l.unit_price_minor, l.discount_minor FROM order_lines l"
)


def read_lines(engine: Engine, store_id: int) -> pa.Table:
    table = read_arrow(engine, f"{LINE_SQL} WHERE l.store_id = {int(store_id)}")
    return restore_nulls(table, texts=("sku", "category"))


def _event_filter(needs: Needs) -> str:
    if None in needs.events:
        bounds = list(needs.events.values())
        since = None if any(b is None for b in bounds) else min(b for b in bounds if b is not None)
        return "" if since is None else f" AND occurred_at >= {int(since)}"
    parts = []
    for etype, since in sorted(needs.events.items(), key=lambda kv: str(kv[0])):
        clause = f"type = {_quote(str(etype))}"
        if since is not None:
            clause += f" AND occurred_at >= {int(since)}"
        parts.append(f"({clause})")
    return " AND (" + " OR ".join(parts) + ")"


def read_events(engine: Engine, store_id: int, needs: Needs) -> pa.Table:
    """Identified events of the needed types and look-back, with raw properties if asked."""
    props = ", COALESCE(properties, '') AS properties" if needs.event_properties else ""
    table = read_arrow(
        engine,
        f"SELECT customer_id, type, occurred_at{props} FROM events "
        f"WHERE store_id = {int(store_id)} AND customer_id IS NOT NULL{_event_filter(needs)}",
    )
    return restore_nulls(table, texts=("properties",)) if needs.event_properties else table


def latest_model_sql(store_id: int) -> str:
    return (
        "SELECT model FROM customer_predictions "
        f"WHERE store_id = {int(store_id)} ORDER BY fitted_at DESC, model LIMIT 1"
    )


PREDICTION_SQL = (
    "SELECT customer_id, p_alive, clv_minor, expected_purchases, "
    "COALESCE(next_order_at, -1) AS next_order_at, risk_band FROM customer_predictions"
)


def latest_model(engine: Engine, store_id: int) -> str | None:
    """The model of the store's latest CLV fit (by fitted_at), None when nothing was fitted."""
    model = read_arrow(engine, latest_model_sql(store_id))
    return str(model["model"][0].as_py()) if model.num_rows else None


def read_predictions(engine: Engine, store_id: int, name: str) -> pa.Table:
    """One model's predictions for every customer of the store."""
    table = read_arrow(
        engine,
        f"{PREDICTION_SQL} WHERE store_id = {int(store_id)} AND model = {_quote(name)}",
    )
    return restore_nulls(table, ints=("next_order_at",))


def read_categories(engine: Engine, store_id: int, limit: int) -> list[str]:
    """The store's most common categories (for the category-affinity segments): from the
    catalogue, else from order lines, else from recent product views' properties."""
    sid = int(store_id)
    for sql in (
        f"SELECT category, COUNT(*) AS n FROM products WHERE store_id = {sid} "
        "AND category IS NOT NULL AND category <> '' GROUP BY category",
        f"SELECT category, COUNT(*) AS n FROM order_lines WHERE store_id = {sid} "
        "AND category IS NOT NULL AND category <> '' GROUP BY category",
    ):
        table = read_arrow(engine, f"{sql} ORDER BY n DESC, category LIMIT {int(limit)}")
        if table.num_rows:
            return [str(v) for v in table["category"].to_pylist()]
    return []


def read_recent_view_properties(engine: Engine, store_id: int, sample: int) -> pa.Table:
    """Raw properties of the latest ``sample`` product views (to learn categories from)."""
    return read_arrow(
        engine,
        "SELECT COALESCE(properties, '') AS properties FROM events "
        f"WHERE store_id = {int(store_id)} AND type = 'product_viewed' "
        f"ORDER BY occurred_at DESC LIMIT {int(sample)}",
    )


def read_identities(engine: Engine, store_id: int) -> pa.Table:
    """Who each customer is (for exports): id, external id, email and name."""
    table = read_arrow(
        engine,
        "SELECT id AS customer_id, external_id, COALESCE(email, '') AS email, "
        "COALESCE(first_name, '') AS first_name, COALESCE(last_name, '') AS last_name "
        f"FROM customers WHERE store_id = {int(store_id)}",
    )
    return restore_nulls(table, texts=("email", "first_name", "last_name")).set_column(
        0, "customer_id", table["customer_id"].cast(pa.int64())
    )


# -- one customer (inside the caller's transaction) ------------------------------------------


def _rows(conn: Connection, sql: Any, **params: Any) -> list[dict[str, Any]]:
    statement = text(sql) if isinstance(sql, str) else sql
    return [dict(row) for row in conn.execute(statement, params).mappings()]


_ORDER_KEYS = (
    "id",
    "customer_id",
    "placed_at",
    "currency",
    "total_minor",
    "refunded_minor",
    "status",
)
_LINE_KEYS = ("order_id", "sku", "category", "quantity", "unit_price_minor", "discount_minor")
_ORDERS = text(
    "SELECT id, customer_id, placed_at, currency, total_minor, refunded_minor, status "
    "FROM orders WHERE store_id = :s AND customer_id = :c"
)
_ORDERS_WITH_LINES = text(
    "SELECT o.id, o.customer_id, o.placed_at, o.currency, o.total_minor, o.refunded_minor, "
    "o.status, l.line_no, l.order_id, l.sku, l.category, l.quantity, l.unit_price_minor, "
    "l.discount_minor FROM orders o LEFT JOIN order_lines l ON l.order_id = o.id "
    "WHERE o.store_id = :s AND o.customer_id = :c ORDER BY o.id, l.line_no"
)
_PREDICTION_OF_MODEL = text(
    "SELECT customer_id, p_alive, clv_minor, expected_purchases, next_order_at, risk_band "
    "FROM customer_predictions WHERE store_id = :s AND customer_id = :c AND model = :m"
)


def customer_rows(
    conn: Connection, store_id: int, customer_id: int, needs: Needs
) -> dict[str, Any] | None:
    """One customer's facts as plain rows (the same columns as the Arrow path)."""
    found = _rows(
        conn,
        CUSTOMER_SQL.replace("COALESCE(created_at, -1)", "created_at")
        + " WHERE store_id = :s AND id = :c",
        s=store_id,
        c=customer_id,
    )
    if not found:
        return None
    customer = {k: (None if (k in CUSTOMER_TEXTS and v == "") else v) for k, v in found[0].items()}
    out: dict[str, Any] = {"customer": customer}
    if needs.lines:
        joined = _rows(conn, _ORDERS_WITH_LINES, s=store_id, c=customer_id)
        orders: dict[int, dict[str, Any]] = {}
        out["lines"] = []
        for r in joined:
            orders.setdefault(r["id"], {k: r[k] for k in _ORDER_KEYS})
            if r["line_no"] is not None:
                out["lines"].append({k: r[k] for k in _LINE_KEYS})
        out["orders"] = list(orders.values())
    else:
        out["orders"] = _rows(conn, _ORDERS, s=store_id, c=customer_id)
        out["lines"] = []
    out["consents"] = (
        _rows(
            conn,
            "SELECT id, customer_id, channel, status, occurred_at FROM consents "
            "WHERE store_id = :s AND customer_id = :c",
            s=store_id,
            c=customer_id,
        )
        if needs.consents
        else []
    )
    out["events"] = []
    if needs.events:
        props = ", properties" if needs.event_properties else ""
        out["events"] = _rows(
            conn,
            f"SELECT customer_id, type, occurred_at{props} FROM events "
            f"WHERE store_id = :s AND customer_id = :c{_event_filter(needs)}",
            s=store_id,
            c=customer_id,
        )
    out["prediction"] = None
    if needs.predictions and needs.predictions_model:
        found = _rows(
            conn, _PREDICTION_OF_MODEL, s=store_id, c=customer_id, m=needs.predictions_model
        )
        out["prediction"] = found[0] if found else None
    return out
