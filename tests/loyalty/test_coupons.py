"""Coupon codes under concurrency, their entropy and spelling, and their rules.

Why: a coupon is money. A single-use code raced by 64 checkouts must be used once; a
1,000-use code raced by 1,500 exactly 1,000 times (the count is checked and raised under the
coupon's row lock, docs/loyalty.md); a retried checkout (same key) replays and a key reused
for another customer or order is a conflict. Codes must not collide or be guessable
(60 bits from the OS CSPRNG, 12 Crockford base32 characters), and what a shopper types
(case, dashes, spaces, I/L/O) must find the code.

- C1: the concurrent consumes (threads over forked OS processes, own engines), SQLite + PG.
- C2: 1,000,000 generated codes: no collision, alphabet, length, every character equally
  likely in every position; `normalise_code` undoes `format_code` and the typos.
- Rules: expiry, a customer-bound coupon, the per-customer limit (also under concurrency),
  `validate` never consumes, unknown codes and bad coupons.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest
from sqlalchemy import Engine, text
from tests.loyalty.ledger_support import (
    DAY,
    FORK,
    Shop,
    make_shop,
    run_threads,
    run_workers,
    scalar,
)

from boomerang.domain.clock import to_micros
from boomerang.errors import ConflictError, InputError, InsufficientError, NotFoundError
from boomerang.services import loyalty as service

T0 = to_micros(datetime(2027, 3, 1, tzinfo=UTC))


@pytest.fixture
def shop(db: str) -> Iterator[Shop]:
    found = make_shop(db, 12)
    yield found
    found.close()


def issue(shop: Shop, **kw: Any) -> str:
    kw.setdefault("now", T0)
    return service.issue_coupon(shop.engine, shop.store, kind="amount_off", value=500, **kw).code


def uses(shop: Shop, code: str) -> tuple[int, int]:
    """(the coupon's use count, its redemption rows)."""
    return (
        scalar(shop.engine, "SELECT uses FROM coupons WHERE code = :c", c=code),
        scalar(
            shop.engine,
            "SELECT count(*) FROM coupon_redemptions r JOIN coupons c ON c.id = r.coupon_id "
            "WHERE c.code = :c",
            c=code,
        ),
    )


def consume(
    engine: Engine, r: int, w: int, *, store: str, code: str, cids: list[int], workers: int
) -> dict[str, Any]:
    """Worker ``w``'s checkout in round ``r``: its own key, a customer, an order."""
    i = r * workers + w
    return service.consume_coupon(
        engine, store, code, key=f"checkout-{i}", customer_id=cids[i % len(cids)],
        order_ref=f"#{i}", now=T0,
    )  # fmt: skip


# -- C1 -----------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.xdist_group("loyalty-processes")
def test_c1_single_use_coupon_raced_by_64(shop: Shop) -> None:
    """64 checkouts at once (distinct keys) on a single-use code: exactly 1 succeeds, 63
    are told it is used up; uses = 1."""
    code = issue(shop, max_uses=1)
    shown = service.format_code(code)
    rounds = run_workers(
        shop.db,
        partial(consume, store=shop.store, code=code, cids=shop.customers, workers=64),
        workers=64,
        rounds=1,
        processes=8,
    )
    outcomes = rounds[0]
    wins = [o.value for o in outcomes if o.ok]
    assert len(wins) == 1, wins
    assert wins[0] == {"code": shown, "replayed": False, "uses": 1}
    assert {(o.error, o.message) for o in outcomes if not o.ok} == {
        ("InsufficientError", f"coupon {shown} is used up")
    }
    assert sum(not o.ok for o in outcomes) == 63
    assert uses(shop, code) == (1, 1)


C1_MAX = 1_000
C1_CONSUMES = 1_500
C1_WORKERS = 60


@pytest.mark.slow
@pytest.mark.xdist_group("loyalty-processes")
def test_c1_thousand_use_coupon_raced_by_1500(shop: Shop) -> None:
    """1,500 checkouts (60 at a time, each with its own key) on a 1,000-use code: exactly
    1,000 succeed, each seeing a distinct use count 1..1,000; 500 are told it is used up;
    uses = 1,000 = redemption rows."""
    code = issue(shop, max_uses=C1_MAX)
    rounds = run_workers(
        shop.db,
        partial(consume, store=shop.store, code=code, cids=shop.customers, workers=C1_WORKERS),
        workers=C1_WORKERS,
        rounds=C1_CONSUMES // C1_WORKERS,
        processes=6,
        lockstep=False,
    )
    outcomes = [o for row in rounds for o in row]
    assert len(outcomes) == C1_CONSUMES
    wins = [o.value for o in outcomes if o.ok]
    assert sorted(w["uses"] for w in wins) == list(range(1, C1_MAX + 1))
    assert {o.error for o in outcomes if not o.ok} == {"InsufficientError"}
    assert sum(not o.ok for o in outcomes) == C1_CONSUMES - C1_MAX
    assert uses(shop, code) == (C1_MAX, C1_MAX)


def test_c1_replays_and_conflicts(shop: Shop) -> None:
    """The same key, customer and order replay (nothing used again, even once the code is
    used up); the same key for another customer or another order is a conflict."""
    e, store = shop.engine, shop.store
    a, b = shop.customers[:2]
    code = issue(shop, max_uses=1)
    first = service.consume_coupon(e, store, code, key="k1", customer_id=a, order_ref="#1", now=T0)
    assert (first["replayed"], first["uses"]) == (False, 1)
    for _ in range(2):
        again = service.consume_coupon(
            e, store, code, key="k1", customer_id=a, order_ref="#1", now=T0
        )
        assert again == {"code": service.format_code(code), "replayed": True}
    with pytest.raises(ConflictError, match="for another customer or order"):
        service.consume_coupon(e, store, code, key="k1", customer_id=b, order_ref="#1", now=T0)
    with pytest.raises(ConflictError, match="for another customer or order"):
        service.consume_coupon(e, store, code, key="k1", customer_id=a, order_ref="#2", now=T0)
    with pytest.raises(ConflictError, match="for another customer or order"):
        service.consume_coupon(e, store, code, key="k1", customer_id=None, order_ref="#1", now=T0)
    with pytest.raises(InsufficientError, match="used up"):
        service.consume_coupon(e, store, code, key="k2", customer_id=a, order_ref="#1", now=T0)
    assert uses(shop, code) == (1, 1)


def test_c1_per_customer_limit_under_concurrency(shop: Shop) -> None:
    """16 checkouts at once by one customer on a code allowed 3 times per customer (100 in
    all): exactly 3 succeed; another customer can still use it."""
    e, store = shop.engine, shop.store
    a, b = shop.customers[:2]
    code = issue(shop, max_uses=100, per_customer=3)

    def checkout(i: int) -> Any:
        return lambda eng: service.consume_coupon(
            eng, store, code, key=f"a{i}", customer_id=a, now=T0
        )

    outcomes = run_threads(shop.db, [checkout(i) for i in range(16)])
    assert sum(o.ok for o in outcomes) == 3
    assert {o.message for o in outcomes if not o.ok} == {
        "this customer has used the coupon as often as allowed"
    }
    assert not service.consume_coupon(e, store, code, key="b1", customer_id=b, now=T0)["replayed"]
    assert uses(shop, code) == (4, 4)


# -- C2 -----------------------------------------------------------------------------------------

C2_CODES = 1_000_000
C2_PROCESSES = 2


def _codes(n: int, out: Any) -> None:
    out.send("".join(service.new_code() for _ in range(n)))
    out.close()


@pytest.mark.slow
@pytest.mark.xdist_group("loyalty-processes")
def test_c2_a_million_codes_without_collision() -> None:
    """1,000,000 codes from `new_code` (two processes): no two alike, each 12 characters of
    Crockford base32 (no I, L, O, U), and every character equally likely in every position
    (each of the 32 x 12 counts within 6 standard deviations of 1,000,000 / 32)."""
    assert len(set(service.CROCKFORD)) == 32 and not set("ILOU") & set(service.CROCKFORD)
    pipes, children = [], []
    for _ in range(C2_PROCESSES):
        recv, send = FORK.Pipe(duplex=False)
        child = FORK.Process(target=_codes, args=(C2_CODES // C2_PROCESSES, send), daemon=True)
        child.start()
        send.close()
        pipes.append(recv)
        children.append(child)
    blob = "".join(p.recv() for p in pipes)
    for child in children:
        child.join(60)
        assert child.exitcode == 0
    codes = [blob[i : i + 12] for i in range(0, len(blob), 12)]
    assert len(codes) == C2_CODES and len(blob) == 12 * C2_CODES
    assert len(set(codes)) == C2_CODES, "collisions"
    assert set(blob) <= set(service.CROCKFORD)
    expected = C2_CODES / 32
    sigma = (C2_CODES * (1 / 32) * (31 / 32)) ** 0.5  # ~174
    for pos in range(12):
        counts = Counter(blob[pos::12])
        assert set(counts) == set(service.CROCKFORD), pos
        worst = max(abs(n - expected) for n in counts.values())
        assert worst < 6 * sigma, (pos, worst)


def test_c2_what_shoppers_type_finds_the_code() -> None:
    """`normalise_code` undoes `format_code`, case, spaces and extra dashes, and reads
    I/i/L/l as 1 and O/o as 0 (letters the alphabet leaves out)."""
    rng = random.Random(7)
    for _ in range(10_000):
        code = service.new_code()
        shown = service.format_code(code)
        assert len(shown) == 14 and shown[4] == shown[9] == "-"
        assert service.normalise_code(shown) == code
        assert service.normalise_code(f"  {shown.lower()}  ") == code
        assert service.normalise_code(" ".join(code[i : i + 3] for i in range(0, 12, 3))) == code
        typed = "".join(
            rng.choice("IiLl") if ch == "1" else rng.choice("Oo") if ch == "0" else ch.lower()
            for ch in code
        )
        assert service.normalise_code(typed) == code, (typed, code)
    assert service.normalise_code("il1o-0OLI-abcd") == "11100011ABCD"


# -- rules --------------------------------------------------------------------------------------


def test_expiry_owner_and_validate(shop: Shop) -> None:
    """A code expires at its moment (usable just before); a customer-bound code refuses
    other customers and anonymous use; `validate` never consumes; case and dashes do not
    matter; unknown codes are NotFoundError."""
    e, store = shop.engine, shop.store
    a, b = shop.customers[:2]
    code = issue(shop, max_uses=1, customer_id=a, expires_at=T0 + 10 * DAY)
    typed = service.format_code(code).lower()
    for _ in range(5):
        found = service.validate_coupon(e, store, typed, customer_id=a, now=T0 + 10 * DAY - 1)
        assert found == {
            "code": service.format_code(code),
            "kind": "amount_off",
            "value": 500,
            "uses_left": 1,
        }
    assert uses(shop, code) == (0, 0)
    with pytest.raises(InsufficientError, match="has expired"):
        service.validate_coupon(e, store, code, customer_id=a, now=T0 + 10 * DAY)
    with pytest.raises(InsufficientError, match="has expired"):
        service.consume_coupon(e, store, code, key="late", customer_id=a, now=T0 + 10 * DAY)
    for who in (b, None):
        with pytest.raises(InsufficientError, match="belongs to another customer"):
            service.consume_coupon(e, store, code, key=f"x{who}", customer_id=who, now=T0)
    assert uses(shop, code) == (0, 0)
    got = service.consume_coupon(e, store, typed, key="ok", customer_id=a, now=T0 + DAY)
    assert got["uses"] == 1
    with pytest.raises(InsufficientError, match="used up"):
        service.validate_coupon(e, store, code, customer_id=a, now=T0 + DAY)
    with pytest.raises(NotFoundError, match="no coupon"):
        service.validate_coupon(e, store, "0000-0000-0000", now=T0)
    with pytest.raises(NotFoundError, match="no coupon"):
        service.consume_coupon(e, store, "0000-0000-0000", key="nope", now=T0)
    assert uses(shop, code) == (1, 1)


def test_per_customer_limit_and_bad_coupons(shop: Shop) -> None:
    """`per_customer: 2` on a 10-use code: a customer's third use is refused, another
    customer's first is not; `validate` reports the same; a coupon of an unknown kind or
    with no uses is refused at issue."""
    e, store = shop.engine, shop.store
    a, b = shop.customers[:2]
    code = issue(shop, max_uses=10, per_customer=2)
    for key in ("a1", "a2"):
        service.consume_coupon(e, store, code, key=key, customer_id=a, now=T0)
    with pytest.raises(InsufficientError, match="as often as allowed"):
        service.validate_coupon(e, store, code, customer_id=a, now=T0)
    with pytest.raises(InsufficientError, match="as often as allowed"):
        service.consume_coupon(e, store, code, key="a3", customer_id=a, now=T0)
    assert service.validate_coupon(e, store, code, customer_id=b, now=T0)["uses_left"] == 8
    service.consume_coupon(e, store, code, key="b1", customer_id=b, now=T0)
    assert uses(shop, code) == (3, 3)
    with pytest.raises(InputError, match="unknown coupon kind"):
        service.issue_coupon(e, store, kind="bitcoin", value=1)
    with pytest.raises(InputError, match="max_uses must be at least 1"):
        service.issue_coupon(e, store, kind="amount_off", value=1, max_uses=0)
    assert scalar(e, "SELECT count(*) FROM coupons") == 1
    with e.connect() as conn:
        stored = conn.execute(text("SELECT code FROM coupons")).scalar_one()
    assert stored == code and len(code) == 12
