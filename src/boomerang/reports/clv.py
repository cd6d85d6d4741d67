"""The retention report's CLV section: an HTML fragment with Plotly figures.

Why a fragment: the report page owns the layout and includes plotly.js once, so every figure
here is rendered with ``include_plotlyjs=False``. The backtest (model vs naive baseline) is
shown beside the predictions so a reader can judge them by their track record.
"""

from __future__ import annotations

from html import escape

import numpy as np
import plotly.graph_objects as go

from boomerang.analytics.clv_store import Backtest, ClvFit

__all__ = ["render_clv_section"]

INK = "#1f2a44"
MODEL_COLOUR = "#2f6fde"
NAIVE_COLOUR = "#9aa3b5"
RISK_COLOUR = "#d9534f"
TOP_CUSTOMERS = 20


def _fig_html(fig: go.Figure, height: int = 340) -> str:
    fig.update_layout(
        height=height,
        margin={"l": 50, "r": 20, "t": 40, "b": 40},
        paper_bgcolor="white",
        plot_bgcolor="white",
        font={"family": "Inter, Segoe UI, Helvetica, Arial, sans-serif", "color": INK},
        legend={"orientation": "h", "y": -0.2},
    )
    html: str = fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        config={"displayModeBar": False, "responsive": True},
    )
    return html


def _money(value: float, currency: str) -> str:
    return f"{value:,.0f} {escape(currency)}" if np.isfinite(value) else "–"


def _table(header: list[str], rows: list[list[str]], cls: str = "clv-table") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _distribution(fit: ClvFit, currency: str) -> str:
    clv = fit.predictions.clv[np.isfinite(fit.predictions.clv)]
    cap = float(np.quantile(clv, 0.99)) if clv.size else 0.0
    fig = go.Figure(go.Histogram(x=np.minimum(clv, cap), nbinsx=40, marker_color=MODEL_COLOUR))
    fig.update_layout(
        title=f"Predicted CLV per customer, next {fit.predictions.months} months",
        xaxis_title=f"CLV ({currency}; top 1% shown at the 99th percentile)",
        yaxis_title="customers",
    )
    return _fig_html(fig)


def _heatmap(fit: ClvFit) -> str:
    s = fit.summary
    p = fit.predictions.p_alive
    x_cap = int(min(max(int(s.x.max()), 1), 20))
    freq = np.minimum(s.x, x_cap)
    # Recency as the papers use it: t_x, the time of the last repeat purchase (weeks).
    edges = np.linspace(0.0, max(float(s.T.max()), 1.0), 21)
    rec = np.clip(np.searchsorted(edges, s.t_x, side="right") - 1, 0, edges.size - 2)
    total = np.zeros((x_cap + 1, edges.size - 1))
    count = np.zeros_like(total)
    np.add.at(total, (freq, rec), p)
    np.add.at(count, (freq, rec), 1.0)
    with np.errstate(invalid="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    labels = [f"{edges[i]:.0f}–{edges[i + 1]:.0f}" for i in range(edges.size - 1)]
    ylabels = [str(i) for i in range(x_cap)] + [f"{x_cap}+"]
    fig = go.Figure(
        go.Heatmap(
            z=mean, x=labels, y=ylabels, zmin=0, zmax=1, colorscale="RdYlGn",
            customdata=count, hovertemplate="recency %{x} wk, frequency %{y}<br>"
            "P(alive) %{z:.2f}<br>customers %{customdata:.0f}<extra></extra>",
        )
    )  # fmt: skip
    fig.update_layout(
        title="P(alive) by recency × frequency (mean over customers)",
        xaxis_title=f"recency t_x ({s.unit} from first to last purchase)",
        yaxis_title="frequency x (repeat purchases)",
    )
    return _fig_html(fig, 380)


def _top_customers(fit: ClvFit, currency: str) -> str:
    p = fit.predictions
    order = np.argsort(-np.nan_to_num(p.clv))[:TOP_CUSTOMERS]
    rows = []
    for i in order:
        nxt = fit.next_order[i]
        rows.append([
            escape(str(fit.summary.customer_id[i])),
            _money(float(p.clv[i]), currency),
            f"{_money(float(p.clv_low[i]), currency)} – {_money(float(p.clv_high[i]), currency)}",
            f"{p.p_alive[i]:.2f}",
            f"{p.expected_purchases[i]:.2f}",
            escape(str(p.churn_risk[i])),
            "–" if np.isnat(nxt) else escape(str(nxt)),
        ])  # fmt: skip
    header = [
        "customer", "CLV", f"{p.interval[0]:.0%}–{p.interval[1]:.0%} interval", "P(alive)",
        f"purchases next {fit.horizon_days} d", "churn risk", "next order (if alive)",
    ]  # fmt: skip
    return "<h3>Top customers by predicted CLV</h3>" + _table(header, rows)


def _at_risk(fit: ClvFit, currency: str) -> tuple[str, float]:
    p = fit.predictions
    falling = fit.p_alive_falling
    rows = []
    at_risk_total = 0.0
    for band in ("high", "medium", "low"):
        in_band = p.churn_risk == band
        sel = in_band & falling
        value = float(np.nansum(p.clv[sel]))
        if band != "low":
            at_risk_total += value
        rows.append([
            escape(band), f"{int(in_band.sum()):,}", _money(float(np.nansum(p.clv[in_band])), currency),
            f"{int(sel.sum()):,}", _money(value, currency),
        ])  # fmt: skip
    header = ["churn risk", "customers", "predicted CLV", "of which P(alive) falling", "CLV there"]
    html = (
        "<h3>CLV at risk</h3>"
        f'<p class="clv-at-risk">Predicted value of customers whose P(alive) is falling '
        f"(no purchase in the last 30 days) and already below 0.7: "
        f"<strong>{_money(at_risk_total, currency)}</strong> — the revenue view of churn.</p>"
        + _table(header, rows)
    )
    return html, at_risk_total


def _backtest_html(bt: Backtest) -> str:
    t = bt.tracking
    days = t["day"].to_list()
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=days, y=t["actual"].to_numpy(), name="actual",
                             line={"color": INK}))  # fmt: skip
    fig.add_trace(go.Scatter(x=days, y=t["model"].to_numpy(), name=bt.model_name,
                             line={"color": MODEL_COLOUR, "dash": "dash"}))  # fmt: skip
    cal = str(bt.calibration_end)
    fig.add_shape(type="line", x0=cal, x1=cal, y0=0, y1=1, yref="paper",
                  line={"color": NAIVE_COLOUR, "dash": "dot"})  # fmt: skip
    fig.update_layout(
        title="Cumulative repeat transactions: actual vs model (calibration | holdout)",
        yaxis_title="repeat transactions",
    )
    err_rows = [
        [escape(name), f"{e.mae:.3f}", f"{e.rmse:.3f}", f"{e.predicted_total:,.0f}",
         f"{e.actual_total:,.0f}", f"{e.aggregate_error:+.1%}"]
        for name, e in ((bt.model_name, bt.model), ("naive (past rate)", bt.naive))
    ]  # fmt: skip
    errors = _table(
        ["predictor", "MAE", "RMSE", "predicted", "actual", "aggregate error"], err_rows
    )
    bucket_rows = [
        [escape(str(r["frequency"])), f"{r['customers']:,}", f"{r['actual']:.2f}",
         f"{r['model']:.2f}", f"{r['naive']:.2f}"]
        for r in bt.buckets.iter_rows(named=True)
    ]  # fmt: skip
    buckets = _table(
        ["calibration frequency", "customers", "actual", bt.model_name, "naive"], bucket_rows
    )
    verdict = "beats" if bt.model_wins else "does not beat"
    return (
        f"<h3>Backtest: calibration to {escape(cal)}, {bt.holdout_days}-day holdout</h3>"
        f"<p>Per customer, the model {verdict} the naive baseline "
        f"(MAE {bt.model.mae:.3f} vs {bt.naive.mae:.3f} repeat purchases) "
        f"over {bt.n_customers:,} customers.</p>"
        + _fig_html(fig)
        + errors
        + "<h4>Mean holdout purchases per customer by calibration frequency</h4>"
        + buckets
    )


def render_clv_section(
    fit: ClvFit | None,
    backtest: Backtest | None,
    *,
    currency: str,
    store: str,
    margin: float = 1.0,
    notes: list[str] | None = None,
) -> str:
    """The CLV section as one ``<section>`` element (no plotly.js, no page chrome)."""
    parts = ['<section class="clv" id="clv">', "<h2>Predicted customer lifetime value</h2>"]
    if fit is not None:
        p = fit.predictions
        total = float(np.nansum(p.clv))
        risk_html, at_risk = _at_risk(fit, currency)
        parts.append(
            f"<p>{len(fit.summary):,} customers of {escape(store)}; {fit.model_name} + Gamma-Gamma "
            f"fitted on orders through {escape(str(fit.summary.calibration_end))}. "
            f"Predicted CLV over {p.months} months (margin {margin:.0%}): "
            f"<strong>{_money(total, currency)}</strong>; "
            f"expected purchases in the next {fit.horizon_days} days: "
            f"<strong>{float(p.expected_purchases.sum()):,.0f}</strong>; "
            f"CLV at risk: <strong>{_money(at_risk, currency)}</strong>.</p>"
        )
        parts += [_distribution(fit, currency), _heatmap(fit), _top_customers(fit, currency),
                  risk_html]  # fmt: skip
    if backtest is not None:
        parts.append(_backtest_html(backtest))
    for note in notes or []:
        parts.append(f'<p class="note">{escape(note)}</p>')
    parts.append("</section>")
    return "\n".join(parts)
