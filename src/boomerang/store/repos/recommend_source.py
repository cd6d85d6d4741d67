"""What the recommenders read: a store's purchases (customer, product, units, when) and its
product catalogue, as Arrow through ADBC (see analytics_source for the null sentinels)."""

from __future__ import annotations

import pyarrow as pa
from sqlalchemy import Engine

from boomerang.store.bulk import read_arrow
from boomerang.store.repos.analytics_source import restore_nulls

PURCHASE_TYPES = {
    "customer_id": pa.int64(),
    "sku": pa.string(),
    "name": pa.string(),
    "unit_price_minor": pa.int64(),
    "currency": pa.string(),
    "quantity": pa.int64(),
    "placed_at": pa.int64(),
}
PRODUCT_TYPES = {
    "sku": pa.string(),
    "name": pa.string(),
    "category": pa.string(),
    "price_minor": pa.int64(),
    "currency": pa.string(),
    "attributes": pa.string(),
}


def _typed(table: pa.Table, types: dict[str, pa.DataType]) -> pa.Table:
    return pa.table({c: table[c].cast(t) for c, t in types.items()})


def read_purchases(engine: Engine, store_id: int) -> pa.Table:
    """One row per order line with a product and a known customer, of orders that were not
    cancelled: customer_id, sku, name (the line's, '' if none), unit_price_minor, currency,
    quantity (> 0), placed_at (epoch micros)."""
    sid = int(store_id)
    table = read_arrow(
        engine,
        "SELECT o.customer_id AS customer_id, l.sku AS sku, COALESCE(l.name, '') AS name, "
        "l.unit_price_minor AS unit_price_minor, o.currency AS currency, "
        "l.quantity AS quantity, o.placed_at AS placed_at FROM order_lines l JOIN orders o ON o.id = l.order_id "
        f"WHERE o.store_id = {sid} AND l.store_id = {sid} AND o.customer_id IS NOT NULL "
        "AND l.sku IS NOT NULL AND l.sku <> '' AND l.quantity > 0 AND o.status <> 'cancelled'",
    )
    return _typed(table, PURCHASE_TYPES)


def read_products(engine: Engine, store_id: int) -> pa.Table:
    """The catalogue: sku, name, category, price_minor, currency, attributes (JSON text)."""
    table = read_arrow(
        engine,
        "SELECT sku, COALESCE(name, '') AS name, COALESCE(category, '') AS category, "
        "COALESCE(price_minor, -1) AS price_minor, COALESCE(currency, '') AS currency, "
        "COALESCE(attributes, '') AS attributes "
        f"FROM products WHERE store_id = {int(store_id)}",
    )
    table = _typed(table, PRODUCT_TYPES)
    return restore_nulls(
        table, ints=("price_minor",), texts=("name", "category", "currency", "attributes")
    )
