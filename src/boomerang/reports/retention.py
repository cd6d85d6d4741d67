"""The retention report: one self-contained HTML page a store owner can share offline.

Plotly's JavaScript is embedded once (with the first chart); every other chart reuses it, so
the page opens without a network connection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import plotly.graph_objects as go
import polars as pl
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from boomerang.analytics.behaviour import SEED_000_LIFTS
from boomerang.analytics.cohorts import pivot
from boomerang.analytics.lifecycle import STAGES
from boomerang.analytics.overview import Overview

PALETTE = {
    "ink": "#1f2a44",
    "accent": "#5b3cc4",
    "accent2": "#b39ddb",
    "good": "#1b8a5a",
    "bad": "#c0392b",
    "muted": "#8a94a6",
    "short": "#f4a261",
    "medium": "#2a9d8f",
    "long": "#264653",
    "all": "#5b3cc4",
}
SECTIONS = (
    ("kpis", "Key figures"),
    ("trends", "Trends"),
    ("cohorts", "Cohorts"),
    ("churn", "Churn by tenure and revenue"),
    ("returning", "Returning vs new"),
    ("second", "Second purchase"),
    ("growth", "Growth simulation"),
    ("lifecycle", "Lifecycle stage"),
    ("clv", "Predicted CLV"),
    ("rfm", "RFM segments"),
    ("definitions", "Definitions"),
)


@dataclass
class Tile:
    label: str
    value: str
    change: str
    tone: str  # good | bad | flat
    note: str = ""


class _Charts:
    """Turns figures into HTML, embedding plotly.js with the first one only."""

    def __init__(self) -> None:
        self.first = True

    def html(self, fig: go.Figure, height: int = 360, top: int = 40) -> Markup:
        fig.update_layout(
            height=height,
            margin={"l": 50, "r": 20, "t": top, "b": 40},
            paper_bgcolor="white",
            plot_bgcolor="white",
            font={
                "family": "Inter, Segoe UI, Helvetica, Arial, sans-serif",
                "color": PALETTE["ink"],
            },
            legend={"orientation": "h", "y": -0.18},
            hovermode="x unified",
        )
        fig.update_xaxes(showgrid=False, linecolor="#d9dde5")
        fig.update_yaxes(gridcolor="#eef0f4", zeroline=False)
        out = fig.to_html(
            full_html=False,
            include_plotlyjs=self.first,
            config={"displayModeBar": False, "responsive": True},
        )
        self.first = False
        return Markup(out)


def _num(value: Any) -> float | None:
    if value is None:
        return None
    v = float(value)
    return None if v != v else v


def _money(value: float | None, currency: str) -> str:
    return "n/a" if value is None else f"{value:,.2f} {currency}"


def _tiles(ov: Overview) -> tuple[list[Tile], str]:
    whole = ov.monthly.filter(pl.col("complete_period"))
    rows = (whole if whole.height >= 2 else ov.monthly).tail(2).to_dicts()
    cur = rows[-1] if rows else {}
    prev = rows[0] if len(rows) == 2 else {}
    start = cur.get("period_start")
    label = start.strftime("%B %Y") if isinstance(start, date) else ""
    c = ov.currency
    specs: tuple[tuple[str, str, Callable[[float], str], str], ...] = (
        ("Net revenue", "revenue", lambda v: _money(v, c), "pct"),
        ("Orders", "orders", lambda v: f"{v:,.0f}", "pct"),
        ("Customers", "customers", lambda v: f"{v:,.0f}", "pct"),
        ("Average order value", "average_order_value", lambda v: _money(v, c), "pct"),
        ("Purchase frequency", "purchase_frequency", lambda v: f"{v:.2f} orders", "pct"),
        ("Repeat customer rate", "repeat_customer_rate", lambda v: f"{v:.1f}%", "pp"),
        ("Customer retention rate", "customer_retention_rate", lambda v: f"{v:.1f}%", "pp"),
        ("Net revenue retention", "net_revenue_retention", lambda v: f"{v:.1f}%", "pp"),
        ("Customer value", "customer_value", lambda v: _money(v, c), "pct"),
        ("New customers", "new_customers", lambda v: f"{v:,.0f}", "pct"),
    )
    tiles = []
    for name, key, fmt, kind in specs:
        v, p = _num(cur.get(key)), _num(prev.get(key))
        if v is None:
            tiles.append(Tile(name, "n/a", "", "flat"))
            continue
        change, tone = "", "flat"
        if p is not None:
            diff = v - p if kind == "pp" else ((v / p - 1) * 100 if p else None)
            if diff is not None:
                unit = " pts" if kind == "pp" else "%"
                arrow = "▲" if diff > 0.05 else "▼" if diff < -0.05 else "■"
                change = f"{arrow} {diff:+.1f}{unit} vs previous month"
                tone = "good" if diff > 0.05 else "bad" if diff < -0.05 else "flat"
        note = ""
        if key == "customer_retention_rate":
            note = (
                f"S {cur['customers_at_start']:,} · E {cur['customers_at_end']:,} · "
                f"N {cur['customers_gained']:,}"
            )
        tiles.append(Tile(name, fmt(v), change, tone, note))
    return tiles, label


def _trend_charts(ov: Overview, charts: _Charts) -> list[Markup]:
    m = ov.monthly
    x = m["period_start"].to_list()
    fig = go.Figure()
    fig.add_bar(x=x, y=m["revenue"].to_list(), name=f"net revenue ({ov.currency})",
                marker_color=PALETTE["accent2"])  # fmt: skip
    fig.add_scatter(x=x, y=m["orders"].to_list(), name="orders", yaxis="y2",
                    line={"color": PALETTE["ink"], "width": 2})  # fmt: skip
    fig.update_layout(
        title="Net revenue and orders per month",
        yaxis={"title": ov.currency},
        yaxis2={"overlaying": "y", "side": "right", "title": "orders", "showgrid": False},
    )
    out = [charts.html(fig)]
    fig = go.Figure()
    for key, name, color in (
        ("customer_retention_rate", "customer retention rate", PALETTE["accent"]),
        ("repeat_customer_rate", "repeat customer rate", PALETTE["medium"]),
        ("customer_churn_rate", "customer churn rate", PALETTE["bad"]),
    ):
        fig.add_scatter(x=x, y=m[key].to_list(), name=name, line={"color": color, "width": 2})
    fig.update_layout(
        title="Retention, repeat and churn rates per month (%)", yaxis={"ticksuffix": "%"}
    )
    out.append(charts.html(fig))
    fig = go.Figure()
    fig.add_bar(
        x=x, y=m["new_customers"].to_list(), name="new customers", marker_color=PALETTE["accent2"]
    )
    fig.add_bar(x=x, y=m["returning_customers"].to_list(), name="returning customers",
                marker_color=PALETTE["accent"])  # fmt: skip
    fig.update_layout(barmode="stack", title="Customers who bought, new vs returning")
    out.append(charts.html(fig))
    return out


def _heatmap(ov: Overview, value: str, title: str, charts: _Charts, max_age: int = 24) -> Markup:
    wide = pivot(ov.cohorts, value)
    ages = [c for c in wide.columns if c not in ("cohort_start", "cohort_size")][: max_age + 1]
    labels = [
        f"{d:%b %Y} ({n:,})" for d, n in zip(wide["cohort_start"], wide["cohort_size"], strict=True)
    ]
    z = [[_num(v) for v in row] for row in wide.select(ages).rows()]
    later = [v for row in z for v in row[1:] if v is not None]
    top = max(later) if later else 100.0
    text = [["" if v is None else f"{v:.0f}%" for v in row] for row in z]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[f"+{a}" for a in ages],
            y=labels,
            text=text,
            texttemplate="%{text}",
            textfont={"size": 9},
            colorscale=[[0, "#f3effc"], [0.35, "#b39ddb"], [1, "#3d1f9e"]],
            zmin=0,
            zmax=max(top, 1.0),  # scale on later months; month 0 is 100% by definition
            hovertemplate="%{y}<br>month %{x}: %{z:.1f}%<extra></extra>",
            colorbar={"ticksuffix": "%"},
        )
    )
    fig.update_layout(title={"text": title, "y": 0.995, "yanchor": "top"}, hovermode="closest")
    fig.update_yaxes(autorange="reversed", tickfont={"size": 10})
    fig.update_xaxes(title="months since first purchase", side="top")
    out = charts.html(fig, height=max(380, 22 * len(labels) + 150), top=90)
    return out


def _clv_chart(ov: Overview, charts: _Charts) -> Markup:
    clv = ov.cohort_clv
    fig = go.Figure()
    for h, color in zip(ov.options.clv_horizons_months, ("#d1c4e9", "#9575cd", "#5e35b1", "#311b92"),
                        strict=False):  # fmt: skip
        fig.add_bar(x=clv["cohort_start"].to_list(), y=clv[f"clv_{h}m"].to_list(), name=f"{h} months",
                    marker_color=color)  # fmt: skip
    fig.update_layout(
        title=f"Historical CLV per customer by cohort ({ov.currency})", barmode="group"
    )
    return charts.html(fig)


def _churn_charts(ov: Overview, charts: _Charts) -> list[Markup]:
    ch = ov.churn
    out = []
    fig = go.Figure()
    for band in ("short", "medium", "long"):
        part = ch.filter(pl.col("tenure_band") == band)
        fig.add_bar(x=[f"{d:%b %Y}" for d in part["period_start"]], y=part["customer_churn_rate"].to_list(),
                    name=f"{band} tenure", marker_color=PALETTE[band])  # fmt: skip
    fig.update_layout(title="Customer churn rate per quarter, by tenure (%)", barmode="group",
                      yaxis={"ticksuffix": "%"})  # fmt: skip
    out.append(charts.html(fig))
    fig = go.Figure()
    for band in ("short", "medium", "long", "all"):
        part = ch.filter(pl.col("tenure_band") == band)
        x = [f"{d:%b %Y}" for d in part["period_start"]]
        fig.add_scatter(x=x, y=part["gross_revenue_retention"].to_list(), name=f"GRR {band}",
                        line={"color": PALETTE[band], "width": 3 if band == "all" else 2})  # fmt: skip
        fig.add_scatter(x=x, y=part["net_revenue_retention"].to_list(), name=f"NRR {band}",
                        line={"color": PALETTE[band], "dash": "dot"})  # fmt: skip
    fig.update_layout(title="Revenue retention by tenure (solid gross, dotted net)",
                      yaxis={"ticksuffix": "%"})  # fmt: skip
    out.append(charts.html(fig, height=400))
    return out


def _returning_chart(ov: Overview, charts: _Charts) -> Markup:
    r = ov.returning
    names = {"add_to_cart_rate": "Add-to-cart rate", "conversion_rate": "Conversion rate",
             "spend_per_transaction": "Spend per transaction"}  # fmt: skip
    fig = go.Figure()
    fig.add_bar(x=list(names.values()), y=[r.lift.get(k) for k in names], name="this store",
                marker_color=PALETTE["accent"], text=[_pct_txt(r.lift.get(k)) for k in names],
                textposition="outside")  # fmt: skip
    fig.add_bar(x=list(names.values()), y=[SEED_000_LIFTS[k] for k in names], name="published benchmark",
                marker_color="#d9dde5", text=[f"+{SEED_000_LIFTS[k]:.2f}%" for k in names],
                textposition="outside")  # fmt: skip
    fig.update_layout(title="How much more returning customers do than first-time visitors (%)",
                      barmode="group", yaxis={"ticksuffix": "%"}, hovermode="closest")  # fmt: skip
    return charts.html(fig)


def _pct_txt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.1f}%"


def _second_charts(ov: Overview, charts: _Charts) -> list[Markup]:
    s = ov.second
    fig = go.Figure()
    fig.add_bar(x=s.distribution["bucket"].to_list(), y=s.distribution["share"].to_list(),
                marker_color=PALETTE["accent"], text=[f"{v:.0f}%" for v in s.distribution["share"]],
                textposition="outside")  # fmt: skip
    fig.update_layout(title="Days from first to second order (share of repeat buyers)",
                      yaxis={"ticksuffix": "%"}, hovermode="closest")  # fmt: skip
    return [charts.html(fig)]


def _growth_charts(ov: Overview, charts: _Charts) -> list[Markup]:
    out = []
    for proj, title, money in (
        (ov.seed_growth, "Seed example: 100 new customers a month, one $10 item each", "$"),
        (
            ov.store_growth,
            f"Your store: if retention rose by {ov.what_if_points:g} points",
            ov.currency,
        ),
    ):
        fig = go.Figure()
        months = list(range(1, proj.months + 1))
        for i, (sc, rev) in enumerate(zip(proj.scenarios, proj.revenue, strict=True)):
            fig.add_scatter(x=months, y=rev.tolist(), name=sc.label, mode="lines",
                            line={"color": PALETTE["accent2"] if i == 0 else PALETTE["accent"],
                                  "width": 3})  # fmt: skip
        fig.update_layout(
            title=title,
            xaxis={"title": "month"},
            yaxis={"title": f"monthly revenue ({money})", "rangemode": "tozero"},
        )
        out.append(charts.html(fig, height=340))
    return out


_env = Environment(
    loader=PackageLoader("boomerang.reports", "templates"),
    autoescape=select_autoescape(["html", "j2"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def render_report(
    ov: Overview,
    store: str,
    clv_html: str = "",
    rfm_html: str = "",
    extra: Sequence[tuple[str, str, str]] = (),
) -> str:
    """The whole page as one HTML string; ``clv_html`` is the predicted-CLV section,
    ``rfm_html`` the RFM segments section, ``extra`` further (id, title, html) sections of
    other capabilities (memberships, flows), placed before the definitions."""
    charts = _Charts()
    tiles, tile_period = _tiles(ov)
    latest_churn = ov.churn.filter(pl.col("period_start") == ov.churn["period_start"].max())
    return _env.get_template("retention_report.html.j2").render(
        store=store,
        ov=ov,
        clv_html=clv_html,
        rfm_html=rfm_html,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        sections=[*SECTIONS[:-1], *((i, t) for i, t, _ in extra), SECTIONS[-1]],
        extra=extra,
        tiles=tiles,
        tile_period=tile_period,
        trends=_trend_charts(ov, charts),
        heat_customers=_heatmap(
            ov, "customers_pct", "Customers who bought again (% of cohort)", charts
        ),
        heat_revenue=_heatmap(
            ov, "revenue_pct", "Revenue (% of the cohort's first-month revenue)", charts
        ),
        clv_chart=_clv_chart(ov, charts),
        churn_charts=_churn_charts(ov, charts),
        latest_churn=latest_churn.to_dicts(),
        returning_chart=_returning_chart(ov, charts),
        second_charts=_second_charts(ov, charts),
        growth_charts=_growth_charts(ov, charts),
        stages=STAGES,
        seed_lifts=SEED_000_LIFTS,
        fmt_money=lambda v: _money(_num(v), ov.currency),
        fmt_pct=lambda v: "n/a" if _num(v) is None else f"{_num(v):.1f}%",
        fmt_num=lambda v, d=0: "n/a" if _num(v) is None else f"{_num(v):,.{d}f}",
    )
