"""Everything the retention report shows, computed in one pass over a store's data."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import ibis
import polars as pl
from ibis import _

from boomerang.analytics import growth, lifecycle
from boomerang.analytics.behaviour import Comparison, returning_vs_first_time
from boomerang.analytics.cohorts import cohort_table
from boomerang.analytics.engine import Data, Engine
from boomerang.analytics.lifetime_value import cohort_clv
from boomerang.analytics.metrics import metrics_table, money_scale
from boomerang.analytics.options import CustomerFilter, MetricOptions
from boomerang.analytics.periods import DAY_US, Granularity, from_day
from boomerang.analytics.prepare import Prepared, prepare
from boomerang.analytics.repeat import SecondPurchase, second_purchase
from boomerang.analytics.retention import churn_by_tenure, retention_arrays

TRAILING_DAYS = 365


@dataclass
class Overview:
    currency: str
    start: date
    end: date  # inclusive
    monthly: pl.DataFrame
    churn: pl.DataFrame  # quarterly, by tenure band
    cohorts: pl.DataFrame  # monthly, long format
    cohort_clv: pl.DataFrame
    second: SecondPurchase
    returning: Comparison
    facts: lifecycle.StoreFacts
    stage: lifecycle.Lifecycle
    fit: lifecycle.BusinessFit
    seed_growth: growth.Projection
    store_growth: growth.Projection
    baseline: growth.StoreBaseline
    what_if_points: float
    options: MetricOptions
    notes: list[str] = field(default_factory=list)


def _mean(series: pl.Series) -> float:
    value = series.cast(pl.Float64).mean()
    return float(value) if isinstance(value, float) else 0.0


def calendar_months(first: date, end: date) -> float:
    """Calendar months from ``first`` to ``end`` (exclusive), with a fraction for the days."""
    months = (end.year - first.year) * 12 + end.month - first.month
    return months + (end.day - first.day) / 30.4375


def trailing_year(p: Prepared) -> dict[str, float]:
    """Orders, distinct customers, revenue and repeat-order revenue in the last 365 days."""
    since = p.end_us - TRAILING_DAYS * DAY_US
    rows = p.purchases.filter(_.t >= since, _.n <= p.k)
    out = p.engine.arrow(
        rows.aggregate(
            orders=_.count(),
            customers=_.customer_id.nunique(),
            revenue=_.net.sum(),
            repeat_revenue=ibis.ifelse(_.seq > 1, _.net, 0).sum(),
        )
    ).to_pylist()[0]
    return {k: float(v or 0) for k, v in out.items()}


def store_facts(p: Prepared, monthly: pl.DataFrame) -> lifecycle.StoreFacts:
    """The inputs of the lifecycle stage, from the monthly table and the trailing year."""
    scale = money_scale(p.data.currency)
    age = calendar_months(from_day(p.data_start_day), from_day(p.periods.end_day))
    whole = monthly.filter(pl.col("complete_period"))
    if whole.height == 0:
        whole = monthly
    recent = whole.tail(3)
    orders_pm = _mean(recent["orders"] + recent["guest_orders"])
    revenue = whole["revenue"] + whole["guest_revenue"]
    growth_pct, basis = None, "needs 12 complete months"
    if whole.height >= 24:
        last, prev = (
            float(revenue.tail(12).sum()),
            float(revenue.slice(whole.height - 24, 12).sum()),
        )
        basis = "last 12 months vs the 12 before"
    elif whole.height >= 12:
        last, prev = float(revenue.tail(6).sum()), float(revenue.slice(whole.height - 12, 6).sum())
        basis = "last 6 months vs the 6 before"
    else:
        last = prev = 0.0
    if prev > 0:
        growth_pct = (last / prev - 1) * 100
    year = trailing_year(p)
    return lifecycle.StoreFacts(
        age_months=age,
        orders_per_month=orders_pm,
        growth_pct=growth_pct,
        growth_basis=basis,
        repeat_revenue_share=year["repeat_revenue"] / year["revenue"] * 100
        if year["revenue"]
        else None,
        average_order_value=year["revenue"] * scale / year["orders"] if year["orders"] else None,
        orders_per_customer_year=year["orders"] / year["customers"] if year["customers"] else None,
    )


def store_baseline(monthly: pl.DataFrame) -> growth.StoreBaseline:
    """Averages over the last 12 complete months: new and active customers, spend."""
    whole = monthly.filter(pl.col("complete_period")).tail(12)
    if whole.height == 0:
        whole = monthly.tail(12)
    active = _mean(whole["customers"])
    revenue = float(whole["revenue"].sum() or 0.0)
    return growth.StoreBaseline(
        new_per_month=_mean(whole["new_customers"]),
        active_per_month=active,
        revenue_per_active=revenue / float(whole["customers"].sum()) if active else 0.0,
        current_active=active,
    )


def overview(
    engine: Engine,
    data: Data,
    *,
    start: date | None = None,
    end: date | None = None,
    options: MetricOptions | None = None,
    customers: CustomerFilter | None = None,
    what_if_points: float = 5.0,
    months: int = 24,
) -> Overview:
    options = options or MetricOptions()
    scale = money_scale(data.currency)
    monthly_p = prepare(
        engine, data, Granularity.MONTH, start=start, end=end, options=options, customers=customers
    )
    monthly = metrics_table(monthly_p)
    quarterly_p = prepare(
        engine,
        data,
        Granularity.QUARTER,
        start=start,
        end=end,
        options=options,
        customers=customers,
    )
    churn = churn_by_tenure(quarterly_p, retention_arrays(quarterly_p), scale)
    facts = store_facts(monthly_p, monthly)
    baseline = store_baseline(monthly)
    return Overview(
        currency=data.currency,
        start=from_day(monthly_p.periods.start_day),
        end=from_day(monthly_p.periods.end_day - 1),
        monthly=monthly,
        churn=churn,
        cohorts=cohort_table(monthly_p, scale),
        cohort_clv=cohort_clv(monthly_p, scale),
        second=second_purchase(monthly_p),
        returning=returning_vs_first_time(monthly_p),
        facts=facts,
        stage=lifecycle.classify(facts),
        fit=lifecycle.business_fit(facts),
        seed_growth=growth.seed_example(months),
        store_growth=growth.what_if(baseline, what_if_points, months),
        baseline=baseline,
        what_if_points=what_if_points,
        options=options,
        notes=monthly_p.notes,
    )
