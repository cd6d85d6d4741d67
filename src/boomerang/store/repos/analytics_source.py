"""A store's orders, lines, customers and events as Arrow tables, for the analytics engine.

Why ADBC and COALESCE: ADBC SQLite types each column from the values of its first batch, so a
column whose first rows are all NULL would fail later; nullable columns are read with a
sentinel (-1 or '') and turned back into nulls in Arrow. Every query is filtered by store.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Engine

from boomerang.store.bulk import read_arrow

ANALYTICS_EVENT_TYPES = ("visit", "added_to_cart", "checkout_started", "order_placed")


def restore_nulls(
    table: pa.Table, ints: tuple[str, ...] = (), texts: tuple[str, ...] = ()
) -> pa.Table:
    for name in ints:
        col = table[name].cast(pa.int64())
        table = table.set_column(
            table.schema.get_field_index(name), name, pc.if_else(pc.equal(col, -1), None, col)
        )
    for name in texts:
        col = table[name].cast(pa.string())
        table = table.set_column(
            table.schema.get_field_index(name), name, pc.if_else(pc.equal(col, ""), None, col)
        )
    return table


def _typed(table: pa.Table, types: dict[str, pa.DataType]) -> pa.Table:
    return pa.table({c: table[c].cast(t) for c, t in types.items()})


def read_orders(engine: Engine, store_id: int) -> pa.Table:
    sid = int(store_id)
    table = read_arrow(
        engine,
        "SELECT id, COALESCE(customer_id, -1) AS customer_id, placed_at, currency, "
        "total_minor, refunded_minor, discount_minor, shipping_minor, tax_minor, status, channel "
        f"FROM orders WHERE store_id = {sid}",
    )
    table = _typed(
        table,
        {
            "id": pa.int64(), "customer_id": pa.int64(), "placed_at": pa.int64(),
            "currency": pa.string(), "total_minor": pa.int64(), "refunded_minor": pa.int64(),
            "discount_minor": pa.int64(), "shipping_minor": pa.int64(), "tax_minor": pa.int64(),
            "status": pa.string(), "channel": pa.string(),
        },
    )  # fmt: skip
    return restore_nulls(table, ints=("customer_id",))


def read_order_lines(engine: Engine, store_id: int) -> pa.Table:
    sid = int(store_id)
    table = read_arrow(
        engine,
        "SELECT order_id, line_no, COALESCE(sku, '') AS sku, COALESCE(category, '') AS category, "
        "quantity, unit_price_minor, discount_minor "
        f"FROM order_lines WHERE store_id = {sid}",
    )
    table = _typed(
        table,
        {
            "order_id": pa.int64(), "line_no": pa.int64(), "sku": pa.string(),
            "category": pa.string(), "quantity": pa.int64(), "unit_price_minor": pa.int64(),
            "discount_minor": pa.int64(),
        },
    )  # fmt: skip
    return restore_nulls(table, texts=("sku", "category"))


def read_customers(engine: Engine, store_id: int) -> pa.Table:
    sid = int(store_id)
    table = read_arrow(
        engine,
        "SELECT id, COALESCE(created_at, -1) AS created_at, account_status, "
        f"COALESCE(country, '') AS country FROM customers WHERE store_id = {sid}",
    )
    table = _typed(
        table,
        {
            "id": pa.int64(),
            "created_at": pa.int64(),
            "account_status": pa.string(),
            "country": pa.string(),
        },
    )
    return restore_nulls(table, ints=("created_at",), texts=("country",))


def read_events(
    engine: Engine, store_id: int, types: tuple[str, ...] = ANALYTICS_EVENT_TYPES
) -> pa.Table:
    """Events of the given types (the ones the metrics read), without their properties."""
    sid = int(store_id)
    wanted = ", ".join("'" + t.replace("'", "''") + "'" for t in types)
    table = read_arrow(
        engine,
        "SELECT COALESCE(customer_id, -1) AS customer_id, COALESCE(anonymous_id, '') AS anonymous_id, "
        f"type, occurred_at FROM events WHERE store_id = {sid} AND type IN ({wanted})",
    )
    table = _typed(
        table,
        {
            "customer_id": pa.int64(),
            "anonymous_id": pa.string(),
            "type": pa.string(),
            "occurred_at": pa.int64(),
        },
    )
    return restore_nulls(table, ints=("customer_id",), texts=("anonymous_id",))
