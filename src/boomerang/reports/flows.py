"""The report's flows section: per flow tracking, attributed revenue and incremental
revenue against the holdout (with its interval), and the A/B/n experiments
(docs/attribution.md).

Takes plain dicts (``dataclasses.asdict`` of `services.campaign_stats` results) so the
report layer needs nothing from the campaigns capability. Totals in minor units are
formatted exactly (Decimal); means and intervals arrive as floats (analytics convention)
and are rounded to the currency's minor unit for display.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

__all__ = ["render_flow_section"]

_env = Environment(
    loader=PackageLoader("boomerang.reports", "templates"),
    autoescape=select_autoescape(["html", "j2"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def money(minor: float | int | None, exponent: int, *, signed: bool = False) -> str:
    """Minor units as a decimal amount (floats rounded half-even to the minor unit)."""
    if minor is None:
        return "–"
    value = Decimal(minor) if isinstance(minor, int) else Decimal(repr(float(minor)))
    value = value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN).scaleb(-exponent)
    text = f"{value:,.{exponent}f}"
    return f"+{text}" if signed and value > 0 else text


def pct(rate: float | None, *, signed: bool = False, digits: int = 1) -> str:
    if rate is None:
        return "–"
    return f"{rate:+.{digits}%}" if signed else f"{rate:.{digits}%}"


def points(diff: float | None, digits: int = 1) -> str:
    """A difference of two rates in percentage points."""
    return "–" if diff is None else f"{diff * 100:+.{digits}f} pts"


def p_value(p: float | None) -> str:
    if p is None:
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _flow_row(f: dict[str, Any], exponent: int) -> dict[str, Any]:
    inc = f["incrementality"]
    sends = int(f["sends"])
    row: dict[str, Any] = {
        "name": f["name"], "status": f["status"], "entrants": int(f["entrants"]),
        "holdout_entrants": int(f["holdout_entrants"]), "holdout_share": pct(f["holdout_share"], digits=0),
        "sends": sends, "not_sent": int(f["not_sent"]),
        "open_rate": pct(f["opens"] / sends if sends else None),
        "click_rate": pct(f["clicks"] / sends if sends else None),
        "unsubscribes": int(f["unsubscribes"]), "conversions": int(f["conversions"]),
        "attributed": money(int(f["attributed_revenue_minor"]), exponent),
        "horizon_days": f"{float(f['horizon_days']):g}", "measured": int(f["measured_entrants"]),
        "warnings": list(f["warnings"]), "measured_ok": inc is not None,
        "steps": [
            {**s, "attributed": money(int(s["attributed_revenue_minor"]), exponent),
             "open_rate": pct(s["opens"] / s["sends"] if s["sends"] else None),
             "click_rate": pct(s["clicks"] / s["sends"] if s["sends"] else None)}
            for s in f["steps"]
        ],
    }  # fmt: skip
    if inc is not None:
        low, high = inc["incremental_low_minor"], inc["incremental_high_minor"]
        row.update(
            incremental=money(inc["incremental_minor"], exponent, signed=True),
            interval=None if low is None else (money(low, exponent), money(high, exponent)),
            significant=low is not None and (low > 0 or high < 0),
            lift=pct(None if inc["lift_pct"] is None else inc["lift_pct"] / 100, signed=True),
            per_entrant=money(inc["mean_treated_minor"] - inc["mean_holdout_minor"], exponent,
                              signed=True),
            conv_treated=pct(inc["conversion_treated"]),
            conv_holdout=pct(inc["conversion_holdout"]),
            conv_diff=points(inc["conversion_diff"]),
            conv_p=p_value(inc["conversion_p_value"]),
            p=p_value(inc["p_value"]),
            treated=int(inc["treated"]), holdout=int(inc["holdout"]),
        )  # fmt: skip
    return row


def _experiment_rows(e: dict[str, Any], exponent: int) -> dict[str, Any]:
    result = e["result"]
    versus = {c["variant"]: c for c in result["comparisons"]}
    variants = []
    for v in result["variants"]:
        c = versus.get(v["name"])
        row = {
            "name": v["name"], "control": v["name"] == e["control"],
            "recipients": int(v["recipients"]), "conversions": int(v["conversions"]),
            "rate": pct(v["conversion_rate"]),
            "rpr": money(v["revenue_per_recipient_minor"], exponent),
            "revenue": money(int(v["revenue_minor"]), exponent),
        }  # fmt: skip
        if c is not None:
            low, high = c["revenue_per_recipient_low_minor"], c["revenue_per_recipient_high_minor"]
            row.update(
                conv_diff=points(c["conversion_diff"], digits=2),
                conv_p=p_value(c["conversion_p_value"]),
                rpr_diff=money(c["revenue_per_recipient_diff_minor"], exponent, signed=True),
                rpr_interval=None if low is None else (money(low, exponent), money(high, exponent)),
                rpr_p=p_value(c["revenue_p_value"]),
                significant=bool(c["significant"]),
            )  # fmt: skip
        variants.append(row)
    return {
        "flow": e["flow"], "step": e["step_id"], "control": e["control"],
        "start_days": f"{float(e['start_days']):g}",
        "end_days": f"{float(e['start_days']) + float(e['length_days']):g}",
        "variants": variants, "warnings": list(result["warnings"]),
        "holdout_excluded": int(e["holdout_excluded"]), "not_measured": int(e["not_measured"]),
    }  # fmt: skip


def render_flow_section(
    *,
    as_of: str,
    currency: str,
    exponent: int,
    window_days: int,
    flows: list[dict[str, Any]],
    experiments: list[dict[str, Any]],
) -> str:
    """HTML fragment ``<section id="flows">``. ``flows``: ``asdict(FlowStats)`` rows;
    ``experiments``: ``asdict(ExperimentStats)`` rows."""
    return _env.get_template("flows_section.html.j2").render(
        as_of=as_of,
        currency=currency,
        window_days=window_days,
        flows=[_flow_row(f, exponent) for f in flows],
        experiments=[_experiment_rows(e, exponent) for e in experiments],
    )
