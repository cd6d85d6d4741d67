"""A content digest of a store that ignores surrogate ids (PostgreSQL sequences skip values
on conflicts and rollbacks), so "same data" compares equal across engines and reruns."""

from __future__ import annotations

import hashlib

from sqlalchemy import text

from boomerang.store.engine import make_engine

QUERIES = {
    "stores": "SELECT name, currency FROM stores ORDER BY name",
    "customers": (
        "SELECT external_id, source_id, email, phone, first_name, last_name, city, region, "
        "country, zip, timezone, birthday, account_status, tags, attributes, created_at "
        "FROM customers ORDER BY external_id"
    ),
    "consents": (
        "SELECT c.external_id, x.channel, x.status, x.source, x.occurred_at FROM consents x "
        "JOIN customers c ON c.id = x.customer_id ORDER BY 1, 2, 5, 3"
    ),
    "products": "SELECT sku, name, category, price_minor, currency, lifespan_days FROM products ORDER BY sku",
    "orders": (
        "SELECT o.external_id, c.external_id, o.email, o.placed_at, o.currency, o.subtotal_minor, "
        "o.discount_minor, o.shipping_minor, o.tax_minor, o.total_minor, o.refunded_minor, "
        "o.status, o.cancelled_at, o.discount_code, o.channel, o.source, o.digest "
        "FROM orders o LEFT JOIN customers c ON c.id = o.customer_id ORDER BY o.external_id"
    ),
    "order_lines": (
        "SELECT o.external_id, l.line_no, l.sku, l.name, l.category, l.quantity, "
        "l.unit_price_minor, l.discount_minor FROM order_lines l JOIN orders o ON o.id = l.order_id "
        "ORDER BY 1, 2"
    ),
    "events": (
        "SELECT e.dedupe_key, c.external_id, e.anonymous_id, e.type, e.occurred_at, e.properties "
        "FROM events e LEFT JOIN customers c ON c.id = e.customer_id ORDER BY 1"
    ),
}


def table_digests(db: str) -> dict[str, tuple[int, str]]:
    """Table -> (row count, sha256 of its rows in natural-key order)."""
    engine = make_engine(db)
    out = {}
    try:
        with engine.connect() as conn:
            for name, sql in QUERIES.items():
                h = hashlib.sha256()
                n = 0
                for row in conn.execute(text(sql)):
                    h.update(repr(tuple(row)).encode())
                    n += 1
                out[name] = (n, h.hexdigest())
    finally:
        engine.dispose()
    return out
