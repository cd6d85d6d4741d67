"""Per-customer CLV predictions (``customer_predictions``): replace a model's rows, read them.

Why bulk: a fit covers every customer of a store (up to millions of rows), so rows go in as
one Arrow table through ADBC, inside the caller's transaction, after deleting the store and
model's previous rows — readers see the old fit or the new one, never a mix.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Engine

from boomerang.store.bulk import BulkSession, read_arrow

TABLE = "customer_predictions"

#: Column order and Arrow types of a predictions table (nullable where the schema is).
ARROW_SCHEMA = pa.schema(
    [
        ("store_id", pa.int64()),
        ("customer_id", pa.int64()),
        ("model", pa.string()),
        ("model_version", pa.string()),
        ("fitted_at", pa.int64()),
        ("inputs_through", pa.int64()),
        ("p_alive", pa.float64()),
        ("horizon_days", pa.int64()),
        ("expected_purchases", pa.float64()),
        ("expected_purchases_low", pa.float64()),
        ("expected_purchases_high", pa.float64()),
        ("next_order_at", pa.int64()),
        ("clv_minor", pa.int64()),
        ("clv_low_minor", pa.int64()),
        ("clv_high_minor", pa.int64()),
        ("currency", pa.string()),
        ("risk_band", pa.string()),
    ]
)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def replace_predictions(session: BulkSession, store_id: int, model: str, rows: pa.Table) -> int:
    """Delete the store+model's rows and append ``rows`` (ARROW_SCHEMA); return rows written."""
    table = rows.select(ARROW_SCHEMA.names).cast(ARROW_SCHEMA)
    session.execute(
        f"DELETE FROM {TABLE} WHERE store_id = {int(store_id)} AND model = {_quote(model)}"
    )
    session.append(TABLE, table)
    return int(table.num_rows)


def read_predictions(engine: Engine, store_id: int, model: str | None = None) -> pa.Table:
    """A store's stored predictions (one model or all) with each customer's external id."""
    where = f"p.store_id = {int(store_id)}"
    if model is not None:
        where += f" AND p.model = {_quote(model)}"
    cols = ", ".join(
        f"COALESCE(p.{n}, -1) AS {n}"
        if n in ("next_order_at", "clv_low_minor", "clv_high_minor")
        else f"p.{n}"
        for n in ARROW_SCHEMA.names
    )
    table = read_arrow(
        engine,
        f"SELECT {cols}, c.external_id AS customer FROM {TABLE} p "
        f"JOIN customers c ON c.id = p.customer_id WHERE {where} "
        "ORDER BY p.model, p.customer_id",
    )
    schema = ARROW_SCHEMA.append(pa.field("customer", pa.string()))
    if table.num_rows == 0:
        return schema.empty_table()
    out = {}
    for field in schema:
        col = table[field.name]
        if field.name in ("next_order_at", "clv_low_minor", "clv_high_minor"):
            col = pc.if_else(pc.equal(col.cast(pa.int64()), -1), None, col.cast(pa.int64()))
        out[field.name] = col.cast(field.type)
    return pa.table(out)


def count_predictions(session: BulkSession, store_id: int, model: str) -> int:
    """Rows stored for a store and model (used by tests and the CLI summary)."""
    value = session.scalar(
        f"SELECT COUNT(*) FROM {TABLE} WHERE store_id = {int(store_id)} AND model = {_quote(model)}"
    )
    return int(value or 0)
