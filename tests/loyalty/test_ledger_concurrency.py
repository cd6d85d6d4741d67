"""The points ledger under real concurrency and crashes (SQLite and PostgreSQL).

Why: the ledger is money-like. Concurrent redemptions must never overdraw a balance, a
retried request (same idempotency key) must apply once however many copies arrive at once,
the daily expiry job must expire each point once even when it runs twice or as concurrent
copies, and a writer killed mid-batch must leave no half-written transaction behind.
Every caller here has its own engine (own connection): threads spread over forked OS
processes, so SQLite's BEGIN IMMEDIATE and PostgreSQL's row locks do the serialising.

- L1: 64 concurrent redemptions of 100 points against 1,000, 50 rounds: 10 win per round.
- L2: 1,000 earns each sent 3 times at once with the same key: 1,000 transactions.
- The idempotency namespace: `sys:` keys are the ledger's; clients cannot block them.
- L4: the expiry jobs (lot, inactivity, expiring-soon events) run twice and concurrently.
- L6: a batch writer killed with SIGKILL at random moments, then re-run to completion.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import Engine, text
from tests.loyalty.ledger_support import (
    DAY,
    FORK,
    Shop,
    assert_sound,
    make_shop,
    points,
    program_totals,
    run_workers,
    scalar,
    transactions,
    write_program,
)

from boomerang.domain.clock import to_micros
from boomerang.errors import ConflictError, InputError, NotFoundError
from boomerang.services import loyalty as service
from boomerang.services.context import open_engine

T0 = to_micros(datetime(2027, 3, 1, tzinfo=UTC))


@pytest.fixture
def shop(db: str) -> Iterator[Shop]:
    found = make_shop(db, 12)
    yield found
    found.close()


# -- L1: concurrent redemptions ------------------------------------------------------------------

L1_WORKERS = 64
L1_ROUNDS = 50
L1_BALANCE = 1_000
L1_POINTS = 100


@pytest.mark.slow
@pytest.mark.xdist_group("loyalty-processes")
def test_l1_concurrent_redemptions_never_overdraw(shop: Shop) -> None:
    """64 redemptions of 100 at once against 1,000 points, 50 rounds (topped back up to
    1,000 between rounds): exactly 10 succeed per round, each success sees a distinct
    balance 900, 800, ... 0, the losers are told the balance (0) and the request (100)."""
    cid = shop.customers[0]
    store = shop.store
    service.earn(shop.engine, store, cid, L1_BALANCE, key="top-up:0", now=T0)
    redeemed_before = 0

    def redeem(engine: Engine, r: int, w: int) -> service.LedgerResult:
        return service.redeem(engine, store, cid, L1_POINTS, key=f"redeem:{r}:{w}")

    def between(r: int) -> None:
        nonlocal redeemed_before
        assert points(shop, cid) == 0, f"round {r}"
        redeemed = program_totals(shop)["redeemed"]
        assert redeemed - redeemed_before == L1_BALANCE, f"round {r}"
        redeemed_before = redeemed
        assert_sound(shop)
        if r + 1 < L1_ROUNDS:
            service.earn(shop.engine, store, cid, L1_BALANCE, key=f"top-up:{r + 1}")

    started = time.monotonic()
    rounds = run_workers(
        shop.db, redeem, workers=L1_WORKERS, rounds=L1_ROUNDS, processes=8, between=between
    )
    elapsed = time.monotonic() - started

    want_loss = f"customer {cid} has 0 points, {L1_POINTS} requested"
    for r, outcomes in enumerate(rounds):
        wins = [o.value for o in outcomes if o.ok]
        losses = [o for o in outcomes if not o.ok]
        assert len(wins) == L1_BALANCE // L1_POINTS, (r, len(wins))
        assert sorted(w.balance for w in wins) == list(range(0, L1_BALANCE, L1_POINTS)), r
        assert all(w.delta == -L1_POINTS and not w.replayed for w in wins), r
        assert {(o.error, o.message) for o in losses} == {("InsufficientError", want_loss)}, r
    assert points(shop, cid) == 0
    assert scalar(
        shop.engine, "SELECT count(*) FROM loyalty_transactions WHERE kind = 'redeem'"
    ) == L1_ROUNDS * (L1_BALANCE // L1_POINTS)
    assert program_totals(shop)["redeemed"] == L1_ROUNDS * L1_BALANCE
    print(f"\nL1 {shop.db.split(':')[0]}: {L1_ROUNDS} rounds x {L1_WORKERS} in {elapsed:.1f}s")


# -- L2: duplicate deliveries ----------------------------------------------------------------------

L2_EARNS = 1_000
L2_COPIES = 3
L2_GROUPS = 4  # earns in flight at once, each sent by L2_COPIES workers


def l2_points(i: int) -> int:
    return 1 + i % 97


@pytest.mark.slow
@pytest.mark.xdist_group("loyalty-processes")
def test_l2_duplicate_requests_apply_once(shop: Shop) -> None:
    """1,000 earns, each sent 3 times at the same moment with the same key (4 trios of
    workers, each trio at its own pace, one customer each): exactly one of each trio
    writes, the other two replay its stored result; 1,000 transactions, 1,000 lots,
    balances = the sums. The same key with another body is a ConflictError that changes
    nothing."""
    store = shop.store
    cids = shop.customers[:L2_GROUPS]

    def earn(engine: Engine, r: int, w: int) -> service.LedgerResult:
        g = w // L2_COPIES
        i = r * L2_GROUPS + g
        return service.earn(engine, store, cids[g], l2_points(i), key=f"earn-{i}")

    rounds = run_workers(
        shop.db,
        earn,
        workers=L2_GROUPS * L2_COPIES,
        rounds=L2_EARNS // L2_GROUPS,
        processes=4,
        group=L2_COPIES,
    )
    by_key: dict[int, list[service.LedgerResult]] = {}
    for r, outcomes in enumerate(rounds):
        for w, o in enumerate(outcomes):
            assert o.ok, (r, w, o)
            by_key.setdefault(r * L2_GROUPS + w // L2_COPIES, []).append(o.value)
    assert sorted(by_key) == list(range(L2_EARNS))
    for i, copies in by_key.items():
        assert sorted(c.replayed for c in copies) == [False, True, True], i
        first = next(c for c in copies if not c.replayed)
        assert first.delta == l2_points(i)
        # A replay returns the stored result: same transaction, same balance after it.
        assert {(c.transaction_id, c.delta, c.balance) for c in copies} == {
            (first.transaction_id, first.delta, first.balance)
        }, i

    want = {cid: 0 for cid in cids}
    for i in range(L2_EARNS):
        want[cids[(i % L2_GROUPS)]] += l2_points(i)
    assert {cid: points(shop, cid) for cid in cids} == want
    earns = transactions(shop, "kind = 'earn'")
    assert len(earns) == L2_EARNS
    assert {t["idempotency_key"] for t in earns} == {f"earn-{i}" for i in range(L2_EARNS)}
    assert scalar(shop.engine, "SELECT count(*) FROM loyalty_lots") == L2_EARNS
    assert scalar(shop.engine, "SELECT count(*) FROM loyalty_entries") == 2 * L2_EARNS
    assert scalar(shop.engine, "SELECT count(*) FROM loyalty_events") == L2_EARNS
    assert -program_totals(shop)["issued"] == sum(want.values())
    assert_sound(shop)

    # The same key with another body: a conflict, and nothing changes.
    for i in (0, 1, 499, 999):
        cid = cids[i % L2_GROUPS]
        with pytest.raises(ConflictError, match=f"key 'earn-{i}' was already used") as caught:
            service.earn(shop.engine, store, cid, l2_points(i) + 1, key=f"earn-{i}")
        assert type(caught.value) is ConflictError
        with pytest.raises(ConflictError):  # another customer, same points
            service.earn(
                shop.engine, store, cids[(i + 1) % L2_GROUPS], l2_points(i), key=f"earn-{i}"
            )
        with pytest.raises(ConflictError):  # another kind of request
            service.redeem(shop.engine, store, cid, 1, key=f"earn-{i}")
    assert {cid: points(shop, cid) for cid in cids} == want
    assert len(transactions(shop)) == L2_EARNS


# -- the idempotency namespace ----------------------------------------------------------------------

NAMESPACE_PROGRAM = """
earn: {points_per_unit: 1, birthday: 100}
tiers:
  basis: points
  levels:
    - {name: Silver, threshold: 0}
    - {name: Gold, threshold: 1000, entry_points: 100}
"""


def test_client_keys_cannot_use_the_system_namespace(shop: Shop) -> None:
    """Keys starting `sys:` are the ledger's own: every keyed client call refuses them with
    InputError and writes nothing."""
    e, store, cid = shop.engine, shop.store, shop.customers[0]
    service.earn(e, store, cid, 500, key="seed", now=T0)
    calls: dict[str, Callable[[], object]] = {
        "earn": lambda: service.earn(e, store, cid, 10, key="sys:order:A:step:0"),
        "redeem": lambda: service.redeem(e, store, cid, 10, key="sys:x"),
        "adjust": lambda: service.adjust(e, store, cid, 5, key="sys:x", reason="r", actor="a"),
        "credit": lambda: service.grant_credit(e, store, cid, 100, key="sys:x", reason="r"),
        "spend-credit": lambda: service.spend_credit(e, store, cid, 1, key="sys:x"),
    }
    for name, call in calls.items():
        with pytest.raises(InputError, match="reserved for the ledger itself"):
            call()
        assert len(transactions(shop)) == 1, name
    assert points(shop, cid) == 500
    # `sys` without the colon, or inside a key, is an ordinary client key.
    assert not service.earn(e, store, cid, 1, key="sys-1").replayed
    assert not service.earn(e, store, cid, 1, key="x:sys:1").replayed
    assert points(shop, cid) == 502


def test_a_client_key_never_blocks_or_replays_a_system_write(shop: Shop, tmp_path: Path) -> None:
    """A client key spelled like a system key without the prefix (`order:<ref>:step:0`,
    `birthday:<cid>:<year>`, `expire:lot:<id>`, `tier-entry:<cid>:<tier>`) is a separate
    key: the order is still awarded, the birthday points and tier entry points still given,
    the lot still expires; and the system write does not replay the client's request."""
    e, store = shop.engine, shop.store
    a, b = shop.customers[:2]
    service.set_program(shop.db, store, write_program(tmp_path / "p.yaml", NAMESPACE_PROGRAM))

    # Client first, then the order sync that would have used that key.
    service.earn(e, store, a, 7, key="order:A-1:step:0", now=T0)
    got = service.sync_order(e, store, a, "A-1", 150, now=T0)
    assert (got.delta, got.replayed, got.balance) == (150, False, 157)
    # Order sync first, then a client request with the bare key: a new earn, no conflict.
    service.sync_order(e, store, b, "B-1", 40, now=T0)
    got = service.earn(e, store, b, 3, key="order:B-1:step:0", now=T0)
    assert (got.delta, got.replayed, got.balance) == (3, False, 43)
    assert [t["idempotency_key"] for t in transactions(shop, "kind = 'award'")] == [
        "sys:order:A-1:step:0",
        "sys:order:B-1:step:0",
    ]

    # Birthday points: the client took `birthday:<a>:2027` first.
    birthday = datetime(2027, 5, 17, 9, tzinfo=UTC)
    with e.begin() as conn:  # only `a` has a birthday, on 17 May
        conn.execute(text("UPDATE customers SET birthday = NULL"))
        conn.execute(text("UPDATE customers SET birthday = '05-17' WHERE id = :a"), {"a": a})
    service.earn(e, store, a, 1, key=f"birthday:{a}:2027", now=T0)
    assert service.birthday_points(e, store, now=to_micros(birthday)) == 1
    assert service.birthday_points(e, store, now=to_micros(birthday)) == 0  # once a year
    assert points(shop, a) == 157 + 1 + 100

    # Expiry: a client request keyed like the expiry of a lot does not stop the expiry.
    lot = service.earn(e, store, b, 60, key="soon", expires_at=T0 + DAY, now=T0)
    lot_id = scalar(
        e, "SELECT id FROM loyalty_lots WHERE transaction_id = :t", t=lot.transaction_id
    )
    service.earn(e, store, b, 2, key=f"expire:lot:{lot_id}", now=T0)
    assert points(shop, b) == 43 + 60 + 2
    got_expiry = service.expire(e, store, now=T0 + 2 * DAY)
    assert (got_expiry.lots, got_expiry.points) == (1, 60)
    assert points(shop, b) == 45

    # Tier entry points: the client took `tier-entry:<b>:Gold` first.
    service.earn(e, store, b, 955, key=f"tier-entry:{b}:Gold", now=T0)  # earned: 1,000+
    change = service.evaluate_tier(e, store, b, now=T0 + 3 * DAY)
    assert (change.old, change.new) == (None, "Gold")
    assert points(shop, b) == 45 + 955 + 100
    assert_sound(shop)


def test_earning_for_a_customer_of_another_store_writes_nothing(shop: Shop) -> None:
    """A customer id from another store, or one that does not exist, is NotFoundError for
    every keyed call, and nothing is written (no transaction, account, lot or event)."""
    other = make_shop(shop.db, 3, store="other", seed=8)
    try:
        e, store = shop.engine, shop.store
        for cid in (other.customers[0], 999_999):
            k = f"k{cid}"
            calls: dict[str, tuple[Any, ...]] = {
                "earn": (service.earn, e, store, cid, 10),
                "redeem": (service.redeem, e, store, cid, 10),
                "adjust": (partial(service.adjust, reason="r", actor="a"), e, store, cid, 10),
                "credit": (partial(service.grant_credit, reason="r"), e, store, cid, 10),
                "spend-credit": (service.spend_credit, e, store, cid, 10),
            }
            for name, (call, *args) in calls.items():
                with pytest.raises(NotFoundError, match=f"no customer {cid} in this store"):
                    call(*args, key=k)
                assert name
        with pytest.raises(NotFoundError, match="in this store"):
            service.sync_order(e, store, other.customers[0], "X-1", 10)
        for table in ("loyalty_transactions", "loyalty_accounts", "loyalty_lots", "loyalty_events"):
            assert scalar(e, f"SELECT count(*) FROM {table}") == 0, table
    finally:
        other.close()


def test_sync_order_for_another_stores_customer_writes_nothing(shop: Shop) -> None:
    other = make_shop(shop.db, 3, store="other", seed=8)
    try:
        with pytest.raises(NotFoundError):
            service.sync_order(shop.engine, shop.store, other.customers[0], "X-1", 0)
    finally:
        accounts = scalar(shop.engine, "SELECT count(*) FROM loyalty_accounts")
        other.close()
    assert accounts == 0


def test_sync_order_unknown_customer_is_not_found(shop: Shop) -> None:
    with pytest.raises(NotFoundError):
        service.sync_order(shop.engine, shop.store, 999_999, "X-1", 10)


# -- L4: the expiry jobs, twice and concurrently --------------------------------------------------

L4_CUSTOMERS = 8
L4_LOTS = 12  # per customer: 96 lots due


def l4_lots(shop: Shop, tag: str, earned: int) -> int:
    """Per customer: 12 lots of 10, 20, ... 120 points expiring 1-5 days after ``earned``,
    5 points of the first spent, plus a lot that never expires (1,000) and one expiring
    in 100 days (50). Returns the points left in the 96 lots that will be due."""
    for cid in shop.customers[:L4_CUSTOMERS]:
        for j in range(L4_LOTS):
            service.earn(
                shop.engine, shop.store, cid, 10 * (j + 1), key=f"{tag}:{cid}:{j}",
                expires_at=earned + (1 + j % 5) * DAY, now=earned,
            )  # fmt: skip
        service.earn(shop.engine, shop.store, cid, 1_000, key=f"{tag}:{cid}:keep", now=earned)
        service.earn(
            shop.engine, shop.store, cid, 50, key=f"{tag}:{cid}:later",
            expires_at=earned + 100 * DAY, now=earned,
        )  # fmt: skip
        service.redeem(shop.engine, shop.store, cid, 5, key=f"{tag}:{cid}:spend", now=earned)
    return L4_CUSTOMERS * (sum(10 * (j + 1) for j in range(L4_LOTS)) - 5)  # 8 x 775


def l4_expire(engine: Engine, r: int, w: int, *, store: str, now: int) -> service.ExpiryResult:
    return service.expire(engine, store, now=now)


def expire_keys(shop: Shop) -> Counter[str]:
    return Counter(t["idempotency_key"] for t in transactions(shop, "kind = 'expire'"))


@pytest.mark.slow
@pytest.mark.xdist_group("loyalty-processes")
def test_l4_lot_expiry_runs_once_sequentially_and_concurrently(shop: Shop) -> None:
    """96 lots past their expiry: `expire` run twice = run once (6,200 points in 96 lots,
    then nothing is due); on a fresh set of 96, two concurrent copies (separate processes)
    expire each lot exactly once and their totals add up to the remainders."""
    cids = shop.customers[:L4_CUSTOMERS]
    due = l4_lots(shop, "a", T0)
    assert due == 6_200
    first = service.expire(shop.engine, shop.store, now=T0 + 10 * DAY)
    assert (first.lots, first.points, first.replayed) == (96, 6_200, 0)
    second = service.expire(shop.engine, shop.store, now=T0 + 10 * DAY)
    assert (second.lots, second.points, second.replayed) == (0, 0, 0)
    assert {cid: points(shop, cid) for cid in cids} == dict.fromkeys(cids, 1_050)
    assert program_totals(shop)["expired"] == 6_200
    keys = expire_keys(shop)
    assert len(keys) == 96 and set(keys.values()) == {1}
    assert all(k.startswith("sys:expire:lot:") for k in keys)
    assert_sound(shop)

    # A fresh set, then two copies of the job at once; twice.
    for attempt in range(2):
        earned = T0 + (20 + 20 * attempt) * DAY
        due = l4_lots(shop, f"b{attempt}", earned)
        before = program_totals(shop)["expired"]
        now = earned + 10 * DAY
        rounds = run_workers(
            shop.db,
            partial(l4_expire, store=shop.store, now=now),
            workers=2,
            rounds=1,
            processes=2,
        )
        copies = [o.value for o in rounds[0]]
        assert all(o.ok for o in rounds[0]), rounds[0]
        assert sum(c.lots for c in copies) == 96, copies
        assert sum(c.points for c in copies) == due == 6_200, copies
        assert all(c.lots + c.replayed <= 96 for c in copies), copies
        assert program_totals(shop)["expired"] - before == due
        keys = expire_keys(shop)
        assert len(keys) == 96 * (attempt + 2) and set(keys.values()) == {1}
        # The lots that do not expire yet are untouched: 1,000 + 50 per set, per customer.
        assert {cid: points(shop, cid) for cid in cids} == dict.fromkeys(
            cids, 1_050 * (attempt + 2)
        )
        assert_sound(shop)
    # Every due lot is empty; nothing else was touched.
    assert (
        scalar(
            shop.engine,
            "SELECT count(*) FROM loyalty_lots WHERE expires_at <= :t AND remaining <> 0",
            t=T0 + 70 * DAY,
        )
        == 0
    )


INACTIVITY_PROGRAM = "expiry: {mode: inactivity, days: 30}\n"


def l4_expire_inactive(
    engine: Engine, r: int, w: int, *, store: str, now: int
) -> service.ExpiryResult:
    return service.expire_inactive(engine, store, now=now)


def l4_warn(engine: Engine, r: int, w: int, *, store: str, now: int) -> int:
    return service.warn_expiring(engine, store, days=30, now=now)


@pytest.mark.xdist_group("loyalty-processes")
def test_l4_inactivity_expiry_runs_once(shop: Shop, tmp_path: Path) -> None:
    """`expiry.mode: inactivity` (30 days): an account idle for 40 days loses its whole
    balance once however often the job runs; an account active 20 days ago keeps it; once
    the idle customer earns again, the new balance expires only after another idle spell.
    Then 8 idle accounts and two copies of the job at once: each expires once."""
    service.set_program(shop.db, shop.store, write_program(tmp_path / "p.yaml", INACTIVITY_PROGRAM))
    e, store = shop.engine, shop.store
    idle, active = shop.customers[:2]
    service.earn(e, store, idle, 300, key="i1", now=T0)
    service.earn(e, store, idle, 200, key="i2", expires_at=T0 + 400 * DAY, now=T0)
    service.earn(e, store, active, 300, key="a1", now=T0)
    service.redeem(e, store, active, 100, key="a2", now=T0 + 20 * DAY)
    now = T0 + 40 * DAY
    runs = [service.expire_inactive(e, store, now=now) for _ in range(3)]
    assert [(r.lots, r.points, r.replayed) for r in runs] == [(1, 500, 0), (0, 0, 0), (0, 0, 0)]
    assert (points(shop, idle), points(shop, active)) == (0, 200)
    assert program_totals(shop)["expired"] == 500
    # Active again at day 41; idle from then: nothing at day 70, all of it at day 72.
    service.earn(e, store, idle, 70, key="i3", now=T0 + 41 * DAY)
    assert service.expire_inactive(e, store, now=T0 + 70 * DAY).points == 200  # `active` only
    assert points(shop, idle) == 70
    got = service.expire_inactive(e, store, now=T0 + 72 * DAY)
    assert (got.lots, got.points) == (1, 70)
    assert (points(shop, idle), points(shop, active)) == (0, 0)
    assert len(transactions(shop, "kind = 'expire'")) == 3

    cids = shop.customers[2 : 2 + L4_CUSTOMERS]
    for i, cid in enumerate(cids):
        service.earn(e, store, cid, 100 + i, key=f"e{cid}", now=T0 + 100 * DAY)
    rounds = run_workers(
        shop.db,
        partial(l4_expire_inactive, store=store, now=T0 + 131 * DAY),
        workers=2,
        rounds=1,
        processes=2,
    )
    copies = [o.value for o in rounds[0]]
    assert all(o.ok for o in rounds[0]), rounds[0]
    assert sum(c.lots for c in copies) == L4_CUSTOMERS
    assert sum(c.points for c in copies) == sum(100 + i for i in range(L4_CUSTOMERS))
    assert {cid: points(shop, cid) for cid in cids} == dict.fromkeys(cids, 0)
    assert len(transactions(shop, "kind = 'expire'")) == 3 + L4_CUSTOMERS
    assert_sound(shop)


class _EarnBeforeFirstWrite:
    """An engine whose first write transaction is preceded by a customer's earn: what
    happens when a customer shops between the job's listing and its per-account step."""

    def __init__(self, engine: Engine, earn: Callable[[], object]) -> None:
        self._engine = engine
        self._earn: Callable[[], object] | None = earn

    def connect(self) -> Any:
        return self._engine.connect()

    def begin(self) -> Any:
        if self._earn is not None:
            earn, self._earn = self._earn, None
            earn()
        return self._engine.begin()


def test_inactivity_expiry_spares_points_earned_after_the_listing(
    shop: Shop, tmp_path: Path
) -> None:
    service.set_program(shop.db, shop.store, write_program(tmp_path / "p.yaml", INACTIVITY_PROGRAM))
    e, store, cid = shop.engine, shop.store, shop.customers[0]
    service.earn(e, store, cid, 300, key="old", now=T0)
    now = T0 + 40 * DAY
    racing = _EarnBeforeFirstWrite(e, lambda: service.earn(e, store, cid, 80, key="new", now=now))
    service.expire_inactive(cast(Engine, racing), store, now=now)
    # The customer earned at `now`: the account is active; at least the 80 must survive.
    assert points(shop, cid) >= 80


@pytest.mark.slow
@pytest.mark.xdist_group("loyalty-processes")
def test_l4_expiring_soon_events_once_per_lot(shop: Shop) -> None:
    """`warn_expiring` writes one `points_expiring` event per lot expiring within the window
    (not for lots already expired, beyond the window, or without expiry), however often it
    runs; later lots get theirs when they come into the window. Then 96 new lots and two
    copies of the job at once (separate processes): 96 events in all."""
    e, store = shop.engine, shop.store
    for i, cid in enumerate(shop.customers[:6]):
        for d in (-1, 3, 10, 29, 31, 45):
            service.earn(
                e, store, cid, 10 + i, key=f"w{cid}:{d}", expires_at=T0 + d * DAY + 1, now=T0 - 2 * DAY
            )  # fmt: skip
        service.earn(e, store, cid, 5, key=f"w{cid}:never", now=T0)
    runs = [service.warn_expiring(e, store, days=30, now=T0) for _ in range(3)]
    assert runs == [18, 0, 0]  # 3 lots (3, 10, 29 days) x 6 customers
    runs = [service.warn_expiring(e, store, days=30, now=T0 + 20 * DAY) for _ in range(2)]
    assert runs == [12, 0]  # the 31- and 45-day lots are now inside the window
    count = "SELECT count(*) FROM loyalty_events WHERE type = 'points_expiring'"
    assert scalar(e, count) == 30

    for cid in shop.customers[:L4_CUSTOMERS]:
        for j in range(L4_LOTS):
            service.earn(
                e, store, cid, 10, key=f"v{cid}:{j}", expires_at=T0 + (101 + j) * DAY, now=T0
            )  # fmt: skip
    rounds = run_workers(
        shop.db, partial(l4_warn, store=store, now=T0 + 90 * DAY), workers=2, rounds=1, processes=2
    )
    assert all(o.ok for o in rounds[0]), rounds[0]
    assert sum(o.value for o in rounds[0]) == 96
    assert scalar(e, count) == 30 + 96
    dupes = scalar(
        e,
        "SELECT count(*) FROM (SELECT dedupe_key FROM loyalty_events "
        "GROUP BY dedupe_key HAVING count(*) > 1) d",
    )
    assert dupes == 0


# -- L6: a writer killed mid-batch ------------------------------------------------------------------

L6_WRITERS = 2  # child processes, each with its own customers
L6_CUSTOMERS = 2  # per writer
L6_CYCLES = 29  # per customer: 29 earns of 10, then one redemption of 285 (~29 lots)
L6_KILLS = 6


def l6_plan(cids: list[int]) -> list[tuple[str, int, int, str]]:
    """One writer's batch: (kind, customer, points, key), customers interleaved by cycle."""
    plan: list[tuple[str, int, int, str]] = []
    for cycle in range(L6_CYCLES):
        for cid in cids:
            for j in range(29):
                plan.append(("earn", cid, 10, f"b:{cid}:{cycle}:e{j}"))
            plan.append(("redeem", cid, 285, f"b:{cid}:{cycle}:r"))
    return plan


def l6_write(db: str, store: str, plan: list[tuple[str, int, int, str]]) -> None:
    """The child: run the batch from the start (done requests replay), then exit."""
    engine = open_engine(db)
    for kind, cid, pts, key in plan:
        if kind == "earn":
            service.earn(engine, store, cid, pts, key=key)
        else:
            service.redeem(engine, store, cid, pts, key=key)
    engine.dispose()


def l6_expected(plan: list[tuple[str, int, int, str]], done: int) -> dict[int, int]:
    """Each customer's balance after the first ``done`` requests of the plan."""
    out: dict[int, int] = {}
    for kind, cid, pts, _ in plan[:done]:
        out[cid] = out.get(cid, 0) + (pts if kind == "earn" else -pts)
    return out


@pytest.mark.slow
@pytest.mark.xdist_group("loyalty-processes")
def test_l6_killed_writers_leave_no_half_written_transaction(shop: Shop) -> None:
    """Two child processes write a batch of over 10,000 entries (earns and redemptions that
    span ~29 lots each) and are killed with SIGKILL at random moments, 6 times; after each
    kill: every transaction's entries sum to 0, every committed transaction has its result,
    each writer's committed requests are a prefix of its batch (no gap, no partial request)
    and every balance = sum of entries = sum of lot remainders = what that prefix gives.
    Re-running the batch with the same keys completes it: the totals are exact."""
    rng = random.Random(20_270_301)
    cids = shop.customers[: L6_WRITERS * L6_CUSTOMERS]
    plans = [l6_plan(cids[w::L6_WRITERS]) for w in range(L6_WRITERS)]
    order = {key: i for plan in plans for i, (_, _, _, key) in enumerate(plan)}
    writer_of = {key: w for w, plan in enumerate(plans) for (_, _, _, key) in plan}

    def start() -> list[Any]:
        children = [
            FORK.Process(target=l6_write, args=(shop.db, shop.store, plan), daemon=True)
            for plan in plans
        ]
        for child in children:
            child.start()
        return children

    def check() -> list[int]:
        """The ledger is sound; returns how many requests of each writer are committed."""
        assert_sound(shop)
        done: list[list[int]] = [[] for _ in plans]
        for t in transactions(shop):
            done[writer_of[t["idempotency_key"]]].append(order[t["idempotency_key"]])
        counts = [len(d) for d in done]
        for w, d in enumerate(done):
            assert sorted(d) == list(range(len(d))), f"writer {w}: not a prefix of its batch"
        for cid in cids:
            w = cids.index(cid) % L6_WRITERS
            assert points(shop, cid) == l6_expected(plans[w], counts[w]).get(cid, 0), cid
        return counts

    kills: list[list[int]] = []
    while len(kills) < L6_KILLS:
        children = start()
        # Short lives: on a fast machine a writer committed over half its batch by the
        # last kill with 0.5-2.5 s lives; each life replays what is done, then goes on.
        time.sleep(rng.uniform(0.3, 1.5))
        alive = [c for c in children if c.is_alive()]
        for child in alive:
            os.kill(child.pid, signal.SIGKILL)
        for child in children:
            child.join(30)
        assert len(alive) == L6_WRITERS, "the batch finished before the kill"
        assert all(c.exitcode == -signal.SIGKILL for c in children)
        kills.append(check())
    assert sum(kills[-1]) > sum(kills[0]), kills  # the writers made progress between kills

    for child in start():  # the re-run, not killed
        child.join(300)
        assert child.exitcode == 0
    assert check() == [len(p) for p in plans]
    entries = scalar(shop.engine, "SELECT count(*) FROM loyalty_entries")
    assert entries >= 10_000, entries
    balance = L6_CYCLES * (29 * 10 - 285)  # 5 points left per cycle
    assert {cid: points(shop, cid) for cid in cids} == dict.fromkeys(cids, balance)
    totals = program_totals(shop)
    assert (totals["issued"], totals["redeemed"]) == (
        -len(cids) * L6_CYCLES * 290,
        len(cids) * L6_CYCLES * 285,
    )
    print(
        f"\nL6 {shop.db.split(':')[0]}: committed per writer at each kill: {kills}; {entries} entries"
    )
