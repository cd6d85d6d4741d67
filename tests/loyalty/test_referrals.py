"""Two-sided referrals on SQLite and PostgreSQL (docs/referrals.md).

Every store here is hand-made (a few customers and orders as import frames, applied with
`apply_frames`) with the seed program: the referrer gets a $125.00 coupon, the friend a
$25.00 one, paid when the friend's first order ($50.00 or more) is past a 30-day refund
window. Expectations are worked out by hand next to each test.

- C3: self-referral variants (email case, +tag, Gmail dots, googlemail, the same phone in
  another format, the same card, device or shipping address written differently) are
  flagged with their reason and pay nothing; a clean friend is paid exactly once.
- Three deliveries of the friend's order (one after another, and at once from threads with
  their own engines): one referral, nothing paid before the refund window closes, paid once
  after it, also when the release job runs as concurrent copies or resumes a stopped run.
- A refunded (or cancelled) friend order: void, nothing paid.
- Review: approve -> paid at release; reject -> never paid.
- The funnel of a scripted scenario, and the CLI.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from sqlalchemy import Engine
from tests.support import rows
from typer.testing import CliRunner

from boomerang.cli.referrals import app as cli
from boomerang.domain.clock import MICROS_PER_DAY, to_micros
from boomerang.errors import ConflictError, InputError
from boomerang.ingest.batch import conform
from boomerang.loyalty.program import ReferralReward
from boomerang.services import referrals as service
from boomerang.services.context import open_engine
from boomerang.services.imports import apply_frames
from boomerang.services.loyalty import balance, load_program, set_program
from boomerang.store.repos import referrals as repo

DAY = MICROS_PER_DAY
T0 = to_micros(datetime(2027, 3, 1, tzinfo=UTC))
STORE = "shop"
SEED_PROGRAM: dict[str, Any] = {
    "referrals": {
        "enabled": True,
        "referrer_reward": {"kind": "amount_off", "value": 12500},
        "friend_reward": {"kind": "amount_off", "value": 2500},
        "min_order_minor": 5000,
        "refund_window_days": 30,
        "fraud_window_days": 365,
        "link_base": "https://shop.example/r/",
    }
}
REFERRER = ("friendname@gmail.com", "+14155550100", "Jane")


@dataclass
class Shop:
    db: str
    engine: Engine
    ids: dict[str, int]  # email -> customer id

    def __getitem__(self, email: str) -> int:
        return self.ids[email]


def _order(ref: str, email: str, placed: int, total: int, refunded: int = 0) -> dict[str, Any]:
    status = "paid" if refunded == 0 else "refunded" if refunded >= total else "partially_refunded"
    return {
        "external_id": ref, "customer_key": email, "email": email, "placed_at": placed,
        "currency": "USD", "subtotal_minor": total, "discount_minor": 0, "shipping_minor": 0,
        "tax_minor": 0, "total_minor": total, "refunded_minor": refunded, "status": status,
        "channel": "online", "source": "test", "lines_digest": f"{ref}-{refunded}",
    }  # fmt: skip


def import_orders(db: str, orders: list[dict[str, Any]]) -> None:
    apply_frames(db, STORE, {"orders": conform("orders", pl.DataFrame(orders))}, currency="USD")


def make_shop(
    db: str,
    tmp_path: Path,
    people: list[tuple[str, str | None, str | None]],
    orders: tuple[dict[str, Any], ...] | list[dict[str, Any]] = (),
    program: dict[str, Any] = SEED_PROGRAM,
) -> Shop:
    """Customers (email, phone, first name; all in the US), orders, and the program."""
    customers = pl.DataFrame(
        {
            "external_id": [p[0] for p in people],
            "email": [p[0] for p in people],
            "phone": [p[1] for p in people],
            "first_name": [p[2] for p in people],
            "country": ["US"] * len(people),
            "account_status": ["registered"] * len(people),
        },
        schema_overrides={"phone": pl.String, "first_name": pl.String},
    )
    frames = {"customers": conform("customers", customers)}
    if orders:
        frames["orders"] = conform("orders", pl.DataFrame(list(orders)))
    apply_frames(db, STORE, frames, currency="USD")
    path = tmp_path / "program.yaml"
    path.write_text(yaml.safe_dump(program), encoding="utf-8")
    set_program(db, STORE, path)
    engine = open_engine(db)
    ids = {str(e): int(str(i)) for i, e in rows(db, "SELECT id, email FROM customers")}
    return Shop(db, engine, ids)


@pytest.fixture
def closing() -> Iterator[list[Shop]]:
    made: list[Shop] = []
    yield made
    for shop in made:
        shop.engine.dispose()


def referral_coupons(db: str) -> list[tuple[str, int, str, int]]:
    """(source, customer id, kind, value) of every coupon a referral issued."""
    found = rows(
        db,
        "SELECT source, customer_id, kind, value FROM coupons "
        "WHERE source LIKE 'referral:%' ORDER BY source",
    )
    return [(str(s), int(str(c)), str(k), int(str(v))) for s, c, k, v in found]


def events(db: str, kind: str) -> list[dict[str, Any]]:
    found = rows(db, f"SELECT payload FROM loyalty_events WHERE type = '{kind}' ORDER BY id")
    return [json.loads(str(p)) for (p,) in found]


def at_once(db: str, n: int, call: Callable[[Engine], Any]) -> list[Any]:
    """``call`` from n threads released together, each with its own engine."""
    barrier = threading.Barrier(n)

    def worker(_: int) -> Any:
        engine = open_engine(db)
        try:
            barrier.wait()
            return call(engine)
        finally:
            engine.dispose()

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(worker, range(n)))


# -- C3: self-referral variants pay nothing; a clean friend is paid once ------------------------------

# Friend (their customer email) -> signals at sign-up and the one reason they must be flagged for.
C3 = {
    "case@example.com": ({"email": "FRIENDNAME@GMAIL.COM"}, "same_email"),
    "tagdots@example.com": ({"email": "Friend.Name+promo@GMail.com"}, "same_email"),
    "friend.name+promo@gmail.com": ({}, "same_email"),  # on file, not only signalled
    "alias@example.com": ({"email": "friend.name@googlemail.com"}, "same_email"),
    "phone@example.com": ({"phone": "(415) 555-0100"}, "same_phone"),
    "card@example.com": ({"payment": "card_fp_9f8e7d"}, "same_payment"),
    "device@example.com": ({"device": "device-42"}, "same_device"),
    "address@example.com": ({"address": "12 main st. apt #4, springfield"}, "same_address"),
}
CLEAN = "clean@example.com"
STALE = "stale@example.com"  # shares a device the referrer last used 400 days ago


def test_c3_self_referral_variants_are_flagged_and_pay_nothing(
    db: str, tmp_path: Path, closing: list[Shop]
) -> None:
    friends = [*C3, CLEAN, STALE]
    placed = T0 + DAY
    shop = make_shop(
        db, tmp_path, [REFERRER, *[(f, None, None) for f in friends]],
        [_order(f"#{i}", f, placed, 10_000) for i, f in enumerate(friends)],
    )  # fmt: skip
    closing.append(shop)
    e, jane = shop.engine, shop["friendname@gmail.com"]
    code = service.referral_code(e, STORE, jane, now=T0 - 10 * DAY)
    assert code.created and len(code.code) == 14 and code.link.startswith("https://shop.example/r/")
    assert "$25.00 off your next order" in code.shares["whatsapp"]["text"]
    assert code.link in code.shares["sms"]["text"]
    again = service.referral_code(e, STORE, jane, now=T0)
    assert (again.code, again.created) == (code.code, False)
    service.record_signals(
        e, STORE, jane,
        {"payment": "card_fp_9f8e7d", "device": "device-42",
         "address": "12 Main Street, Apartment 4, Springfield"},
        now=T0 - 10 * DAY,
    )  # fmt: skip
    service.record_signals(e, STORE, jane, {"device": "old-tablet"}, now=T0 - 400 * DAY)
    with pytest.raises(InputError, match="own referral code"):
        service.sign_up(e, STORE, code.code, jane, now=T0)

    for friend, (signals, _) in C3.items():
        service.sign_up(e, STORE, code.code.lower(), shop[friend], signals=signals, now=T0)
    clean = service.sign_up(
        e, STORE, code.code, shop[CLEAN],
        signals={"email": "clean@example.com", "phone": "+1 415 555 0199",
                 "payment": "card_other", "device": "device-7",
                 "address": "14 Main Street, Springfield"},
        now=T0,
    )  # fmt: skip
    stale = service.sign_up(
        e, STORE, code.code, shop[STALE], signals={"device": "old-tablet"}, now=T0
    )
    assert (clean["status"], clean["flags"]) == ("signed_up", [])
    assert (stale["status"], stale["flags"]) == ("signed_up", [])  # outside the 365-day window
    for i, friend in enumerate(friends):
        service.friend_order(e, STORE, shop[friend], f"#{i}", now=placed)

    # Before the refund window closes (placed + 30 days): nothing paid.
    early = service.release_due(e, STORE, now=placed + 30 * DAY - 1)
    assert (early.rewarded, referral_coupons(db)) == (0, [])
    done = service.release_due(e, STORE, now=placed + 30 * DAY)
    assert (done.rewarded, done.void, done.flagged) == (2, 0, 0)

    flagged = {r["friend_id"]: r for r in service.flagged(e, STORE)}
    assert {f: flagged[shop[f]]["flags"] for f in C3} == {
        f: [reason] for f, (_, reason) in C3.items()
    }
    assert all(r["status"] == "flagged" and r["rewards"] == {} for r in flagged.values())
    assert len(events(db, "referral_flagged")) == len(C3)
    # 0 rewards for every variant; the clean friend (and the stale-device one) paid once each:
    # $125.00 to Jane and $25.00 to the friend.
    ids = {shop[CLEAN]: clean["id"], shop[STALE]: stale["id"]}
    assert referral_coupons(db) == sorted(
        [(f"referral:{rid}:friend", cid, "amount_off", 2500) for cid, rid in ids.items()]
        + [(f"referral:{rid}:referrer", jane, "amount_off", 12500) for rid in ids.values()]
    )
    status = service.status(e, STORE, jane)
    assert status["by_status"] == {"flagged": len(C3), "rewarded": 2}
    assert status["earned"] == {"payouts": 2, "coupons": 2, "money_minor": 25000, "points": 0}
    assert status["code"] == code.code and status["link"] == code.link
    # Nothing more on later runs.
    assert service.release_due(e, STORE, now=placed + 400 * DAY).rewarded == 0
    assert len(referral_coupons(db)) == 4


# -- duplicate deliveries, the refund window, refunds, concurrent and resumed release ------------------


def test_duplicate_deliveries_pay_once_after_the_refund_window(
    db: str, tmp_path: Path, closing: list[Shop]
) -> None:
    friends = ["seq@example.com", "threads@example.com", "refunded@example.com",
               "cancel@example.com", "resume@example.com", "small@example.com"]  # fmt: skip
    placed = T0 + 2 * DAY
    orders = [_order(f"#{f.split('@')[0]}", f, placed, 10_000) for f in friends]
    orders[-1] = _order("#small", friends[-1], placed, 4_999)  # below the $50.00 minimum
    shop = make_shop(db, tmp_path, [REFERRER, *[(f, None, None) for f in friends]], orders)
    closing.append(shop)
    e, jane = shop.engine, shop["friendname@gmail.com"]
    code = service.referral_code(e, STORE, jane, now=T0).code
    refs = {f: service.sign_up(e, STORE, code, shop[f], now=T0)["id"] for f in friends}
    # A repeated sign-up returns the same referral; another code for the same friend is refused.
    assert service.sign_up(e, STORE, code, shop["seq@example.com"], now=T0)["replayed"] is True
    other = service.referral_code(e, STORE, shop["small@example.com"], now=T0).code
    with pytest.raises(ConflictError, match="another referral code"):
        service.sign_up(e, STORE, other, shop["seq@example.com"], now=T0)

    seq = [service.friend_order(e, STORE, shop["seq@example.com"], "#seq", now=placed + i) for i in range(3)]  # fmt: skip
    assert [r["status"] for r in seq if r] == ["ordered"] * 3
    assert seq[0] and seq[0]["qualifies_at"] == placed + 30 * DAY and seq[0]["note"] is None
    assert seq[2] and seq[2]["note"] == "this order was seen before: nothing changed"
    tid = shop["threads@example.com"]
    par = at_once(db, 3, lambda eng: service.friend_order(eng, STORE, tid, "#threads", now=placed))
    assert [r["status"] for r in par] == ["ordered"] * 3
    for f in ("refunded@example.com", "cancel@example.com", "resume@example.com"):
        service.friend_order(e, STORE, shop[f], f"#{f.split('@')[0]}", now=placed)
    small = service.friend_order(e, STORE, shop["small@example.com"], "#small", now=placed)
    assert small and small["status"] == "signed_up" and "below the minimum" in small["note"]
    assert rows(db, "SELECT count(*) FROM referrals")[0][0] == len(friends)

    # Inside the window the friend refunds one order and cancels another.
    cancelled = _order("#cancel", "cancel@example.com", placed, 10_000)
    import_orders(
        db,
        [
            _order("#refunded", "refunded@example.com", placed, 10_000, 10_000),
            {**cancelled, "status": "cancelled", "lines_digest": "c"},
        ],
    )

    # One second before the window closes: nothing is paid.
    assert service.release_due(e, STORE, now=placed + 30 * DAY - 1) == service.ReleaseResult()
    assert referral_coupons(db) == []

    # A release run that stopped half way: "resume" claimed, its referrer paid, then a crash.
    after = placed + 30 * DAY
    rid = refs["resume@example.com"]
    plan = {"referrer": SEED_PROGRAM["referrals"]["referrer_reward"],
            "friend": SEED_PROGRAM["referrals"]["friend_reward"]}  # fmt: skip
    store_id = int(str(rows(db, "SELECT id FROM stores")[0][0]))
    with e.begin() as conn:
        assert repo.move(conn, rid, "ordered", "paying", after, rewards={"plan": plan})
        program = load_program(conn, store_id)
    ref = {"id": rid, "referrer_id": jane, "friend_id": shop["resume@example.com"]}
    service._pay(
        e, STORE, program, "USD", ref, "referrer", ReferralReward(**plan["referrer"]), after
    )
    assert len(referral_coupons(db)) == 1

    # The window has closed: three copies of the job at once.
    results = at_once(db, 3, lambda eng: service.release_due(eng, STORE, now=after))
    assert sum(r.rewarded for r in results) == 3  # seq, threads, resume
    assert sum(r.resumed for r in results) >= 1
    assert sum(r.void for r in results) == 2  # refunded, cancelled
    status = {f: r["status"] for f, r in ((f, repo_view(shop, f)) for f in friends)}
    assert status == {
        "seq@example.com": "rewarded", "threads@example.com": "rewarded",
        "refunded@example.com": "void", "cancel@example.com": "void",
        "resume@example.com": "rewarded", "small@example.com": "signed_up",
    }  # fmt: skip
    paid = [rid for rid, f in ((refs[f], f) for f in friends) if status[f] == "rewarded"]
    assert referral_coupons(db) == sorted(
        [(f"referral:{r}:referrer", jane, "amount_off", 12500) for r in paid]
        + [(f"referral:{refs[f]}:friend", shop[f], "amount_off", 2500)
           for f in friends if status[f] == "rewarded"]
    )  # fmt: skip
    completed = events(db, "referral_completed")
    assert sorted((c["referral"], c["role"]) for c in completed) == sorted(
        (r, side) for r in paid for side in ("referrer", "friend")
    )
    assert repo_view(shop, "refunded@example.com")["rewards"] == {"void": "refunded"}
    assert repo_view(shop, "cancel@example.com")["rewards"] == {"void": "cancelled"}
    # A late delivery of the refunded order, or another run, changes nothing.
    service.friend_order(e, STORE, shop["refunded@example.com"], "#refunded", now=after)
    assert service.release_due(e, STORE, now=after + DAY) == service.ReleaseResult()
    assert len(referral_coupons(db)) == 6


def repo_view(shop: Shop, friend: str) -> dict[str, Any]:
    found = service.status(shop.engine, STORE, shop[friend])["referred_by"]
    assert found is not None
    return dict(found)


# -- review ----------------------------------------------------------------------------------------


def test_review_approve_pays_at_release_reject_never(
    db: str, tmp_path: Path, closing: list[Shop]
) -> None:
    friends = ["approved@example.com", "rejected@example.com", "later@example.com"]
    placed = T0 + DAY
    shop = make_shop(
        db, tmp_path, [REFERRER, *[(f, None, None) for f in friends]],
        [_order(f"#{i}", f, placed, 8_000) for i, f in enumerate(friends)],
    )  # fmt: skip
    closing.append(shop)
    e, jane = shop.engine, shop["friendname@gmail.com"]
    code = service.referral_code(e, STORE, jane, signals={"device": "dev-1"}, now=T0).code
    ids = []
    for i, f in enumerate(friends[:2]):
        ref = service.sign_up(e, STORE, code, shop[f], signals={"device": "dev-1"}, now=T0)
        assert (ref["status"], ref["flags"]) == ("flagged", ["same_device"])
        held = service.friend_order(e, STORE, shop[f], f"#{i}", now=placed)
        assert held and held["status"] == "flagged" and held["order_ref"] == f"#{i}"
        ids.append(ref["id"])
    approved, rejected = ids
    assert {r["id"] for r in service.flagged(e, STORE)} == set(ids)
    with pytest.raises(InputError, match="actor"):
        service.review(e, STORE, approved, "approve", actor=" ")

    ok = service.review(e, STORE, approved, "approve", actor="alice", now=T0 + 3 * DAY)
    assert (ok["status"], ok["decided_by"], ok["replayed"]) == ("ordered", "alice", False)
    assert service.review(e, STORE, approved, "approve", actor="alice")["replayed"] is True
    no = service.review(e, STORE, rejected, "reject", actor="bob", now=T0 + 3 * DAY)
    assert (no["status"], no["decided_by"]) == ("rejected", "bob")
    assert service.review(e, STORE, rejected, "reject", actor="bob")["replayed"] is True
    with pytest.raises(ConflictError, match="not flagged"):
        service.review(e, STORE, rejected, "approve", actor="bob")
    # The device a reviewer already accepted does not flag it again.
    again = service.friend_order(
        e, STORE, shop[friends[0]], "#0", signals={"device": "dev-1"}, now=placed
    )
    assert again and again["status"] == "ordered"

    # "later": approved at sign-up (same device), orders with a card; the referrer then pays
    # with that card inside the refund window: the release job's last check holds it again.
    later = service.sign_up(e, STORE, code, shop[friends[2]], signals={"device": "dev-1"}, now=T0)
    service.review(e, STORE, later["id"], "approve", actor="alice", now=T0)
    ordered = service.friend_order(
        e, STORE, shop[friends[2]], "#2", signals={"payment": "card-1"}, now=placed
    )
    assert ordered and ordered["status"] == "ordered"
    service.record_signals(e, STORE, jane, {"payment": "card-1"}, now=placed + DAY)

    assert service.release_due(e, STORE, now=placed + 30 * DAY - 1).rewarded == 0
    done = service.release_due(e, STORE, now=placed + 30 * DAY)
    assert (done.rewarded, done.flagged, done.referrals) == (1, 1, [approved])
    assert referral_coupons(db) == [
        (f"referral:{approved}:friend", shop[friends[0]], "amount_off", 2500),
        (f"referral:{approved}:referrer", jane, "amount_off", 12500),
    ]
    assert repo_view(shop, friends[1])["status"] == "rejected"
    view = repo_view(shop, friends[2])
    assert (view["status"], view["flags"]) == ("flagged", ["same_device", "same_payment"])
    assert service.release_due(e, STORE, now=placed + 300 * DAY) == service.ReleaseResult()


# -- rewards as points and store credit ------------------------------------------------------------


def test_points_and_store_credit_rewards_are_paid_once(
    db: str, tmp_path: Path, closing: list[Shop]
) -> None:
    program = {
        "referrals": {
            **SEED_PROGRAM["referrals"],
            "referrer_reward": {"kind": "points", "value": 1500},
            "friend_reward": {"kind": "store_credit", "value": 2500},
        }
    }
    friend = "pts@example.com"
    placed = T0 + DAY
    shop = make_shop(
        db, tmp_path, [REFERRER, (friend, None, None)], [_order("#1", friend, placed, 9_000)],
        program,
    )  # fmt: skip
    closing.append(shop)
    e, jane = shop.engine, shop["friendname@gmail.com"]
    code = service.referral_code(e, STORE, jane, now=T0)
    assert "$25.00 store credit" in code.shares["copy"]["text"]
    service.sign_up(e, STORE, code.code, shop[friend], now=T0)
    service.friend_order(e, STORE, shop[friend], "#1", now=placed)
    results = at_once(db, 2, lambda eng: service.release_due(eng, STORE, now=placed + 31 * DAY))
    assert sum(r.rewarded for r in results) == 1
    assert balance(e, STORE, jane)["balance"] == 1500
    assert balance(e, STORE, shop[friend])["store_credit_minor"] == 2500
    funnel = service.funnel(e, STORE)
    assert funnel["rewards_paid"] == {
        "payouts": 2, "coupons": 0, "money_minor": 2500, "points": 1500,
    }  # fmt: skip


# -- the funnel -------------------------------------------------------------------------------------


def test_funnel_of_a_scripted_scenario(db: str, tmp_path: Path, closing: list[Shop]) -> None:
    friends = ["paid@example.com", "refund@example.com", "held@example.com", "idle@example.com"]
    placed = T0 + 5 * DAY
    shop = make_shop(
        db, tmp_path, [REFERRER, *[(f, None, None) for f in friends]],
        [_order(f"#{i}", f, placed, 6_000) for i, f in enumerate(friends[:3])],
    )  # fmt: skip
    closing.append(shop)
    e, jane = shop.engine, shop["friendname@gmail.com"]
    code = service.referral_code(e, STORE, jane, signals={"device": "dev-1"}, now=T0).code
    # Shares: 2 by email, 1 on WhatsApp (a retried key counts once); clicks: 4 visitors.
    for key, channel in (("s1", "email"), ("s2", "email"), ("s3", "whatsapp"), ("s1", "email")):
        service.record_share(e, STORE, jane, channel, key=key, now=T0 + DAY)
    with pytest.raises(ConflictError, match="already recorded a share on email"):
        service.record_share(e, STORE, jane, "sms", key="s1", now=T0 + DAY)
    for key in ("v1", "v2", "v3", "v4", "v2"):
        service.record_click(e, STORE, code, key=key, now=T0 + 2 * DAY)
    assert len(events(db, "referral_shared")) == 3
    # Sign-ups: 4 (one shares the referrer's device); first orders: 3.
    for f in friends:
        signals = {"device": "dev-1"} if f == "held@example.com" else {}
        service.sign_up(e, STORE, code, shop[f], signals=signals, now=T0 + 3 * DAY)
    for i, f in enumerate(friends[:3]):
        service.friend_order(e, STORE, shop[f], f"#{i}", now=placed)
    import_orders(db, [_order("#1", "refund@example.com", placed, 6_000, 6_000)])
    service.release_due(e, STORE, now=placed + 30 * DAY)

    funnel = service.funnel(e, STORE, since=T0, until=T0 + 10 * DAY)
    assert {k: funnel[k] for k in funnel if k not in ("since", "until", "rates")} == {
        "shares": 3,
        "shares_by_channel": {"email": 2, "facebook": 0, "messenger": 0, "sms": 0,
                              "whatsapp": 1, "copy": 0},
        "clicks": 4,
        "sign_ups": 4,
        "first_orders": 3,
        "flagged": 1,
        "held_for_review": 1,
        "waiting": 0,
        "rewarded": 1,
        "void": 1,
        "rejected": 0,
        "rewards_paid": {"payouts": 2, "coupons": 2, "money_minor": 15000, "points": 0},
    }  # fmt: skip
    assert funnel["rates"] == {
        "click_per_share": 1.3333,  # 4 / 3
        "sign_up_per_click": 1.0,  # 4 / 4
        "first_order_per_sign_up": 0.75,  # 3 / 4
        "rewarded_per_first_order": 0.3333,  # 1 / 3
    }
    # Shares and clicks count when they happened; sign-ups and what became of them by the
    # day of the sign-up: a window holding only the sign-ups has no shares or clicks.
    later = service.funnel(e, STORE, since=T0 + 3 * DAY, until=T0 + 4 * DAY)
    assert (later["shares"], later["clicks"], later["sign_ups"], later["rewarded"]) == (0, 0, 4, 1)
    empty = service.funnel(e, STORE, since=T0 + 100 * DAY)
    assert (empty["sign_ups"], empty["rates"]["sign_up_per_click"]) == (0, None)


# -- the CLI ----------------------------------------------------------------------------------------


def test_cli_code_signup_order_release_review_status_funnel(
    sqlite_db: str, tmp_path: Path, closing: list[Shop]
) -> None:
    db = sqlite_db
    placed = T0 + DAY
    shop = make_shop(
        db, tmp_path, [REFERRER, ("amy@example.com", None, "Amy"), ("bo@example.com", None, None)],
        [_order("#A", "amy@example.com", placed, 7_000), _order("#B", "bo@example.com", placed, 7_000)],
    )  # fmt: skip
    closing.append(shop)
    runner = CliRunner()
    where = ["--db", db, "--store", STORE]

    def run(*args: str) -> str:
        result = runner.invoke(cli, [*args, *where], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    made = json.loads(run("code", "friendname@gmail.com", "--at", "2027-03-01"))
    code = made["code"]
    assert (
        made["link"].endswith(code.replace("-", "")) and "$25.00" in made["shares"]["sms"]["text"]
    )
    assert json.loads(
        run("share", "friendname@gmail.com", "whatsapp", "--key", "k1", "--at", "2027-03-01")
    )["recorded"]
    assert json.loads(run("click", code.lower(), "--key", "v1", "--at", "2027-03-01"))["recorded"]
    amy = json.loads(run("signup", code, "amy@example.com", "--at", "2027-03-01"))
    assert amy["status"] == "signed_up" and amy["created_at"] == "2027-03-01T00:00:00+00:00"
    bo = json.loads(
        run("signup", code, "bo@example.com", "--phone", "415-555-0100", "--at", "2027-03-01")
    )
    assert (bo["status"], bo["flags"]) == ("flagged", ["same_phone"])
    run("order", "amy@example.com", "#A", "--at", "2027-03-02")
    run("order", "bo@example.com", "#B", "--at", "2027-03-02")
    listed = json.loads(run("review"))
    assert [r["id"] for r in listed] == [bo["id"]] and listed[0]["flags"] == ["same_phone"]
    assert "1 referrals rewarded" in run("release", "--at", "2027-04-01")
    decided = json.loads(run("review", str(bo["id"]), "--approve", "--actor", "alice"))
    assert (decided["status"], decided["decided_by"]) == ("ordered", "alice")
    assert "1 referrals rewarded" in run("release", "--at", "2027-04-02")
    status = json.loads(run("status", "friendname@gmail.com"))
    assert status["by_status"] == {"rewarded": 2} and status["earned"]["money_minor"] == 25000
    funnel = json.loads(run("funnel", "--from", "2027-03-01", "--to", "2027-04-01"))
    assert (funnel["shares"], funnel["clicks"], funnel["sign_ups"], funnel["rewarded"]) == (
        1,
        1,
        2,
        2,
    )
    with pytest.raises(InputError, match="exactly one of --approve and --reject"):
        runner.invoke(cli, ["review", "1", *where], catch_exceptions=False)


def test_every_referrals_command_and_option_has_help() -> None:
    from typer.main import get_command

    group = get_command(cli)
    commands = getattr(group, "commands", {})
    assert set(commands) == {
        "code", "signals", "share", "click", "signup", "order", "release", "status", "review",
        "funnel",
    }  # fmt: skip
    missing = [name for name, cmd in commands.items() if not cmd.help]
    missing += [
        f"{name} {param.opts[0]}"
        for name, cmd in commands.items()
        for param in cmd.params
        if param.param_type_name == "option" and not getattr(param, "help", None)
    ]
    assert missing == []
