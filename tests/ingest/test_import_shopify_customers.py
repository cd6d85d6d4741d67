"""Shopify customers export (current and older layout) on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import pytest
from tests.conftest import DATA
from tests.store_digest import table_digests
from tests.support import count as _count
from tests.support import read_rejects as _rejects
from tests.support import rows as _rows

from boomerang.errors import ImportRejectedError, InputError
from boomerang.services.imports import run_import

CURRENT = DATA / "shopify_customers" / "customers_current.csv"
OLDER = DATA / "shopify_customers" / "customers_older.csv"
EXPORTED_AT = 1748736000  # 2025-06-01T00:00:00Z, set as the copies' modification time
EXPORTED_US = EXPORTED_AT * 1_000_000


def _copy(src: Path, tmp_path: Path, name: str | None = None) -> Path:
    """A copy with a known modification time (consents are dated by it)."""
    target = tmp_path / (name or src.name)
    shutil.copyfile(src, target)
    os.utime(target, (EXPORTED_AT, EXPORTED_AT))
    return target


CUSTOMERS_SQL = (
    "SELECT external_id, source_id, email, phone, first_name, last_name, city, region, "
    "country, zip, account_status, tags, attributes FROM customers ORDER BY external_id"
)
CONSENTS_SQL = (
    "SELECT c.external_id, x.channel, x.status, x.source, x.occurred_at FROM consents x "
    "JOIN customers c ON c.id = x.customer_id ORDER BY 1, 2"
)


def test_current_layout_exact_values(db: str, tmp_path: Path) -> None:
    summary = run_import("shopify-customers", _copy(CURRENT, tmp_path), db=db, store="shop")
    assert (summary.rows_read, summary.rows_rejected) == (4, 0)
    r = summary.result
    assert (r.customers.inserted, r.customers.updated, r.customers.unchanged) == (4, 0, 0)
    assert r.orders.inserted == 0
    assert r.consents_recorded == 4
    assert _rows(db, CUSTOMERS_SQL) == [
        # no email: the Shopify customer id is the identity
        ("9013270655288", "9013270655288", None, "+819012345678", "Aiko", "Tanaka", "Shibuya-ku",
         "13", "JP", "150-0002", "registered", '["wholesale"]',
         '{"tax_exempt":true,"total_orders":5,"total_spent_minor":1200000,"total_spent_currency":"USD"}'),
        ("camille.durand@example.fr", "9013270589752", "camille.durand@example.fr", "+33612345678",
         "Camille", "Durand", "Paris", None, "FR", "75004", "registered", '["VIP","newsletter"]',
         '{"tax_exempt":false,"total_orders":3,"total_spent_minor":24850,"total_spent_currency":"USD"}'),
        ("liam.obrien@example.ie", "9013270688056", "liam.obrien@example.ie", None, "Liam",
         "O'Brien", None, None, "IE", None, "registered", None,
         '{"tax_exempt":false,"total_orders":1,"total_spent_minor":3500,"total_spent_currency":"USD"}'),
        # Phone empty: the default address phone stands in
        ("russel.winfield@example.com", "9013270622520", "russel.winfield@example.com",
         "+16135550135", "Russell", "Winfield", "Toronto", "ON", "CA", "M5C 1N7", "registered", None,
         '{"company":"Winfield Supplies","note":"Met at the Toronto fair, prefers email",'
         '"tax_exempt":false,"total_orders":0,"total_spent_minor":0,"total_spent_currency":"USD"}'),
    ]  # fmt: skip
    source = "shopify customers export"
    # "no" is not recorded for a customer who never consented (absence already means no)
    assert _rows(db, CONSENTS_SQL) == [
        ("9013270655288", "sms", "granted", source, EXPORTED_US),
        ("camille.durand@example.fr", "email", "granted", source, EXPORTED_US),
        ("camille.durand@example.fr", "sms", "granted", source, EXPORTED_US),
        ("liam.obrien@example.ie", "email", "granted", source, EXPORTED_US),
    ]


def test_older_layout_exact_values(db: str, tmp_path: Path) -> None:
    summary = run_import(
        "shopify-customers", _copy(OLDER, tmp_path), db=db, store="shop", currency="EUR"
    )
    assert (summary.rows_read, summary.rows_rejected) == (2, 0)
    assert summary.result.customers.inserted == 2
    assert _rows(db, CUSTOMERS_SQL) == [
        ("john.smith@example.com", None, "john.smith@example.com", "+12175550142", "John",
         "Smith", "Springfield", "IL", "US", "62701", "registered", None,
         '{"company":"Smith & Co","note":"Called about a refund","tax_exempt":true,'
         '"total_orders":0,"total_spent_minor":0,"total_spent_currency":"EUR"}'),
        ("marta.kowalska@example.pl", None, "marta.kowalska@example.pl", "+48501234567", "Marta",
         "Kowalska", "Gdańsk", None, "PL", "80-827", "registered", '["returning","pl"]',
         '{"tax_exempt":false,"total_orders":2,"total_spent_minor":12000,"total_spent_currency":"EUR"}'),
    ]  # fmt: skip
    assert _rows(db, CONSENTS_SQL) == [
        ("marta.kowalska@example.pl", "email", "granted", "shopify customers export", EXPORTED_US)
    ]


def test_reimport_changes_nothing(db: str, tmp_path: Path) -> None:
    path = _copy(CURRENT, tmp_path)
    run_import("shopify-customers", path, db=db, store="shop")
    before = table_digests(db)
    r = run_import("shopify-customers", path, db=db, store="shop").result
    assert (r.customers.inserted, r.customers.updated, r.customers.unchanged) == (0, 0, 4)
    assert r.consents_recorded == 0
    assert table_digests(db) == before


def test_a_later_export_records_changed_consent_only(db: str, tmp_path: Path) -> None:
    run_import("shopify-customers", _copy(CURRENT, tmp_path), db=db, store="shop")
    later = tmp_path / "later" / "customers_current.csv"
    later.parent.mkdir()
    later.write_text(
        CURRENT.read_text(encoding="utf-8").replace(
            "Camille.Durand@example.fr,yes", "Camille.Durand@example.fr,no"
        ),
        encoding="utf-8",
    )
    os.utime(later, (EXPORTED_AT + 86400, EXPORTED_AT + 86400))
    r = run_import("shopify-customers", later, db=db, store="shop").result
    assert r.consents_recorded == 1
    assert (r.customers.inserted, r.customers.updated) == (0, 0)
    assert _rows(
        db,
        "SELECT x.status, x.occurred_at FROM consents x JOIN customers c ON c.id = x.customer_id "
        "WHERE c.external_id = 'camille.durand@example.fr' AND x.channel = 'email' "
        "ORDER BY x.occurred_at",
    ) == [("granted", EXPORTED_US), ("withdrawn", EXPORTED_US + 86400 * 1_000_000)]


def _variant(src: Path, target: Path, delimiter: str, *, bom: bool, crlf: bool) -> Path:
    with src.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    with target.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as fh:
        csv.writer(fh, delimiter=delimiter, lineterminator="\r\n" if crlf else "\n").writerows(rows)
    os.utime(target, (EXPORTED_AT, EXPORTED_AT))
    return target


def test_bom_crlf_semicolon_and_tab_variants_store_the_same(tmp_path: Path) -> None:
    digests = []
    for i, (delimiter, bom, crlf) in enumerate(
        [(",", False, False), (",", True, True), (";", False, True), ("\t", True, False)]
    ):
        folder = tmp_path / str(i)
        folder.mkdir()
        path = _variant(CURRENT, folder / "customers.csv", delimiter, bom=bom, crlf=crlf)
        db = str(folder / "store.db")
        run_import("shopify-customers", path, db=db, store="shop")
        digests.append(table_digests(db))
    assert all(d == digests[0] for d in digests[1:])
    assert digests[0]["customers"][0] == 4


DEFECTS = """\
Customer ID,First Name,Last Name,Email,Accepts Email Marketing,Default Address Company,Default Address Address1,Default Address Address2,Default Address City,Default Address Province Code,Default Address Country Code,Default Address Zip,Default Address Phone,Phone,Accepts SMS Marketing,Total Spent,Total Orders,Note,Tax Exempt,Tags
'9013270589752,Camille,Durand,camille.durand@example.fr,yes,,,,Paris,,FR,75004,,'+33612345678,yes,248.50,3,,no,
'9013270600001,Ana,Bad,ana(at)example.com,yes,,,,,,PT,,,,no,0.00,0,,no,
'9013270600002,Ben,Bad,ben@example.com,maybe,,,,,,GB,,,,no,0.00,0,,no,
'9013270600003,Cy,Bad,cy@example.com,no,,,,,,US,,,'12,yes,0.00,0,,no,
'9013270600004,Di,Bad,di@example.com,no,,,,,,DE,,,,no,"1,200.00",1.5,,no,
,Ed,Nobody,,no,,,,,,FR,,,,no,0.00,0,,no,
"""


def test_defects_are_rejected_with_row_column_reason(db: str, tmp_path: Path) -> None:
    path = tmp_path / "customers_export.csv"
    path.write_text(DEFECTS, encoding="utf-8")
    rejects = tmp_path / "rejects.csv"
    with pytest.raises(ImportRejectedError, match="nothing was imported"):
        run_import("shopify-customers", path, db=db, store="shop", rejects_path=rejects)
    assert _rejects(rejects) == [
        (3, "Email", "ana(at)example.com", "not an email address"),
        (4, "Accepts Email Marketing", "maybe", "not yes or no"),
        (5, "Phone", "12", "not a phone number (E.164 or national)"),
        (6, "Total Orders", "1.5", "not a whole number"),
        (6, "Total Spent", "1,200.00", "not an amount like 1234.50"),
        (7, "Email", "", "no email and no customer id: cannot identify"),
    ]
    assert _count(db, "customers") == 0
    summary = run_import(
        "shopify-customers", path, db=db, store="shop", rejects_path=rejects, allow_rejects=5
    )
    assert summary.rows_rejected == 5
    assert _rows(db, "SELECT external_id FROM customers") == [("camille.durand@example.fr",)]


def test_unreadable_files_raise_input_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing_email.csv"
    missing.write_text("Customer ID,First Name,Accepts Email Marketing\n'1,A,yes\n")
    with pytest.raises(InputError, match=r"missing column\(s\) Email"):
        run_import("shopify-customers", missing, db=str(tmp_path / "s.db"), store="shop")
    other = tmp_path / "orders.csv"
    other.write_text("Name,Created at\n#1,2025-01-01\n")
    with pytest.raises(InputError, match="not a Shopify customers export"):
        run_import("shopify-customers", other, db=str(tmp_path / "s.db"), store="shop")
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(
        "Customer ID,Email,Accepts Email Marketing\n'1,andré@exemple.fr,yes\n".encode("latin-1")
    )
    with pytest.raises(InputError, match=r"(?i)utf-8"):
        run_import("shopify-customers", latin1, db=str(tmp_path / "s.db"), store="shop")


def test_older_layout_with_a_customer_id_column_uses_it(tmp_path: Path) -> None:
    from boomerang.ingest.options import ReadOptions
    from boomerang.ingest.shopify_customers import read_customers

    path = tmp_path / "customers.csv"
    path.write_text(
        "Customer ID,First Name,Last Name,Email,Country Code,Accepts Marketing\n"
        "'5512345678,Ines,Costa,,PT,no\n",
        encoding="utf-8",
    )
    batch = read_customers(path, ReadOptions())
    assert batch.frames["customers"].select("external_id", "source_id", "country").rows() == [
        ("5512345678", "5512345678", "PT")
    ]
    assert batch.frames["consents"].height == 0  # no email: no email consent
