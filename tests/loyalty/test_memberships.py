"""Paid memberships against the database (SQLite and PostgreSQL): the lifecycle with time
travel (trial -> active -> past due -> active / expired / cancelled), each event exactly
once (also with two concurrent lifecycle jobs), the renewal bonus, the savings statement of
a hand-computed member, the report figures of a tiny store, and the CLI.

Plans: examples/membership-plans.yaml — Plus monthly ($9.99, 30-day trial, trial notice 3
days, renewal notice 7 days, 7 grace days) and Plus annual ($99, no trial); both give free
shipping worth $5.99, 5% off items, 2x points, early access.
"""

from __future__ import annotations

import itertools
import secrets
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import Engine, create_engine, text
from typer.main import get_command
from typer.testing import CliRunner

from boomerang.cli.memberships import app as cli
from boomerang.domain.clock import MICROS_PER_DAY, to_micros
from boomerang.errors import ConflictError, InputError, NotFoundError
from boomerang.ingest.batch import conform
from boomerang.services import loyalty as loyalty_service
from boomerang.services import memberships as service
from boomerang.services.context import open_engine
from boomerang.services.imports import apply_frames
from boomerang.store.repos import memberships as repo
from boomerang.store.repos import stores as stores_repo
from conftest import pg_admin_url

DAY = MICROS_PER_DAY
PLANS = Path(__file__).parents[2] / "examples" / "membership-plans.yaml"
MONTHLY, ANNUAL = "plus-monthly", "plus-annual"


def us(text: str) -> int:
    """'2027-01-10' or '2027-01-10 08:00' (UTC) -> epoch micros."""
    fmt = "%Y-%m-%d %H:%M" if " " in text else "%Y-%m-%d"
    return to_micros(datetime.strptime(text, fmt).replace(tzinfo=UTC))


# ref, customer, placed, subtotal, discount, shipping, status, currency
Order = tuple[str, str, str, int, int, int, str, str]


# One database per engine for the whole module (creating and migrating a PostgreSQL
# database per test cost more than the tests); every test gets a store of its own in it.


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def shared(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Engine]]:
    if request.param == "sqlite":
        db = str(tmp_path_factory.mktemp("memberships") / "store.db")
        engine = open_engine(db)
        yield db, engine
        engine.dispose()
        return
    admin = pg_admin_url()
    if admin is None:
        pytest.skip("BOOMERANG_TEST_PG_URL not set")
    name = f"bt_{secrets.token_hex(5)}"
    server = create_engine(
        admin.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    with server.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    db = admin.rsplit("/", 1)[0] + "/" + name
    engine = open_engine(db)
    try:
        yield db, engine
    finally:
        engine.dispose()
        with server.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


_stores = itertools.count()


@dataclass
class Shop:
    db: str
    store: str
    engine: Engine

    @property
    def store_id(self) -> int:
        with self.engine.connect() as conn:
            return stores_repo.get(conn, self.store).id


@pytest.fixture
def shop(shared: tuple[str, Engine], request: pytest.FixtureRequest) -> Shop:
    db, engine = shared
    return Shop(db, f"{request.node.originalname}-{next(_stores)}", engine)


def make_store(shop: Shop, customers: list[str], orders: list[Order] | None = None) -> None:
    frames: dict[str, pl.DataFrame] = {
        "customers": conform(
            "customers",
            pl.DataFrame(
                {
                    "external_id": [f"{c}@example.com" for c in customers],
                    "email": [f"{c}@example.com" for c in customers],
                    "account_status": ["registered"] * len(customers),
                }
            ),
        )
    }
    if orders:
        frames["orders"] = conform(
            "orders",
            pl.DataFrame(
                {
                    "external_id": [o[0] for o in orders],
                    "customer_key": [f"{o[1]}@example.com" for o in orders],
                    "email": [f"{o[1]}@example.com" for o in orders],
                    "placed_at": [us(o[2]) for o in orders],
                    "currency": [o[7] for o in orders],
                    "subtotal_minor": [o[3] for o in orders],
                    "discount_minor": [o[4] for o in orders],
                    "shipping_minor": [o[5] for o in orders],
                    "tax_minor": [0] * len(orders),
                    "total_minor": [o[3] - o[4] + o[5] for o in orders],
                    "refunded_minor": [0] * len(orders),
                    "status": [o[6] for o in orders],
                    "channel": ["online"] * len(orders),
                    "source": ["test"] * len(orders),
                    "lines_digest": [f"d-{o[0]}" for o in orders],
                }
            ),
        )
    apply_frames(shop.db, shop.store, frames, currency="USD")
    service.set_plans(shop.db, shop.store, PLANS)


def cid(shop: Shop, name: str) -> int:
    return loyalty_service.resolve_customer(shop.engine, shop.store, f"{name}@example.com")


def events(shop: Shop) -> list[tuple[str, int]]:
    """(type, customer) of every membership event, oldest first."""
    with shop.engine.connect() as conn:
        found = repo.membership_events(conn, shop.store_id)
    return [(e["type"], int(e["customer_id"])) for e in found]


def new_events(shop: Shop, seen: list[tuple[str, int]]) -> list[str]:
    now = events(shop)
    out = [kind for kind, _ in now[len(seen) :]]
    seen[:] = now
    return out


def state(shop: Shop, customer: int) -> tuple[str, str | None, str | None]:
    found = service.status(shop.engine, shop.store, customer)
    m = found["history"][0]
    return m["status"], m["period_start"], m["period_end"]


def iso(text: str) -> str:
    return datetime.fromtimestamp(us(text) / 1e6, UTC).isoformat()


# -- the lifecycle ---------------------------------------------------------------------------


def test_trial_active_past_due_active_with_events_once(shop: Shop, tmp_path: Path) -> None:
    make_store(shop, ["ann"])
    program = tmp_path / "program.yaml"
    program.write_text("earn: {renewal_bonus: 500, renewal_days_before: 10}\n")
    loyalty_service.set_program(shop.db, shop.store, program)
    ann = cid(shop, "ann")
    seen: list[tuple[str, int]] = []

    t0 = us("2027-01-10")  # the trial runs to 2027-02-09
    started = service.subscribe(shop.engine, shop.store, ann, MONTHLY, key="sub-ann", now=t0)
    assert (started.status, started.trial_ends_at) == ("trial", iso("2027-02-09"))
    assert new_events(shop, seen) == ["membership_started"]
    # The same key replays; another subscription while live is a conflict.
    again = service.subscribe(shop.engine, shop.store, ann, MONTHLY, key="sub-ann", now=t0 + DAY)
    assert again.replayed and again.id == started.id
    with pytest.raises(ConflictError):
        service.subscribe(shop.engine, shop.store, ann, ANNUAL, key="sub-ann", now=t0 + DAY)
    with pytest.raises(ConflictError, match="already has a trial membership"):
        service.subscribe(shop.engine, shop.store, ann, ANNUAL, key="sub-ann-2", now=t0 + DAY)

    service.tick(shop.engine, shop.store, now=t0 + 26 * DAY)  # 4 days before the trial ends
    assert new_events(shop, seen) == []
    result = service.tick(shop.engine, shop.store, now=t0 + 27 * DAY)
    assert result.events == {"membership_trial_ending": 1} and result.renewal_bonuses == 0
    for later in (t0 + 27 * DAY, t0 + 28 * DAY):
        assert service.tick(shop.engine, shop.store, now=later).events == {}
    assert new_events(shop, seen) == ["membership_trial_ending"]

    paid = service.record_payment(shop.engine, shop.store, ann, key="pay-1", now=t0 + 28 * DAY)
    assert (paid.period_start, paid.period_end, paid.amount_minor) == (
        iso("2027-02-09"), iso("2027-03-09"), 999,
    )  # fmt: skip
    assert paid.membership.status == "trial"
    replay = service.record_payment(shop.engine, shop.store, ann, key="pay-1", now=t0 + 29 * DAY)
    assert replay.replayed and replay.payment_id == paid.payment_id
    with pytest.raises(ConflictError):
        service.record_payment(
            shop.engine, shop.store, ann, key="pay-1", status="failed", now=t0 + 29 * DAY
        )
    with pytest.raises(ConflictError, match="already paid"):
        service.record_payment(shop.engine, shop.store, ann, key="pay-dup", now=t0 + 29 * DAY)

    service.tick(shop.engine, shop.store, now=us("2027-02-09"))
    assert state(shop, ann) == ("active", iso("2027-02-09"), iso("2027-03-09"))
    assert new_events(shop, seen) == ["membership_renewed"]

    # The loyalty renewal bonus: 10 days before the renewal, once.
    assert service.tick(shop.engine, shop.store, now=us("2027-02-27")).renewal_bonuses == 1
    assert service.tick(shop.engine, shop.store, now=us("2027-02-28")).renewal_bonuses == 0
    assert loyalty_service.balance(shop.engine, shop.store, ann)["balance"] == 500
    # The renewing notice: 7 days before, once.
    assert service.tick(shop.engine, shop.store, now=us("2027-03-02")).events == {
        "membership_renewing": 1
    }
    assert service.tick(shop.engine, shop.store, now=us("2027-03-05")).events == {}
    assert new_events(shop, seen) == ["membership_renewing"]

    # No payment by the renewal: past due, once; benefits stop.
    assert service.points_multiplier(shop.engine, shop.store_id, ann, us("2027-03-08")) == Decimal(
        2
    )
    assert service.tick(shop.engine, shop.store, now=us("2027-03-09")).events == {
        "membership_past_due": 1
    }
    assert service.tick(shop.engine, shop.store, now=us("2027-03-10")).events == {}
    assert state(shop, ann) == ("past_due", iso("2027-02-09"), iso("2027-03-09"))
    with shop.engine.connect() as conn:
        store_id = stores_repo.get(conn, shop.store).id
    assert service.points_multiplier(shop.engine, store_id, ann, us("2027-03-10")) == Decimal(1)

    # Paid late: active again for the period from the due date (the anchor stays).
    late = service.record_payment(shop.engine, shop.store, ann, key="pay-2", now=us("2027-03-11"))
    assert (late.membership.status, late.period_start, late.period_end) == (
        "active", iso("2027-03-09"), iso("2027-04-09"),
    )  # fmt: skip
    assert late.membership.events == ["membership_renewed"]
    with shop.engine.connect() as conn:
        assert service.points_multiplier(conn, store_id, ann, us("2027-03-12")) == Decimal(2)
    assert new_events(shop, seen) == ["membership_past_due", "membership_renewed"]

    # The next charge fails at the renewal: past due at once.
    service.tick(shop.engine, shop.store, now=us("2027-04-02"))
    failed = service.record_payment(
        shop.engine, shop.store, ann, key="pay-3", status="failed", now=us("2027-04-09 01:00")
    )
    assert failed.membership.status == "past_due"
    assert service.tick(shop.engine, shop.store, now=us("2027-04-10")).events == {}
    ok = service.record_payment(shop.engine, shop.store, ann, key="pay-4", now=us("2027-04-12"))
    assert (ok.membership.status, ok.period_end) == ("active", iso("2027-05-09"))
    assert new_events(shop, seen) == [
        "membership_renewing", "membership_past_due", "membership_renewed",
    ]  # fmt: skip
    assert (
        loyalty_service.balance(shop.engine, shop.store, ann)["balance"] == 1000
    )  # second renewal


def test_unpaid_expires_after_grace_once(shop: Shop) -> None:
    make_store(shop, ["bob"])
    bob = cid(shop, "bob")
    service.subscribe(shop.engine, shop.store, bob, MONTHLY, key="sub-bob", now=us("2027-01-10"))
    assert service.tick(shop.engine, shop.store, now=us("2027-02-09")).events == {
        "membership_past_due": 1
    }
    assert service.tick(shop.engine, shop.store, now=us("2027-02-15 23:59")).events == {}
    assert service.tick(shop.engine, shop.store, now=us("2027-02-16")).events == {
        "membership_expired": 1
    }
    assert service.tick(shop.engine, shop.store, now=us("2027-02-20")).events == {}
    found = service.status(shop.engine, shop.store, bob)
    assert found["membership"] is None
    assert found["history"][0]["status"] == "expired"
    assert found["history"][0]["ended_at"] == iso("2027-02-16")
    with pytest.raises(NotFoundError):
        service.record_payment(shop.engine, shop.store, bob, key="too-late", now=us("2027-02-21"))
    # Back again: no second free trial; the first period is paid at once.
    back = service.subscribe(
        shop.engine, shop.store, bob, MONTHLY, key="sub-bob-2", now=us("2027-03-01")
    )
    assert (back.status, back.trial_ends_at, back.period_end) == (
        "active", None, iso("2027-04-01"),
    )  # fmt: skip


def test_cancel_at_period_end_keeps_benefits_until_then(shop: Shop) -> None:
    make_store(shop, ["cat", "dan"])
    cat, dan = cid(shop, "cat"), cid(shop, "dan")
    with shop.engine.connect() as conn:
        store_id = stores_repo.get(conn, shop.store).id
    joined = service.subscribe(
        shop.engine, shop.store, cat, ANNUAL, key="sub-cat", now=us("2027-01-10")
    )
    assert (joined.status, joined.period_end) == ("active", iso("2028-01-10"))
    first = service.cancel(shop.engine, shop.store, cat, now=us("2027-06-01"))
    assert first.cancel_at_period_end and first.status == "active" and not first.replayed
    assert service.cancel(shop.engine, shop.store, cat, now=us("2027-06-02")).replayed
    with pytest.raises(ConflictError, match="nothing is due"):
        service.record_payment(shop.engine, shop.store, cat, key="pay-cat", now=us("2027-06-03"))
    # No renewing notice for a member who is leaving; benefits until the period end.
    assert service.tick(shop.engine, shop.store, now=us("2028-01-05")).events == {}
    assert service.points_multiplier(shop.engine, store_id, cat, us("2028-01-09")) == Decimal(2)
    assert service.tick(shop.engine, shop.store, now=us("2028-01-10")).events == {
        "membership_cancelled": 1
    }
    assert service.tick(shop.engine, shop.store, now=us("2028-01-11")).events == {}
    assert state(shop, cat)[0] == "cancelled"
    assert service.points_multiplier(shop.engine, store_id, cat, us("2028-01-10")) == Decimal(1)

    # Immediately: benefits end now.
    service.subscribe(shop.engine, shop.store, dan, MONTHLY, key="sub-dan", now=us("2027-01-10"))
    gone = service.cancel(shop.engine, shop.store, dan, at_period_end=False, now=us("2027-01-12"))
    assert (gone.status, gone.ended_at, gone.events) == (
        "cancelled", iso("2027-01-12"), ["membership_cancelled"],
    )  # fmt: skip
    assert service.points_multiplier(shop.engine, store_id, dan, us("2027-01-11")) == Decimal(2)
    assert service.points_multiplier(shop.engine, store_id, dan, us("2027-01-13")) == Decimal(1)
    with pytest.raises(NotFoundError):
        service.cancel(shop.engine, shop.store, dan, now=us("2027-01-13"))


def test_concurrent_ticks_write_each_event_once(shop: Shop, tmp_path: Path) -> None:
    names = [f"m{i}" for i in range(6)]
    make_store(shop, names)
    program = tmp_path / "program.yaml"
    program.write_text("earn: {renewal_bonus: 100, renewal_days_before: 10}\n")
    loyalty_service.set_program(shop.db, shop.store, program)
    ids = [cid(shop, n) for n in names]
    t0 = us("2027-01-10")
    for i, c in enumerate(ids):
        plan = ANNUAL if i % 3 == 2 else MONTHLY
        service.subscribe(shop.engine, shop.store, c, plan, key=f"sub-{i}", now=t0 + i * DAY)
        if i % 3 == 0:  # pays for the first period after the trial
            service.record_payment(shop.engine, shop.store, c, key=f"pay-{i}", now=t0 + 20 * DAY)
    moments = [t0 + d * DAY for d in (27, 28, 29, 30, 31, 35, 40, 45, 55, 60, 75)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def job() -> None:
        own = open_engine(shop.db)
        try:
            for at in moments:
                barrier.wait()
                service.tick(own, shop.store, now=at)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
            barrier.abort()
        finally:
            own.dispose()

    threads = [threading.Thread(target=job) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with shop.engine.connect() as conn:
        found = repo.membership_events(conn, stores_repo.get(conn, shop.store).id)
    keys = Counter(e["dedupe_key"] for e in found)
    assert keys and max(keys.values()) == 1
    kinds = Counter(e["type"] for e in found)
    # m0, m1, m3, m4 (monthly): trial ending. m0, m3 paid: renewed Feb 9/12, renewing
    # (Mar 6) ahead of Mar 9/12, then past due (no second payment) and expired by Mar 26;
    # m1, m4 unpaid: past due Feb 10/13, expired Feb 17/20. m2, m5 (annual): just started.
    assert kinds == Counter(
        membership_started=6, membership_trial_ending=4, membership_renewed=2,
        membership_renewing=2, membership_past_due=4, membership_expired=4,
    )  # fmt: skip
    # One renewal bonus per paid member (m0, m3) for their March renewal (granted Mar 6).
    assert [loyalty_service.balance(shop.engine, shop.store, c)["balance"] for c in ids] == [
        100, 0, 0, 100, 0, 0,
    ]  # fmt: skip


# -- plans -----------------------------------------------------------------------------------


def test_plans_file_upsert_and_deactivate(shop: Shop, tmp_path: Path) -> None:
    make_store(shop, ["eve"])
    eve = cid(shop, "eve")
    assert [p["key"] for p in service.plans(shop.engine, shop.store)] == [MONTHLY, ANNUAL]
    assert service.set_plans(shop.db, shop.store, PLANS)["unchanged"] == [MONTHLY, ANNUAL]
    service.subscribe(shop.engine, shop.store, eve, MONTHLY, key="sub-eve", now=us("2027-01-10"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("plans:\n  - {key: plus-annual, name: A, interval: year, fee_minor: -5}\n")
    with pytest.raises(InputError, match=r"bad.yaml: plans.0.fee_minor \(plan 'plus-annual'\)"):
        service.set_plans(shop.db, shop.store, bad)
    only_annual = tmp_path / "annual.yaml"
    only_annual.write_text(
        "plans:\n  - {key: plus-annual, name: Annual, interval: year, fee_minor: 8900}\n"
    )
    changed = service.set_plans(shop.db, shop.store, only_annual)
    assert (changed["updated"], changed["deactivated"]) == ([ANNUAL], 1)
    stored = {p["key"]: p for p in service.plans(shop.engine, shop.store)}
    assert stored[MONTHLY]["active"] is False and stored[ANNUAL]["fee_minor"] == 8900
    # The member keeps the inactive plan; nobody new can join it.
    assert service.status(shop.engine, shop.store, eve)["membership"]["plan"] == MONTHLY
    service.cancel(shop.engine, shop.store, eve, at_period_end=False, now=us("2027-01-11"))
    with pytest.raises(InputError, match="no longer offered"):
        service.subscribe(
            shop.engine, shop.store, eve, MONTHLY, key="sub-eve-2", now=us("2027-01-12")
        )


# -- the savings statement -------------------------------------------------------------------

FAY_ORDERS: list[Order] = [
    ("F1", "fay", "2027-01-05", 5000, 0, 0, "paid", "USD"),  # before she joined
    ("F2", "fay", "2027-01-15", 4000, 200, 0, "paid", "USD"),  # trial, free shipping
    ("F3", "fay", "2027-02-20", 2999, 150, 599, "paid", "USD"),  # active, paid shipping
    ("F4", "fay", "2027-02-25", 3000, 0, 0, "cancelled", "USD"),  # cancelled: not counted
    ("F5", "fay", "2027-03-12", 6000, 0, 0, "paid", "USD"),  # past due: no benefits
    ("F6", "fay", "2027-03-20", 1001, 50, 0, "paid", "USD"),  # paid late on Mar 15
    ("F7", "fay", "2027-03-25", 10000, 500, 0, "paid", "USD"),
    ("F8", "fay", "2027-03-26", 10000, 0, 0, "paid", "EUR"),  # another currency
    ("F9", "fay", "2028-01-20", 10000, 0, 0, "paid", "USD"),  # next year (and not a member)
]


def test_savings_statement_by_hand(shop: Shop) -> None:
    make_store(shop, ["fay"], FAY_ORDERS)
    fay = cid(shop, "fay")
    service.subscribe(shop.engine, shop.store, fay, MONTHLY, key="sub-fay", now=us("2027-01-10"))
    service.record_payment(shop.engine, shop.store, fay, key="fay-1", now=us("2027-02-01"))
    service.tick(shop.engine, shop.store, now=us("2027-03-10"))  # active Feb 9, past due Mar 9
    service.record_payment(shop.engine, shop.store, fay, key="fay-2", now=us("2027-03-15"))
    result = service.statement(shop.engine, shop.store, fay, 2027)
    by_order = {o.order_ref: o for o in result.orders}
    assert sorted(by_order) == ["F2", "F3", "F6", "F7"]
    # shipping spared: F2 599, F3 0 (charged), F6 599, F7 599 = 1797
    # 5% of items:    F2 200, F3 149.95 -> 150, F6 50.05 -> 50, F7 500 = 900
    # extra points (1 point per $ of items after discounts, x2 -> +1x):
    #                 F2 38.00 -> 38, F3 28.49 -> 28, F6 9.51 -> 9, F7 95 = 170
    assert [(o.shipping_saved_minor, o.discount_saved_minor, o.extra_points)
            for o in result.orders] == [(599, 200, 38), (0, 150, 28), (599, 50, 9), (599, 500, 95)]  # fmt: skip
    assert (result.shipping_saved_minor, result.discount_saved_minor, result.saved_minor) == (
        1797, 900, 2697,
    )  # fmt: skip
    assert result.fees_paid_minor == 999 + 999
    assert result.net_saved_minor == 699
    assert result.extra_points == 170
    assert service.statement(shop.engine, shop.store, fay, 2026).saved_minor == 0
    assert service.statement(shop.engine, shop.store, fay, 2028).orders == []


# -- the report ------------------------------------------------------------------------------

REPORT_ORDERS: list[Order] = [
    ("P1", "pam", "2027-01-20", 3000, 0, 0, "paid", "USD"),  # first in window, in her trial
    ("P2", "pam", "2027-03-01", 3000, 0, 0, "paid", "USD"),  # 40 days later: retained
    ("Q1", "quin", "2027-01-15", 3000, 0, 0, "paid", "USD"),  # before joining: non-member
    ("Q2", "quin", "2027-05-01", 3000, 0, 0, "paid", "USD"),  # 106 days later: not retained
    ("R0", "rob", "2026-09-01", 3000, 0, 0, "cancelled", "USD"),  # cancelled: ignored
    ("R1", "rob", "2026-10-01", 3000, 0, 0, "paid", "USD"),  # non-member
    ("R2", "rob", "2026-11-15", 3000, 0, 0, "paid", "USD"),  # 45 days later: retained
    ("S0", "sue", "2026-01-01", 3000, 0, 0, "paid", "USD"),  # before the window
    ("S1", "sue", "2027-03-01", 3000, 0, 0, "paid", "USD"),  # non-member, not retained
    ("T1", "tom", "2027-05-01", 3000, 0, 0, "paid", "USD"),  # after the window
]


def test_report_figures_by_hand(shop: Shop) -> None:
    make_store(shop, ["pam", "quin", "rob", "sue", "tom"], REPORT_ORDERS)
    pam, quin, rob, sue = (cid(shop, n) for n in ("pam", "quin", "rob", "sue"))
    service.subscribe(shop.engine, shop.store, pam, MONTHLY, key="s-pam", now=us("2027-01-10"))
    service.record_payment(shop.engine, shop.store, pam, key="p-pam-1", now=us("2027-02-01"))
    service.record_payment(shop.engine, shop.store, pam, key="p-pam-2", now=us("2027-03-01"))
    service.subscribe(shop.engine, shop.store, quin, MONTHLY, key="s-quin", now=us("2027-02-01"))
    service.record_payment(shop.engine, shop.store, quin, key="p-quin-1", now=us("2027-03-01"))
    service.subscribe(shop.engine, shop.store, rob, ANNUAL, key="s-rob", now=us("2027-04-15"))
    service.subscribe(shop.engine, shop.store, sue, MONTHLY, key="s-sue", now=us("2027-03-05"))
    service.cancel(shop.engine, shop.store, sue, at_period_end=False, now=us("2027-03-06"))
    as_of = us("2027-07-01")
    service.tick(shop.engine, shop.store, now=as_of)  # pam and quin stopped paying: expired

    report = service.membership_report(shop.db, shop.store, as_of=as_of)
    plans = {p["key"]: p for p in report.plans}
    assert {k: plans[MONTHLY][k] for k in ("live", "trial", "active", "past_due", "cancelled",
                                            "expired")} == {
        "live": 0, "trial": 0, "active": 0, "past_due": 0, "cancelled": 1, "expired": 2,
    }  # fmt: skip
    assert (plans[ANNUAL]["live"], plans[ANNUAL]["active"]) == (1, 1)
    assert report.revenue == [
        {"month": "2027-02", "payments": 1, "amount_minor": 999},
        {"month": "2027-03", "payments": 2, "amount_minor": 1998},
        {"month": "2027-04", "payments": 1, "amount_minor": 9900},
    ]
    assert report.revenue_total_minor == 12897
    # Window: [2026-04-02, 2027-04-02), 90 days to come back.
    assert (report.window_start, report.window_end) == (us("2026-04-02"), us("2027-04-02"))
    assert report.retention == {
        "members": {"customers": 1, "retained": 1, "rate": 1.0},
        "non_members": {"customers": 3, "retained": 1, "rate": 1 / 3},
    }

    html = service.membership_section(shop.db, shop.store, as_of=as_of)
    assert html.startswith('<section id="memberships">')
    for part in ('data-plan="plus-monthly"', 'data-month="2027-03"', "19.98", "128.97",
                 "100.0%", "33.3%", "2026-04-02"):  # fmt: skip
        assert part in html, part


def test_no_plans_no_section(shop: Shop) -> None:
    apply_frames(shop.db, shop.store, {}, currency="USD")
    assert service.membership_section(shop.db, shop.store) == ""


# -- the CLI ---------------------------------------------------------------------------------


def test_cli_round_trip(shop: Shop) -> None:
    make_store(shop, ["gus"], [("G1", "gus", "2027-01-15", 4000, 200, 0, "paid", "USD")])
    run = CliRunner()
    opts = ["--db", shop.db, "--store", shop.store]

    def ok(*args: str) -> str:
        result = run.invoke(cli, [*args, *opts])
        assert result.exit_code == 0, result.output + repr(result.exception)
        return result.output

    assert "plus-annual" in ok("plans", "set", str(PLANS))
    assert "plus-monthly" in ok("plans", "show")
    assert "plus-monthly" in ok("plans")
    assert '"status": "trial"' in ok("subscribe", "gus@example.com", MONTHLY, "--key", "k1",
                                     "--at", "2027-01-10")  # fmt: skip
    assert "membership_trial_ending" in ok("tick", "--at", "2027-02-06")
    assert '"status": "paid"' in ok("pay", "gus@example.com", "--key", "p1", "--at", "2027-02-07")
    assert "membership_renewed" in ok("tick", "--at", "2027-02-09")
    assert '"status": "active"' in ok("status", "gus@example.com", "--at", "2027-02-10")
    out = ok("statement", "gus@example.com", "--year", "2027")
    assert "You saved 7.99 USD in 2027 (-2.00 after membership fees)." in out
    assert '"cancel_at_period_end": true' in ok("cancel", "gus@example.com", "--at", "2027-02-11")
    assert '"revenue_total_minor": 999' in ok("report", "--as-of", "2027-07-01")
    failed = run.invoke(cli, ["pay", "gus@example.com", "--key", "p2", "--failed", *opts])
    assert failed.exit_code != 0 and isinstance(failed.exception, ConflictError)


def test_every_membership_command_and_option_has_help() -> None:
    missing = []
    stack = [((), get_command(cli))]
    while stack:
        path, group = stack.pop()
        for name, cmd in getattr(group, "commands", {}).items():
            here = (*path, name)
            stack.append((here, cmd))
            if not (cmd.help or cmd.short_help):
                missing.append(" ".join(here))
            missing += [
                f"{' '.join(here)} {p.opts[0]}"
                for p in cmd.params
                if p.param_type_name == "option" and not getattr(p, "help", None)
            ]
    assert missing == []
