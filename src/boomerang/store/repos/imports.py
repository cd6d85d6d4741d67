"""Apply a normalised import batch in one bulk transaction, and count what changed.

Key look-ups are written ``FROM staged_keys k CROSS JOIN table t WHERE ...``: SQLite keeps
that join order (the staged table outside, the table's unique index inside); PostgreSQL
plans it as an ordinary join.

Set-based throughout: staging tables and SQL for customers, products, consents and events;
for orders (the big table) a digest diff in Arrow/polars decides new / changed / unchanged,
new orders and all affected lines are appended straight into their tables, and only changed
orders go through an UPDATE. Merge rules:

- customers: a non-empty incoming value replaces the stored one, an empty one keeps it;
  ``registered`` is never downgraded to ``guest``; ``created_at`` keeps the earliest.
- orders: the file is authoritative for an order it contains; an order whose header or lines
  differ (by digest) is rewritten with its lines.
- products: non-empty incoming values replace stored ones.
- consents: a row is appended only when it changes the customer's latest status.
- events: appended once per dedupe key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import polars as pl
import pyarrow as pa

from boomerang.store.bulk import BulkSession
from boomerang.store.digest import row_digest

CUSTOMER_FIELDS = (
    "source_id", "email", "phone", "first_name", "last_name", "city", "region", "country",
    "zip", "timezone", "birthday", "tags", "attributes", "account_status", "created_at",
)  # fmt: skip
ORDER_FIELDS = (
    "email", "placed_at", "currency", "subtotal_minor", "discount_minor", "shipping_minor",
    "tax_minor", "total_minor", "refunded_minor", "status", "cancelled_at", "discount_code",
    "channel", "source",
)  # fmt: skip
LINE_FIELDS = (
    "line_no", "sku", "name", "category", "quantity", "unit_price_minor", "discount_minor",
)  # fmt: skip
PRODUCT_FIELDS = ("name", "category", "price_minor", "currency", "lifespan_days")


@dataclass
class Counts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass
class ApplyResult:
    customers: Counts = field(default_factory=Counts)
    orders: Counts = field(default_factory=Counts)
    products: Counts = field(default_factory=Counts)
    consents_recorded: int = 0
    events_inserted: int = 0
    events_duplicate: int = 0


def apply_batch(s: BulkSession, store_id: int, frames: Mapping[str, pl.DataFrame]) -> ApplyResult:
    """Upsert every non-empty frame (see `ingest.batch.FRAME_SCHEMAS`) into the store."""
    sid = int(store_id)
    result = ApplyResult()
    present = {k: v for k, v in frames.items() if v.height}
    if "customers" in present:
        result.customers = _upsert_customers(s, sid, present["customers"])
    if "products" in present:
        result.products = _upsert_products(s, sid, present["products"])
    if "orders" in present:
        lines = present.get("lines", pl.DataFrame())
        result.orders = _upsert_orders(s, sid, present["orders"], lines)
    if "consents" in present:
        result.consents_recorded = _append_consents(s, sid, present["consents"])
    if "events" in present:
        result.events_inserted, result.events_duplicate = _append_events(s, sid, present["events"])
    return result


def _any_differs(s: BulkSession, pairs: list[tuple[str, str]]) -> str:
    return "(" + " OR ".join(s.distinct_from(a, b) for a, b in pairs) + ")"


def _count(s: BulkSession, sql: str) -> int:
    return int(s.scalar(sql) or 0)


def _merged_customers(incoming: pl.DataFrame, stored: pl.DataFrame) -> pl.DataFrame:
    """Incoming rows merged over stored ones (merge rules in the module docstring)."""
    joined = incoming.join(stored, on="external_id", how="left", suffix="__old")
    merged = []
    for col in CUSTOMER_FIELDS:
        new, old = pl.col(col), pl.col(f"{col}__old")
        if col == "account_status":
            expr = pl.when(new == "guest").then(pl.coalesce(old, new)).otherwise(new)
        elif col == "created_at":
            expr = pl.min_horizontal(new, old)
        else:
            expr = pl.coalesce(new, old)
        merged.append(expr.alias(col))
    changed = pl.any_horizontal(
        [pl.col(c).ne_missing(pl.col(f"{c}__old")) for c in CUSTOMER_FIELDS]
    )
    return joined.with_columns(merged).with_columns(
        (pl.col("id").is_not_null() & changed).alias("__changed")
    )


def _upsert_customers(s: BulkSession, sid: int, frame: pl.DataFrame) -> Counts:
    incoming = frame.unique("external_id", keep="first", maintain_order=True)
    keys = s.stage("customer_keys_in", incoming.select("external_id").to_arrow())
    cols = ", ".join(f"c.{c}" for c in CUSTOMER_FIELDS)
    stored = _frame(
        s.fetch_arrow(
            f"SELECT c.id, c.external_id, {cols} FROM {keys} k CROSS JOIN customers c "
            f"WHERE c.store_id = {sid} AND c.external_id = k.external_id"
        )
    )
    stored = stored.cast(
        pl.Schema({"id": pl.Int64(), **incoming.select("external_id", *CUSTOMER_FIELDS).schema})
    )
    merged = _merged_customers(incoming, stored)
    new = merged.filter(pl.col("id").is_null())
    changed = merged.filter(pl.col("__changed"))
    s.append(
        "customers",
        new.select(
            pl.lit(sid, pl.Int64).alias("store_id"), "external_id", *CUSTOMER_FIELDS
        ).to_arrow(),
    )
    if changed.height:
        stage = s.stage("changed_customers", changed.select("id", *CUSTOMER_FIELDS).to_arrow())
        sets = ", ".join(f"{c} = s.{c}" for c in CUSTOMER_FIELDS)
        s.execute(f"UPDATE customers SET {sets} FROM {stage} s WHERE customers.id = s.id")
    return Counts(new.height, changed.height, incoming.height - new.height - changed.height)


def _upsert_products(s: BulkSession, sid: int, frame: pl.DataFrame) -> Counts:
    stage = s.stage("products", frame.unique("sku", keep="first").to_arrow())
    cols = PRODUCT_FIELDS
    join = f"{stage} s LEFT JOIN products p ON p.store_id = {sid} AND p.sku = s.sku"
    changed = _any_differs(s, [(f"COALESCE(s.{c}, p.{c})", f"p.{c}") for c in cols])
    total = _count(s, f"SELECT count(*) FROM {stage}")
    new = _count(s, f"SELECT count(*) FROM {join} WHERE p.id IS NULL")
    upd = _count(s, f"SELECT count(*) FROM {join} WHERE p.id IS NOT NULL AND {changed}")
    col_list = ", ".join(cols)
    sets = ", ".join(f"{c} = COALESCE(excluded.{c}, products.{c})" for c in cols)
    where = _any_differs(
        s, [(f"COALESCE(excluded.{c}, products.{c})", f"products.{c}") for c in cols]
    )
    s.execute(
        f"INSERT INTO products (store_id, sku, {col_list}) "
        f"SELECT {sid}, sku, {col_list} FROM {stage} WHERE true "
        f"ON CONFLICT (store_id, sku) DO UPDATE SET {sets} WHERE {where}"
    )
    return Counts(new, upd, total - new - upd)


def _order_digests(orders: pl.DataFrame) -> pl.Series:
    """Digest of everything an import writes for an order (header, customer key, lines)."""
    return orders.select(
        row_digest(["customer_key", *ORDER_FIELDS, "lines_digest"]).alias("digest")
    ).to_series()


def _frame(table: pa.Table) -> pl.DataFrame:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _customer_ids(
    s: BulkSession, sid: int, keys: pl.Series, column: str = "external_id"
) -> pl.DataFrame:
    """(customer_key, customer_id) for the keys that name a customer by ``column``."""
    keys = keys.drop_nulls().unique()
    if not keys.len():
        return pl.DataFrame(schema={"customer_key": pl.String, "customer_id": pl.Int64})
    stage = s.stage(f"keys_{column}", pl.DataFrame({"k": keys}).to_arrow())
    if column == "external_id":  # unique per store: a plain keyed look-up
        sql = (
            f"SELECT c.external_id AS customer_key, c.id AS customer_id "
            f"FROM {stage} k CROSS JOIN customers c "
            f"WHERE c.store_id = {sid} AND c.external_id = k.k"
        )
    else:  # platform ids are not unique: take the oldest profile carrying it
        sql = (
            f"SELECT MIN(c.{column}) AS customer_key, MIN(c.id) AS customer_id "
            f"FROM {stage} k CROSS JOIN customers c "
            f"WHERE c.store_id = {sid} AND c.{column} = k.k GROUP BY c.{column}"
        )
    found = s.fetch_arrow(sql)
    return _frame(found).cast({"customer_key": pl.String, "customer_id": pl.Int64})


def _upsert_orders(s: BulkSession, sid: int, orders: pl.DataFrame, lines: pl.DataFrame) -> Counts:
    orders = orders.unique("external_id", keep="first", maintain_order=True)
    orders = orders.with_columns(_order_digests(orders))
    keys = s.stage("order_keys", orders.select("external_id").to_arrow())
    existing = _frame(
        s.fetch_arrow(
            f"SELECT o.external_id AS external_id, o.id AS id, o.digest AS old_digest "
            f"FROM {keys} k CROSS JOIN orders o "
            f"WHERE o.store_id = {sid} AND o.external_id = k.external_id"
        )
    ).cast({"external_id": pl.String, "id": pl.Int64, "old_digest": pl.String})
    diffed = orders.join(existing, on="external_id", how="left")
    new = diffed.filter(pl.col("id").is_null())
    changed = diffed.filter(pl.col("id").is_not_null() & (pl.col("old_digest") != pl.col("digest")))
    unchanged = orders.height - new.height - changed.height
    if not (new.height or changed.height):
        return Counts(0, 0, unchanged)
    cmap = _customer_ids(s, sid, pl.concat([new["customer_key"], changed["customer_key"]]))
    row_cols = ["external_id", "customer_id", *ORDER_FIELDS, "digest"]
    if new.height:
        before = int(s.scalar("SELECT COALESCE(MAX(id), 0) FROM orders") or 0)
        rows = new.join(cmap, on="customer_key", how="left").select(
            pl.lit(sid, pl.Int64).alias("store_id"), *row_cols
        )
        s.append("orders", rows.to_arrow())
        ids = _frame(
            s.fetch_arrow(
                f"SELECT external_id, id FROM orders WHERE store_id = {sid} AND id > {before}"
            )
        ).cast({"external_id": pl.String, "id": pl.Int64})
    else:
        ids = pl.DataFrame(schema={"external_id": pl.String, "id": pl.Int64})
    if changed.height:
        stage = s.stage(
            "changed_orders",
            changed.join(cmap, on="customer_key", how="left").select("id", *row_cols).to_arrow(),
        )
        sets = ", ".join(f"{c} = s.{c}" for c in row_cols if c != "external_id")
        s.execute(f"UPDATE orders SET {sets} FROM {stage} s WHERE orders.id = s.id")
        s.execute(f"DELETE FROM order_lines WHERE order_id IN (SELECT id FROM {stage})")
        ids = pl.concat([ids, changed.select("external_id", "id")])
    if lines.height:
        rows = lines.join(
            ids.rename({"external_id": "order_external_id", "id": "order_id"}),
            on="order_external_id",
            how="inner",
        ).select("order_id", pl.lit(sid, pl.Int64).alias("store_id"), *LINE_FIELDS)
        s.append("order_lines", rows.sort("order_id", "line_no").to_arrow())
    return Counts(new.height, changed.height, unchanged)


def _append_consents(s: BulkSession, sid: int, frame: pl.DataFrame) -> int:
    stage = s.stage("consents", frame.to_arrow())
    pending = s.stage(
        "consent_changes",
        frame.head(0).with_columns(pl.lit(0, pl.Int64).alias("customer_id")).to_arrow(),
    )
    s.execute(
        f"INSERT INTO {pending} SELECT s.*, c.id FROM {stage} s "
        f"CROSS JOIN customers c WHERE c.store_id = {sid} AND c.external_id = s.customer_key"
    )
    history = (
        f"SELECT 1 FROM consents x WHERE x.customer_id = {pending}.customer_id "
        f"AND x.channel = {pending}.channel"
    )
    # With no history at all, "withdrawn" is the default state: nothing to record.
    s.execute(f"DELETE FROM {pending} WHERE status = 'withdrawn' AND NOT EXISTS ({history})")
    # Otherwise record only what changes the status in force at that moment (and never twice).
    in_force = (
        f"SELECT x.status FROM consents x WHERE x.customer_id = {pending}.customer_id "
        f"AND x.channel = {pending}.channel AND x.occurred_at <= {pending}.occurred_at "
        "ORDER BY x.occurred_at DESC, x.id DESC LIMIT 1"
    )
    s.execute(
        f"DELETE FROM {pending} WHERE EXISTS ({history}) "
        f"AND COALESCE(({in_force}), 'withdrawn') = {pending}.status"
    )
    s.execute(
        "INSERT INTO consents (store_id, customer_id, channel, status, source, text_version, "
        f"occurred_at) SELECT {sid}, customer_id, channel, status, source, text_version, "
        f"occurred_at FROM {pending}"
    )
    return int(s.scalar(f"SELECT count(*) FROM {pending}") or 0)


def _append_events(s: BulkSession, sid: int, frame: pl.DataFrame) -> tuple[int, int]:
    incoming = frame.unique("dedupe_key", keep="first", maintain_order=True)
    keys = s.stage("event_keys", incoming.select("dedupe_key").to_arrow())
    seen = _frame(
        s.fetch_arrow(
            f"SELECT e.dedupe_key AS dedupe_key FROM {keys} k CROSS JOIN events e "
            f"WHERE e.store_id = {sid} AND e.dedupe_key = k.dedupe_key"
        )
    ).cast({"dedupe_key": pl.String})
    fresh = incoming.join(seen, on="dedupe_key", how="anti")
    by_id = _customer_ids(s, sid, fresh["customer_key"])
    unresolved = fresh.join(by_id, on="customer_key", how="anti")["customer_key"]
    # a platform customer id (e.g. Shopify's) resolves through source_id
    by_source = _customer_ids(s, sid, unresolved, column="source_id").rename(
        {"customer_id": "source_customer_id"}
    )
    rows = (
        fresh.join(by_id, on="customer_key", how="left")
        .join(by_source, on="customer_key", how="left")
        .select(
            pl.lit(sid, pl.Int64).alias("store_id"),
            pl.coalesce("customer_id", "source_customer_id").alias("customer_id"),
            "anonymous_id",
            "type",
            "occurred_at",
            "properties",
            "dedupe_key",
        )
    )
    s.append("events", rows.to_arrow())
    return fresh.height, frame.height - fresh.height
