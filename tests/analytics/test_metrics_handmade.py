"""Every per-period metric on a tiny store computed by hand (tests/analytics/handmade.py).

Activity window 60 days, tenure bands 30/60 days, second purchase within 30 days, months of
2024 (a leap year). Net revenue per purchase: A1 100, A2 50, A3 80, B1 150 (200 − 50
refunded), B2 40, C1 60, D1 120, D2 0 (fully refunded), E1 70; C2 is cancelled, AX is in
EUR, G1 is a guest order.
"""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest
from handmade import frames

from boomerang.services.analytics import MetricOptions, cohorts, metrics
from boomerang.services.imports import apply_frames

OPTIONS = MetricOptions(activity_window_days=60, tenure_bands=(30, 60), second_purchase_days=30)
RANGE = {"start": date(2024, 1, 1), "end": date(2024, 4, 30)}

# Customers at each boundary (bought in the 60 days before it):
#   Jan 1: none · Feb 1: A, B · Mar 1 (window from Jan 1): A, B, C
#   Apr 1 (from Feb 1): A, C, D · Apr 21, the data's end (from Feb 21): A, B, D, E
EXPECTED = pl.DataFrame(
    {
        "period_start": [date(2024, 1, 1), date(2024, 2, 1), date(2024, 3, 1), date(2024, 4, 1)],
        "period_end": [date(2024, 1, 31), date(2024, 2, 29), date(2024, 3, 31), date(2024, 4, 20)],
        "complete_period": [True, True, True, False],
        "customers": [2, 1, 2, 2],
        "orders": [3, 1, 3, 2],
        "revenue": [300.0, 60.0, 200.0, 110.0],
        "gross_revenue": [350.0, 60.0, 300.0, 110.0],
        "refunds": [50.0, 0.0, 100.0, 0.0],
        "average_order_value": [100.0, 60.0, 200 / 3, 55.0],
        "purchase_frequency": [1.5, 1.0, 1.5, 1.0],
        "repeat_customer_rate": [50.0, 0.0, 50.0, 0.0],
        "customer_value": [150.0, 60.0, 100.0, 55.0],
        "new_customers": [2, 1, 1, 1],
        "returning_customers": [0, 0, 1, 1],
        "customers_at_start": [0, 2, 3, 3],
        "customers_at_end": [2, 3, 3, 4],
        "customers_gained": [2, 1, 1, 2],  # Apr: B won back, E new
        "reactivated_customers": [0, 0, 0, 1],
        "churned_customers": [0, 0, 1, 1],  # Mar: B · Apr: C
        "customer_retention_rate": [None, 100.0, 200 / 3, 200 / 3],
        "customer_churn_rate": [None, 0.0, 100 / 3, 100 / 3],
        # Feb: A 150 + B 150 both windows · Mar: 360 -> 140 (A 80, B 0, C 60)
        # Apr: A 80 + C 60 + D 120 = 260 -> A 80 + D 120 = 200
        "revenue_at_start": [0.0, 300.0, 360.0, 260.0],
        "revenue_retained": [0.0, 300.0, 140.0, 200.0],
        "net_revenue_retention": [None, 100.0, 140 / 3.6, 200 / 2.6],
        "gross_revenue_retention": [None, 100.0, 140 / 3.6, 200 / 2.6],
        # within 30 days, first purchases at least 30 days before Apr 21:
        # Jan: A yes (15 days), B no (78) · Feb: C no · Mar: D yes (4) · Apr: E not observed
        "second_purchase_rate": [50.0, 0.0, 100.0, None],
        # 3 months = 91.31 days: only A (230) and B (190) are observed that long
        "clv_3m": [210.0, None, None, None],
        "guest_orders": [0, 1, 0, 0],
        "guest_revenue": [0.0, 25.0, 0.0, 0.0],
        "cancelled_orders": [0, 1, 0, 0],
        # sessions: first-time v1 Jan 5 (cart, order), v3 Jan 15 (cart, order), v2 Feb 1,
        # v2 Feb 2 (cart); returning v1 Feb 20 (cart), v1 Mar 10 (order)
        "first_time_add_to_cart_rate": [100.0, 50.0, None, None],
        "first_time_conversion_rate": [100.0, 0.0, None, None],
        "returning_add_to_cart_rate": [None, 100.0, 0.0, None],
        "returning_conversion_rate": [None, 0.0, 100.0, None],
        # first orders vs repeat orders: Jan 250/2 vs 50/1 · Mar 120/1 vs (80 + 0)/2
        "first_time_spend_per_transaction": [125.0, 60.0, 120.0, 70.0],
        "returning_spend_per_transaction": [50.0, None, 40.0, 40.0],
    }
)


@pytest.fixture
def store(db: str) -> str:
    apply_frames(db, "hand", frames())
    return db


def test_every_metric_matches_the_hand_computed_table(store: str) -> None:
    result = metrics(store, "hand", period="month", options=OPTIONS, **RANGE)
    got = result.table.select(EXPECTED.columns)
    for column in EXPECTED.columns:
        assert got[column].to_list() == pytest.approx(EXPECTED[column].to_list()), column
    assert any("another currency" in n for n in result.notes)
    # JSON records: ISO period bounds, null where a metric is undefined
    first = result.records()[0]
    assert first["period_start"] == "2024-01-01" and first["period_end"] == "2024-01-31"
    assert first["customer_retention_rate"] is None
    assert first["average_order_value"] == 100.0


def test_crr_from_s_e_n() -> None:
    """CRR = (E − N) / S × 100 holds row by row, and E − N = S − churned."""
    t = EXPECTED.filter(pl.col("customers_at_start") > 0)
    crr = (t["customers_at_end"] - t["customers_gained"]) / t["customers_at_start"] * 100
    assert crr.to_list() == pytest.approx(t["customer_retention_rate"].to_list())
    kept = t["customers_at_start"] - t["churned_customers"]
    assert kept.to_list() == (t["customers_at_end"] - t["customers_gained"]).to_list()


def test_quarter_and_filter(store: str) -> None:
    """One quarter holds everything; a country filter keeps FR customers only (A, C, E)."""
    q = metrics(store, "hand", period="quarter", options=OPTIONS, **RANGE).table
    assert q["orders"].to_list() == [7, 2]
    assert q["revenue"].to_list() == pytest.approx([560.0, 110.0])
    assert q["repeat_customer_rate"].to_list() == pytest.approx([200 / 4, 0.0])
    from boomerang.services.analytics import CustomerFilter

    fr = metrics(
        store, "hand", period="quarter", options=OPTIONS, customers=CustomerFilter(countries=("FR",)),
        **RANGE,
    ).table  # fmt: skip
    assert fr["orders"].to_list() == [4, 1]  # A1 A2 A3 C1 · E1
    assert fr["guest_orders"].to_list() == [0, 0]


def test_cohort_matrix_by_hand_and_reimport_changes_nothing(store: str) -> None:
    before = metrics(store, "hand", period="week", options=OPTIONS, **RANGE).table
    apply_frames(store, "hand", frames())
    after = metrics(store, "hand", period="week", options=OPTIONS, **RANGE).table
    assert before.equals(after)
    table = cohorts(store, "hand", period="month", **RANGE).table
    expected = pl.DataFrame(
        {
            "cohort_start": [date(2024, 1, 1)] * 3 + [date(2024, m, 1) for m in (2, 3, 4)],
            "periods_since": [0, 2, 3, 0, 0, 0],
            "cohort_size": [2, 2, 2, 1, 1, 1],
            "customers": [2, 1, 1, 1, 1, 1],
            "customers_pct": [100.0, 50.0, 50.0, 100.0, 100.0, 100.0],
            "revenue": [300.0, 80.0, 40.0, 60.0, 120.0, 70.0],
            "revenue_pct": [100.0, 80 / 3, 40 / 3, 100.0, 100.0, 100.0],
        }
    )
    for column in expected.columns:
        assert table[column].to_list() == pytest.approx(expected[column].to_list()), column


def test_historical_clv_per_customer_and_cohort(store: str) -> None:
    """3 months = 91.31 days: A (100 + 50 + 80) and B (150 + 40 on day 78) are observed."""
    from boomerang.services.analytics import historical_clv

    per = historical_clv(store, "hand", per="customer", **RANGE).table.sort("first_purchase")
    assert per["clv_3m"].to_list() == pytest.approx([230.0, 190.0, None, None, None])
    assert per["revenue_to_date"].to_list() == pytest.approx([230.0, 190.0, 60.0, 120.0, 70.0])
    cohort = historical_clv(store, "hand", per="cohort", **RANGE).table
    assert cohort["clv_3m"].to_list() == pytest.approx([210.0, None, None, None])
    assert cohort["customers"].to_list() == [2, 1, 1, 1]
