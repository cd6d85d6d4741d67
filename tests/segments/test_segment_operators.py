"""Every segment field and operator on hand-built customers, checked both ways.

Each store below is a handful of customers with explicit times relative to ``AS_OF``
(2024-07-01 00:00 UTC); every expected member set is worked out by hand in the comments.
`segment_facts.evaluate` runs the full-refresh compiler (DuckDB via Ibis) and the
one-customer evaluator on the same facts and fails unless both give the same flags and the
same feature values, so each assertion below holds for both evaluators.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from tests.segments.segment_facts import AS_OF, Result, Store, ago, evaluate, members

from boomerang.analytics.engine import Engine
from boomerang.domain.clock import from_micros
from boomerang.segments.builtin import builtin_definitions
from boomerang.segments.fields import BUILTIN_FIELDS, Kind, lookup


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    engine = Engine()
    yield engine
    engine.close()


def iso(micros: int) -> str:
    return from_micros(micros).isoformat()


# -- the world: four customers (plus two that do not exist yet) with every kind of fact -----
#
#   1 Ann  US registered, tags vip+newsletter, email+phone, created 400 days ago
#          orders: 300d ago 50.00 (Shoes), 100d ago 30.00 (2 x Hats at 15.00),
#                  20d ago 40.00 refunded 10.00 (Shoes), 5d ago 99.99 cancelled (ignored)
#          -> 3 orders, revenue 110.00, AOV 36.67, first 300d / last 20d ago,
#             gap (300 - 20) / 2 = 140 days, overdue 20 / 140 = 1/7
#          events: visit 40d, product_viewed Shoes 3d and 4d, email_opened 60d ago
#          consent: email granted 100d; sms granted 50d then withdrawn 10d ago
#          prediction: p_alive 0.9, CLV 250.00, 1.2 purchases, next order in 10 days, low
#          affinity: Shoes 2 views + 2 lines, Hats 1 line -> Shoes, share(Shoes) 4/5
#   2 Bob  DE guest, no tags ([]), email only, created 100 days 6 hours ago
#          orders: 50d ago 20.00 (Hats), 45d ago a return of -5.00, 10d ago EUR 70.00
#          -> 1 order (the return and the EUR order are not purchases), revenue 15.00
#          events: visit 1d6h ago, product_viewed Hats 10d ago
#          consent: push granted 5d ago
#          prediction: p_alive 0.2, CLV 10.00, 0.1 purchases, next order 5.5 days ago
#            (days_to_next_order = floor(-5.5) = -6), high
#          affinity: Hats (1 view + 1 line), share(Shoes) 0
#   3 Cy   nothing known (every attribute null, disabled, has_email false), no orders,
#          no events, an email consent granted exactly at AS_OF (ignored), no prediction
#   4 Dee  FR registered, tag wholesale, created 10 days ago
#          orders: 2.5d ago 100.00 (Bags), 1d ago 100.00 (Shoes)
#          -> 2 orders, revenue 200.00, AOV 100.00, days since first floor(2.5) = 2,
#             gap 1.5 days, overdue 1 / 1.5
#          events: email_opened 12h ago; consent: email withdrawn 3d ago
#          prediction: p_alive 0.5, CLV 300.00, 2.5 purchases, next order in 12h (0 days),
#            medium; affinity: Bags 1, Shoes 1 -> tie -> Bags (alphabetical), share 1/2
#   5 Eve  created 1 day after AS_OF (with an order and a visit): not a customer yet
#   6 Fay  created exactly at AS_OF: not a customer yet either
#
# RFM over the three buyers (rfm.py: F and M = 1 + floor(5 b / n), b = buyers strictly
# below; R = 5 - floor(5 a / n), a = buyers strictly more recent; n = 3):
#   R: Dee 1 day (a 0 -> 5), Ann 20 (a 1 -> 5 - 1 = 4), Bob 50 (a 2 -> 5 - 3 = 2)
#   F: Bob 1 order (b 0 -> 1), Dee 2 (b 1 -> 2), Ann 3 (b 2 -> 1 + 3 = 4)
#   M: Bob 1500 (-> 1), Ann 11000 (-> 2), Dee 20000 (-> 4)
#   Ann R4 FM round((4+2)/2) = 3 -> Potential Loyalists; Bob R2 FM1 -> Hibernating;
#   Dee R5 FM round((2+4)/2) = 3 -> Potential Loyalists


def world(predictions: bool = True) -> Store:
    s = Store()
    s.customer(
        1,
        country="US",
        region="CA",
        city="San Francisco",
        zip="94110",
        timezone="America/Los_Angeles",
        tags=["vip", "newsletter"],
        has_email=True,
        has_phone=True,
        created_at=ago(400),
    )
    s.customer(
        2,
        country="DE",
        region="BE",
        city="Berlin",
        zip="10115",
        timezone="Europe/Berlin",
        account_status="guest",
        tags=[],
        has_email=True,
        has_phone=False,
        created_at=ago(100, hours=6),
    )
    s.customer(3, account_status="disabled", has_email=False, created_at=None)
    s.customer(
        4,
        country="FR",
        region="IDF",
        city="Paris",
        zip="75001",
        timezone="Europe/Paris",
        tags=["wholesale"],
        has_email=True,
        has_phone=True,
        created_at=ago(10),
    )
    s.customer(5, country="US", created_at=ago(-1))
    s.customer(6, country="US", created_at=AS_OF)
    shoe, hat, bag = "Shoes", "Hats", "Bags"
    s.order(1, ago(300), 5000, lines=[{"sku": "s1", "category": shoe, "unit_price_minor": 5000}])
    s.order(
        1,
        ago(100),
        3000,
        lines=[{"sku": "h1", "category": hat, "quantity": 2, "unit_price_minor": 1500}],
    )
    s.order(
        1,
        ago(20),
        4000,
        refunded_minor=1000,
        lines=[{"sku": "s2", "category": shoe, "unit_price_minor": 4000}],
    )
    s.order(1, ago(5), 9999, status="cancelled", lines=[{"sku": "s3", "category": shoe}])
    s.order(2, ago(50), 2000, lines=[{"sku": "h2", "category": hat, "unit_price_minor": 2000}])
    s.order(2, ago(45), -500)
    s.order(2, ago(10), 7000, currency="EUR", lines=[{"sku": "s9", "category": shoe}])
    s.order(4, ago(2.5), 10000, lines=[{"sku": "b1", "category": bag, "unit_price_minor": 10000}])
    s.order(4, ago(1), 10000, lines=[{"sku": "s4", "category": shoe, "unit_price_minor": 10000}])
    s.order(5, ago(3), 100, lines=[{"sku": "s1", "category": shoe, "unit_price_minor": 100}])
    s.event(1, "visit", ago(40))
    s.event(1, "product_viewed", ago(3), category=shoe)
    s.event(1, "product_viewed", ago(4), category=shoe)
    s.event(1, "email_opened", ago(60))
    s.event(2, "visit", ago(1, hours=6))
    s.event(2, "product_viewed", ago(10), category=hat)
    s.event(4, "email_opened", ago(0, hours=12))
    s.event(5, "visit", ago(1))
    s.consent(1, "email", "granted", ago(100))
    s.consent(1, "sms", "granted", ago(50))
    s.consent(1, "sms", "withdrawn", ago(10))
    s.consent(2, "push", "granted", ago(5))
    s.consent(3, "email", "granted", AS_OF)
    s.consent(4, "email", "withdrawn", ago(3))
    s.consent(5, "email", "granted", ago(20))
    if predictions:
        s.prediction(
            1,
            p_alive=0.9,
            clv_minor=25000,
            expected_purchases=1.2,
            next_order_at=ago(-10),
            risk_band="low",
        )
        s.prediction(
            2,
            p_alive=0.2,
            clv_minor=1000,
            expected_purchases=0.1,
            next_order_at=ago(5.5),
            risk_band="high",
        )
        s.prediction(
            4,
            p_alive=0.5,
            clv_minor=30000,
            expected_purchases=2.5,
            next_order_at=ago(-0.5),
            risk_band="medium",
        )
    return s


@dataclass(frozen=True)
class Case:
    """A field reference, each customer's value (hand-computed, in the feature's units) and
    the literals the operators are tried with: ``lit`` (and ``alt`` <= ``lit``, the low bound
    of ``between`` and the second value of ``in``) as text and as the compared value."""

    ref: str
    values: dict[int, Any]
    lit: tuple[str, Any]
    alt: tuple[str, Any] | None = None
    top50: frozenset[int] | None = None  # `top 50%`, by hand


def _c(
    ref: str,
    values: list[Any],
    lit: tuple[str, Any],
    alt: tuple[str, Any] | None = None,
    top50: set[int] | None = None,
) -> Case:
    return Case(
        ref,
        dict(zip((1, 2, 3, 4), values, strict=True)),
        lit,
        alt,
        None if top50 is None else frozenset(top50),
    )


def _d(micros: int) -> tuple[str, int]:
    return (iso(micros), micros)


# `top 50%`: of the customers whose value is set and positive (n), those at or above the
# smallest value v with (share at or above v) <= 50%; ties at the cut are left out.
CASES = [
    # -- text
    _c("customer.country", ["US", "DE", None, "FR"], ('"us"', "US"), ('"FR"', "FR")),
    _c("customer.region", ["CA", "BE", None, "IDF"], ('"CA"', "CA"), ('"IDF"', "IDF")),
    _c(
        "customer.city",
        ["San Francisco", "Berlin", None, "Paris"],
        ('"Berlin"', "Berlin"),
        ('"Paris"', "Paris"),
    ),
    _c(
        "customer.zip",
        ["94110", "10115", None, "75001"],
        ('"10115"', "10115"),
        ('"75001"', "75001"),
    ),
    _c(
        "customer.timezone",
        ["America/Los_Angeles", "Europe/Berlin", None, "Europe/Paris"],
        ('"Europe/Berlin"', "Europe/Berlin"),
        ('"Europe/Paris"', "Europe/Paris"),
    ),
    _c(
        "customer.account_status",
        ["registered", "guest", "disabled", "registered"],
        ('"registered"', "registered"),
        ('"guest"', "guest"),
    ),
    _c("customer.tags", [["vip", "newsletter"], [], None, ["wholesale"]], ('"VIP"', "vip")),
    _c(
        "predictions.risk_band",
        ["low", "high", None, "medium"],
        ('"high"', "high"),
        ('"low"', "low"),
    ),
    _c(
        "affinity.top_category",
        ["Shoes", "Hats", None, "Bags"],
        ('"Shoes"', "Shoes"),
        ('"Bags"', "Bags"),
    ),
    _c(
        "rfm.segment",
        ["Potential Loyalists", "Hibernating", None, "Potential Loyalists"],
        ('"Hibernating"', "Hibernating"),
        ('"Potential Loyalists"', "Potential Loyalists"),
    ),
    # -- true/false (consent: the latest record per channel before AS_OF is `granted`)
    _c("customer.has_email", [True, True, False, True], ("true", True)),
    _c("customer.has_phone", [True, False, None, True], ("true", True)),
    _c("consent.email", [True, False, False, False], ("true", True)),
    _c("consent.sms", [False, False, False, False], ("true", True)),
    _c("consent.push", [False, True, False, False], ("true", True)),
    _c("consent.any", [True, True, False, False], ("true", True)),
    # -- dates (written as a timestamp or a plain date)
    _c(
        "customer.created_at",
        [ago(400), ago(100, hours=6), None, ago(10)],
        _d(ago(100, hours=6)),
        ("2023-05-28", ago(400)),
    ),
    _c("orders.first_at", [ago(300), ago(50), None, ago(2.5)], _d(ago(50)), _d(ago(300))),
    _c("orders.last_at", [ago(20), ago(50), None, ago(1)], _d(ago(20)), _d(ago(50))),
    # -- whole days (floor)
    _c("customer.days_since_created", [400, 100, None, 10], ("100", 100), ("10", 10)),
    _c("orders.days_since_first", [300, 50, None, 2], ("50", 50), ("2", 2)),
    _c("orders.days_since_last", [20, 50, None, 1], ("20", 20), ("1", 1)),
    _c("events.days_since_last", [3, 1, None, 0], ("1", 1), ("0", 0)),
    _c("predictions.days_to_next_order", [10, -6, None, 0], ("0", 0), ("-6", -6)),
    # -- counts: never null (0 without orders / events)
    _c("orders.count", [3, 1, 0, 2], ("2", 2), ("0", 0), top50={1}),  # n = 3 (3, 1, 2)
    _c("events.count", [4, 2, 0, 1], ("2", 2), ("1", 1), top50={1}),  # n = 3 (4, 2, 1)
    _c("rfm.r", [4, 2, None, 5], ("4", 4), ("2", 2)),
    _c("rfm.f", [4, 1, None, 2], ("2", 2), ("1", 1)),
    _c("rfm.m", [2, 1, None, 4], ("2", 2), ("1", 1)),
    # -- numbers
    _c(
        "orders.avg_gap_days", [140.0, None, None, 1.5], ("1.5", 1.5), ("1", 1.0), top50={1}
    ),  # n = 2 (140, 1.5)
    _c(
        "orders.overdue_ratio", [1 / 7, None, None, 2 / 3], ("0.5", 0.5), ("0.1", 0.1), top50={4}
    ),  # n = 2 (1/7, 2/3)
    _c(
        "predictions.p_alive", [0.9, 0.2, None, 0.5], ("0.5", 0.5), ("0.2", 0.2), top50={1}
    ),  # n = 3
    _c(
        "predictions.expected_purchases",
        [1.2, 0.1, None, 2.5],
        ("1.2", 1.2),
        ("0.1", 0.1),
        top50={4},
    ),  # n = 3
    _c(
        'affinity.share(category="Shoes")',
        [0.8, 0.0, None, 0.5],
        ("0.5", 0.5),
        ("0", 0.0),
        top50={1},
    ),  # n = 2 (0.8, 0.5): Bob's 0 is not positive
    # -- money: written in dollars, compared in cents
    _c(
        "orders.revenue", [11000, 1500, 0, 20000], ("110", 11000), ("15.00", 1500), top50={4}
    ),  # n = 3 (Cy's 0 is left out)
    _c("orders.aov", [11000 / 3, 1500.0, None, 10000.0], ("15", 1500), ("10", 1000), top50={4}),
    _c("predictions.clv", [25000, 1000, None, 30000], ("250", 25000), ("10.00", 1000), top50={4}),
]


def _rules(case: Case) -> dict[str, tuple[str, str]]:
    """op -> (segment name, rule): every operator the field's kind allows."""
    spec = lookup(case.ref.split("(")[0])
    assert spec is not None
    lit, alt = case.lit[0], (case.alt or case.lit)[0]
    text = {
        "=": f"{case.ref} = {lit}",
        "!=": f"{case.ref} != {lit}",
        "<": f"{case.ref} < {lit}",
        "<=": f"{case.ref} <= {lit}",
        ">": f"{case.ref} > {lit}",
        ">=": f"{case.ref} >= {lit}",
        "between": f"{case.ref} between {alt} and {lit}",
        "in": f"{case.ref} in [{lit}, {alt}]",
        "not_in": f"{case.ref} not in [{lit}]",
        "contains": f"{case.ref} contains {lit}",
        "is_set": f"{case.ref} is set",
        "is_not_set": f"{case.ref} is not set",
        "top_percent": f"{case.ref} top 50%",
    }
    ops = [op for op in spec.ops if not (op == "top_percent" and case.top50 is None)]
    slug = "".join(ch if ch.isalnum() else "-" for ch in case.ref.split("(")[0])
    return {op: (f"{slug}-{i}", text[op]) for i, op in enumerate(ops)}


def _holds(op: str, v: Any, lit: Any, alt: Any) -> bool:
    """The plain meaning of an operator on a known value."""
    if op == "=":
        return bool(v == lit)
    if op == "!=":
        return bool(v != lit)
    if op == "<":
        return bool(v < lit)
    if op == "<=":
        return bool(v <= lit)
    if op == ">":
        return bool(v > lit)
    if op == ">=":
        return bool(v >= lit)
    if op == "between":
        return bool(alt <= v <= lit)
    if op == "in":
        return v in (lit, alt)
    if op == "not_in":
        return bool(v != lit)
    assert op == "contains", op
    return lit in v


def _expected(case: Case, op: str) -> set[int]:
    """The hand values run through the operator's plain meaning (null fails all but
    is_not_set)."""
    lit, alt = case.lit[1], (case.alt or case.lit)[1]
    out = set()
    for cid, v in case.values.items():
        if op in ("is_set", "is_not_set"):
            hit = (v is not None) == (op == "is_set")
        elif v is None:
            hit = False
        elif op == "top_percent":
            hit = cid in (case.top50 or ())
        else:
            hit = _holds(op, v, lit, alt)
        if hit:
            out.add(cid)
    return out


def _param(case: Case) -> Any:
    return pytest.param(case, id=case.ref.split("(")[0])


RFM_FIELDS = ["rfm.r", "rfm.f", "rfm.m", "rfm.segment"]
# extra columns read back; not rfm.segment, whose every use compiles a 25-branch CASE (its
# values show in its six operators, and test_rfm_scores.py reads it back)
RFM_SCORES = ["rfm.r", "rfm.f", "rfm.m"]


def _evaluate(engine: Engine, cases: list[Case]) -> Result:
    rules = {name: rule for case in cases for name, rule in _rules(case).values()}
    rfm_used = any(c.ref.startswith("rfm.") for c in cases)
    return evaluate(engine, world(), rules, extra=RFM_SCORES if rfm_used else [])


@pytest.fixture(scope="module")
def matrix(engine: Engine) -> Result:
    """Every case's rules in one refresh (one query, evaluated both ways)."""
    return _evaluate(engine, CASES)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_every_operator_of_every_field(engine: Engine, matrix: Result, case: Case) -> None:
    result = matrix
    rfm_field = case.ref in RFM_FIELDS
    # the hand values first (customers 5 and 6 do not exist yet: no row at all)
    assert set(result.features) == {1, 2, 3, 4}
    got = {
        cid: (result.extra[cid].get(case.ref) if rfm_field else result.value(cid, case.ref))
        for cid in (1, 2, 3, 4)
    }
    for cid, value in case.values.items():
        if case.ref == "rfm.segment":
            continue
        if isinstance(value, float):
            assert got[cid] == pytest.approx(value), cid
        else:
            assert got[cid] == value, cid
    for op, (name, rule) in _rules(case).items():
        assert result[name] == _expected(case, op), rule


def test_extra_columns_no_rule_uses(engine: Engine) -> None:
    """evaluate_all(extra=...) computes fields (and RFM scores) that no rule reads, e.g. for
    an export; the values are the matrix's hand values (both evaluators, asserted)."""
    fields = ["orders.revenue", "orders.aov", "predictions.p_alive", "rfm.r", "rfm.m"]
    result = evaluate(engine, world(), {"sms": "consent.sms"}, extra=fields)
    assert not result.plan.rfm and len(result.plan.features) == 1  # consent.sms alone
    hand = {c.ref: c.values for c in CASES if c.ref in fields}
    for cid in (1, 2, 3, 4):
        for f in fields:
            want, got = hand[f][cid], result.extra[cid][f]
            assert got == (pytest.approx(want) if isinstance(want, float) else want), (cid, f)


def test_the_matrix_covers_every_field_and_operator() -> None:
    """Every catalogue field has a case, and the case tries every operator the field allows
    (rfm.r / rfm.f / rfm.m are ranks already: no top_percent, see test_segment_validation)."""
    assert sorted(c.ref.split("(")[0] for c in CASES) == sorted(BUILTIN_FIELDS)
    for case in CASES:
        spec = BUILTIN_FIELDS[case.ref.split("(")[0]]
        tried = set(_rules(case))
        assert set(spec.ops) == set(tried), case.ref
    kinds = {BUILTIN_FIELDS[c.ref.split("(")[0]].kind for c in CASES}
    assert kinds == set(Kind)


def test_builtin_segments_on_the_world(engine: Engine) -> None:
    # two of the eleven RFM segments (each use of rfm.segment compiles a 25-branch CASE;
    # the others are the same rule with another name, see test_rfm_scores.py)
    rfm_kept = {"rfm-potential-loyalists", "rfm-hibernating"}
    defs = [
        d
        for d in builtin_definitions(["Shoes", "Hats", "Bags"])
        if d.kind != "rfm" or d.name in rfm_kept
    ]
    got = members(engine, world(predictions=False), defs)
    expected = {
        "first-time-buyers": {2},  # Bob's one order (the return and EUR order do not count)
        "repeat-buyers": {1, 4},
        # top 10% of 3 buyers: at most 0.3 customers -> nobody
        "most-frequent-buyers": set(),
        "high-spenders": set(),
        "new-customers": {4},  # first order 2 days ago
        # Ann: reachable, 20 days, 3 orders but overdue 1/7; no P(alive) for anyone
        "at-risk": set(),
        "lapsed": set(),
        "churned": set(),
        "subscribers-never-bought": set(),  # Cy's consent is at AS_OF: not yet
        "guests": {2},
        "no-visit-30d": {1},  # Ann's last visit 40 days ago; Bob's 1 day ago
        "email-engaged": {1, 4},  # opened 60 days / 12 hours ago
        "rfm-potential-loyalists": {1, 4},
        "rfm-hibernating": {2},
        # 180 days: Ann Shoes 2 views + 1 line (s2) vs Hats 1 line -> Shoes 3/4, a Shoes order
        "affinity-shoes": {1},
        # Bob: Hats 1 view + 1 line -> share 1, one Hats order
        "affinity-hats": {2},
        # Dee: Bags 1 vs Shoes 1 -> Bags (alphabetical), share 1/2, one Bags order
        "affinity-bags": {4},
    }
    assert got == {name: expected.get(name, set()) for name in got}
    assert set(expected) <= set(got)


def test_builtin_at_risk_with_predictions(engine: Engine) -> None:
    # Bob: reachable (push), 50 days, P(alive) 0.2 < 0.5 -> at risk; Dee 0.5 is not < 0.5
    got = members(engine, world(), [d for d in builtin_definitions() if d.name == "at-risk"])
    assert got["at-risk"] == {2}


# -- windows ---------------------------------------------------------------------------------


def test_order_windows_in_hours_days_weeks_and_their_exact_boundary(engine: Engine) -> None:
    s = Store()
    for cid in range(1, 9):
        s.customer(cid)
    s.order(1, ago(30), 1000)  # exactly AS_OF - 30d: inside [30d]
    s.order(2, ago(30, us=1), 1000)  # one microsecond earlier: outside [30d]
    s.order(3, AS_OF, 1000)  # at AS_OF: ignored everywhere
    s.order(4, ago(-1), 1000)  # after AS_OF: ignored everywhere
    s.order(5, ago(hours=12), 1000)  # exactly AS_OF - 12h
    s.order(6, ago(hours=12, us=1), 1000)
    s.order(7, ago(14), 1000)  # exactly AS_OF - 2w
    s.order(8, ago(14, us=1), 1000)
    got = members(
        engine,
        s,
        {
            "d30": "orders.count[30d] >= 1",
            "h12": "orders.count[12h] >= 1",
            "w2": "orders.count[2w] >= 1",
            "ever": "orders.count >= 1",
            "never": "orders.count = 0",
            "first-d30": "orders.first_at[30d] is set",
            "last-h12": "orders.last_at[12h] is set",
            "rev-w2": "orders.revenue[2w] = 10",
            "aov-h12": "orders.aov[12h] = 10",
        },
    )
    assert got == {
        "d30": {1, 5, 6, 7, 8},
        "h12": {5},
        "w2": {5, 6, 7},
        "ever": {1, 2, 5, 6, 7, 8},
        "never": {3, 4},
        "first-d30": {1, 5, 6, 7, 8},
        "last-h12": {5},
        "rev-w2": {5, 6, 7},
        "aov-h12": {5},
    }


def test_event_windows_boundaries_and_whole_days(engine: Engine) -> None:
    s = Store()
    for cid in range(1, 6):
        s.customer(cid)
    s.event(1, "visit", ago(7))  # exactly AS_OF - 7d (= 1w = 168h)
    s.event(2, "visit", ago(7, us=1))  # 7 days and 1 us: outside, but still "7 days ago"
    s.event(3, "visit", AS_OF)  # ignored
    s.event(4, "visit", ago(-2))  # ignored
    s.event(5, "visit", ago(hours=1))
    result = evaluate(
        engine,
        s,
        {
            "d7": "events.count[7d] >= 1",
            "w1": "events.count[1w] >= 1",
            "h168": "events.count[168h] >= 1",
            "h1": "events.count[1h] >= 1",
            "ever": "events.count >= 1",
            "never": "events.days_since_last is not set",
            "seven": "events.days_since_last = 7",  # floor: 7d and 7d+1us both give 7
            "today": "events.days_since_last = 0",
        },
    )
    assert result.members == {
        "d7": {1, 5},
        "w1": {1, 5},
        "h168": {1, 5},
        "h1": {5},
        "ever": {1, 2, 5},
        "never": {3, 4},
        "seven": {1, 2},
        "today": {5},
    }


# -- orders: lines, cancellations, returns, refunds, currencies ------------------------------


def test_line_filters_on_sku_and_category(engine: Engine) -> None:
    s = Store()
    for cid in range(1, 5):
        s.customer(cid)
    # 1: 10d ago Shoes a 2 x 10.00 - 1.00 discount + Hats b 5.00; 40d ago Shoes a 10.00
    s.order(
        1,
        ago(10),
        2400,
        lines=[
            {
                "sku": "a",
                "category": "Shoes",
                "quantity": 2,
                "unit_price_minor": 1000,
                "discount_minor": 100,
            },
            {"sku": "b", "category": "Hats", "unit_price_minor": 500},
        ],
    )
    s.order(1, ago(40), 1000, lines=[{"sku": "a", "category": "Shoes", "unit_price_minor": 1000}])
    # 2: Hats c 7.00; a cancelled Shoes order; a return (negative total) with a Shoes line
    s.order(2, ago(5), 700, lines=[{"sku": "c", "category": "Hats", "unit_price_minor": 700}])
    s.order(2, ago(1), 900, status="cancelled", lines=[{"sku": "a", "category": "Shoes"}])
    s.order(2, ago(2), -1000, lines=[{"sku": "a", "category": "Shoes", "unit_price_minor": 1000}])
    # 3: an EUR Shoes order (ignored); sku a without a category 100 days ago
    s.order(3, ago(3), 800, currency="EUR", lines=[{"sku": "a", "category": "Shoes"}])
    s.order(3, ago(100), 300, lines=[{"sku": "a", "unit_price_minor": 300}])
    # Shoes: customer 1 only: 2 orders, value (2 x 1000 - 100) + 1000 = 2900; 1900 in 30 days
    result = evaluate(
        engine,
        s,
        {
            "shoes-2": 'orders.count(category="Shoes") = 2',
            "shoes-30d": 'orders.count(category="Shoes")[30d] = 1',
            "shoes-rev": 'orders.revenue(category="Shoes") = 29',
            "shoes-rev-30d": 'orders.revenue(category="Shoes")[30d] = 19',
            "sku-a": 'orders.count(sku="a") >= 1',  # 1, and 3's line without category
            "sku-b-or-c": 'orders.count(sku=["b", "c"]) = 1',
            "same-line": 'orders.count(category="Hats", sku="b") >= 1',
            "no-such-line": 'orders.count(category="Shoes", sku="b") >= 1',
            "hats": 'orders.count(category="Hats") = 1',
            "shoes-recent": 'orders.days_since_last(category="Shoes") <= 10',
            "shoes-never": 'orders.days_since_last(category="Shoes") is not set',
            "shoes-first": f'orders.first_at(category="Shoes") = {iso(ago(40))}',
            "a-last": f'orders.last_at(sku="a")[60d] = {iso(ago(10))}',
            "a-last-3": f'orders.last_at(sku="a") = {iso(ago(100))}',
            "one": "orders.count = 1",  # 2: only the Hats order; 3: only the USD order
            "net-negative": "orders.revenue < 0",  # 2: 7.00 - 10.00 returned
        },
    )
    assert result.members == {
        "shoes-2": {1},
        "shoes-30d": {1},
        "shoes-rev": {1},
        "shoes-rev-30d": {1},
        "sku-a": {1, 3},
        "sku-b-or-c": {1, 2},
        "same-line": {1},
        "no-such-line": set(),
        "hats": {1, 2},
        "shoes-recent": {1},
        "shoes-never": {2, 3, 4},
        "shoes-first": {1},
        "a-last": {1},
        "a-last-3": {3},
        "one": {2, 3},
        "net-negative": {2},
    }
    assert result.value(1, 'orders.revenue(category="Shoes")') == 2900
    assert result.value(2, 'orders.revenue(category="Shoes")') == 0  # the return's line is out


def test_cancelled_returns_refunds_and_other_currencies(engine: Engine) -> None:
    s = Store()
    for cid in range(1, 7):
        s.customer(cid)
    s.order(1, ago(10), 5000)
    s.order(1, ago(5), 3000, status="cancelled")  # 1: 1 order, 50.00, last 10 days ago
    s.order(2, ago(20), 4000, refunded_minor=4000)  # 2: fully refunded: 1 order, 0.00
    s.order(3, ago(30), 2000)
    s.order(3, ago(2), -500)  # 3: a return: still 1 order, 15.00, last order 30 days ago
    s.order(4, ago(1), 9000, currency="EUR")  # 4: nothing in USD
    s.order(5, ago(1), 9000, status="cancelled")  # 5: nothing
    s.order(6, ago(3), -700)  # 6: only a return: no order, revenue -7.00
    got = members(
        engine,
        s,
        {
            "one": "orders.count = 1",
            "zero": "orders.count = 0",
            "positive": "orders.revenue > 0",
            "nothing": "orders.revenue = 0",
            "negative": "orders.revenue < 0",
            "rev-15": "orders.revenue = 15",
            "aov-0": "orders.aov = 0",
            "aov-15": "orders.aov = 15",
            "no-aov": "orders.aov is not set",
            "recent": "orders.days_since_last < 15",
            "thirty": "orders.days_since_last = 30",
            "no-last": "orders.days_since_last is not set",
            "ret-window": "orders.revenue[7d] < 0",  # only 3's return and 6's return
        },
    )
    assert got == {
        "one": {1, 2, 3},
        "zero": {4, 5, 6},
        "positive": {1, 3},
        "nothing": {2, 4, 5},
        "negative": {6},
        "rev-15": {3},
        "aov-0": {2},
        "aov-15": {3},
        "no-aov": {4, 5, 6},
        "recent": {1},
        "thirty": {3},
        "no-last": {4, 5, 6},
        "ret-window": {3, 6},
    }


@pytest.mark.parametrize(
    ("currency", "total", "rule"),
    [
        ("JPY", 1500, "orders.revenue = 1500"),  # no minor unit: 1500 yen
        ("KWD", 12345, "orders.revenue = 12.345"),  # three decimals: 12.345 dinar
        ("USD", 12345, "orders.revenue between 123.45 and 123.45"),
    ],
)
def test_money_follows_the_store_currency_exponent(
    engine: Engine, currency: str, total: int, rule: str
) -> None:
    s = Store(currency=currency)
    s.customer(1)
    s.customer(2)
    s.order(1, ago(1), total)
    s.order(2, ago(1), total + 1)
    assert members(engine, s, {"hit": rule})["hit"] == {1}


def test_order_currency_case_is_treated_alike(engine: Engine) -> None:
    # the store sells in USD: "usd" and "Usd" orders are purchases too, "eur" is not
    s = Store()
    for cid in range(1, 5):
        s.customer(cid)
    s.order(1, ago(1), 1000, currency="usd")
    s.order(2, ago(1), 1000, currency="Usd")
    s.order(3, ago(1), 1000, currency="eur")
    s.order(4, ago(1), 1000)
    s.order(4, ago(2), 500, currency="usd")
    got = members(
        engine,
        s,
        {"buyer": "orders.count >= 1", "revenue": "orders.revenue = 15", "aov": "orders.aov = 10"},
    )
    assert got == {"buyer": {1, 2, 4}, "revenue": {4}, "aov": {1, 2}}


# -- events ----------------------------------------------------------------------------------


def test_event_type_and_property_filters(engine: Engine) -> None:
    s = Store()
    for cid in range(1, 5):
        s.customer(cid)
    s.event(1, "product_viewed", ago(1), category="Shoes")
    s.event(1, "product_viewed", ago(2), category="Hats")
    s.event(1, "product_viewed", ago(40), category="Shoes")
    s.event(1, "visit", ago(1))
    s.event(2, "product_viewed", ago(3), category="Shoes", color="red")
    s.event(2, "added_to_cart", ago(3), category="Shoes")
    s.event(3, "product_viewed", ago(5))  # no category
    got = members(
        engine,
        s,
        {
            # Shoes views: 1 has 2 (one 40 days ago), 2 has 1
            "pv-shoes-2": 'events.count(type="product_viewed", category="Shoes") >= 2',
            "pv-shoes-30d": 'events.count(type="product_viewed", category="Shoes")[30d] >= 1',
            # any type: 1 two Shoes views, 2 a view and a cart add
            "shoes-any-type": 'events.count(category="Shoes") = 2',
            "red": 'events.count(category="Shoes", color="red") >= 1',
            "hats-or-bags": 'events.count(type="product_viewed", category=["Hats", "Bags"]) = 1',
            "viewed": 'events.count(type="product_viewed") >= 1',
            "pv-shoes-1d": 'events.days_since_last(type="product_viewed", category="Shoes") = 1',
            "no-cart": 'events.days_since_last(type="added_to_cart") is not set',
            "unknown-type": 'events.count(type="never_sent") = 0',
            "all-types": "events.count = 4",
        },
    )
    assert got == {
        "pv-shoes-2": {1},
        "pv-shoes-30d": {1, 2},
        "shoes-any-type": {1, 2},
        "red": {2},
        "hats-or-bags": {1},
        "viewed": {1, 2, 3},
        "pv-shoes-1d": {1},
        "no-cart": {1, 3, 4},
        "unknown-type": {1, 2, 3, 4},
        "all-types": {1},
    }


# -- consent ---------------------------------------------------------------------------------


def test_consent_latest_record_wins_and_ties_go_to_the_higher_id(engine: Engine) -> None:
    s = Store()
    for cid in range(1, 9):
        s.customer(cid)
    s.consent(1, "email", "granted", ago(10))
    s.consent(1, "email", "withdrawn", ago(5))  # 1: withdrawn after the grant -> no
    s.consent(2, "email", "withdrawn", ago(10))
    s.consent(2, "email", "granted", ago(5))  # 2: granted again -> yes
    s.consent(3, "email", "withdrawn", ago(5), cid=21)  # 3: same time, id 21 > 20 -> no
    s.consent(3, "email", "granted", ago(5), cid=20)
    s.consent(4, "email", "granted", ago(5), cid=31)  # 4: same time, id 31 > 30 -> yes
    s.consent(4, "email", "withdrawn", ago(5), cid=30)
    s.consent(5, "email", "granted", ago(5))
    s.consent(5, "email", "withdrawn", AS_OF)  # 5: the withdrawal at AS_OF is not seen yet
    s.consent(5, "sms", "granted", ago(-1))  # ... nor a grant after it
    s.consent(6, "sms", "granted", ago(3))
    s.consent(6, "push", "withdrawn", ago(2))  # 6: sms only
    s.consent(8, "email", "granted", AS_OF)  # 8: not yet; 7: no records at all
    got = members(
        engine,
        s,
        {
            "email": "consent.email",
            "sms": "consent.sms = true",
            "push": "consent.push",
            "any": "consent.any",
            "unreachable": "not consent.any",
            "email-false": "consent.email = false",
            "email-set": "consent.email is set",  # consent is never unknown
            "sms-not-true": "consent.sms != true",
        },
    )
    assert got == {
        "email": {2, 4, 5},
        "sms": {6},
        "push": set(),
        "any": {2, 4, 5, 6},
        "unreachable": {1, 3, 7, 8},
        "email-false": {1, 3, 6, 7, 8},
        "email-set": set(range(1, 9)),
        "sms-not-true": {1, 2, 3, 4, 5, 7, 8},
    }


# -- predictions -----------------------------------------------------------------------------


def test_prediction_fields(engine: Engine) -> None:
    s = Store()
    for cid in range(1, 5):
        s.customer(cid)
    s.prediction(
        1, clv_minor=12345, expected_purchases=0.75, next_order_at=ago(-3), risk_band="low"
    )
    # 2: next order was due 12 hours ago -> floor(-0.5) = -1 day
    s.prediction(2, clv_minor=0, expected_purchases=0.0, next_order_at=ago(0.5), risk_band="high")
    s.prediction(3)  # a row with nothing in it; 4: no row
    got = members(
        engine,
        s,
        {
            "clv": "predictions.clv >= 123.45",
            "clv-0": "predictions.clv = 0",
            # one positive CLV is 100% of that population, more than 50%: nobody
            "clv-top": "predictions.clv top 50%",
            "expected": "predictions.expected_purchases between 0.5 and 1",
            "overdue": "predictions.days_to_next_order < 0",
            "minus-one": "predictions.days_to_next_order = -1",
            "in-3-days": "predictions.days_to_next_order in [3, 4]",
            "band": 'predictions.risk_band in ["high", "medium"]',
            "not-low": 'predictions.risk_band != "low"',
            "not-is-low": 'not predictions.risk_band = "low"',
            "unknown": "predictions.clv is not set",
        },
    )
    assert got == {
        "clv": {1},
        "clv-0": {2},
        "clv-top": set(),
        "expected": {1},
        "overdue": {2},
        "minus-one": {2},
        "in-3-days": {1},
        "band": {2},
        "not-low": {2},
        "not-is-low": {2, 3, 4},
        "unknown": {3, 4},
    }


def test_p_alive_compares_as_a_number(engine: Engine) -> None:
    s = Store()
    s.customer(1)
    s.customer(2)
    s.prediction(1, p_alive=0.3)
    s.prediction(2, p_alive=0.7)
    assert members(engine, s, {"low": "predictions.p_alive < 0.5"})["low"] == {1}


def test_conform_keeps_declared_types_and_reads_properties_as_text() -> None:
    import pyarrow as pa

    from boomerang.segments import data as d

    assert d.prop_column("category") == "prop_category_8"
    assert d.prop_column("productId") == "prop_productId_9"
    predictions = d.conform(
        pa.table({"customer_id": [1], "p_alive": [0.25], "p_other": ["x"]}), d.PREDICTION_COLUMNS
    )
    assert predictions.schema.field("p_alive").type == pa.float64()
    assert predictions.column_names == list(d.PREDICTION_COLUMNS)  # p_other is not a property
    assert predictions["clv_minor"].to_pylist() == [None]
    events = d.conform(
        pa.table({"customer_id": [1], "type": ["visit"], "occurred_at": [0], "prop_n_1": [7]}),
        d.EVENT_COLUMNS,
    )
    assert events.column_names == [*d.EVENT_COLUMNS, "prop_n_1"]
    assert events["prop_n_1"].to_pylist() == ["7"]


# -- affinity --------------------------------------------------------------------------------


def test_affinity_top_category_tie_break_share_and_window(engine: Engine) -> None:
    s = Store()
    for cid in range(1, 8):
        s.customer(cid)
    # 1: views Shoes, Hats; one order with a Hats and a Shoes line -> 2 : 2 -> Hats
    s.event(1, "product_viewed", ago(1), category="Shoes")
    s.event(1, "product_viewed", ago(2), category="Hats")
    s.order(1, ago(3), 100, lines=[{"category": "Hats"}, {"category": "Shoes"}])
    # 2: Shoes 3 views 100 days ago, Bags 1 view 5 days ago -> Shoes overall, Bags in 30d
    for _ in range(3):
        s.event(2, "product_viewed", ago(100), category="Shoes")
    s.event(2, "product_viewed", ago(5), category="Bags")
    # 3: a view without category and a line without category -> nothing to rank
    s.event(3, "product_viewed", ago(1))
    s.order(3, ago(1), 100, lines=[{"sku": "x"}])
    # 4: Shoes lines of a cancelled, a returned and an EUR order only -> nothing
    s.order(4, ago(1), 100, status="cancelled", lines=[{"category": "Shoes"}])
    s.order(4, ago(1), -100, lines=[{"category": "Shoes"}])
    s.order(4, ago(1), 100, currency="EUR", lines=[{"category": "Shoes"}])
    # 5: a Shoes cart add is not a view; a Hats view -> Hats, Shoes share 0
    s.event(5, "added_to_cart", ago(1), category="Shoes")
    s.event(5, "product_viewed", ago(1), category="Hats")
    # 6: one Shoes line of 5 units counts once; 2 Hats views -> Hats, Shoes 1/3
    s.order(6, ago(3), 500, lines=[{"category": "Shoes", "quantity": 5}])
    s.event(6, "product_viewed", ago(1), category="Hats")
    s.event(6, "product_viewed", ago(2), category="Hats")
    # 7: Shoes viewed exactly 30 days ago (inside [30d]), Hats 1 us earlier (outside):
    #    all time 1 : 1 -> Hats; in 30 days -> Shoes
    s.event(7, "product_viewed", ago(30), category="Shoes")
    s.event(7, "product_viewed", ago(30, us=1), category="Hats")
    got = members(
        engine,
        s,
        {
            "hats": 'affinity.top_category = "Hats"',
            "shoes": 'affinity.top_category = "Shoes"',
            "bags-30d": 'affinity.top_category[30d] = "Bags"',
            "shoes-30d": 'affinity.top_category[30d] = "Shoes"',
            "unknown": "affinity.top_category is not set",
            "half": 'affinity.share(category="Shoes") = 0.5',
            "most": 'affinity.share(category="Shoes") >= 0.75',
            "none-30d": 'affinity.share(category="Shoes")[30d] = 0',
            "third": 'affinity.share(category="Shoes") between 0.33 and 0.34',
            "share-unknown": 'affinity.share(category="Shoes") is not set',
        },
    )
    assert got == {
        "hats": {1, 5, 6, 7},
        "shoes": {2},
        "bags-30d": {2},
        "shoes-30d": {7},
        "unknown": {3, 4},
        "half": {1, 7},
        "most": {2},
        "none-30d": {2, 5},
        "third": {6},
        "share-unknown": {3, 4},
    }


@pytest.mark.parametrize("events", ["none", "without-the-property"])
def test_filters_on_a_property_no_event_carries(engine: Engine, events: str) -> None:
    """No events table at all (SegmentData.events=None), or events but none carrying the
    filtered property (so no ``prop_color_5`` column): the column is null, every filter on
    it is false, and the full refresh agrees with the one-customer evaluator."""
    from dataclasses import replace

    from tests.segments.segment_facts import customer_facts, definitions, segment_data

    from boomerang.segments.bulk import evaluate_all
    from boomerang.segments.data import prop_column
    from boomerang.segments.plan import build_plan
    from boomerang.segments.single import SingleEvaluator

    s = Store()
    s.customer(1)
    s.order(1, ago(1), 100, lines=[{"category": "Shoes"}])
    if events == "without-the-property":
        s.event(1, "product_viewed", ago(2), category="Shoes")
    rules = {
        "shoes": 'affinity.top_category = "Shoes"',
        "red": 'events.count(color="red") >= 1',
        "no-red": 'events.count(color="red") = 0',
        "red-any": 'events.count(type="product_viewed", color=["red", "blue"])[30d] >= 1',
        "red-never": 'events.days_since_last(color="red") is not set',
        "not-red": 'not events.count(color="red") >= 1',
    }
    plan = build_plan(definitions(rules))
    data = segment_data(s)  # only the keys events carry: no color column
    if events == "none":
        data = replace(data, events=None)
    assert data.events is None or prop_column("color") not in data.events.column_names
    ev = evaluate_all(engine, data, plan, AS_OF)
    expected = {"shoes": True, "red": False, "no-red": True, "red-any": False}
    expected |= {"red-never": True, "not-red": True}
    assert ev.flags.to_pylist() == [{"customer_id": 1, **expected}]
    single = SingleEvaluator(plan, ev.reference, s.currency, AS_OF)
    assert single.evaluate(customer_facts(s)[1]) == expected


# -- who is a customer, nulls, and combinations ----------------------------------------------


def test_customers_created_after_as_of_are_left_out(engine: Engine) -> None:
    s = Store()
    s.customer(1, created_at=ago(1))
    s.customer(2, created_at=AS_OF)  # not before AS_OF: left out
    s.customer(3, created_at=ago(-5))  # created later, even with orders before AS_OF
    s.customer(4, created_at=None)  # unknown creation: a customer
    s.order(1, ago(1), 100)
    for _ in range(10):
        s.order(3, ago(2), 100)
    s.order(4, ago(2), 100)
    s.order(4, ago(3), 100)
    got = members(
        engine,
        s,
        {
            "all": "orders.count >= 0",
            "not-buyers": "not orders.count >= 1",
            "no-date": "customer.created_at is not set",
            "created-set": "customer.created_at is set",
            # population 1 (1 order), 4 (2 orders): top 50% -> 4 alone (3 does not count)
            "top": "orders.count top 50%",
        },
    )
    assert got == {
        "all": {1, 4},
        "not-buyers": set(),
        "no-date": {4},
        "created-set": {1},
        "top": {4},
    }


def test_a_missing_value_fails_every_test_but_is_not_set(engine: Engine) -> None:
    s = Store()
    s.customer(1, has_phone=None, created_at=None)  # nothing known, no orders
    s.customer(2, country="US", has_phone=True, created_at=ago(10))
    s.order(2, ago(10), 100)
    ref = "orders.days_since_last"  # 1: null, 2: 10
    rules = {
        "eq": f"{ref} = 10",
        "ne": f"{ref} != 5",
        "lt": f"{ref} < 100",
        "le": f"{ref} <= 10",
        "gt": f"{ref} > 1",
        "ge": f"{ref} >= 10",
        "between": f"{ref} between 0 and 100",
        "in": f"{ref} in [10, 5]",
        "not-in": f"{ref} not in [5]",
        "set": f"{ref} is set",
        "not-set": f"{ref} is not set",
        # `not` of a failed test holds
        "not-ne": f"not {ref} != 5",
        "not-not-in": f"not {ref} not in [5]",
        "not-set-not": f"not {ref} is not set",
        "text-ne": 'customer.country != "FR"',
        "text-not-in": 'customer.country not in ["FR"]',
        "not-text-ne": 'not customer.country != "FR"',
        "bool-ne": "customer.has_phone != false",
        "bool-eq-false": "customer.has_phone = false",
        "not-bool": "not customer.has_phone = false",
        "date-lt": "customer.created_at < 2100-01-01",
        "date-not-ge": "not customer.created_at >= 2100-01-01",
        "days-created": "customer.days_since_created >= 0",
        "aov": "orders.aov >= 0",
        "not-aov": "not orders.aov >= 0",
        "gap": "orders.avg_gap_days is not set",  # under 2 orders: unknown for both
    }
    got = members(engine, s, rules)
    assert got == {
        "eq": {2},
        "ne": {2},
        "lt": {2},
        "le": {2},
        "gt": {2},
        "ge": {2},
        "between": {2},
        "in": {2},
        "not-in": {2},
        "set": {2},
        "not-set": {1},
        "not-ne": {1},
        "not-not-in": {1},
        "not-set-not": {2},
        "text-ne": {2},
        "text-not-in": {2},
        "not-text-ne": {1},
        "bool-ne": {2},
        "bool-eq-false": set(),
        "not-bool": {1, 2},
        "date-lt": {2},
        "date-not-ge": {1, 2},
        "days-created": {2},
        "aov": {2},
        "not-aov": {1},
        "gap": {1, 2},
    }


def test_dates_compare_to_the_microsecond_in_utc(engine: Engine) -> None:
    s = Store()
    s.customer(1, created_at=ago(30, hours=14))  # 2024-05-31 10:00 UTC
    s.customer(2, created_at=ago(30, hours=14, us=1))  # one microsecond earlier
    s.customer(3, created_at=ago(30))  # 2024-06-01 00:00 UTC
    got = members(
        engine,
        s,
        {
            "eq": "customer.created_at = 2024-05-31T12:00:00+02:00",  # = 10:00 UTC
            "before": "customer.created_at < 2024-05-31T10:00:00Z",
            "on-or-after-day": "customer.created_at >= 2024-06-01",
            "that-day": "customer.created_at between 2024-05-31 and 2024-05-31T23:59:59.999999",
        },
    )
    assert got == {"eq": {1}, "before": {2}, "on-or-after-day": {3}, "that-day": {1, 2}}


def test_and_or_not_nesting_and_segment_references(engine: Engine) -> None:
    s = Store()
    s.customer(1, country="US")
    s.customer(2, country="DE")
    s.customer(3, country="US")
    s.customer(4)  # country unknown
    for _ in range(3):
        s.order(1, ago(5), 100)
    s.order(2, ago(5), 100)
    s.order(4, ago(5), 100)
    s.order(4, ago(6), 100)
    # buyers {1, 2, 4} (orders 3, 1, 0, 2); us {1, 3}
    nested = {
        "all": [
            {
                "any": [
                    {"field": "orders.count", "op": ">=", "value": 3},
                    {"not": {"field": "customer.country", "op": "is_set"}},
                ]
            },
            {"not": {"segment": "us-buyers"}},
        ]
    }
    got = members(
        engine,
        s,
        {
            "buyers": "orders.count >= 1",
            "us": 'customer.country = "US"',
            "us-buyers": 'segment("buyers") and segment("us")',
            "either": 'segment("buyers") or segment("us")',
            "neither": 'not (segment("buyers") or segment("us"))',
            "buyers-elsewhere": 'segment("buyers") and not segment("us")',
            # 1: (3 orders) but a US buyer; 4: country unknown and not a US buyer
            "nested": nested,
            "chain": 'segment("buyers-elsewhere") and orders.count between 2 and 5',
            "double-not": 'not not segment("us")',
            "de-morgan-1": 'not (segment("buyers") and segment("us"))',
            "de-morgan-2": 'not segment("buyers") or not segment("us")',
            "precedence": 'segment("us") or segment("buyers") and orders.count = 2',
        },
    )
    assert got == {
        "buyers": {1, 2, 4},
        "us": {1, 3},
        "us-buyers": {1},
        "either": {1, 2, 3, 4},
        "neither": set(),
        "buyers-elsewhere": {2, 4},
        "nested": {4},
        "chain": {4},
        "double-not": {1, 3},
        "de-morgan-1": {2, 3, 4},
        "de-morgan-2": {2, 3, 4},
        "precedence": {1, 3, 4},  # and binds tighter: us or (buyers and 2 orders)
    }


def test_money_literals_are_exact_decimals() -> None:
    from boomerang.segments.text import parse_text

    leaf = parse_text("orders.revenue >= 0.1")
    assert leaf == parse_text("orders.revenue >= 0.10")
    assert getattr(leaf, "value", None) == Decimal("0.1")
