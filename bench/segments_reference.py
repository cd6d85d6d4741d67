"""The 30 benchmark segments of bench/segments_bench.py, hand-written in plain pandas.

The baseline a data analyst would write: one vectorised groupby/merge per fact, then each
segment as a boolean expression over per-customer Series (no per-customer Python loop).
It does not read the segment definitions; every rule is spelled out again below, following
the semantics documented in `boomerang.segments.bulk`, `.single` and `.rfm`:

- customers created at or after ``as_of`` are not evaluated (no row at all);
- orders: identified, not cancelled, placed before ``as_of``, in the store currency;
  *purchases* are those with ``total_minor >= 0`` (count, first/last times, lines), revenue
  is ``total - refunded`` over every such order (returns included);
- whole days are ``floor((later - earlier) / day)``; windows keep ``at >= as_of - window``;
- consent per channel is the latest record before ``as_of`` by ``(occurred_at, id)``;
- top x% keeps values >= the smallest cut with at most x% of the positive values at or
  above it; RFM scores among buyers: F and M = 1 + floor(5 x buyers strictly below / buyers)
  (ties share the lower score), R = 5 - floor(5 x buyers strictly more recent / buyers)
  (ties share the higher score);
- affinity counts product views (with a category) plus purchased lines in the window, the
  top category breaking ties alphabetically;
- a missing value never satisfies a test (so ``not`` of it holds).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from boomerang.segments.data import prop_column

DAY = 86_400_000_000
CATEGORY = prop_column("category")

# RFM named segment by recency score (row) and FM = round-half-up((F + M) / 2) (column).
GRID = {
    5: ("New", "Potential Loyalists", "Potential Loyalists", "Champions", "Champions"),
    4: ("Promising", "Potential Loyalists", "Potential Loyalists", "Loyal", "Champions"),
    3: ("About to Sleep", "About to Sleep", "Need Attention", "Loyal", "Loyal"),
    2: ("Hibernating", "Hibernating", "At Risk", "At Risk", "Can't Lose Them"),
    1: ("Lost", "Lost", "Hibernating", "At Risk", "Can't Lose Them"),
}
RFM_NAMES = {
    "rfm-champions": "Champions",
    "rfm-loyal": "Loyal",
    "rfm-potential-loyalists": "Potential Loyalists",
    "rfm-new": "New",
    "rfm-promising": "Promising",
    "rfm-need-attention": "Need Attention",
    "rfm-about-to-sleep": "About to Sleep",
    "rfm-at-risk": "At Risk",
    "rfm-cant-lose-them": "Can't Lose Them",
    "rfm-hibernating": "Hibernating",
    "rfm-lost": "Lost",
}


def _days(later: pd.Series | int, earlier: pd.Series | int) -> pd.Series:
    quotient = (later - earlier) / DAY
    assert isinstance(quotient, pd.Series)
    return pd.Series(np.floor(quotient), index=quotient.index)


def _top(values: pd.Series, pct: float) -> pd.Series:
    """``values top pct%``: at or above the smallest cut that at most pct% of the positive
    values reach (ties at the cut are left out)."""
    positive = values[values > 0]
    counts = positive.value_counts().sort_index()
    at_or_above = counts[::-1].cumsum()[::-1].to_numpy()
    cuts = counts.index[at_or_above * 100 <= pct * len(positive)]
    if len(cuts) == 0:
        return pd.Series(False, index=values.index)
    members: pd.Series = (values > 0) & (values >= cuts[0])
    return members


def _score_up(values: pd.Series) -> pd.Series:
    """F and M: 1 + floor(5 b / n), b = buyers with a strictly smaller value."""
    below = values.rank(method="min") - 1
    return (1 + (5 * below) // len(values)).astype("int64")


def _score_recency(days: pd.Series) -> pd.Series:
    """R: 5 - floor(5 a / n), a = buyers whose latest order is strictly more recent."""
    more_recent = days.rank(method="min") - 1
    return (5 - (5 * more_recent) // len(days)).astype("int64")


def refresh(
    customers: pd.DataFrame,
    orders: pd.DataFrame,
    lines: pd.DataFrame,
    events: pd.DataFrame,
    consents: pd.DataFrame,
    predictions: pd.DataFrame,
    as_of: int,
    currency: str,
) -> pd.DataFrame:
    """One row per evaluated customer (index: id), one boolean column per segment."""
    created = customers["created_at"]
    base = customers[created.isna() | (created < as_of)].set_index("id").sort_index()
    ids = base.index

    def per_customer(values: pd.Series, fill: float | None = None) -> pd.Series:
        out = values.reindex(ids)
        return out if fill is None else out.fillna(fill)

    # -- orders (and their lines) -------------------------------------------------------------
    o = orders[
        orders["customer_id"].notna()
        & (orders["status"] != "cancelled")
        & (orders["placed_at"] < as_of)
        & (orders["currency"] == currency)
    ]
    o = pd.DataFrame(
        {
            "id": o["id"],
            "customer_id": o["customer_id"].astype("int64"),
            "placed_at": o["placed_at"],
            "net": o["total_minor"] - o["refunded_minor"],
            "purchase": o["total_minor"] >= 0,
        }
    )
    buys = o[o["purchase"]]
    times = buys.groupby("customer_id")["placed_at"].agg(["size", "min", "max"])
    count = per_customer(times["size"], 0)
    first, last = per_customer(times["min"]), per_customer(times["max"])
    revenue = per_customer(o.groupby("customer_id")["net"].sum(), 0)
    year = o[o["placed_at"] >= as_of - 365 * DAY]
    count_365 = per_customer(year[year["purchase"]].groupby("customer_id").size(), 0)
    revenue_365 = per_customer(year.groupby("customer_id")["net"].sum(), 0)
    aov_365 = (revenue_365 / count_365).where(count_365 > 0)
    since_first, since_last = _days(as_of, first), _days(as_of, last)
    gap = ((last - first) / ((count - 1) * DAY)).where(count >= 2)
    overdue = (since_last / gap).where(gap > 0)

    li = lines.merge(buys[["id", "customer_id", "placed_at"]], left_on="order_id", right_on="id")
    li["value"] = li["quantity"] * li["unit_price_minor"] - li["discount_minor"]
    coffee_60 = li[(li["category"] == "Coffee") & (li["placed_at"] >= as_of - 60 * DAY)]
    coffee_orders_60 = per_customer(coffee_60.groupby("customer_id")["order_id"].nunique(), 0)
    wear = li[
        li["category"].isin(["Apparel", "Accessories"]) & (li["placed_at"] >= as_of - 365 * DAY)
    ]
    wear_revenue_365 = per_customer(wear.groupby("customer_id")["value"].sum(), 0)
    apparel_last = li[li["category"] == "Apparel"].groupby("customer_id")["placed_at"].max()
    since_apparel = _days(as_of, per_customer(apparel_last))

    # -- events -------------------------------------------------------------------------------
    e = events[events["customer_id"].notna() & (events["occurred_at"] < as_of)]
    e = e.assign(customer_id=e["customer_id"].astype("int64"))
    kind, at = e["type"], e["occurred_at"]
    visits = e[kind == "visit"]
    since_visit = _days(as_of, per_customer(visits.groupby("customer_id")["occurred_at"].max()))
    visits_30 = per_customer(
        visits[visits["occurred_at"] >= as_of - 30 * DAY].groupby("customer_id").size(), 0
    )
    opens_90 = per_customer(
        e[(kind == "email_opened") & (at >= as_of - 90 * DAY)].groupby("customer_id").size(), 0
    )
    coffee_views = e[
        (kind == "product_viewed") & (e[CATEGORY] == "Coffee") & (at >= as_of - 30 * DAY)
    ]
    coffee_views_30 = per_customer(coffee_views.groupby("customer_id").size(), 0)

    # -- affinity over 180 days: views with a category + purchased lines ----------------------
    views = e[(kind == "product_viewed") & e[CATEGORY].notna() & (at >= as_of - 180 * DAY)]
    bought = li[li["category"].notna() & (li["placed_at"] >= as_of - 180 * DAY)]
    both = pd.concat(
        [
            views[["customer_id", CATEGORY]].rename(columns={CATEGORY: "category"}),
            bought[["customer_id", "category"]],
        ]
    )
    n = both.groupby(["customer_id", "category"]).size().rename("n").reset_index()
    n = n.sort_values(["customer_id", "n", "category"], ascending=[True, False, True])
    top_category = per_customer(
        n.drop_duplicates("customer_id").set_index("customer_id")["category"]
    )
    total = n.groupby("customer_id")["n"].sum()
    coffee_n = n[n["category"] == "Coffee"].set_index("customer_id")["n"]
    coffee_share = per_customer(coffee_n.reindex(total.index, fill_value=0) / total)

    # -- consent: the latest record per channel by (occurred_at, id) --------------------------
    k = consents[consents["customer_id"].notna() & (consents["occurred_at"] < as_of)]
    latest = k.sort_values(["customer_id", "channel", "occurred_at", "id"]).drop_duplicates(
        ["customer_id", "channel"], keep="last"
    )
    granted = latest[latest["status"] == "granted"]

    def consent(channel: str | None) -> pd.Series:
        rows = granted if channel is None else granted[granted["channel"] == channel]
        return pd.Series(ids.isin(rows["customer_id"].astype("int64")), index=ids)

    consent_any, consent_email = consent(None), consent("email")
    consent_sms, consent_push = consent("sms"), consent("push")

    # -- predictions and customer attributes --------------------------------------------------
    p = predictions.set_index("customer_id").reindex(ids)
    clv, p_alive = p["clv_minor"], p["p_alive"]
    days_to_next = _days(p["next_order_at"], as_of)
    tags = base["tags"].explode()
    newsletter = per_customer((tags == "newsletter").groupby(level=0).any(), False).astype(bool)
    since_created = _days(as_of, base["created_at"])
    country = base["country"]

    # -- RFM among buyers ---------------------------------------------------------------------
    buyers = count > 0
    r = _score_recency(since_last[buyers])
    f, m = _score_up(count[buyers]), _score_up(revenue[buyers])
    grid = np.empty((6, 6), dtype=object)
    for score_r, row in GRID.items():
        grid[score_r, 1:] = row
    rfm_name = per_customer(
        pd.Series(grid[r.to_numpy(), ((f + m + 1) // 2).to_numpy()], index=r.index)
    )

    # -- the segments -------------------------------------------------------------------------
    s: dict[str, pd.Series] = {}
    s["first-time-buyers"] = count == 1
    s["repeat-buyers"] = count >= 2
    s["most-frequent-buyers"] = _top(count, 10)
    s["high-spenders"] = _top(revenue, 10)
    s["new-customers"] = since_first <= 30
    s["at-risk"] = (
        consent_any & (since_last <= 365) & (((count >= 2) & (overdue >= 1.5)) | (p_alive < 0.5))
    )
    s["lapsed"] = since_last.between(181, 365)
    s["churned"] = since_last > 365
    s["subscribers-never-bought"] = consent_any & (count == 0)
    s["guests"] = base["account_status"] == "guest"
    s["no-visit-30d"] = since_visit > 30
    s["email-engaged"] = opens_90 >= 1
    for name, label in RFM_NAMES.items():
        s[name] = rfm_name == label
    s["coffee-browsers"] = (coffee_views_30 >= 2) & ~(coffee_orders_60 >= 1)
    s["apparel-spenders"] = (wear_revenue_365 >= 100 * 100) & (since_apparel <= 120)
    s["big-baskets-europe"] = (
        (aov_365 >= 120 * 100)
        & country.isin(["DE", "FR", "GB"])
        & (first < pd.Timestamp("2026-01-01", tz="UTC").value // 1000)
    )
    s["sms-or-push-only"] = (consent_sms | consent_push | newsletter) & ~consent_email
    s["valuable-slipping"] = (
        _top(clv, 20)
        & p_alive.between(0.2, 0.8)
        & ((p["risk_band"] == "high") | (days_to_next < -30))
        & (p["expected_purchases"] >= 0.5)
    )
    s["vip-winback"] = s["high-spenders"] & ~(
        (since_last <= 60) | ((visits_30 >= 1) & ~consent_email)
    )
    s["coffee-lovers-north-america"] = (
        country.isin(["US", "CA"])
        & (top_category == "Coffee")
        & (coffee_share >= 0.5)
        & (since_created >= 90)
    )
    return pd.DataFrame({name: flags.fillna(False).astype(bool) for name, flags in s.items()})
