"""RFM scores, thresholds and named segments on hand-computed stores, and top-x% cuts.

The scoring rule (segments/rfm.py), among buyers (at least one order before AS_OF), n of them:

- F (orders) and M (revenue net of refunds, minor units): 1 + floor(5 b / n), b = buyers with
  strictly less; ties share the lower score.
- R (whole days since the latest order): 5 - floor(5 a / n), a = buyers strictly more
  recent; ties share the higher score.
- named segment: the grid row R, column FM = round-half-up((F + M) / 2).

Every score and cut below is worked out by hand and checked on both evaluators.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.segments.segment_facts import Result, Store, ago, definitions, evaluate

from boomerang.analytics.engine import Engine
from boomerang.segments import rfm
from boomerang.segments.builtin import rfm_definitions
from boomerang.segments.fields import RFM_SEGMENTS

RFM = ["rfm.r", "rfm.f", "rfm.m", "rfm.segment"]


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    engine = Engine()
    yield engine
    engine.close()


def scores(result: Result) -> dict[int, tuple[object, ...]]:
    return {cid: tuple(row[f] for f in RFM) for cid, row in result.extra.items()}


# -- ten buyers, two non-buyers, one customer from the future --------------------------------
#
#  id  last order  orders  revenue          R   F   M   FM  segment
#   1   1 day        6     6 x 100.00        5   5   5   5   Champions
#   2   5 days       1      25.00            5   1   2   2   Potential Loyalists
#   3   5 days       2     2 x 40.00         5   3   3   3   Potential Loyalists
#   4  20 days       1      25.00            4   1   2   2   Potential Loyalists
#   5  40 days       3     50+50+60 - 10.00  3   4   4   4   Loyal   (a -10.00 return)
#   6  60 days       1      10.00            3   1   1   1   About to Sleep
#   7  90 days       2     2 x 45.00         2   3   3   3   At Risk
#   8 120 days       1     320.00 - 20.00    2   1   5   3   At Risk (20.00 refunded)
#   9 200 days       4     4 x 30.00         1   5   4   5   Can't Lose Them
#  10 400 days       1       5.00            1   1   1   1   Lost (+ a cancelled order 2d ago)
#  11  -             -     only a cancelled order: not a buyer
#  12  -             -     only a return (-3.00): not a buyer
#  13 created after AS_OF with 10 orders before it: not a customer, not in the ranks
#
# R, on days (fewer = better), a = buyers strictly more recent:
#   1: a 0 -> 5; 2, 3: a 1 -> 5 - floor(0.5) = 5; 4: a 3 -> 5 - 1 = 4; 5: a 4 -> 5 - 2 = 3;
#   6: a 5 -> 5 - floor(2.5) = 3; 7: a 6 -> 2; 8: a 7 -> 5 - floor(3.5) = 2; 9: a 8 -> 1;
#   10: a 9 -> 1. Cuts on -days: R >= 2 from -120, >= 3 from -60, >= 4 from -20, 5 from -5.
# F, b = buyers with fewer orders: 1 order b 0 -> 1; 2 orders b 5 -> 3; 3 b 7 -> 4;
#   4 b 8 -> 5; 6 b 9 -> 5. Cuts (smallest value with 5 b >= 10 k): 2, 2, 3, 4.
# M, ascending 500, 1000, 2500 x2, 8000, 9000, 12000, 15000, 30000, 60000:
#   b 0, 1, 2, 2, 4, 5, 6, 7, 8, 9 -> 1, 1, 2, 2, 3, 3, 4, 4, 5, 5. Cuts: 2500, 8000, 12000,
#   30000.
TEN_BUYERS = {
    1: (5, 5, 5, "Champions"),
    2: (5, 1, 2, "Potential Loyalists"),
    3: (5, 3, 3, "Potential Loyalists"),
    4: (4, 1, 2, "Potential Loyalists"),
    5: (3, 4, 4, "Loyal"),
    6: (3, 1, 1, "About to Sleep"),
    7: (2, 3, 3, "At Risk"),
    8: (2, 1, 5, "At Risk"),
    9: (1, 5, 4, "Can't Lose Them"),
    10: (1, 1, 1, "Lost"),
    11: (None, None, None, None),
    12: (None, None, None, None),
}


def ten_buyers() -> Store:
    s = Store()
    for cid in range(1, 13):
        s.customer(cid)
    s.customer(13, created_at=ago(-1))

    def orders(cid: int, days: list[float], total: int) -> None:
        for d in days:
            s.order(cid, ago(d), total)

    orders(1, [1, 10, 20, 30, 40, 50], 10000)
    orders(2, [5], 2500)
    orders(3, [5, 30], 4000)
    orders(4, [20], 2500)
    s.order(5, ago(40), 5000)
    s.order(5, ago(80), 5000)
    s.order(5, ago(120), 6000)
    s.order(5, ago(10), -1000)  # a return: revenue down, not a more recent order
    orders(6, [60], 1000)
    orders(7, [90, 150], 4500)
    s.order(8, ago(120), 32000, refunded_minor=2000)
    orders(9, [200, 250, 300, 350], 3000)
    orders(10, [400], 500)
    s.order(10, ago(2), 9999, status="cancelled")
    s.order(11, ago(3), 5000, status="cancelled")
    s.order(12, ago(3), -300)
    orders(13, [1] * 10, 99999)
    return s


def test_ten_buyers_scores_thresholds_and_segments(engine: Engine) -> None:
    defs = rfm_definitions()
    assert [d.title for d in defs] == [f"RFM: {name}" for name in RFM_SEGMENTS]
    assert defs[8].name == "rfm-cant-lose-them"
    # three of the eleven named segments (each is `rfm.segment = "<name>"`, and each use of
    # rfm.segment compiles a 25-branch CASE: the grid itself is test_segment_name_grid_...)
    named = {"rfm-champions", "rfm-at-risk", "rfm-cant-lose-them"}
    rules = {
        "recent": "rfm.r = 5",
        "frequent": "rfm.f >= 4",
        "middle-m": "rfm.m between 2 and 3",
        "not-top-r": "rfm.r in [1, 2]",
        "no-score": "rfm.r is not set",
        "not-scored-low": "not rfm.f < 3",  # F unknown counts as not < 3
    }
    result = evaluate(
        engine,
        ten_buyers(),
        [d for d in defs if d.name in named] + definitions(rules),
        extra=RFM,
    )
    assert scores(result) == TEN_BUYERS
    assert result.reference["rfm"] == {
        "r": [-120, -60, -20, -5],
        "f": [2, 2, 3, 4],
        "m": [2500, 8000, 12000, 30000],
    }
    assert result.members == {
        "rfm-champions": {1},
        "rfm-at-risk": {7, 8},
        "rfm-cant-lose-them": {9},
        "recent": {1, 2, 3},
        "frequent": {1, 5, 9},
        "middle-m": {2, 3, 4, 7},
        "not-top-r": {7, 8, 9, 10},
        "no-score": {11, 12},
        "not-scored-low": {1, 3, 5, 7, 9, 11, 12},
    }


def test_a_single_buyer_is_new(engine: Engine) -> None:
    # n = 1: a = 0 -> R 5; b = 0 -> F 1, M 1; FM 1 -> New (rfm.py: "A store with one buyer
    # who ordered once scores R5 F1 M1")
    s = Store()
    s.customer(1)
    s.customer(2)
    s.order(1, ago(30), 4200)
    result = evaluate(engine, s, {"scored": "rfm.r is set"}, extra=RFM)
    assert scores(result) == {1: (5, 1, 1, "New"), 2: (None, None, None, None)}
    assert result.reference["rfm"] == {
        "r": [-30, -30, -30, -30],
        "f": [None] * 4,
        "m": [None] * 4,
    }
    assert result["scored"] == {1}


def test_every_buyer_with_one_order_has_f_1(engine: Engine) -> None:
    # four one-order buyers: F 1 for all (b = 0); R by a = 0..3 with n = 4:
    # 5 - floor(5a/4) = 5, 4, 3, 2; M by b = 0..3: 1 + floor(5b/4) = 1, 2, 3, 4
    # FM = round-half-up((1 + M) / 2) = 1, 2, 2, 3 -> New, Potential Loyalists (R4),
    # About to Sleep (R3), At Risk (R2)
    s = Store()
    for cid, (days, total) in enumerate([(1, 100), (10, 200), (100, 300), (1000, 400)], 1):
        s.customer(cid, created_at=ago(2000))
        s.order(cid, ago(days), total)
    result = evaluate(engine, s, {"f1": "rfm.f = 1"}, extra=RFM)
    assert scores(result) == {
        1: (5, 1, 1, "New"),
        2: (4, 1, 2, "Potential Loyalists"),
        3: (3, 1, 3, "About to Sleep"),
        4: (2, 1, 4, "At Risk"),
    }
    assert result.reference["rfm"] == {
        "r": [-1000, -100, -10, -1],
        "f": [None] * 4,
        # smallest value with 5 b >= 4 k: b >= 1 -> 200, b >= 2 -> 300, b >= 3 -> 400, none
        "m": [200, 300, 400, None],
    }
    assert result["f1"] == {1, 2, 3, 4}


def test_no_buyers_no_scores(engine: Engine) -> None:
    s = Store()
    s.customer(1)
    s.order(1, ago(1), 100, status="cancelled")
    result = evaluate(engine, s, {"scored": "rfm.r is set"}, extra=RFM)
    assert scores(result) == {1: (None, None, None, None)}
    assert result.reference["rfm"] == {"r": [None] * 4, "f": [None] * 4, "m": [None] * 4}
    assert result["scored"] == set()


# -- the functions themselves ----------------------------------------------------------------


def test_thresholds_from_counts_by_hand() -> None:
    # frequency of the ten buyers: 1 x5, 2 x2, 3, 4, 6
    values, counts = np.array([1, 2, 3, 4, 6]), np.array([5, 2, 1, 1, 1])
    assert rfm.thresholds_from_counts(values, counts) == [2, 2, 3, 4]
    # recency of the ten buyers (minus days, ascending; 5 days twice)
    r_values = np.array([-400, -200, -120, -90, -60, -40, -20, -5, -1])
    r_counts = np.array([1, 1, 1, 1, 1, 1, 1, 2, 1])
    assert rfm.thresholds_from_counts(r_values, r_counts, ties_up=True) == [-120, -60, -20, -5]
    # the same recency without ties_up would rank ties down: b = 7 for -5 -> 1 + 3 = 4
    low = rfm.thresholds_from_counts(r_values, r_counts)
    assert rfm.score(-5, low) == 4
    # floats stay floats, ints stay ints; an empty population has no cuts
    # n = 2: 0.5 has b = 0 (never reaches), 1.5 has b = 1: 5 >= 2 k for k = 1, 2 only
    assert rfm.thresholds_from_counts(np.array([0.5, 1.5]), np.array([1, 1])) == [
        1.5,
        1.5,
        None,
        None,
    ]
    assert rfm.thresholds_from_counts(np.array([], dtype=np.int64), np.array([])) == [None] * 4


def test_score_counts_the_thresholds_reached() -> None:
    cuts = [10, 20, None, 40]
    assert [rfm.score(v, cuts) for v in (5, 10, 19, 20, 39, 40, 1000)] == [1, 2, 2, 3, 3, 4, 4]
    assert rfm.score(0, [None] * 4) == 1


def test_segment_name_grid_as_documented() -> None:
    # the table in rfm.py, row R, columns FM 1..5, copied by hand
    doc = {
        5: ["New", "Potential Loyalists", "Potential Loyalists", "Champions", "Champions"],
        4: ["Promising", "Potential Loyalists", "Potential Loyalists", "Loyal", "Champions"],
        3: ["About to Sleep", "About to Sleep", "Need Attention", "Loyal", "Loyal"],
        2: ["Hibernating", "Hibernating", "At Risk", "At Risk", "Can't Lose Them"],
        1: ["Lost", "Lost", "Hibernating", "At Risk", "Can't Lose Them"],
    }
    for r, row in doc.items():
        for fm, name in enumerate(row, 1):
            assert rfm.segment_name(r, fm, fm) == name, (r, fm)
    assert {n for row in doc.values() for n in row} == set(RFM_SEGMENTS)
    # FM rounds half up: (1 + 2) / 2 = 1.5 -> 2, (4 + 5) / 2 = 4.5 -> 5, (2 + 5) / 2 -> 4
    assert [rfm.fm_score(f, m) for f, m in [(1, 2), (2, 1), (4, 5), (2, 5), (1, 1), (1, 5)]] == [
        2,
        2,
        5,
        4,
        1,
        3,
    ]
    assert rfm.segment_name(5, 1, 2) == "Potential Loyalists"
    assert rfm.segment_name(1, 5, 4) == "Can't Lose Them"
    assert rfm.segment_name(3, 2, 3) == "Need Attention"


def test_top_threshold_by_hand() -> None:
    values, counts = np.array([1, 2, 3]), np.array([5, 2, 1])  # n = 8
    # at or above: 1 -> 8, 2 -> 3, 3 -> 1 buyer(s)
    assert rfm.top_threshold(values, counts, 10) is None  # even 1 of 8 is 12.5%
    assert rfm.top_threshold(values, counts, 12.5) == 3
    assert rfm.top_threshold(values, counts, 37.4) == 3  # 3 of 8 = 37.5% > 37.4%
    assert rfm.top_threshold(values, counts, 37.5) == 2
    assert rfm.top_threshold(values, counts, 99) == 2  # the 5 ones would make it 100%
    assert rfm.top_threshold(values, counts, 100) == 1


# -- properties --------------------------------------------------------------------------------

population = st.lists(st.integers(min_value=-50, max_value=50), min_size=1, max_size=40)


def _distinct(sample: list[int]) -> tuple[np.ndarray, np.ndarray]:
    counted = sorted(Counter(sample).items())
    return np.array([v for v, _ in counted]), np.array([c for _, c in counted])


@given(population, st.floats(min_value=0.01, max_value=100))
def test_top_percent_never_exceeds_x_percent(sample: list[int], pct: float) -> None:
    values, counts = _distinct(sample)
    cut = rfm.top_threshold(values, counts, pct)
    n = len(sample)
    inside = 0 if cut is None else sum(1 for v in sample if v >= cut)
    assert inside * 100 <= pct * n
    # and the cut is as low as it can be: one more distinct value would exceed x%
    lower = [v for v in set(sample) if cut is None or v < cut]
    if lower:
        widened = sum(1 for v in sample if v >= max(lower))
        assert widened * 100 > pct * n


@given(population)
def test_scores_follow_the_documented_rank_rule(sample: list[int]) -> None:
    values, counts = _distinct(sample)
    n = len(sample)
    up = rfm.thresholds_from_counts(values, counts)
    down = rfm.thresholds_from_counts(values, counts, ties_up=True)
    for v in set(sample):
        below = sum(1 for x in sample if x < v)
        above = sum(1 for x in sample if x > v)
        assert rfm.score(v, up) == 1 + int(Fraction(5 * below, n))  # F, M
        assert rfm.score(v, down) == 5 - int(Fraction(5 * above, n))  # R


@settings(max_examples=8, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=4), min_size=1, max_size=8),
    st.sampled_from([10.0, 25.0, 50.0, 90.0]),
)
def test_top_percent_segments_both_ways(engine: Engine, orders: list[int], pct: float) -> None:
    s = Store()
    for cid, k in enumerate(orders, 1):
        s.customer(cid)
        for i in range(k):
            s.order(cid, ago(i + 1), 100)
    got = evaluate(engine, s, {"top": f"orders.count top {pct:g}%"})["top"]
    buyers = [k for k in orders if k > 0]  # the population: a positive value
    assert len(got) * 100 <= pct * len(buyers)
    values, counts = _distinct(buyers) if buyers else (np.array([]), np.array([]))
    cut = rfm.top_threshold(values, counts, pct) if buyers else None
    assert got == {cid for cid, k in enumerate(orders, 1) if cut is not None and k >= cut}
