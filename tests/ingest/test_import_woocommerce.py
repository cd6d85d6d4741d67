"""WooCommerce orders (Customer/Order/Coupon Export, both layouts) on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from tests.conftest import DATA
from tests.store_digest import table_digests
from tests.support import count as _count
from tests.support import read_rejects as _rejects
from tests.support import rows as _rows

from boomerang.errors import ImportRejectedError, InputError
from boomerang.services.imports import run_import

DEFAULT = DATA / "woocommerce" / "orders_default.csv"
PER_ITEM = DATA / "woocommerce" / "orders_per_item.csv"


ORDERS_SQL = (
    "SELECT o.external_id, c.external_id, o.email, o.placed_at, o.currency, o.subtotal_minor, "
    "o.discount_minor, o.shipping_minor, o.tax_minor, o.total_minor, o.refunded_minor, o.status, "
    "o.discount_code, o.channel, o.source FROM orders o "
    "LEFT JOIN customers c ON c.id = o.customer_id ORDER BY o.external_id"
)
EXPECTED_ORDERS = [
    ("4101", "emma.schmidt@example.de", "emma.schmidt@example.de", 1741944413000000, "EUR", 4860, 540, 490, 1016, 6366, 0, "paid", "welcome10", "online", "woocommerce"),
    ("4102", "noah.miller@example.com", "noah.miller@example.com", 1741971910000000, "USD", 5000, 0, 0, 0, 5000, 0, "paid", None, "online", "woocommerce"),
    ("4103", "emma.schmidt@example.de", "emma.schmidt@example.de", 1743580800000000, "EUR", 1000, 0, 490, 0, 1490, 1490, "refunded", None, "online", "woocommerce"),
    # customer_id 0 and no email: a guest order
    ("4104", None, None, 1743683400000000, "EUR", 1200, 0, 0, 0, 1200, 0, "cancelled", None, "online", "woocommerce"),
    ("4105", "yuki.sato@example.jp", "yuki.sato@example.jp", 1743891300000000, "JPY", 3500, 0, 800, 0, 4300, 0, "pending", None, "online", "woocommerce"),
    # no email on the order: customer 31's email from order 4105 keeps one customer
    ("4106", "yuki.sato@example.jp", None, 1743933600000000, "EUR", 2400, 0, 0, 0, 2400, 600, "partially_refunded", None, "online", "woocommerce"),
]  # fmt: skip
LINES_SQL = (
    "SELECT o.external_id, l.line_no, l.sku, l.name, l.quantity, l.unit_price_minor, "
    "l.discount_minor FROM order_lines l JOIN orders o ON o.id = l.order_id ORDER BY 1, 2"
)
EXPECTED_LINES = [
    ("4101", 1, "MUG-BLK", "Ceramic Mug - Black", 2, 1500, 300),
    ("4101", 2, "COF-1KG", "Coffee Beans 1kg", 1, 2400, 240),
    ("4102", 1, "wc:77", "Gift Card", 1, 5000, 0),  # no SKU: the product id stands in
    ("4103", 1, "TEA-SMP", "Green Tea Sampler", 3, 334, 2),  # 10.00 / 3, rounded up
    ("4104", 1, "MUG-BLK", "Ceramic Mug - Black", 1, 1200, 0),
    ("4105", 1, "MATCHA-40", "Matcha Tin", 1, 3500, 0),
    ("4106", 1, "COF-1KG", "Coffee Beans 1kg", 1, 2400, 0),
]
CUSTOMERS_SQL = (
    "SELECT external_id, source_id, email, phone, first_name, last_name, city, region, country, "
    "zip, account_status, created_at FROM customers ORDER BY external_id"
)
EXPECTED_CUSTOMERS = [
    ("emma.schmidt@example.de", "12", "emma.schmidt@example.de", "+49301234567", "Emma", "Schmidt", "Berlin", None, "DE", "10115", "registered", 1741944413000000),
    ("noah.miller@example.com", None, "noah.miller@example.com", "+14155550132", "Noah", "Miller", "San Francisco", "CA", "US", "94105", "guest", 1741971910000000),
    ("yuki.sato@example.jp", "31", "yuki.sato@example.jp", "+819012345678", "Yuki", "Sato", "Shibuya", "JP13", "JP", "150-0002", "registered", 1743891300000000),
]  # fmt: skip


@pytest.mark.parametrize("sample", [DEFAULT, PER_ITEM], ids=["one-row-per-order", "per-item"])
def test_sample_imports_exact_values(db: str, sample: Path) -> None:
    summary = run_import("woocommerce-orders", sample, db=db, store="shop")
    assert summary.rows_read == (6 if sample == DEFAULT else 7)
    assert (summary.rows_rejected, summary.guest_orders) == (0, 1)
    r = summary.result
    assert (r.orders.inserted, r.customers.inserted, r.products.inserted) == (6, 3, 5)
    assert _rows(db, ORDERS_SQL) == EXPECTED_ORDERS
    assert _rows(db, LINES_SQL) == EXPECTED_LINES
    assert _rows(db, CUSTOMERS_SQL) == EXPECTED_CUSTOMERS
    assert _rows(db, "SELECT sku, price_minor, currency FROM products ORDER BY sku") == [
        ("COF-1KG", 2400, "EUR"),
        ("MATCHA-40", 3500, "JPY"),
        ("MUG-BLK", 1200, "EUR"),
        ("TEA-SMP", 334, "EUR"),
        ("wc:77", 5000, "USD"),
    ]


def test_both_layouts_store_the_same_and_reimport_changes_nothing(db: str) -> None:
    run_import("woocommerce-orders", DEFAULT, db=db, store="shop")
    before = table_digests(db)
    for sample in (DEFAULT, PER_ITEM):
        r = run_import("woocommerce-orders", sample, db=db, store="shop").result
        assert (r.orders.inserted, r.orders.updated, r.orders.unchanged) == (0, 0, 6)
        assert (r.customers.inserted, r.customers.updated) == (0, 0)
        assert (r.products.inserted, r.products.updated) == (0, 0)
        assert table_digests(db) == before


def test_site_timezone_applies_to_naive_dates(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    run_import("woocommerce-orders", DEFAULT, db=db, store="shop", timezone="Europe/Berlin")
    # 2025-03-14 09:26:53 in Berlin (UTC+1) and 2025-04-02 08:00:00 (UTC+2, summer time)
    assert _rows(
        db, "SELECT external_id, placed_at FROM orders WHERE external_id IN ('4101', '4103')"
    ) == [("4101", 1741940813000000), ("4103", 1743573600000000)]


def _rewrite(
    src: Path, target: Path, delimiter: str, *, bom: bool, crlf: bool, reverse: bool = False
) -> Path:
    with src.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    if reverse:  # columns in another order: the reader maps by name
        rows = [list(reversed(r)) for r in rows]
    with target.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as fh:
        csv.writer(fh, delimiter=delimiter, lineterminator="\r\n" if crlf else "\n").writerows(rows)
    return target


def test_dialect_variants_and_column_order_store_the_same(tmp_path: Path) -> None:
    digests = []
    variants = [(",", False, False, False), (",", True, True, False), (";", False, True, True)]
    variants.append(("\t", True, False, False))
    for i, (delimiter, bom, crlf, reverse) in enumerate(variants):
        path = _rewrite(
            DEFAULT, tmp_path / f"orders_{i}.csv", delimiter, bom=bom, crlf=crlf, reverse=reverse
        )
        db = str(tmp_path / f"store_{i}.db")
        run_import("woocommerce-orders", path, db=db, store="shop")
        digests.append(table_digests(db))
    assert all(d == digests[0] for d in digests[1:])
    assert digests[0]["orders"][0] == 6


HEADER = [
    "order_id", "order_date", "status", "shipping_total", "tax_total", "discount_total",
    "order_total", "order_currency", "customer_id", "billing_email", "billing_phone",
    "billing_country", "line_items",
]  # fmt: skip
ITEM = "id:{i}|name:Mug|product_id:31|sku:MUG-BLK|quantity:{q}|subtotal:12.00|total:12.00"
DEFECT_ORDERS = [
    ("5001", "2025-03-14 09:26:53", "completed", "12.00", "a@example.de", "", ITEM.format(i=1, q=1)),
    ("5002", "14/03/2025 9:26", "completed", "12.00", "b@example.de", "", ITEM.format(i=2, q=1)),
    ("5003", "2025-03-14 10:00:00", "completed", "12,00", "c@example.de", "", ITEM.format(i=3, q=1)),
    ("5004", "2025-03-14 11:00:00", "completed", "12.00", "d@example.de", "", ITEM.format(i=4, q="two")),
    ("5005", "2025-03-14 12:00:00", "completed", "12.00", "e(at)example.de", "", ITEM.format(i=5, q=1)),
    ("5006", "2025-03-14 13:00:00", "completed", "12.00", "f@example.de", "+49 1", ITEM.format(i=6, q=1)),
    ("5007", "2025-03-14 14:00:00", "shipped", "12.00", "g@example.de", "", ITEM.format(i=7, q=1)),
    ("5008", "", "completed", "12.00", "h@example.de", "", ITEM.format(i=8, q=1)),
    ("5009", "2025-03-14 15:00:00", "completed", "12.00", "i@example.de", "", ""),
    ("5010", "2025-03-14 16:00:00", "completed", "12.00", "j@example.de", "",
     ITEM.format(i=9, q=1) + ";" + ITEM.format(i=10, q=0)),
]  # fmt: skip


def _write_defects(path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        for oid, date, status, total, email, phone, items in DEFECT_ORDERS:
            w.writerow(
                [
                    oid,
                    date,
                    status,
                    "0.00",
                    "0.00",
                    "0.00",
                    total,
                    "EUR",
                    "0",
                    email,
                    phone,
                    "DE",
                    items,
                ]
            )


def test_defects_are_rejected_whole_order(db: str, tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    _write_defects(path)
    rejects = tmp_path / "rejects.csv"
    with pytest.raises(ImportRejectedError, match="nothing was imported"):
        run_import("woocommerce-orders", path, db=db, store="shop", rejects_path=rejects)
    item4 = ITEM.format(i=4, q="two")
    item10 = ITEM.format(i=10, q=0)
    statuses = "completed, processing, refunded, cancelled, canceled, failed, pending, on-hold, checkout-draft"
    assert _rejects(rejects) == [
        (3, "order_date", "14/03/2025 9:26", "not a date/time in format %Y-%m-%d %H:%M:%S"),
        (4, "order_total", "12,00", "not an amount like 1234.50"),
        (5, "line_items", item4, "an item of line_items: not a whole number"),
        (6, "billing_email", "e(at)example.de", "not an email address"),
        (7, "billing_phone", "+49 1", "not a phone number (E.164 or national)"),
        (8, "status", "shipped", f"unknown WooCommerce status (known: {statuses})"),
        (9, "order_date", "", "order date is required"),
        (10, "line_items", "", "line_items is required"),
        (11, "line_items", item10, "an item of line_items: out of range 1..2147483647"),
    ]
    assert _count(db, "orders") == 0
    summary = run_import(
        "woocommerce-orders", path, db=db, store="shop", rejects_path=rejects, allow_rejects=9
    )
    assert summary.rows_rejected == 9
    assert _rows(db, "SELECT external_id FROM orders") == [("5001",)]
    assert _rows(db, "SELECT count(*) FROM order_lines") == [(1,)]


def test_per_item_defect_takes_its_sibling_rows(db: str, tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    header = "order_id,order_date,status,order_total,order_currency,customer_id,billing_email,item_name,item_sku,item_quantity,item_subtotal,item_total\n"
    path.write_text(
        header
        + "6001,2025-03-14 09:26:53,completed,36.00,EUR,7,a@example.de,Mug,MUG-BLK,2,24.00,24.00\n"
        + "6001,2025-03-14 09:26:53,completed,36.00,EUR,7,a@example.de,Tea,TEA-1,1.5,12.00,12.00\n"
        + "6002,2025-03-15 09:00:00,completed,12.00,EUR,7,a@example.de,Tea,TEA-1,1,12.00,12.00\n",
        encoding="utf-8",
    )
    rejects = tmp_path / "rejects.csv"
    summary = run_import(
        "woocommerce-orders", path, db=db, store="shop", rejects_path=rejects, allow_rejects=2
    )
    assert _rejects(rejects) == [
        (2, "order_id", "6001", "order 6001 not imported: its row 3 was rejected"),
        (3, "item_quantity", "1.5", "not a whole number"),
    ]
    assert summary.result.orders.inserted == 1
    assert _rows(db, "SELECT external_id, total_minor FROM orders") == [("6002", 1200)]


def test_missing_columns_raise_input_error(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("order_number,status,order_total\n1,completed,10.00\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        run_import("woocommerce-orders", path, db=str(tmp_path / "s.db"), store="shop")
    assert "missing column(s) order_date, line_items (or item_quantity)" in err.value.message
    assert "Default - One Row per Item" in err.value.hint
