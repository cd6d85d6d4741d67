"""Retention analytics use cases: metrics, cohorts and the HTML report for one store.

Each call reads the store's tables once as Arrow (ADBC), hands them to the analytics engine
(DuckDB in memory by default) and returns small results for a face to render.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from boomerang.analytics.cohorts import cohort_table, pivot
from boomerang.analytics.engine import Engine, SourceTables
from boomerang.analytics.lifetime_value import cohort_clv, customer_clv
from boomerang.analytics.metrics import metrics_table, money_scale
from boomerang.analytics.options import CustomerFilter, MetricOptions
from boomerang.analytics.overview import overview
from boomerang.analytics.periods import Granularity
from boomerang.analytics.prepare import prepare
from boomerang.domain.clock import to_micros
from boomerang.errors import InputError
from boomerang.reports.retention import render_report
from boomerang.services.campaign_stats import flow_section
from boomerang.services.clv import clv_section
from boomerang.services.context import open_engine
from boomerang.services.memberships import membership_section
from boomerang.services.segments import rfm_section
from boomerang.store.repos import analytics_source
from boomerang.store.repos import stores as stores_repo

__all__ = [
    "CohortsResult", "CustomerFilter", "MetricOptions", "MetricsResult", "ReportResult",
    "build_report", "cohorts", "historical_clv", "metrics", "report",
]  # fmt: skip


@dataclass
class MetricsResult:
    store: str
    currency: str
    period: str
    table: pl.DataFrame
    customers: str
    options: MetricOptions
    notes: list[str] = field(default_factory=list)

    def records(self) -> list[dict[str, Any]]:
        """One JSON-ready object per period (dates as ISO strings, NaN as null)."""
        return [_jsonable(row) for row in self.table.to_dicts()]


@dataclass
class CohortsResult:
    store: str
    currency: str
    period: str
    table: pl.DataFrame  # long format, see analytics.cohorts.cohort_table
    notes: list[str] = field(default_factory=list)

    def records(self) -> list[dict[str, Any]]:
        return [_jsonable(row) for row in self.table.to_dicts()]

    def matrix(self, value: str) -> pl.DataFrame:
        """Wide matrix of one column (customers, customers_pct, revenue, revenue_pct)."""
        return pivot(self.table, value)


@dataclass
class ReportResult:
    path: Path
    store: str
    currency: str
    start: date
    end: date
    stage: str
    headline: dict[str, str]  # label -> formatted value, for a terminal
    kpis: dict[str, float | None]  # metric key -> latest complete month's value
    notes: list[str] = field(default_factory=list)


JSON_DECIMALS = 6  # aggregates are float64: drop binary noise such as 4001.7699999999895


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, date):
            out[key] = value.isoformat()
        elif isinstance(value, float) and value != value:
            out[key] = None
        elif isinstance(value, float):
            out[key] = round(value, JSON_DECIMALS)
        else:
            out[key] = value
    return out


def granularity(name: str) -> Granularity:
    try:
        return Granularity(name.lower())
    except ValueError:
        raise InputError(
            f"unknown period {name!r}", hint="use day, week, month, quarter or year"
        ) from None


def load_source(db: str, store: str, *, events: bool = True) -> SourceTables:
    """Read one store's orders, customers and events as Arrow tables."""
    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            row = stores_repo.get(conn, store)
        return SourceTables(
            orders=analytics_source.read_orders(engine, row.id),
            customers=analytics_source.read_customers(engine, row.id),
            events=analytics_source.read_events(engine, row.id) if events else None,
            currency=row.currency,
        )
    finally:
        engine.dispose()


def metrics(
    db: str,
    store: str,
    *,
    period: str = "month",
    start: date | None = None,
    end: date | None = None,
    options: MetricOptions | None = None,
    customers: CustomerFilter | None = None,
    backend: str = "duckdb",
) -> MetricsResult:
    """Every per-period metric for the store (docs/metrics.md)."""
    g = granularity(period)
    source = load_source(db, store)
    engine = Engine(backend)
    try:
        p = prepare(
            engine, engine.load(source), g, start=start, end=end, options=options,
            customers=customers,
        )  # fmt: skip
        table = metrics_table(p)
        return MetricsResult(
            store=store,
            currency=source.currency,
            period=g.value,
            table=table,
            customers=(customers or CustomerFilter()).describe(),
            options=p.options,
            notes=p.notes,
        )
    finally:
        engine.close()


def cohorts(
    db: str,
    store: str,
    *,
    period: str = "month",
    start: date | None = None,
    end: date | None = None,
    customers: CustomerFilter | None = None,
) -> CohortsResult:
    """Acquisition cohorts × periods since, by customers and revenue (absolute and %)."""
    g = granularity(period)
    source = load_source(db, store, events=False)
    engine = Engine()
    try:
        p = prepare(engine, engine.load(source), g, start=start, end=end, customers=customers)
        table = cohort_table(p, money_scale(source.currency))
        return CohortsResult(store, source.currency, g.value, table, p.notes)
    finally:
        engine.close()


def historical_clv(
    db: str,
    store: str,
    *,
    per: str = "cohort",
    period: str = "month",
    start: date | None = None,
    end: date | None = None,
    customers: CustomerFilter | None = None,
) -> CohortsResult:
    """Historical CLV at 3/6/12/24 months, per acquisition cohort or per customer."""
    g = granularity(period)
    source = load_source(db, store, events=False)
    engine = Engine()
    try:
        p = prepare(engine, engine.load(source), g, start=start, end=end, customers=customers)
        scale = money_scale(source.currency)
        table = cohort_clv(p, scale) if per == "cohort" else customer_clv(p, scale)
        return CohortsResult(store, source.currency, g.value, table, p.notes)
    finally:
        engine.close()


HEADLINE = (
    ("revenue", "Net revenue"),
    ("customers", "Customers"),
    ("average_order_value", "Average order value"),
    ("customer_retention_rate", "Customer retention rate"),
    ("repeat_customer_rate", "Repeat customer rate"),
    ("net_revenue_retention", "Net revenue retention"),
)


def build_report(
    db: str,
    store: str,
    out_path: Path,
    *,
    start: date | None = None,
    end: date | None = None,
    options: MetricOptions | None = None,
    what_if_points: float = 5.0,
) -> ReportResult:
    """Write the self-contained retention report (HTML, works offline) and return its KPIs."""
    source = load_source(db, store)
    engine = Engine()
    try:
        ov = overview(
            engine, engine.load(source), start=start, end=end, options=options,
            what_if_points=what_if_points,
        )  # fmt: skip
    finally:
        engine.close()
    # RFM as of the end of the report's data (the day after its last day, UTC midnight).
    rfm_as_of = to_micros(datetime.combine(ov.end + timedelta(days=1), time.min, tzinfo=UTC))
    extra = []
    members_html = membership_section(db, store, as_of=rfm_as_of)
    if members_html:
        extra.append(("memberships", "Paid memberships", members_html))
    flows_html = flow_section(db, store, as_of=rfm_as_of)
    if flows_html:
        extra.append(("flows", "Flows", flows_html))
    html = render_report(
        ov, store, clv_html=clv_section(db, store),
        rfm_html=rfm_section(db, store, as_of=rfm_as_of), extra=extra,
    )  # fmt: skip
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(html, encoding="utf-8")
    latest = _latest_complete(ov.monthly)
    kpis = {key: latest.get(key) for key, _ in HEADLINE}
    return ReportResult(
        path=out_path,
        store=store,
        currency=ov.currency,
        start=ov.start,
        end=ov.end,
        stage=ov.stage.stage,
        headline={label: _fmt(key, kpis[key], ov.currency) for key, label in HEADLINE},
        kpis=kpis,
        notes=ov.notes,
    )


report = build_report


def _latest_complete(monthly: pl.DataFrame) -> dict[str, Any]:
    whole = monthly.filter(pl.col("complete_period"))
    rows = (whole if whole.height else monthly).tail(1).to_dicts()
    return rows[0] if rows else {}


def _fmt(key: str, value: float | None, currency: str) -> str:
    if value is None:
        return "n/a"
    if key in ("revenue", "average_order_value"):
        return f"{value:,.2f} {currency}"
    if key == "customers":
        return f"{value:,.0f}"
    return f"{value:.1f}%"
