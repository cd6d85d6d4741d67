"""What message templates show about a batch of customers, read with a few IN-list queries
per batch (ids chunked at 900: SQLite's bound-parameter limit was 999 before 3.32).

Each function takes the caller's connection and a list of customer ids and returns a dict
keyed by customer id; customers without a row (no order, no account...) are absent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, and_, func, select

from boomerang.store.schema import (
    customers,
    loyalty_accounts,
    loyalty_lots,
    loyalty_members,
    membership_plans,
    memberships,
    order_lines,
    orders,
    products,
    referral_codes,
)

CHUNK = 900


def chunks(ids: Sequence[int], size: int | None = None) -> Iterable[list[int]]:
    """The distinct ids, sorted, in IN-lists of at most ``size`` (default `CHUNK`)."""
    step = size or CHUNK
    unique = sorted({int(i) for i in ids})
    for i in range(0, len(unique), step):
        yield unique[i : i + step]


def _json(raw: str | None, default: Any) -> Any:
    if not raw:
        return default
    try:
        return json.loads(raw)
    except ValueError:
        return default


def customers_by_id(
    conn: Connection, store_id: int, ids: Sequence[int]
) -> dict[int, dict[str, Any]]:
    """The customer rows (profile fields; tags and attributes decoded from JSON)."""
    c = customers.c
    out: dict[int, dict[str, Any]] = {}
    for chunk in chunks(ids):
        query = select(
            c.id, c.email, c.phone, c.first_name, c.last_name, c.city, c.region, c.country,
            c.timezone, c.tags, c.attributes, c.account_status,
        ).where(c.store_id == store_id, c.id.in_(chunk))  # fmt: skip
        for row in conn.execute(query).mappings():
            found = dict(row)
            found["tags"] = _json(found["tags"], [])
            found["attributes"] = _json(found["attributes"], {})
            out[int(row["id"])] = found
    return out


def last_orders(conn: Connection, store_id: int, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Each customer's latest order that was not cancelled (latest placed_at, then id), its
    lines (with the product's attributes, for links) and how many such orders they have."""
    o = orders.c
    out: dict[int, dict[str, Any]] = {}
    for chunk in chunks(ids):
        ranked = (
            select(
                o.id, o.customer_id, o.external_id, o.placed_at, o.currency, o.status,
                o.subtotal_minor, o.discount_minor, o.shipping_minor, o.tax_minor,
                o.total_minor, o.refunded_minor,
                func.row_number()
                .over(partition_by=o.customer_id, order_by=(o.placed_at.desc(), o.id.desc()))
                .label("rn"),
                func.count().over(partition_by=o.customer_id).label("orders_count"),
            )
            .where(o.store_id == store_id, o.customer_id.in_(chunk), o.status != "cancelled")
            .subquery()
        )  # fmt: skip
        lines = order_lines.c
        query = (
            select(
                ranked, lines.line_no, lines.sku, lines.name.label("line_name"),
                lines.category, lines.quantity, lines.unit_price_minor,
                lines.discount_minor.label("line_discount_minor"),
                products.c.name.label("product_name"), products.c.attributes.label("product_attributes"),
            )
            .select_from(
                ranked.outerjoin(order_lines, lines.order_id == ranked.c.id).outerjoin(
                    products,
                    and_(products.c.store_id == store_id, products.c.sku == lines.sku),
                )
            )
            .where(ranked.c.rn == 1)
            .order_by(ranked.c.customer_id, lines.line_no)
        )  # fmt: skip
        for row in conn.execute(query).mappings():
            cid = int(row["customer_id"])
            order = out.get(cid)
            if order is None:
                order = {
                    k: row[k]
                    for k in (
                        "id", "external_id", "placed_at", "currency", "status", "subtotal_minor",
                        "discount_minor", "shipping_minor", "tax_minor", "total_minor",
                        "refunded_minor", "orders_count",
                    )
                }  # fmt: skip
                order["lines"] = []
                out[cid] = order
            if row["line_no"] is not None:
                order["lines"].append(
                    {
                        "sku": row["sku"],
                        "name": row["line_name"] or row["product_name"] or row["sku"] or "",
                        "category": row["category"],
                        "quantity": int(row["quantity"]),
                        "unit_price_minor": int(row["unit_price_minor"]),
                        "discount_minor": int(row["line_discount_minor"]),
                        "attributes": _json(row["product_attributes"], {}),
                    }
                )
    return out


def loyalty_balances(
    conn: Connection, store_id: int, ids: Sequence[int], credit_unit: str
) -> dict[int, dict[str, int]]:
    """Per customer: balances of their points, pending and store-credit (in
    ``credit_unit``) accounts, by account kind."""
    a = loyalty_accounts.c
    out: dict[int, dict[str, int]] = {}
    for chunk in chunks(ids):
        query = select(a.customer_id, a.kind, a.unit, a.balance).where(
            a.store_id == store_id, a.customer_id.in_(chunk), a.kind.in_(("points", "pending", "credit"))
        )  # fmt: skip
        for row in conn.execute(query).mappings():
            if row["kind"] == "credit" and row["unit"] != credit_unit:
                continue
            out.setdefault(int(row["customer_id"]), {})[str(row["kind"])] = int(row["balance"])
    return out


def tiers(conn: Connection, store_id: int, ids: Sequence[int]) -> dict[int, str | None]:
    m = loyalty_members.c
    out: dict[int, str | None] = {}
    for chunk in chunks(ids):
        query = select(m.customer_id, m.tier).where(
            m.store_id == store_id, m.customer_id.in_(chunk)
        )
        for row in conn.execute(query).mappings():
            out[int(row["customer_id"])] = row["tier"]
    return out


def next_expiring_points(
    conn: Connection, store_id: int, ids: Sequence[int], after: int
) -> dict[int, tuple[int, int]]:
    """Per customer: (points, when) of the soonest points lots to expire after ``after``."""
    a, lot = loyalty_accounts.c, loyalty_lots.c
    out: dict[int, tuple[int, int]] = {}
    for chunk in chunks(ids):
        query = (
            select(a.customer_id, lot.expires_at, func.sum(lot.remaining).label("points"))
            .select_from(loyalty_lots.join(loyalty_accounts, a.id == lot.account_id))
            .where(
                a.store_id == store_id, a.customer_id.in_(chunk), a.kind == "points",
                lot.remaining > 0, lot.expires_at.is_not(None), lot.expires_at > after,
            )
            .group_by(a.customer_id, lot.expires_at)
        )  # fmt: skip
        for row in conn.execute(query).mappings():
            cid, at = int(row["customer_id"]), int(row["expires_at"])
            if cid not in out or at < out[cid][1]:
                out[cid] = (int(row["points"]), at)
    return out


def referral_codes_of(conn: Connection, store_id: int, ids: Sequence[int]) -> dict[int, str]:
    r = referral_codes.c
    out: dict[int, str] = {}
    for chunk in chunks(ids):
        query = select(r.customer_id, r.code).where(
            r.store_id == store_id, r.customer_id.in_(chunk)
        )
        for row in conn.execute(query).mappings():
            out[int(row["customer_id"])] = str(row["code"])
    return out


def latest_memberships(
    conn: Connection, store_id: int, ids: Sequence[int]
) -> dict[int, dict[str, Any]]:
    """Each customer's most recent membership (any status) with its plan's key and name."""
    m, p = memberships.c, membership_plans.c
    out: dict[int, dict[str, Any]] = {}
    for chunk in chunks(ids):
        query = (
            select(
                m.id, m.customer_id, m.status, m.started_at, m.trial_ends_at, m.period_start,
                m.period_end, m.cancel_at_period_end, m.ended_at,
                p.key.label("plan_key"), p.name.label("plan_name"), p.currency.label("plan_currency"),
            )
            .select_from(memberships.join(membership_plans, p.id == m.plan_id))
            .where(m.store_id == store_id, m.customer_id.in_(chunk))
            .order_by(m.customer_id, m.id)
        )  # fmt: skip
        for row in conn.execute(query).mappings():
            out[int(row["customer_id"])] = dict(row)  # the last (highest id) wins
    return out
