"""A store's order history as Arrow, with the columns the loyalty program simulator needs.

Like `analytics_source.read_orders` but with ``subtotal_minor`` (the `net` and `subtotal`
spend bases of a program compute points on it) and the order's external id (ties at the
same instant replay in a stable order). Read through ADBC, filtered by store; a guest
order's missing customer is read as the sentinel -1 and turned back into a null.
"""

from __future__ import annotations

import pyarrow as pa
from sqlalchemy import Engine

from boomerang.store.bulk import read_arrow
from boomerang.store.repos.analytics_source import restore_nulls

ORDER_TYPES: dict[str, pa.DataType] = {
    "id": pa.int64(),
    "external_id": pa.string(),
    "customer_id": pa.int64(),
    "placed_at": pa.int64(),
    "currency": pa.string(),
    "subtotal_minor": pa.int64(),
    "discount_minor": pa.int64(),
    "total_minor": pa.int64(),
    "refunded_minor": pa.int64(),
    "status": pa.string(),
}


def read_orders(engine: Engine, store_id: int) -> pa.Table:
    """Every order of the store (guest orders with a null customer_id), unsorted."""
    sid = int(store_id)
    table = read_arrow(
        engine,
        "SELECT id, external_id, COALESCE(customer_id, -1) AS customer_id, placed_at, currency, "
        "subtotal_minor, discount_minor, total_minor, refunded_minor, status "
        f"FROM orders WHERE store_id = {sid}",
    )
    if table.num_rows == 0:
        return pa.table({c: pa.array([], type=t) for c, t in ORDER_TYPES.items()})
    table = pa.table({c: table[c].cast(t) for c, t in ORDER_TYPES.items()})
    return restore_nulls(table, ints=("customer_id",))
