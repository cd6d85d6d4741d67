"""Apply a staged import batch with set-based upserts, and count what changed.

Every statement works on whole staging tables (no per-row Python). The caller owns the
transaction: either the whole batch applies or none of it does. Merge rules:

- customers: a non-empty incoming value replaces the stored one, an empty one keeps it;
  ``registered`` is never downgraded to ``guest``; ``created_at`` keeps the earliest.
- orders: the file is authoritative for an order it contains; an order whose header or
  line digest differs is rewritten with its lines.
- products: non-empty incoming values replace stored ones.
- consents: a row is appended only when it changes the customer's latest status.
- events: appended once per dedupe key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import Connection, text

CUSTOMER_FIELDS = (
    "source_id",
    "email",
    "phone",
    "first_name",
    "last_name",
    "city",
    "region",
    "country",
    "zip",
    "timezone",
    "birthday",
    "tags",
    "attributes",
)
ORDER_FIELDS = (
    "customer_id",
    "email",
    "placed_at",
    "currency",
    "subtotal_minor",
    "discount_minor",
    "shipping_minor",
    "tax_minor",
    "total_minor",
    "refunded_minor",
    "status",
    "cancelled_at",
    "discount_code",
    "channel",
    "source",
    "lines_digest",
)
LINE_FIELDS = (
    "line_no",
    "sku",
    "name",
    "category",
    "quantity",
    "unit_price_minor",
    "discount_minor",
)
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


def _differs(conn: Connection, a: str, b: str) -> str:
    """Null-safe inequality in the connection's dialect."""
    op = "IS NOT" if conn.dialect.name == "sqlite" else "IS DISTINCT FROM"
    return f"({a} {op} {b})"


def _any_differs(conn: Connection, pairs: list[tuple[str, str]]) -> str:
    return "(" + " OR ".join(_differs(conn, a, b) for a, b in pairs) + ")"


def _scalar(conn: Connection, sql: str, store_id: int) -> int:
    return int(conn.execute(text(sql), {"sid": store_id}).scalar_one())


def apply_batch(conn: Connection, store_id: int, staged: Mapping[str, str]) -> ApplyResult:
    """Upsert every staged table (names from `staging.stage_tables`) into the store."""
    result = ApplyResult()
    if "customers" in staged:
        result.customers = _upsert_customers(conn, store_id, staged["customers"])
    if "products" in staged:
        result.products = _upsert_products(conn, store_id, staged["products"])
    if "orders" in staged:
        result.orders = _upsert_orders(conn, store_id, staged["orders"], staged.get("lines"))
    if "consents" in staged:
        result.consents_recorded = _append_consents(conn, store_id, staged["consents"])
    if "events" in staged:
        result.events_inserted, result.events_duplicate = _append_events(
            conn, store_id, staged["events"]
        )
    return result


def _merged_customer(col: str, new: str, old: str) -> str:
    if col == "account_status":
        return f"CASE WHEN {new}.account_status = 'guest' THEN {old}.account_status ELSE {new}.account_status END"
    if col == "created_at":
        return (
            f"CASE WHEN {old}.created_at IS NULL OR {new}.created_at < {old}.created_at "
            f"THEN {new}.created_at ELSE {old}.created_at END"
        )
    return f"COALESCE({new}.{col}, {old}.{col})"


def _upsert_customers(conn: Connection, store_id: int, stage: str) -> Counts:
    cols = (*CUSTOMER_FIELDS, "account_status", "created_at")
    changed = _any_differs(conn, [(_merged_customer(c, "s", "c"), f"c.{c}") for c in cols])
    join = (
        f'"{stage}" s LEFT JOIN customers c ON c.store_id = :sid AND c.external_id = s.external_id'
    )
    total = _scalar(conn, f'SELECT count(*) FROM "{stage}"', store_id)
    new = _scalar(conn, f"SELECT count(*) FROM {join} WHERE c.id IS NULL", store_id)
    upd = _scalar(
        conn, f"SELECT count(*) FROM {join} WHERE c.id IS NOT NULL AND {changed}", store_id
    )
    col_list = ", ".join(cols)
    sets = ", ".join(f"{c} = {_merged_customer(c, 'excluded', 'customers')}" for c in cols)
    where = _any_differs(
        conn, [(_merged_customer(c, "excluded", "customers"), f"customers.{c}") for c in cols]
    )
    conn.execute(
        text(
            f"INSERT INTO customers (store_id, external_id, {col_list}) "
            f'SELECT :sid, external_id, {col_list} FROM "{stage}" WHERE true '
            f"ON CONFLICT (store_id, external_id) DO UPDATE SET {sets} WHERE {where}"
        ),
        {"sid": store_id},
    )
    return Counts(new, upd, total - new - upd)


def _upsert_products(conn: Connection, store_id: int, stage: str) -> Counts:
    cols = PRODUCT_FIELDS
    join = f'"{stage}" s LEFT JOIN products p ON p.store_id = :sid AND p.sku = s.sku'
    changed = _any_differs(conn, [(f"COALESCE(s.{c}, p.{c})", f"p.{c}") for c in cols])
    total = _scalar(conn, f'SELECT count(*) FROM "{stage}"', store_id)
    new = _scalar(conn, f"SELECT count(*) FROM {join} WHERE p.id IS NULL", store_id)
    upd = _scalar(
        conn, f"SELECT count(*) FROM {join} WHERE p.id IS NOT NULL AND {changed}", store_id
    )
    col_list = ", ".join(cols)
    sets = ", ".join(f"{c} = COALESCE(excluded.{c}, products.{c})" for c in cols)
    where = _any_differs(
        conn, [(f"COALESCE(excluded.{c}, products.{c})", f"products.{c}") for c in cols]
    )
    conn.execute(
        text(
            f"INSERT INTO products (store_id, sku, {col_list}) "
            f'SELECT :sid, sku, {col_list} FROM "{stage}" WHERE true '
            f"ON CONFLICT (store_id, sku) DO UPDATE SET {sets} WHERE {where}"
        ),
        {"sid": store_id},
    )
    return Counts(new, upd, total - new - upd)


def _upsert_orders(conn: Connection, store_id: int, stage: str, lines: str | None) -> Counts:
    touched = f"{stage}_touched"
    resolved = f'"{stage}" s LEFT JOIN customers cu ON cu.store_id = :sid AND cu.external_id = s.customer_key'
    source_cols = {c: f"s.{c}" for c in ORDER_FIELDS}
    source_cols["customer_id"] = "cu.id"
    changed = _any_differs(conn, [(expr, f"o.{c}") for c, expr in source_cols.items()])
    conn.execute(
        text(
            f'CREATE TABLE "{touched}" AS SELECT s.external_id AS external_id, '
            f"CASE WHEN o.id IS NULL THEN 'new' ELSE 'changed' END AS kind "
            f"FROM {resolved} LEFT JOIN orders o ON o.store_id = :sid AND o.external_id = s.external_id "
            f"WHERE o.id IS NULL OR {changed}"
        ),
        {"sid": store_id},
    )
    total = _scalar(conn, f'SELECT count(*) FROM "{stage}"', store_id)
    new = _scalar(conn, f"SELECT count(*) FROM \"{touched}\" WHERE kind = 'new'", store_id)
    upd = _scalar(conn, f"SELECT count(*) FROM \"{touched}\" WHERE kind = 'changed'", store_id)
    if new or upd:
        col_list = ", ".join(ORDER_FIELDS)
        exprs = ", ".join(source_cols[c] for c in ORDER_FIELDS)
        sets = ", ".join(f"{c} = excluded.{c}" for c in ORDER_FIELDS)
        conn.execute(
            text(
                f"INSERT INTO orders (store_id, external_id, {col_list}) "
                f"SELECT :sid, s.external_id, {exprs} FROM {resolved} "
                f'JOIN "{touched}" t ON t.external_id = s.external_id WHERE true '
                f"ON CONFLICT (store_id, external_id) DO UPDATE SET {sets}"
            ),
            {"sid": store_id},
        )
        if upd:
            conn.execute(
                text(
                    "DELETE FROM order_lines WHERE order_id IN (SELECT o.id FROM orders o "
                    f'JOIN "{touched}" t ON o.store_id = :sid AND o.external_id = t.external_id '
                    "AND t.kind = 'changed')"
                ),
                {"sid": store_id},
            )
        if lines is not None:
            line_cols = ", ".join(LINE_FIELDS)
            line_exprs = ", ".join(f"l.{c}" for c in LINE_FIELDS)
            conn.execute(
                text(
                    f"INSERT INTO order_lines (store_id, order_id, {line_cols}) "
                    f'SELECT :sid, o.id, {line_exprs} FROM "{lines}" l '
                    f'JOIN "{touched}" t ON t.external_id = l.order_external_id '
                    "JOIN orders o ON o.store_id = :sid AND o.external_id = l.order_external_id"
                ),
                {"sid": store_id},
            )
    conn.execute(text(f'DROP TABLE "{touched}"'))
    return Counts(new, upd, total - new - upd)


def _append_consents(conn: Connection, store_id: int, stage: str) -> int:
    latest = (
        "(SELECT x.status FROM consents x WHERE x.customer_id = c.id AND x.channel = s.channel "
        "ORDER BY x.occurred_at DESC, x.id DESC LIMIT 1)"
    )
    res = conn.execute(
        text(
            "INSERT INTO consents (store_id, customer_id, channel, status, source, text_version, "
            "occurred_at) SELECT :sid, c.id, s.channel, s.status, s.source, s.text_version, "
            f's.occurred_at FROM "{stage}" s '
            "JOIN customers c ON c.store_id = :sid AND c.external_id = s.customer_key "
            f"WHERE COALESCE({latest}, 'withdrawn') <> s.status"
        ),
        {"sid": store_id},
    )
    return int(res.rowcount or 0)


def _append_events(conn: Connection, store_id: int, stage: str) -> tuple[int, int]:
    total = _scalar(conn, f'SELECT count(*) FROM "{stage}"', store_id)
    res = conn.execute(
        text(
            "INSERT INTO events (store_id, customer_id, anonymous_id, type, occurred_at, "
            "properties, dedupe_key) SELECT :sid, COALESCE(c.id, p.id), s.anonymous_id, s.type, "
            f's.occurred_at, s.properties, s.dedupe_key FROM "{stage}" s '
            "LEFT JOIN customers c ON c.store_id = :sid AND c.external_id = s.customer_key "
            # a platform customer id (e.g. Shopify's) resolves through source_id
            "LEFT JOIN customers p ON c.id IS NULL AND p.store_id = :sid "
            "AND p.source_id = s.customer_key "
            "WHERE true ON CONFLICT (store_id, dedupe_key) DO NOTHING"
        ),
        {"sid": store_id},
    )
    inserted = int(res.rowcount or 0)
    return inserted, total - inserted
