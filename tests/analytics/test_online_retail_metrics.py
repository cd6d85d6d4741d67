"""An Online Retail-layout file imported by the real importer, measured by `boomerang metrics`.

By hand (GBP): invoice 536365 is 6 × 2.55 + 2 × 3.00 = 21.30; the return C536379 (−5.10) is
netted into it, the customer's latest purchase before the return, leaving 16.20. December:
536365 (16.20) and 536380 (10.50) by 17850, 536370 (15.00) by 12583 -> 3 orders, 2
customers, 41.70; gross 46.80, refunds 5.10; the guest invoice 536371 (20.00) is reported
apart. January: 536400 (7.50) by 12583, 536401 (8.25) by a new customer 13047. February
(1-3): 536402 (2.00) by 17850. With the 365-day activity window nobody churns: S/E/N are
0/2/2, 2/3/1 and 3/3/0.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from boomerang.cli.app import app
from boomerang.errors import InputError, NotFoundError
from boomerang.services.imports import run_import

SAMPLE = Path(__file__).parents[1] / "data" / "analytics" / "online_retail_sample.csv"

EXPECTED = [
    {
        "period_start": "2010-12-01", "period_end": "2010-12-31", "orders": 3, "customers": 2,
        "revenue": 41.70, "gross_revenue": 46.80, "refunds": 5.10, "average_order_value": 13.90,
        "purchase_frequency": 1.5, "repeat_customer_rate": 50.0, "customer_value": 20.85,
        "new_customers": 2, "customers_at_start": 0, "customers_at_end": 2, "customers_gained": 2,
        "customer_retention_rate": None, "guest_orders": 1, "guest_revenue": 20.00,
    },
    {
        "period_start": "2011-01-01", "period_end": "2011-01-31", "orders": 2, "customers": 2,
        "revenue": 15.75, "gross_revenue": 15.75, "refunds": 0.0, "average_order_value": 7.875,
        "purchase_frequency": 1.0, "repeat_customer_rate": 0.0, "customer_value": 7.875,
        "new_customers": 1, "customers_at_start": 2, "customers_at_end": 3, "customers_gained": 1,
        "customer_retention_rate": 100.0, "guest_orders": 0, "guest_revenue": 0.0,
    },
    {
        "period_start": "2011-02-01", "period_end": "2011-02-03", "orders": 1, "customers": 1,
        "revenue": 2.00, "gross_revenue": 2.00, "refunds": 0.0, "average_order_value": 2.0,
        "purchase_frequency": 1.0, "repeat_customer_rate": 0.0, "customer_value": 2.0,
        "new_customers": 0, "customers_at_start": 3, "customers_at_end": 3, "customers_gained": 0,
        "customer_retention_rate": 100.0, "guest_orders": 0, "guest_revenue": 0.0,
    },
]  # fmt: skip


def test_metrics_json_on_an_online_retail_import(db: str) -> None:
    summary = run_import("online-retail", SAMPLE, db=db, store="uk", currency="GBP")
    assert summary.applied
    result = CliRunner().invoke(
        app, ["metrics", "--db", db, "--store", "uk", "--period", "month", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert len(got) == 3
    for row, want in zip(got, EXPECTED, strict=True):
        for key, value in want.items():
            assert row[key] == (pytest.approx(value) if isinstance(value, float) else value), key
    keys = set(got[0])
    assert {"customer_retention_rate", "repeat_customer_rate", "purchase_frequency",
            "average_order_value", "customer_value", "net_revenue_retention"} <= keys  # fmt: skip


def test_cohorts_csv_and_table(db: str) -> None:
    run_import("online-retail", SAMPLE, db=db, store="uk", currency="GBP")
    runner = CliRunner()
    csv = runner.invoke(app, ["cohorts", "--db", db, "--store", "uk", "--format", "csv"])
    assert csv.exit_code == 0, csv.output
    lines = csv.stdout.strip().splitlines()
    assert lines[0].startswith("cohort_start,periods_since,cohort_size,customers")
    # Dec cohort (17850, 12583): both in Dec, 12583 in Jan, 17850 in Feb; Jan cohort: 13047
    assert lines[1:] == [
        "2010-12-01,0,2,2,100.0,41.7,100.0",
        "2010-12-01,1,2,1,50.0,7.5,17.985612",  # 7.5 / 41.7, 6 decimals
        "2010-12-01,2,2,1,50.0,2.0,4.796163",  # 2 / 41.7
        "2011-01-01,0,1,1,100.0,8.25,100.0",
    ]
    table = runner.invoke(app, ["cohorts", "--db", db, "--store", "uk", "--by", "revenue"])
    assert table.exit_code == 0 and "2010-12-01" in table.stdout


def test_report_command_and_errors(db: str, tmp_path: Path) -> None:
    run_import("online-retail", SAMPLE, db=db, store="uk", currency="GBP")
    runner = CliRunner()
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["report", "--db", db, "--store", "uk", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.exists() and f"report: {out}" in result.stdout.replace("\n", "")
    assert "lifecycle stage: startup" in result.stdout  # three months, a handful of orders
    bad = runner.invoke(app, ["metrics", "--db", db, "--store", "uk", "--period", "fortnight"])
    assert isinstance(bad.exception, InputError) and "fortnight" in str(bad.exception)
    missing = runner.invoke(app, ["metrics", "--db", db, "--store", "nope"])
    assert isinstance(missing.exception, NotFoundError)
