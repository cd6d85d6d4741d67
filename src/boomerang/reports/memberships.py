"""The report's paid-memberships section: members per plan, membership revenue per month,
and retention of members vs non-members (docs/memberships.md#report).

Takes plain rows (computed by `services.memberships.membership_report`) so the report layer
needs nothing from the loyalty capability. Amounts arrive in minor units with the currency's
exponent and are formatted exactly (Decimal), never through floats.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

__all__ = ["render_membership_section"]

_env = Environment(
    loader=PackageLoader("boomerang.reports", "templates"),
    autoescape=select_autoescape(["html", "j2"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _money(minor: int, exponent: int) -> str:
    return f"{Decimal(minor).scaleb(-exponent):,.{exponent}f}"


def _rate(rate: float | None) -> str:
    return "–" if rate is None else f"{rate:.1%}"


def render_membership_section(
    *,
    as_of: str,
    currency: str,
    exponent: int,
    plans: list[dict[str, Any]],
    revenue: list[dict[str, Any]],
    retention: dict[str, dict[str, Any]],
    window: tuple[str, str],
    horizon_days: int,
) -> str:
    """HTML fragment. ``plans`` rows: key, name, interval, fee_minor, offered (the plan is
    still open to new members) and member counts trial, active, past_due, cancelled, expired, live; ``revenue`` rows: month
    (YYYY-MM), payments, amount_minor; ``retention``: members / non_members with
    customers, retained, rate (None without customers)."""
    plan_rows = [
        {
            "key": p["key"], "name": p["name"], "interval": p["interval"],
            "fee": _money(int(p["fee_minor"]), exponent), "offered": bool(p["offered"]),
            "live": int(p["live"]), "trial": int(p["trial"]), "active": int(p["active"]),
            "past_due": int(p["past_due"]), "cancelled": int(p["cancelled"]),
            "expired": int(p["expired"]),
        }
        for p in plans
    ]  # fmt: skip
    revenue_rows = [
        {"month": r["month"], "payments": int(r["payments"]),
         "amount": _money(int(r["amount_minor"]), exponent)}
        for r in revenue
    ]  # fmt: skip
    groups = [
        (label, {**g, "rate": _rate(g["rate"])})
        for label, g in (
            ("members", retention["members"]),
            ("non-members", retention["non_members"]),
        )
    ]
    return _env.get_template("membership_section.html.j2").render(
        as_of=as_of,
        currency=currency,
        plans=plan_rows,
        revenue=revenue_rows,
        total=_money(sum(int(r["amount_minor"]) for r in revenue), exponent),
        total_payments=sum(int(r["payments"]) for r in revenue),
        retention=groups,
        window=window,
        horizon_days=horizon_days,
    )
