"""The simulator's Shopify-layout files: byte-for-byte determinism, consistency, and that the
real importers take them with zero rejects and get the same orders as direct mode."""

from __future__ import annotations

import csv
import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import text

from boomerang.ingest.registry import READERS
from boomerang.services import simulation
from boomerang.services.imports import run_import
from boomerang.simulate.shopify_csv import (
    CUSTOMERS_FILE,
    EVENTS_FILE,
    ORDERS_FILE,
    TRUTH_CUSTOMERS_FILE,
    TRUTH_FILE,
)
from boomerang.store.engine import make_engine

CUSTOMERS, DAYS, SEED = 1_000, 365, 3
SHOPIFY_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} [+-]\d{4}$")
ALL_FILES = (ORDERS_FILE, CUSTOMERS_FILE, EVENTS_FILE, TRUTH_FILE, TRUTH_CUSTOMERS_FILE)


def _simulate(out_dir: Path, seed: int = SEED) -> simulation.SimulationResult:
    return simulation.run(
        customers=CUSTOMERS, days=DAYS, seed=seed, out_dir=out_dir, db="unused.db", store="s"
    )


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export")
    _simulate(out)
    return out


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _orders(db: str) -> list[tuple[object, ...]]:
    engine = make_engine(db)
    try:
        with engine.connect() as conn:
            return [
                tuple(r)
                for r in conn.execute(
                    text(
                        "SELECT o.external_id, c.external_id, o.email, o.placed_at, o.currency, "
                        "o.subtotal_minor, o.discount_minor, o.shipping_minor, o.tax_minor, "
                        "o.total_minor, o.refunded_minor, o.status, o.cancelled_at, "
                        "o.discount_code, o.channel FROM orders o "
                        "LEFT JOIN customers c ON c.id = o.customer_id ORDER BY o.external_id"
                    )
                )
            ]
    finally:
        engine.dispose()


def _lines(db: str) -> list[tuple[object, ...]]:
    engine = make_engine(db)
    try:
        with engine.connect() as conn:
            return [
                tuple(r)
                for r in conn.execute(
                    text(
                        "SELECT o.external_id, l.line_no, l.sku, l.name, l.quantity, "
                        "l.unit_price_minor, l.discount_minor FROM order_lines l "
                        "JOIN orders o ON o.id = l.order_id ORDER BY 1, 2"
                    )
                )
            ]
    finally:
        engine.dispose()


def test_files_are_written_and_deterministic(export: Path, tmp_path: Path) -> None:
    result = _simulate(tmp_path / "again")
    assert [p.name for p in result.files] == list(ALL_FILES)
    for name in ALL_FILES:
        assert (export / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    other = _simulate(tmp_path / "other", seed=SEED + 1)
    assert other.files[0].read_bytes() != (export / ORDERS_FILE).read_bytes()
    lines = result.describe()
    assert any("1,000 customers" in line for line in lines)
    assert any(str(tmp_path / "again" / TRUTH_FILE) in line for line in lines)


def test_truth_json_holds_the_parameters(export: Path) -> None:
    truth = json.loads((export / TRUTH_FILE).read_text(encoding="utf-8"))
    assert truth["seed"] == SEED
    assert set(truth["bgnbd"]) >= {"r", "alpha", "a", "b", "time_unit"}
    assert truth["bgnbd"]["time_unit"] == "weeks"
    assert set(truth["gamma_gamma"]) >= {"p", "q", "gamma"}
    assert truth["counts"]["customers"] == CUSTOMERS
    assert truth["rates"]["refund_rate"] == pytest.approx(0.04)
    assert len(truth["catalogue"]) == truth["counts"]["products"]
    assert truth["period"]["days"] == DAYS
    header = (export / TRUTH_CUSTOMERS_FILE).read_text(encoding="utf-8").splitlines()[0]
    assert header.startswith("external_id,segment,lambda_per_week,dropout_p")


def test_orders_file_follows_shopify_layout_and_adds_up(export: Path) -> None:
    rows = _rows(export / ORDERS_FILE)
    by_order: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_order.setdefault(row["Name"], []).append(row)
    assert rows[0]["Name"] == "#1001"
    for name, group in by_order.items():
        head, rest = group[0], group[1:]
        assert SHOPIFY_TIME.match(head["Created at"]), head["Created at"]
        assert head["Financial Status"] and head["Total"], name
        assert all(r["Total"] == "" and r["Financial Status"] == "" for r in rest), name
        gross = sum(Decimal(r["Lineitem price"]) * int(r["Lineitem quantity"]) for r in group)
        discounts = sum(Decimal(r["Lineitem discount"]) for r in group)
        subtotal, total = Decimal(head["Subtotal"]), Decimal(head["Total"])
        assert subtotal == gross - discounts, name
        assert Decimal(head["Discount Amount"]) == discounts, name
        assert total == subtotal + Decimal(head["Shipping"]) + Decimal(head["Taxes"]), name
        assert Decimal(head["Refunded Amount"]) <= total, name
        assert re.fullmatch(r"\d+\.\d{2}", head["Total"])
        assert (head["Cancelled at"] != "") == (head["Financial Status"] == "voided"), name


def test_customers_file_follows_shopify_layout(export: Path) -> None:
    rows = _rows(export / CUSTOMERS_FILE)
    assert len(rows) == CUSTOMERS
    assert list(rows[0])[:4] == ["Customer ID", "First Name", "Last Name", "Email"]
    assert all(r["Customer ID"].startswith("'") and r["Customer ID"][1:].isdigit() for r in rows)
    assert {r["Accepts Email Marketing"] for r in rows} == {"yes", "no"}
    assert {r["Accepts SMS Marketing"] for r in rows} == {"yes", "no"}


def test_events_file_is_json_lines_in_time_order(export: Path) -> None:
    events = [json.loads(line) for line in (export / EVENTS_FILE).read_text().splitlines()]
    assert {e["type"] for e in events} == {
        "visit",
        "product_viewed",
        "added_to_cart",
        "checkout_started",
        "order_placed",
        "signed_up",
        "email_opened",
    }
    assert all("email" in e or "anonymous_id" in e for e in events)
    assert len({e["event_id"] for e in events}) == len(events)
    view = next(e for e in events if e["type"] == "product_viewed")
    assert set(view["properties"]) == {"sku", "category"}


def test_orders_import_with_zero_rejects(export: Path, tmp_path: Path) -> None:
    summary = run_import(
        "shopify-orders", export / ORDERS_FILE, db=str(tmp_path / "o.db"), store="t"
    )
    assert summary.rows_rejected == 0
    assert summary.guest_orders > 0


def test_imported_orders_match_direct_mode(
    tmp_path: Path, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same seed: the CSV route and direct mode give the same orders and lines (a small store,
    as this runs on both engines)."""
    monkeypatch.chdir(tmp_path)  # a server URL puts truth.json in the current directory
    size = {"customers": 300, "days": 180, "seed": 9}
    simulation.run(**size, out_dir=tmp_path / "small", db="unused.db", store="t")
    imported = str(tmp_path / "imported.db")
    summary = run_import("shopify-orders", tmp_path / "small" / ORDERS_FILE, db=imported, store="t")
    assert summary.rows_rejected == 0
    direct = simulation.run(**size, out_dir=None, db=db, store="t")
    assert direct.applied is not None
    assert direct.applied.orders.inserted == summary.result.orders.inserted
    assert direct.truth_path.exists()
    assert _orders(imported) == _orders(db)
    assert _lines(imported) == _lines(db)


@pytest.mark.skipif("shopify-customers" not in READERS, reason="no customers importer yet")
def test_customers_import_with_zero_rejects(export: Path, tmp_path: Path) -> None:
    summary = run_import(
        "shopify-customers", export / CUSTOMERS_FILE, db=str(tmp_path / "c.db"), store="t"
    )
    assert summary.rows_rejected == 0
    assert summary.result.customers.inserted == CUSTOMERS


@pytest.mark.skipif("events" not in READERS, reason="no events importer yet")
def test_events_import_with_zero_rejects(export: Path, tmp_path: Path) -> None:
    summary = run_import("events", export / EVENTS_FILE, db=str(tmp_path / "e.db"), store="t")
    assert summary.rows_rejected == 0
    lines = (export / EVENTS_FILE).read_text().count("\n")
    assert summary.result.events_inserted == lines
