"""A straightforward pandas implementation of the retention metrics, written from the
definitions in docs/metrics.md without any of the engine's tricks.

Used twice: as the baseline of bench/analytics_bench.py and as the oracle the property
tests compare the Ibis implementation with. Inputs are plain Arrow/pandas tables of orders.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

DAY_US = 86_400_000_000


@dataclass
class Reference:
    periods: pd.DataFrame  # one row per period: activity, CRR parts, revenue retention
    churn: pd.DataFrame  # one row per (period, tenure band)
    cohorts: pd.DataFrame  # cohort month index, age, customers, revenue (minor units)


def purchases(orders: pd.DataFrame, currency: str, end_us: int) -> pd.DataFrame:
    """Identified, live, in-currency purchases with returns netted into the latest purchase."""
    o = orders[
        (orders["currency"] == currency)
        & (orders["status"] != "cancelled")
        & (orders["placed_at"] < end_us)
        & orders["customer_id"].notna()
    ].copy()
    o["customer_id"] = o["customer_id"].astype("int64")
    o["net"] = o["total_minor"] - o["refunded_minor"]
    buys = o[o["total_minor"] >= 0].sort_values(["placed_at", "id"]).reset_index(drop=True)
    rets = o[o["total_minor"] < 0].sort_values(["placed_at", "id"])
    if len(rets):
        buys["row"] = np.arange(len(buys))
        matched = pd.merge_asof(
            rets[["placed_at", "customer_id", "net"]],
            buys[["placed_at", "customer_id", "row"]],
            on="placed_at",
            by="customer_id",
            direction="backward",
        ).dropna(subset=["row"])
        add = matched.groupby(matched["row"].astype("int64"))["net"].sum()
        buys.loc[add.index, "net"] += add.to_numpy()
        buys = buys.drop(columns="row")
    return buys


def compute(
    orders: pd.DataFrame,
    currency: str,
    bounds_days: list[int],
    window_days: int = 365,
    bands: tuple[int, int] = (90, 365),
    month_index: bool = True,
) -> Reference:
    """Per-period metrics for the periods between consecutive ``bounds_days``."""
    b_us = [d * DAY_US for d in bounds_days]
    end_us = b_us[-1]
    p = purchases(orders, currency, end_us)
    first = p.groupby("customer_id")["placed_at"].min()
    first_day = first // DAY_US
    w_us = window_days * DAY_US

    def band(b_day: int, customers: pd.Index) -> pd.Series:
        tenure = b_day - first_day.loc[customers]
        return pd.Series(
            np.where(tenure < bands[0], "short", np.where(tenure <= bands[1], "medium", "long")),
            index=customers,
        )

    def window_revenue(b: int) -> pd.Series:
        sel = p[(p["placed_at"] >= b - w_us) & (p["placed_at"] < b)]
        return sel.groupby("customer_id")["net"].sum()

    rows, churn_rows = [], []
    for k in range(len(b_us) - 1):
        lo, hi = b_us[k], b_us[k + 1]
        inside = p[(p["placed_at"] >= lo) & (p["placed_at"] < hi)]
        per_customer = inside.groupby("customer_id").agg(
            orders=("net", "size"), revenue=("net", "sum")
        )
        r0 = window_revenue(lo)
        r1_all = window_revenue(hi)
        s = r0.index
        e = r1_all.index
        gained = e.difference(s)
        new = gained[(first.loc[gained] >= lo).to_numpy()]
        churned = s.difference(e)
        r1 = r1_all.reindex(s, fill_value=0)
        kept = np.minimum(r0, r1)
        bands_at = band(bounds_days[k], s)
        rows.append(
            {
                "k": k,
                "orders": int(per_customer["orders"].sum()),
                "customers": len(per_customer),
                "repeat_customers": int((per_customer["orders"] > 1).sum()),
                "revenue": int(per_customer["revenue"].sum()),
                "new_customers": int((first.loc[per_customer.index] >= lo).sum()),
                "customers_at_start": len(s),
                "customers_at_end": len(e),
                "customers_gained": len(gained),
                "new_gained": len(new),
                "churned_customers": len(churned),
                "revenue_at_start": float(r0.sum()),
                "revenue_retained": float(r1.sum()),
                "revenue_kept": float(kept.sum()),
            }
        )
        for name in ("short", "medium", "long"):
            members = bands_at.index[bands_at.to_numpy() == name]
            churn_rows.append(
                {
                    "k": k,
                    "tenure_band": name,
                    "customers_at_start": len(members),
                    "churned_customers": len(members.intersection(churned)),
                    "revenue_at_start": float(r0.loc[members].sum()),
                    "revenue_retained": float(r1.loc[members].sum()),
                    "revenue_kept": float(kept.loc[members].sum()),
                }
            )
    cohorts = pd.DataFrame()
    if month_index:
        q = p[(p["placed_at"] >= b_us[0]) & (p["placed_at"] < end_us)].copy()
        q = q[q["customer_id"].map(first) >= b_us[0]]
        month = pd.to_datetime(q["placed_at"], unit="us").dt.to_period("M")
        first_month = pd.to_datetime(q["customer_id"].map(first), unit="us").dt.to_period("M")
        q["cohort"] = (first_month.dt.year * 12 + first_month.dt.month - 1).astype(
            "int64"
        ) - 12 * 1970
        q["age"] = (
            (month.dt.year * 12 + month.dt.month - 1).astype("int64") - 12 * 1970 - q["cohort"]
        )
        cohorts = (
            q.groupby(["cohort", "age"])
            .agg(customers=("customer_id", "nunique"), revenue=("net", "sum"))
            .reset_index()
        )
    return Reference(pd.DataFrame(rows), pd.DataFrame(churn_rows), cohorts)
