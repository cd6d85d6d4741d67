"""The personalisation context and the rendered message, on SQLite and PostgreSQL.

A hand-made store (NOW = 2027-06-01 12:00 UTC; amounts in cents):

    Anna Lee (Asia/Tokyo)  1001  2027-03-01  Mug (A) $12.00
                           1002  2027-05-20 23:30 UTC (May 21 in Tokyo)  Tea (B) x2 $8.00,
                                 Kettle (C) $45.00: subtotal $61.00, free shipping, total $61.00
                           1003  2027-05-25  Spoon (F), cancelled: never her "last order"
    Ben (no first name)    3001  2027-04-01  Spoon (F)
    Cara                   2001  2027-05-01  Tea (B), Honey (E)
    Dan                    2002  2027-05-02  Kettle (C), Honey (E);  2003  2027-05-03  Spoon (F) x5

Loyalty: Anna earned 250 points (expire 2027-12-31) and 50 (expire 2027-07-01): 300 points,
tier Gold (>= 200 points earned; perk "free shipping"), next expiry 50 points on July 1; store
credit $5.00. Her run context holds an amount-off coupon ($10.00 off, expires 2027-06-15
20:00 UTC = June 16 in Tokyo).

Recommendations for Anna (bought A, B, C; the cancelled F does not count): co-purchase
scores E = C[B,E] (Cara) + C[C,E] (Dan) = 2, F = C[C,F] (Dan) = 1 -> Honey, Spoon. For Ben
(bought F): C = 1 and E = 1 (both via Dan), tie broken by popularity over 90 days (C 2 units
= E 2 units, then units ever 2 = 2, then SKU: C), then the most popular others: B (3 units),
A (0 recent, 1 ever) -> Kettle, Honey, Tea, Mug.

Membership: Anna joined Plus (annual) on 2027-04-01 ($99.00 paid). Her 2027 member orders:
1002 (shipping $0 -> saved the plan's $5.99; 5% of the $61.00 subtotal = $3.05): $9.04 saved.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from sqlalchemy import Engine, event, text

from boomerang.campaigns.templates import Links
from boomerang.domain.clock import to_micros
from boomerang.ingest.batch import conform
from boomerang.recommend.copurchase import fit_copurchase
from boomerang.services import loyalty as loyalty_service
from boomerang.services import memberships as membership_service
from boomerang.services.campaign_context import build_contexts
from boomerang.services.campaign_render import (
    RenderRequest,
    preview,
    render_message,
    render_messages,
)
from boomerang.services.context import open_engine
from boomerang.services.imports import apply_frames
from boomerang.store.repos import campaign_context as context_repo
from boomerang.store.repos import stores as stores_repo

STORE = "teashop"
PLANS = Path(__file__).parents[2] / "examples" / "membership-plans.yaml"


def us(moment: str) -> int:
    """'2027-05-20' or '2027-05-20 23:30' (UTC) -> epoch micros."""
    fmt = "%Y-%m-%d %H:%M" if " " in moment else "%Y-%m-%d"
    return to_micros(datetime.strptime(moment, fmt).replace(tzinfo=UTC))


NOW = us("2027-06-01 12:00")
PRODUCTS = {
    "A": ("Mug", 1200),
    "B": ("Tea", 800),
    "C": ("Kettle", 4500),
    "E": ("Honey", 900),
    "F": ("Spoon", 300),
}
# ref, customer, placed, status, [(sku, quantity)], shipping
ORDERS = [
    ("1001", "anna@example.com", "2027-03-01", "paid", [("A", 1)], 0),
    ("1002", "anna@example.com", "2027-05-20 23:30", "paid", [("B", 2), ("C", 1)], 0),
    ("1003", "anna@example.com", "2027-05-25", "cancelled", [("F", 1)], 0),
    ("3001", "ben@example.com", "2027-04-01", "paid", [("F", 1)], 500),
    ("2001", "cara@example.com", "2027-05-01", "paid", [("B", 1), ("E", 1)], 500),
    ("2002", "dan@example.com", "2027-05-02", "paid", [("C", 1), ("E", 1)], 500),
    ("2003", "dan@example.com", "2027-05-03", "paid", [("F", 5)], 500),
]
PROGRAM = {
    "tiers": {
        "basis": "points",
        "levels": [
            {"name": "Silver", "threshold": 0},
            {"name": "Gold", "threshold": 200, "perks": ["free shipping"]},
        ],
    },
    "referrals": {
        "enabled": True,
        "referrer_reward": {"kind": "amount_off", "value": 2500},
        "friend_reward": {"kind": "amount_off", "value": 1500},
        "link_base": "https://teashop.example/r/",
    },
}


@dataclass
class Shop:
    db: str
    engine: Engine
    ids: dict[str, int]
    coupon_code: str
    run: dict[str, Any]


def build_shop(db: str, tmp_path: Path) -> Shop:
    people = [
        ("anna@example.com", "Anna", "Lee", "Asia/Tokyo"),
        ("ben@example.com", None, None, None),
        ("cara@example.com", "Cara", None, None),
        ("dan@example.com", "Dan", None, None),
    ]
    customers = pl.DataFrame(
        {
            "external_id": [p[0] for p in people],
            "email": [p[0] for p in people],
            "first_name": [p[1] for p in people],
            "last_name": [p[2] for p in people],
            "timezone": [p[3] for p in people],
            "country": ["US"] * 4,
            "account_status": ["registered"] * 4,
        },
        schema_overrides={"first_name": pl.String, "last_name": pl.String, "timezone": pl.String},
    )
    products = pl.DataFrame(
        {
            "sku": list(PRODUCTS),
            "name": [n for n, _ in PRODUCTS.values()],
            "category": ["Tea"] * len(PRODUCTS),
            "price_minor": [p for _, p in PRODUCTS.values()],
            "currency": ["USD"] * len(PRODUCTS),
        }
    )
    orders, lines = [], []
    for ref, who, placed, status, items, shipping in ORDERS:
        subtotal = sum(PRODUCTS[s][1] * q for s, q in items)
        orders.append(
            {"external_id": ref, "customer_key": who, "email": who, "placed_at": us(placed),
             "currency": "USD", "subtotal_minor": subtotal, "discount_minor": 0,
             "shipping_minor": shipping, "tax_minor": 0, "total_minor": subtotal + shipping,
             "refunded_minor": 0, "status": status, "cancelled_at": us(placed) if status == "cancelled" else None,
             "channel": "online", "source": "test", "lines_digest": ref}
        )  # fmt: skip
        for n, (sku, qty) in enumerate(items, start=1):
            lines.append(
                {"order_external_id": ref, "line_no": n, "sku": sku, "name": PRODUCTS[sku][0],
                 "category": "Tea", "quantity": qty, "unit_price_minor": PRODUCTS[sku][1],
                 "discount_minor": 0}
            )  # fmt: skip
    frames = {
        "customers": conform("customers", customers),
        "products": conform("products", products),
        "orders": conform("orders", pl.DataFrame(orders)),
        "lines": conform("lines", pl.DataFrame(lines)),
    }
    apply_frames(db, STORE, frames, currency="USD")
    program = tmp_path / "program.yaml"
    program.write_text(yaml.safe_dump(PROGRAM), encoding="utf-8")
    loyalty_service.set_program(db, STORE, program)
    membership_service.set_plans(db, STORE, PLANS, now=us("2027-03-01"))
    engine = open_engine(db)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE products SET attributes = :a WHERE sku = 'E'"),
            {
                "a": '{"url": "https://teashop.example/honey", "image": "https://cdn.example/honey.jpg"}'
            },
        )
        ids = {str(e): int(i) for i, e in conn.execute(text("SELECT id, email FROM customers"))}
    anna = ids["anna@example.com"]
    loyalty_service.earn(
        engine, STORE, anna, 250, key="a1", expires_at=us("2027-12-31"), now=us("2027-05-21")
    )
    loyalty_service.earn(
        engine, STORE, anna, 50, key="a2", expires_at=us("2027-07-01"), now=us("2027-05-22")
    )
    loyalty_service.evaluate_tier(engine, STORE, anna, now=us("2027-05-23"))
    loyalty_service.grant_credit(
        engine, STORE, anna, 500, key="c1", reason="goodwill", now=us("2027-05-23")
    )
    membership_service.subscribe(
        engine, STORE, anna, "plus-annual", key="join", now=us("2027-04-01")
    )
    coupon = loyalty_service.issue_coupon(
        engine, STORE, kind="amount_off", value=1000, customer_id=anna,
        expires_at=us("2027-06-15 20:00"), source="flow:test", now=NOW,
    )  # fmt: skip
    run = {
        "coupons": {
            "offer": {"code": coupon.code, "kind": "amount_off", "value": 1000,
                      "expires_at": coupon.expires_at},
        },
        "variants": {"s2": "b"},
        "trigger": {"event": "inactivity"},
    }  # fmt: skip
    return Shop(db, engine, ids, coupon.code, run)


@pytest.fixture
def shop(db: str, tmp_path: Path) -> Iterator[Shop]:
    made = build_shop(db, tmp_path)
    yield made
    made.engine.dispose()


def dashed(code: str) -> str:
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


def test_context_and_rendering(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """One store per engine (creating a PostgreSQL database costs more than the checks):
    the generic email for Anna, every context variable of Anna and Ben, the queries of a
    batch, the referral and membership emails, and a preview."""
    rendered_email(shop)
    context_values(shop)
    batch_queries(shop, monkeypatch)
    referral_membership_and_preview(shop)


def rendered_email(shop: Shop) -> None:
    """The generic email for Anna: name, last order items, points and tier, the coupon and
    its expiry (in her timezone), recommendations, footer links and the text part."""
    anna = shop.ids["anna@example.com"]
    links = Links(
        unsubscribe="https://teashop.example/u/tok", preferences="https://teashop.example/p/tok",
        open_pixel="https://teashop.example/o/tok.gif",
        track=lambda url: "https://teashop.example/c?u=" + url,
    )  # fmt: skip
    rendered = render_message(
        shop.engine, STORE, anna, "generic", "email", shop.run,
        templates_dir=None, links=links, now=NOW,
    )  # fmt: skip
    html, text = rendered.html, rendered.text
    code = dashed(shop.coupon_code)
    assert rendered.subject == "Anna, something for you from teashop"
    assert "<h1" in html and ">Hi Anna,</h1>" in html
    # the last order (not the cancelled one), its date in Anna's timezone
    assert "Order 1002, May 21, 2027" in html
    assert ">Tea × 2</td>" in html and ">$16.00</td>" in html  # 2 x $8.00
    assert ">Kettle</td>" in html and ">$45.00</td>" in html and "<strong>$61.00</strong>" in html
    assert "Spoon</td>" not in html
    # points and tier
    assert "<strong>300 points</strong>" in html and "<strong>Gold</strong> member" in html
    # the coupon from the run context, with its expiry in Anna's timezone
    assert f">{code}</span>" in html
    assert "Here is $10.00 off your next order" in html
    assert "Valid until June 16, 2027." in html
    # recommendations: Honey (with its page, click-tracked) then Spoon
    assert html.index(">Honey</a>") < html.index("Spoon</strong>")
    assert 'href="https://teashop.example/c?u=https://teashop.example/honey"' in html
    # footer links and pixel, not click-tracked
    assert 'href="https://teashop.example/u/tok"' in html
    assert '<img src="https://teashop.example/o/tok.gif"' in html
    # the plain-text part (generic.txt.j2)
    assert "Hi Anna," in text and f"Use this code at checkout: {code}" in text
    assert "Valid until June 16, 2027." in text
    assert "- Tea x 2: $16.00" in text and "- Kettle: $45.00" in text and "Total: $61.00" in text
    assert "You have 300 points and you are a Gold member." in text
    assert "- Honey: $9.00 https://teashop.example/c?u=https://teashop.example/honey" in text
    assert "Unsubscribe: https://teashop.example/u/tok" in text


def context_values(shop: Shop) -> None:
    anna, ben = shop.ids["anna@example.com"], shop.ids["ben@example.com"]
    found = build_contexts(
        shop.engine, STORE, [anna, ben, 999_999], runs={anna: shop.run}, now=NOW,
        create_referral_codes=False,
    )  # fmt: skip
    assert set(found) == {anna, ben}  # unknown ids are left out
    a, b = found[anna], found[ben]
    assert a["customer"] | {"attributes": {}, "tags": []} == {
        "id": anna, "first_name": "Anna", "last_name": "Lee", "full_name": "Anna Lee",
        "has_name": True, "email": "anna@example.com", "phone": None, "timezone": "Asia/Tokyo",
        "city": None, "country": "US", "orders_count": 2, "attributes": {}, "tags": [],
    }  # fmt: skip
    assert a["store"] == {"name": STORE, "currency": "USD", "timezone": "UTC", "url": ""}
    order = a["last_order"]
    assert (order["number"], order["total"], order["shipping"], order["status"]) == (
        "1002",
        6100,
        0,
        "paid",
    )
    assert order["date"] == datetime(2027, 5, 20, 23, 30, tzinfo=UTC)
    assert [
        (i["name"], i["sku"], i["quantity"], i["price"], i["total"]) for i in order["items"]
    ] == [
        ("Tea", "B", 2, 800, 1600),
        ("Kettle", "C", 1, 4500, 4500),
    ]
    balance = loyalty_service.balance(shop.engine, STORE, anna)
    assert a["loyalty"] == {
        "points": balance["balance"], "pending": balance["pending"],
        "credit": balance["store_credit_minor"], "tier": "Gold", "tier_perks": ["free shipping"],
        "next_expiry": {"points": 50, "at": datetime(2027, 7, 1, tzinfo=UTC)},
    }  # fmt: skip
    assert (a["loyalty"]["points"], a["loyalty"]["credit"]) == (300, 500)
    offer = a["coupons"]["offer"]
    assert offer == {
        "code": dashed(shop.coupon_code), "kind": "amount_off", "value": 1000,
        "expires_at": datetime(2027, 6, 15, 20, 0, tzinfo=UTC), "description": "$10.00 off",
    }  # fmt: skip
    assert a["run"]["variants"] == {"s2": "b"}
    assert a["membership"] == {
        "plan": "Plus (annual)", "plan_key": "plus-annual", "status": "active", "live": True,
        "renews_at": datetime(2028, 4, 1, tzinfo=UTC), "trial_ends_at": None, "ends_at": None,
        "currency": "USD", "savings_this_year": 904, "fees_this_year": 9900,
        "net_savings_this_year": 904 - 9900, "member_orders_this_year": 1,
    }  # fmt: skip
    assert [p["name"] for p in a["recommendations"]] == ["Honey", "Spoon"]
    assert a["recommendations"][0] == {
        "sku": "E", "name": "Honey", "price": 900, "currency": "USD", "category": "Tea",
        "url": "https://teashop.example/honey", "image": "https://cdn.example/honey.jpg",
    }  # fmt: skip
    assert a["referral"] is None  # no code yet, and we asked not to make one
    # Ben: nothing optional
    assert (b["customer"]["first_name"], b["customer"]["has_name"]) == ("there", False)
    assert b["customer"]["timezone"] == "UTC"  # the store's
    assert b["last_order"]["number"] == "3001"
    assert b["loyalty"] == {
        "points": 0,
        "pending": 0,
        "credit": 0,
        "tier": None,
        "tier_perks": [],
        "next_expiry": None,
    }
    assert (b["coupons"], b["membership"], b["referral"]) == ({}, None, None)
    assert [p["sku"] for p in b["recommendations"]] == ["C", "E", "B", "A"]


def batch_queries(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch costs the same few queries for one customer or for many."""
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    everyone = sorted(shop.ids.values())
    sections = ["customer", "store", "last_order", "loyalty", "coupons", "run", "now"]
    event.listen(shop.engine, "before_cursor_execute", count)
    try:
        build_contexts(shop.engine, STORE, everyone[:1], now=NOW, sections=sections)
        one = len(statements)
        statements.clear()
        whole = build_contexts(shop.engine, STORE, everyone, now=NOW, sections=sections)
        many = len(statements)
    finally:
        event.remove(shop.engine, "before_cursor_execute", count)
    assert one == many <= 10
    assert "referral" not in whole[everyone[0]] and "membership" not in whole[everyone[0]]
    # IN-lists are chunked (900 ids on every engine); two at a time gives the same contexts.
    monkeypatch.setattr(context_repo, "CHUNK", 2)
    assert build_contexts(shop.engine, STORE, everyone, now=NOW, sections=sections) == whole


def referral_membership_and_preview(shop: Shop) -> None:
    """The referral code is made on first use and then stable; the membership savings are
    the hand-computed $9.04; a preview renders the same way for a customer by email."""
    anna, ben = shop.ids["anna@example.com"], shop.ids["ben@example.com"]
    with shop.engine.connect() as conn:
        store_id = stores_repo.get(conn, STORE).id
    recommender = fit_copurchase(shop.engine, store_id, now=NOW)
    first, again, member = render_messages(
        shop.engine, STORE,
        [RenderRequest(anna, "referral_invite", "email"),
         RenderRequest(anna, "referral_invite", "sms"),
         RenderRequest(anna, "membership_savings", "email")],
        templates_dir=None, recommender=recommender, now=NOW,
    )  # fmt: skip
    link = first.html.split('Your link: <a href="')[1].split('"')[0]
    assert (
        link.startswith("https://teashop.example/r/")
        and len(link) == len("https://teashop.example/r/") + 12
    )
    assert "Your friends get $15.00 off your next order." in first.html
    assert (
        "You get $25.00 off your next order when a friend places their first order." in first.html
    )
    assert (
        again.sms
        == f"{STORE}: share your link and your friends get $15.00 off your next order: {link}"
    )
    assert again.segments == 1
    # the code was made once: a second render shows the same link
    later = render_message(
        shop.engine,
        STORE,
        anna,
        "referral_invite",
        "sms",
        None,
        templates_dir=None,
        links=None,
        now=NOW,
    )
    assert later.sms == again.sms
    assert member.subject == "You saved $9.04 this year with Plus (annual)"
    assert "You are on <strong>Plus (annual)</strong> (active)." in member.html
    assert "saved you <strong>$9.04</strong> on 1 order, for $99.00 in fees." in member.html
    assert "It renews on April 1, 2028." in member.html  # April 1 09:00 in Tokyo
    # Preview: by email, the same rendering path, a customer without a membership.
    shown = preview(shop.db, STORE, "membership_savings", "email", "ben@example.com", None, now=NOW)
    assert shown.customer_id == ben
    assert shown.rendered.subject == f"Your {STORE} membership"
    assert "Members get free shipping" in shown.rendered.html
    assert 'href="#unsubscribe-preview"' in shown.rendered.html
    assert shown.mode["css"] == "load"
