"""Shopify orders export: exact values, idempotency, rejects, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from sqlalchemy import text
from tests.conftest import DATA
from tests.store_digest import table_digests
from tests.support import read_rejects as _rejects
from tests.support import rows as _rows

from boomerang.errors import ImportRejectedError, InputError
from boomerang.services.imports import run_import
from boomerang.store.engine import make_engine

SAMPLE = DATA / "shopify" / "orders_export.csv"
DEFECTS = DATA / "shopify" / "orders_with_defects.csv"


def test_sample_imports_exact_values(db: str) -> None:
    summary = run_import("shopify-orders", SAMPLE, db=db, store="shop")
    assert summary.rows_read == 6
    assert summary.rows_rejected == 0
    assert summary.guest_orders == 1
    r = summary.result
    assert (r.orders.inserted, r.orders.updated, r.orders.unchanged) == (5, 0, 0)
    assert (r.customers.inserted, r.products.inserted) == (2, 5)
    orders = _rows(
        db,
        "SELECT o.external_id, c.external_id, o.placed_at, o.currency, o.subtotal_minor, "
        "o.discount_minor, o.shipping_minor, o.tax_minor, o.total_minor, o.refunded_minor, "
        "o.status, o.cancelled_at, o.discount_code, o.channel FROM orders o "
        "LEFT JOIN customers c ON c.id = o.customer_id ORDER BY o.external_id",
    )
    assert orders == [
        # 2025-10-07 09:50:26 +0200 = 07:50:26 UTC
        ("#1001", "ann.lee@example.com", 1759823426000000, "EUR", 3980, 442, 490, 746, 4470, 0, "paid", None, "WELCOME10", "online"),
        ("#1002", "bob@example.org", 1759932000000000, "USD", 12000, 0, 0, 0, 12000, 3000, "partially_refunded", None, None, "online"),
        ("#1003", None, 1760034600000000, "USD", 1500, 0, 500, 120, 2120, 0, "paid", None, None, "offline"),
        ("#1004", "ann.lee@example.com", 1762066800000000, "EUR", 1290, 0, 490, 297, 1780, 0, "cancelled", 1762071300000000, None, "online"),
        ("#1005", "bob@example.org", 1763607600000000, "JPY", 3500, 0, 0, 0, 3500, 3500, "refunded", None, None, "online"),
    ]  # fmt: skip
    lines = _rows(
        db,
        "SELECT o.external_id, l.line_no, l.sku, l.quantity, l.unit_price_minor, l.discount_minor "
        "FROM order_lines l JOIN orders o ON o.id = l.order_id ORDER BY 1, 2",
    )
    assert lines == [
        ("#1001", 1, "MUG-BLUE", 2, 1290, 0),
        ("#1001", 2, "TEA-GREEN-100", 1, 1842, 442),
        ("#1002", 1, "HAIR-50", 1, 12000, 0),
        ("#1003", 1, "STICK-3", 3, 500, 0),
        ("#1004", 1, "MUG-BLUE", 1, 1290, 0),
        ("#1005", 1, "WHISK-1", 1, 3500, 0),
    ]
    customers = _rows(
        db,
        "SELECT external_id, email, phone, first_name, last_name, city, zip, country, "
        "account_status, created_at FROM customers ORDER BY external_id",
    )
    assert customers == [
        # contact details come from the customer's latest order; created at the first order
        ("ann.lee@example.com", "ann.lee@example.com", "+33612345678", "Ann", "Lee", "Paris", "75001", "FR", "guest", 1759823426000000),
        ("bob@example.org", "bob@example.org", "+16175550142", "Bob", "Stone", "Boston", "02108", "JP", "guest", 1759932000000000),
    ]  # fmt: skip
    consents = _rows(
        db,
        "SELECT c.external_id, x.channel, x.status, x.occurred_at FROM consents x "
        "JOIN customers c ON c.id = x.customer_id ORDER BY 1",
    )
    # the latest order's answer is the observation recorded
    assert consents == [
        ("ann.lee@example.com", "email", "granted", 1762066800000000),
        ("bob@example.org", "email", "granted", 1763607600000000),
    ]


def test_reimport_changes_nothing(db: str) -> None:
    run_import("shopify-orders", SAMPLE, db=db, store="shop")
    before = table_digests(db)
    again = run_import("shopify-orders", SAMPLE, db=db, store="shop")
    r = again.result
    assert (r.orders.inserted, r.orders.updated, r.orders.unchanged) == (0, 0, 5)
    assert (r.customers.inserted, r.customers.updated, r.customers.unchanged) == (0, 0, 2)
    assert (r.products.inserted, r.products.updated) == (0, 0)
    assert r.consents_recorded == 0
    assert table_digests(db) == before


def test_changed_order_is_rewritten_with_its_lines(db: str, tmp_path: Path) -> None:
    run_import("shopify-orders", SAMPLE, db=db, store="shop")
    changed = tmp_path / "orders.csv"
    content = SAMPLE.read_text().replace("Green Tea 100g,18.42", "Green Tea 100g,19.42")
    changed.write_text(content)
    r = run_import("shopify-orders", changed, db=db, store="shop").result
    assert (r.orders.inserted, r.orders.updated, r.orders.unchanged) == (0, 1, 4)
    assert _rows(
        db,
        "SELECT l.unit_price_minor FROM order_lines l JOIN orders o ON o.id = l.order_id "
        "WHERE o.external_id = '#1001' AND l.line_no = 2",
    ) == [(1942,)]
    assert _rows(db, "SELECT count(*) FROM order_lines") == [(6,)]


def test_defects_are_rejected_with_row_column_reason_and_nothing_applies(
    db: str, tmp_path: Path
) -> None:
    rejects = tmp_path / "rejects.csv"
    with pytest.raises(ImportRejectedError, match="nothing was imported"):
        run_import("shopify-orders", DEFECTS, db=db, store="shop", rejects_path=rejects)
    assert _rejects(rejects) == [
        (3, "Created at", "07/10/2025 09:50", "not a date/time in format %Y-%m-%d %H:%M:%S %z"),
        (4, "Total", "ten", "not an amount like 1234.50"),
        (5, "Email", "not-an-email", "not an email address"),
        (6, "Name", "#2004", "order #2004 not imported: its row 5 was rejected"),
        (7, "Name", "#2005", "order #2005 not imported: its row 8 was rejected"),
        (8, "Lineitem quantity", "1.5", "not a whole number"),
        (9, "Lineitem price", "", "line price is required"),
        (10, "Phone", "12", "not a phone number (E.164 or national)"),
        (11, "Currency", "US", "not a currency code like EUR"),
    ]
    engine = make_engine(db)
    try:
        with engine.connect() as conn:
            tables = set(conn.dialect.get_table_names(conn))
            if "orders" in tables:
                assert conn.execute(text("SELECT count(*) FROM orders")).scalar_one() == 0
    finally:
        engine.dispose()


def test_allow_rejects_applies_only_whole_valid_orders(db: str, tmp_path: Path) -> None:
    rejects = tmp_path / "rejects.csv"
    summary = run_import(
        "shopify-orders", DEFECTS, db=db, store="shop", rejects_path=rejects, allow_rejects=20
    )
    assert summary.rows_rejected == 9
    assert _rows(db, "SELECT external_id FROM orders") == [("#2001",)]
    assert _rows(db, "SELECT count(*) FROM order_lines") == [(1,)]


def test_dry_run_counts_but_writes_nothing(db: str) -> None:
    summary = run_import("shopify-orders", SAMPLE, db=db, store="shop", dry_run=True)
    assert summary.result.orders.inserted == 5
    assert not summary.applied
    assert _rows(db, "SELECT count(*) FROM orders") == [(0,)]


def test_missing_required_column_names_file_and_columns(tmp_path: Path, sqlite_db: str) -> None:
    bad = tmp_path / "orders.csv"
    bad.write_text("Name,Email\n#1,a@b.co\n")
    with pytest.raises(InputError) as err:
        run_import("shopify-orders", bad, db=sqlite_db, store="shop")
    assert str(bad) in err.value.message
    assert "Created at" in err.value.message


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_dialects_bom_crlf_and_delimiters_give_the_same_store(
    tmp_path: Path, delimiter: str
) -> None:
    with SAMPLE.open(newline="") as fh:
        rows = list(csv.reader(fh))
    variant = tmp_path / "variant.csv"
    with variant.open("w", newline="", encoding="utf-8-sig") as fh:
        csv.writer(fh, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
    plain_db, variant_db = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    run_import("shopify-orders", SAMPLE, db=plain_db, store="shop")
    run_import("shopify-orders", variant, db=variant_db, store="shop")
    assert table_digests(plain_db) == table_digests(variant_db)
