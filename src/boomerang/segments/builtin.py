"""Built-in segments (SPEC §3): the retention priorities every store starts from.

Each is an ordinary rule in the text syntax, so `segments show` prints it and a store can
replace one by creating a segment of the same name. The thresholds are the defaults
documented in docs/segments.md#built-in-segments.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from boomerang.segments.fields import RFM_SEGMENTS
from boomerang.segments.model import Definition, parse_definition

#: name, title, rule (text syntax), description
BUILTINS: tuple[tuple[str, str, str, str], ...] = (
    ("first-time-buyers", "First-time buyers", "orders.count = 1",
     "Exactly one order so far: the group a second order matters most for."),
    ("repeat-buyers", "Repeat buyers", "orders.count >= 2", "Two or more orders."),
    ("most-frequent-buyers", "Most frequent buyers", "orders.count top 10%",
     "The top 10% of buyers by number of orders (ties at the cut left out)."),
    ("high-spenders", "High spenders", "orders.revenue top 10%",
     "The top 10% of buyers by lifetime revenue net of refunds."),
    ("new-customers", "New customers", "orders.days_since_first <= 30",
     "First order in the last 30 days."),
    ("at-risk", "At risk", (
        "consent.any and orders.days_since_last <= 365 and "
        "((orders.count >= 2 and orders.overdue_ratio >= 1.5) or predictions.p_alive < 0.5)"),
     "Still reachable and not yet gone, but overdue: 1.5x later than their own usual gap "
     "between orders, or a predicted P(alive) under 0.5 (after `boomerang clv fit`)."),
    ("lapsed", "Lapsed", "orders.days_since_last between 181 and 365",
     "No order for more than 180 days (up to a year)."),
    ("churned", "Churned / lost", "orders.days_since_last > 365",
     "No order for more than a year."),
    ("subscribers-never-bought", "Subscribers who never bought",
     "consent.any and orders.count = 0",
     "Marketing consent on some channel, no order yet."),
    ("guests", "Guests without an account", 'customer.account_status = "guest"',
     "Ordered (or signed up) without creating an account."),
    ("no-visit-30d", "No visit in 30 days", 'events.days_since_last(type="visit") > 30',
     "Visited the site before, but not in the last 30 days."),
    ("email-engaged", "Opened an email in 90 days", 'events.count(type="email_opened")[90d] >= 1',
     "Opened at least one email in the last 90 days."),
)  # fmt: skip


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower().replace("'", "")).strip("-")[:80] or "x"


def rfm_definitions() -> list[Definition]:
    out = []
    for name in RFM_SEGMENTS:
        d = parse_definition(
            {
                "name": f"rfm-{slug(name)}",
                "title": f"RFM: {name}",
                "description": f"Named RFM segment {name!r} (docs/segments.md#rfm).",
                "where": f"rfm.segment = {_quote(name)}",
            }
        )
        out.append(_kind(d, "rfm"))
    return out


def affinity_definitions(categories: Iterable[str]) -> list[Definition]:
    """One "psychographic" segment per category: it leads the customer's views and purchases."""
    out = []
    for category in sorted(set(categories)):
        q = _quote(category)
        d = parse_definition(
            {
                "name": f"affinity-{slug(category)}",
                "title": f"Affinity: {category}",
                "description": (
                    f"{category} is the category this customer views and buys most in the "
                    "last 180 days, at least 40% of it, with 3+ views or a purchase there."
                ),
                "where": (
                    f"affinity.top_category[180d] = {q} and "
                    f"affinity.share(category={q})[180d] >= 0.4 and "
                    f'(events.count(type="product_viewed", category={q})[180d] >= 3 '
                    f"or orders.count(category={q})[180d] >= 1)"
                ),
            }
        )
        out.append(_kind(d, "builtin"))
    return out


def builtin_definitions(categories: Iterable[str] = ()) -> list[Definition]:
    """Every built-in segment for a store with these product categories."""
    out = [
        _kind(
            parse_definition({"name": n, "title": t, "where": rule, "description": desc}), "builtin"
        )
        for n, t, rule, desc in BUILTINS
    ]
    return out + rfm_definitions() + affinity_definitions(categories)


def _quote(text: str) -> str:
    return json.dumps(text)


def _kind(definition: Definition, kind: str) -> Definition:
    from dataclasses import replace

    return replace(definition, kind=kind)
