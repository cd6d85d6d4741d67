"""Any order CSV with a mapping file (TOML or YAML), on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.conftest import DATA
from tests.store_digest import table_digests
from tests.support import count as _count
from tests.support import read_rejects as _rejects
from tests.support import rows as _rows

from boomerang.errors import ImportRejectedError, InputError
from boomerang.ingest import fields
from boomerang.ingest.generic import _amount
from boomerang.services.imports import run_import

SAMPLE = DATA / "generic" / "orders.csv"
TOML = DATA / "generic" / "mapping.toml"
YAML = DATA / "generic" / "mapping.yaml"


def test_sample_imports_exact_values(db: str) -> None:
    summary = run_import("csv", SAMPLE, db=db, store="boutique", mapping=TOML)
    assert (summary.rows_read, summary.rows_rejected, summary.guest_orders) == (5, 0, 1)
    r = summary.result
    assert (r.orders.inserted, r.customers.inserted, r.products.inserted) == (4, 2, 3)
    assert _rows(
        db,
        "SELECT o.external_id, c.external_id, o.placed_at, o.currency, o.subtotal_minor, "
        "o.shipping_minor, o.total_minor, o.refunded_minor, o.status, o.discount_code, o.source "
        "FROM orders o LEFT JOIN customers c ON c.id = o.customer_id ORDER BY 1",
    ) == [
        # 03/02/2025 14:05 in Paris (UTC+1); "1 019,90" with a decimal comma
        ("FR-10021", "lea.martin@example.fr", 1738587900000000, "EUR", 101500, 490, 101990, 0, "paid", "BIENVENUE", "boutique"),
        ("FR-10022", "C-882", 1738743120000000, "EUR", 2700, 0, 2700, 0, "cancelled", None, "boutique"),
        # no email on this order: client C-881's email from FR-10021 identifies her
        ("FR-10023", "lea.martin@example.fr", 1739468400000000, "EUR", 650, 490, 1140, 1140, "refunded", None, "boutique"),
        ("FR-10024", None, 1739516400000000, "EUR", 990, 490, 1480, 0, "paid", None, "boutique"),
    ]  # fmt: skip
    assert _rows(
        db,
        "SELECT o.external_id, l.line_no, l.sku, l.name, l.category, l.quantity, "
        "l.unit_price_minor, l.discount_minor FROM order_lines l "
        "JOIN orders o ON o.id = l.order_id ORDER BY 1, 2",
    ) == [
        ("FR-10021", 1, "SAV-LAV-250", "Savon lavande 250 g", "Savons", 2, 650, 0),
        ("FR-10021", 2, "COF-PREST", "Coffret prestige", "Coffrets", 1, 100200, 0),
        ("FR-10022", 1, "BOU-SOJA", "Bougie soja", "Bougies", 3, 990, 270),  # 27,00 for 3 x 9,90
        ("FR-10023", 1, "SAV-LAV-250", "Savon lavande 250 g", "Savons", 1, 650, 0),
        ("FR-10024", 1, "BOU-SOJA", "Bougie soja", "Bougies", 1, 990, 0),
    ]
    assert _rows(
        db,
        "SELECT external_id, source_id, email, phone, first_name, country, zip, account_status "
        "FROM customers ORDER BY 1",
    ) == [
        ("C-882", "C-882", None, "+32470123456", "Tom", "BE", "9000", "guest"),
        ("lea.martin@example.fr", "C-881", "lea.martin@example.fr", "+33612345678", "Léa", "FR", "69002", "guest"),
    ]  # fmt: skip
    # granted on FR-10021, then "0" on her later order: the latest answer is no -> nothing recorded
    assert r.consents_recorded == 0


def test_yaml_mapping_stores_the_same_and_reimport_changes_nothing(db: str) -> None:
    run_import("csv", SAMPLE, db=db, store="boutique", mapping=TOML)
    before = table_digests(db)
    r = run_import("csv", SAMPLE, db=db, store="boutique", mapping=YAML).result
    assert (r.orders.inserted, r.orders.updated, r.orders.unchanged) == (0, 0, 4)
    assert (r.customers.inserted, r.customers.updated, r.customers.unchanged) == (0, 0, 2)
    assert (r.products.inserted, r.products.updated) == (0, 0)
    assert table_digests(db) == before


def test_dialect_variants_store_the_same(tmp_path: Path) -> None:
    with SAMPLE.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, delimiter=";"))
    digests = []
    for i, (delimiter, bom, crlf) in enumerate(
        [(";", False, False), (",", True, True), ("\t", False, True), (";", True, True)]
    ):
        path = tmp_path / f"orders_{i}.csv"
        with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as fh:
            csv.writer(fh, delimiter=delimiter, lineterminator="\r\n" if crlf else "\n").writerows(
                rows
            )
        db = str(tmp_path / f"store_{i}.db")
        run_import("csv", path, db=db, store="boutique", mapping=TOML)
        digests.append(table_digests(db))
    assert all(d == digests[0] for d in digests[1:])
    assert digests[0]["orders"][0] == 4


def _mapping(tmp_path: Path, body: str, name: str = "mapping.toml") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


MINIMAL = """\
date_format = "%d/%m/%Y %H:%M"
[columns]
order_id = "N° commande"
order_date = "Date"
quantity = "Qté"
unit_price = "Prix unitaire"
"""


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (MINIMAL + 'colour = "Couleur"\n', "columns.colour: unknown field"),
        (MINIMAL + '[extras]\nx = "y"\n', "extras: unknown field"),
        (MINIMAL.replace('date_format = "%d/%m/%Y %H:%M"\n', ""), "date_format: required field is missing"),
        (MINIMAL.replace('order_id = "N° commande"\n', ""), "columns.order_id: required field is missing"),
        (MINIMAL.replace('unit_price = "Prix unitaire"\n', ""), "columns: map unit_price or line_total (or both)"),
        (MINIMAL.replace("%d/%m/%Y %H:%M", "%d/%m %H:%M"), "date_format: must be a strftime format with the year"),
        (MINIMAL + '[status_values]\n"Livrée" = "shipped"\n', "status_values.Livrée: Input should be 'pending', 'paid'"),
        ('timezone = "Mars/Olympus"\n' + MINIMAL, "timezone: unknown time zone 'Mars/Olympus'"),
        (MINIMAL + "[columns\n", "the mapping cannot be parsed"),
        (MINIMAL + 'sku = "Article"\n', "the mapping names column(s) not in the file: columns.sku = 'Article'"),
    ],
    ids=["unknown-field", "unknown-table", "no-date-format", "no-order-id", "no-price",
         "date-without-year", "bad-status", "bad-timezone", "not-toml", "column-not-in-file"],
)  # fmt: skip
def test_mapping_errors_name_the_problem(tmp_path: Path, body: str, message: str) -> None:
    mapping = _mapping(tmp_path, body)
    with pytest.raises(InputError) as err:
        run_import("csv", SAMPLE, db=str(tmp_path / "s.db"), store="b", mapping=mapping)
    assert message in err.value.message
    assert str(mapping) in err.value.message or "not in the file" in err.value.message


def test_mapping_file_is_required_and_typed(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    with pytest.raises(InputError, match="the csv kind needs a mapping file"):
        run_import("csv", SAMPLE, db=db, store="b")
    with pytest.raises(InputError, match=r"must end in \.toml, \.yaml or \.yml"):
        run_import("csv", SAMPLE, db=db, store="b", mapping=_mapping(tmp_path, "{}", "m.json"))
    yaml_list = _mapping(tmp_path, "- date_format\n", "m.yaml")
    with pytest.raises(InputError, match="the mapping must be a table of settings"):
        run_import("csv", SAMPLE, db=db, store="b", mapping=yaml_list)


HEADER = SAMPLE.read_text(encoding="utf-8").splitlines()[0]
LINE = "{oid};{date};C-9;{email};Léa;Martin;{phone};FR;Lyon;69002;SAV-LAV-250;Savon;Savons;{qty};{price};;0,00;;{status};;"
DEFECTS = (
    "\n".join(
        [HEADER]
        + [
            LINE.format(oid=o, date=d, email=e, phone=p, qty=q, price=pr, status=s)
            for o, d, e, p, q, pr, s in [
                ("FR-1", "03/02/2025 14:05", "lea@example.fr", "", "1", "6,50", "Livrée"),
                ("FR-2", "31/02/2025 10:00", "lea@example.fr", "", "1", "6,50", "Livrée"),
                ("FR-3", "03/02/2025 14:05", "lea@example.fr", "", "1", "6,5O", "Livrée"),
                ("FR-4", "03/02/2025 14:05", "lea@example.fr", "", "2,5", "6,50", "Livrée"),
                ("FR-5", "03/02/2025 14:05", "lea@example.fr", "", "", "6,50", "Livrée"),
                ("FR-6", "03/02/2025 14:05", "lea@", "", "1", "6,50", "Livrée"),
                ("FR-7", "03/02/2025 14:05", "lea@example.fr", "+33 1", "1", "6,50", "Livrée"),
                ("FR-8", "03/02/2025 14:05", "lea@example.fr", "", "1", "6,50", "En préparation"),
                ("FR-8", "03/02/2025 14:05", "lea@example.fr", "", "1", "6,50", "En préparation"),
            ]
        ]
    )
    + "\n"
)


def test_defects_are_rejected_whole_order(db: str, tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(DEFECTS, encoding="utf-8")
    rejects = tmp_path / "rejects.csv"
    with pytest.raises(ImportRejectedError, match="nothing was imported"):
        run_import("csv", path, db=db, store="b", mapping=TOML, rejects_path=rejects)
    assert _rejects(rejects) == [
        (3, "Date", "31/02/2025 10:00", "not a date/time in format %d/%m/%Y %H:%M"),
        (4, "Prix unitaire", "6,5O", "not an amount like 1234.50"),
        (5, "Qté", "2,5", "not a whole number"),
        (6, "Qté", "", "quantity is required"),
        (7, "E-mail", "lea@", "not an email address"),
        (8, "Téléphone", "+33 1", "not a phone number (E.164 or national)"),
        (9, "Statut", "En préparation", "unknown status value: add it to [status_values] in the mapping"),
        (10, "N° commande", "FR-8", "order FR-8 not imported: its row 9 was rejected"),
    ]  # fmt: skip
    assert _count(db, "orders") == 0
    run_import("csv", path, db=db, store="b", mapping=TOML, rejects_path=rejects, allow_rejects=8)
    assert _rows(db, "SELECT external_id, total_minor FROM orders") == [("FR-1", 650)]


@settings(max_examples=300, deadline=None)
@given(st.decimals(min_value=Decimal("-1e12"), max_value=Decimal("1e12"), places=2))
def test_money_round_trips_decimals_with_two_places(amount: Decimal) -> None:
    """Plain and decimal-comma renderings of any 2-place amount read back to exact cents."""
    plain = format(amount, "f")
    grouped = f"{amount:,.2f}".replace(",", " ").replace(".", ",")  # "-1 234,50"
    frame = pl.DataFrame({"plain": [plain], "comma": [grouped]})
    read = frame.select(
        fields.money(pl.col("plain"), 2).value.alias("plain"),
        fields.money(_amount(pl.col("comma"), decimal_comma=True), 2).value.alias("comma"),
    ).row(0)
    assert read == (int(amount * 100), int(amount * 100))


def test_vectorised_exponents_follow_the_money_module() -> None:
    """Every currency whose minor unit is not cents parses with its own exponent."""
    from boomerang.domain import money

    odd = {code for code, exp in money._EXPONENTS.items() if exp != 2}
    assert set(fields._EXPONENT_CODES) == odd
    frame = pl.DataFrame({"amount": ["1500", "1.500"], "currency": ["XOF", "KWD"]})
    parsed = frame.select(
        fields.money(pl.col("amount"), fields.exponent_of(pl.col("currency"))).value
    )
    assert parsed.to_series().to_list() == [1500, 1500]
