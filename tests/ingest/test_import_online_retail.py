"""UCI Online Retail (I and II) on SQLite and PostgreSQL: returns, guests, fees, countries."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

import pytest
from tests.conftest import DATA
from tests.store_digest import table_digests
from tests.support import count as _count
from tests.support import read_rejects as _rejects
from tests.support import rows as _rows

from boomerang.errors import ImportRejectedError, InputError
from boomerang.services.imports import run_import

RETAIL = DATA / "online_retail" / "online_retail.csv"
RETAIL_II = DATA / "online_retail" / "online_retail_ii.csv"


ORDERS_SQL = (
    "SELECT o.external_id, c.external_id, o.placed_at, o.currency, o.subtotal_minor, "
    "o.total_minor, o.refunded_minor, o.status FROM orders o "
    "LEFT JOIN customers c ON c.id = o.customer_id ORDER BY o.external_id"
)


def test_online_retail_exact_values(db: str) -> None:
    summary = run_import("online-retail", RETAIL, db=db, store="uci")
    assert (summary.rows_read, summary.rows_rejected, summary.guest_orders) == (23, 0, 3)
    assert summary.notes == [
        "2 row(s) name a country with no ISO code, left empty: "
        "European Community (1), Unspecified (1)"
    ]
    r = summary.result
    assert (r.orders.inserted, r.customers.inserted, r.products.inserted) == (16, 11, 16)
    assert _rows(db, ORDERS_SQL) == [
        # 12/1/2010 8:26 read as UTC; 6 x 2.55 + 6 x 3.39 + 8 x 2.75
        ("536365", "17850", 1291191960000000, "GBP", 5764, 5764, 0, "paid"),
        ("536366", "17850", 1291192080000000, "GBP", 2220, 2220, 0, "paid"),
        ("536370", "12583", 1291193100000000, "GBP", 23400, 23400, 0, "paid"),
        ("536409", "17908", 1291203900000000, "GBP", 250, 250, 0, "paid"),
        ("536414", None, 1291204320000000, "GBP", 0, 0, 0, "paid"),
        ("536544", None, 1291213920000000, "GBP", 753, 753, 0, "paid"),
        ("537626", "12347", 1291733820000000, "GBP", 1500, 1500, 0, "paid"),
        ("539434", "16320", 1292596860000000, "GBP", 1020, 1020, 0, "paid"),
        ("552695", "12363", 1305042660000000, "GBP", 2550, 2550, 0, "paid"),
        ("564758", "12457", 1314701460000000, "GBP", 1020, 1020, 0, "paid"),
        ("574325", "12446", 1320330480000000, "GBP", 3540, 3540, 0, "paid"),
        ("581483", "16446", 1323422100000000, "GBP", 16846960, 16846960, 0, "paid"),
        ("A563185", None, 1313160600000000, "GBP", 1106206, 1106206, 0, "paid"),
        # returns: their own orders, negative, so totals sum to net revenue
        ("C536379", "14527", 1291196460000000, "GBP", -2750, -2750, 0, "refunded"),
        ("C536383", "15311", 1291196940000000, "GBP", -465, -465, 0, "refunded"),
        ("C581484", "16446", 1323422820000000, "GBP", -16846960, -16846960, 0, "refunded"),
    ]
    assert _rows(
        db,
        "SELECT o.external_id, l.line_no, l.sku, l.quantity, l.unit_price_minor FROM order_lines l "
        "JOIN orders o ON o.id = l.order_id WHERE o.external_id IN ('536370', '536409', 'C581484') "
        "ORDER BY 1, 2",
    ) == [
        ("536370", 1, "22728", 24, 375),
        ("536370", 2, "22727", 24, 375),
        ("536370", 3, "POST", 3, 1800),  # postage stays a line...
        ("536409", 1, "21866", 1, 125),  # identical rows stay separate lines
        ("536409", 2, "21866", 1, 125),
        ("C581484", 1, "23843", -80995, 208),
    ]
    products = [s for (s,) in _rows(db, "SELECT sku FROM products ORDER BY sku")]
    assert (
        "POST" not in products and "D" not in products and "B" not in products
    )  # ...not a product
    assert "35004C" not in products  # seen only in a return
    assert _rows(
        db,
        "SELECT external_id, source_id, country, account_status FROM customers "
        "WHERE external_id IN ('12363', '12446', '16320', '16446') ORDER BY 1",
    ) == [
        ("12363", "12363", None, "registered"),  # Unspecified
        ("12446", "12446", "ZA", "registered"),  # RSA
        ("16320", "16320", "IE", "registered"),  # EIRE
        ("16446", "16446", "GB", "registered"),
    ]
    # the 80,995-piece order and its return cancel out
    assert _rows(
        db,
        "SELECT sum(o.total_minor) FROM orders o JOIN customers c ON c.id = o.customer_id "
        "WHERE c.external_id = '16446'",
    ) == [(0,)]


def test_online_retail_ii_exact_values(db: str) -> None:
    summary = run_import("online-retail", RETAIL_II, db=db, store="uci", currency="EUR")
    assert (summary.rows_read, summary.rows_rejected, summary.guest_orders) == (12, 0, 2)
    assert summary.notes == []
    assert _rows(db, ORDERS_SQL) == [
        # 13085.0 (a spreadsheet's float) is customer 13085; an explicit --currency wins
        ("489434", "13085", 1259653500000000, "EUR", 26520, 26520, 0, "paid"),
        ("489435", "13085", 1259653560000000, "EUR", 3060, 3060, 0, "paid"),
        ("489436", "13078", 1259658360000000, "EUR", 7450, 7450, 0, "paid"),
        ("489525", None, 1259668140000000, "EUR", 125, 125, 0, "paid"),
        ("489597", None, 1259677680000000, "EUR", 587640, 587640, 0, "paid"),
        ("581483", "16446", 1323422100000000, "EUR", 16846960, 16846960, 0, "paid"),
        ("C489449", "16321", 1259663580000000, "EUR", -4530, -4530, 0, "refunded"),
        ("C581484", "16446", 1323422820000000, "EUR", -16846960, -16846960, 0, "refunded"),
    ]
    assert _rows(db, "SELECT sku, name, price_minor FROM products ORDER BY sku") == [
        ("22041", 'RECORD FRAME 7" SINGLE SIZE', 210),
        ("22350", "CAT BOWL", 255),
        ("23843", "PAPER CRAFT , LITTLE BIRDIE", 208),
        ("48173C", "DOOR MAT BLACK FLOCK", 595),
        ("79323P", "PINK CHERRY LIGHTS", 675),
        ("85048", "15CM CHRISTMAS GLASS BALL 20 LIGHTS", 695),
        ("85049G", "CHOCOLATE BOX RIBBONS", 125),
    ]
    assert _rows(db, "SELECT external_id, country FROM customers ORDER BY 1") == [
        ("13078", "GB"),
        ("13085", "GB"),
        ("16321", "AU"),
        ("16446", "GB"),
    ]


def test_reimport_changes_nothing(db: str) -> None:
    run_import("online-retail", RETAIL, db=db, store="uci")
    before = table_digests(db)
    r = run_import("online-retail", RETAIL, db=db, store="uci").result
    assert (r.orders.inserted, r.orders.updated, r.orders.unchanged) == (0, 0, 16)
    assert (r.customers.inserted, r.customers.updated, r.customers.unchanged) == (0, 0, 11)
    assert (r.products.inserted, r.products.updated) == (0, 0)
    assert table_digests(db) == before


def test_dialect_variants_store_the_same(tmp_path: Path) -> None:
    with RETAIL.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    digests = []
    for i, (delimiter, bom, crlf) in enumerate(
        [(",", False, False), (",", True, True), (";", True, False), ("\t", False, True)]
    ):
        path = tmp_path / f"retail_{i}.csv"
        with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as fh:
            csv.writer(fh, delimiter=delimiter, lineterminator="\r\n" if crlf else "\n").writerows(
                rows
            )
        db = str(tmp_path / f"store_{i}.db")
        run_import("online-retail", path, db=db, store="uci")
        digests.append(table_digests(db))
    assert all(d == digests[0] for d in digests[1:])
    assert digests[0]["order_lines"][0] == 23


def test_date_format_is_chosen_per_file(tmp_path: Path) -> None:
    """The same data with day-first (UK) or ISO dates stores exactly the same."""
    with RETAIL.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    digests = []
    for fmt in ("%m/%d/%Y %H:%M", "%d/%m/%Y %H:%M", "%Y-%m-%d %H:%M:%S"):
        path = tmp_path / f"retail_{len(digests)}.csv"
        with path.open("w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(rows[0])
            for row in rows[1:]:
                when = datetime.strptime(row[4], "%m/%d/%Y %H:%M")
                w.writerow([*row[:4], when.strftime(fmt), *row[5:]])
        db = str(tmp_path / f"store_{len(digests)}.db")
        run_import("online-retail", path, db=db, store="uci")
        digests.append(table_digests(db))
    assert digests[1] == digests[0] and digests[2] == digests[0]


DEFECTS = """\
InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country
536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/2010 8:26,2.55,17850,United Kingdom
536366,22633,HAND WARMER UNION JACK,6,12/1/2010 8:28,1.85,17850,United Kingdom
536366,22632,HAND WARMER RED POLKA DOT,six,12/1/2010 8:28,1.85,17850,United Kingdom
536367,84879,ASSORTED COLOUR BIRD ORNAMENT,32,12/1/2010 8:34,£1.69,13047,United Kingdom
536368,22960,JAM MAKING SET WITH JARS,6,12/32/2010 8:34,4.25,13047,United Kingdom
,22913,RED COAT RACK PARIS FASHION,3,12/1/2010 8:34,4.95,13047,United Kingdom
536369,21756,BATH BUILDING BLOCK WORD,3,12/1/2010 8:35,,13047,United Kingdom
536370,22728,ALARM CLOCK BAKELIKE PINK,1.5,12/1/2010 8:45,3.75,12583,France
"""


def test_defects_reject_whole_invoices(db: str, tmp_path: Path) -> None:
    path = tmp_path / "retail.csv"
    path.write_text(DEFECTS, encoding="utf-8")
    rejects = tmp_path / "rejects.csv"
    with pytest.raises(ImportRejectedError, match="nothing was imported"):
        run_import("online-retail", path, db=db, store="uci", rejects_path=rejects)
    assert _rejects(rejects) == [
        (3, "InvoiceNo", "536366", "invoice 536366 not imported: its row 4 was rejected"),
        (4, "Quantity", "six", "not a whole number"),
        (5, "UnitPrice", "£1.69", "not an amount like 1234.50"),
        (6, "InvoiceDate", "12/32/2010 8:34", "not a date/time in format %m/%d/%Y %H:%M"),
        (7, "InvoiceNo", "", "invoice number is required"),
        (8, "UnitPrice", "", "price is required"),
        (9, "Quantity", "1.5", "not a whole number"),
    ]
    assert _count(db, "orders") == 0
    run_import("online-retail", path, db=db, store="uci", rejects_path=rejects, allow_rejects=8)
    assert _rows(db, "SELECT external_id, total_minor FROM orders") == [("536365", 1530)]
    assert _rows(db, "SELECT count(*) FROM order_lines") == [(1,)]


def test_unreadable_inputs_raise_input_errors(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    sheet = tmp_path / "Online Retail.xlsx"
    sheet.write_bytes(b"PK\x03\x04")
    with pytest.raises(InputError, match="spreadsheet files are not read directly"):
        run_import("online-retail", sheet, db=db, store="uci")
    partial = tmp_path / "partial.csv"
    partial.write_text("InvoiceNo,StockCode,Quantity\n536365,85123A,6\n", encoding="utf-8")
    with pytest.raises(
        InputError, match=r"missing column\(s\) UnitPrice, CustomerID, Description, InvoiceDate"
    ):
        run_import("online-retail", partial, db=db, store="uci")
