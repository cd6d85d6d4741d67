"""RFM: recency, frequency and monetary scores 1-5 and the eleven named segments.

Scores (docs/segments.md#rfm), among buyers (at least one order before the evaluation
time), by quintiles of rank:

- frequency (number of orders) and monetary (lifetime revenue net of refunds, in integer
  minor units so cents are exact): score = 1 + floor(5 x buyers with strictly less / buyers).
  Ties share the lower score, so every one-order customer has F = 1 however common that is.
- recency (whole days since the latest order): score = 5 - floor(5 x buyers strictly more
  recent / buyers). Ties share the higher score, so a store's latest buyers are R = 5.

A store with one buyer who ordered once scores R5 F1 M1 ("New"). Scores are applied
through four thresholds per dimension (score = 1 + number of thresholds the value
reaches); a full refresh computes and stores them and re-evaluating one customer reuses
them, so the two agree.

Named segment from R and FM = round-half-up((F + M) / 2):

    R \\ FM   1               2                   3                   4          5
    5        New             Potential Loyalists Potential Loyalists Champions  Champions
    4        Promising       Potential Loyalists Potential Loyalists Loyal      Champions
    3        About to Sleep  About to Sleep      Need Attention      Loyal      Loyal
    2        Hibernating     Hibernating         At Risk             At Risk    Can't Lose Them
    1        Lost            Lost                Hibernating         At Risk    Can't Lose Them
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

GRID: dict[int, tuple[str, str, str, str, str]] = {
    5: ("New", "Potential Loyalists", "Potential Loyalists", "Champions", "Champions"),
    4: ("Promising", "Potential Loyalists", "Potential Loyalists", "Loyal", "Champions"),
    3: ("About to Sleep", "About to Sleep", "Need Attention", "Loyal", "Loyal"),
    2: ("Hibernating", "Hibernating", "At Risk", "At Risk", "Can't Lose Them"),
    1: ("Lost", "Lost", "Hibernating", "At Risk", "Can't Lose Them"),
}
DIMENSIONS = ("r", "f", "m")
Thresholds = list[float | None]


def fm_score(f: int, m: int) -> int:
    return (f + m + 1) // 2


def segment_name(r: int, f: int, m: int) -> str:
    return GRID[r][fm_score(f, m) - 1]


def score(value: float, thresholds: Sequence[float | None]) -> int:
    """1 + the number of thresholds the value reaches (a missing threshold is never reached)."""
    return 1 + sum(1 for t in thresholds if t is not None and value >= t)


def thresholds_from_counts(
    values: np.ndarray, counts: np.ndarray, *, ties_up: bool = False
) -> Thresholds:
    """Score thresholds from distinct ``values`` (ascending, higher = better) and counts.

    ``ties_up=False``: score = 1 + floor(5 b / n) with b = count strictly below, i.e. the
    k-th threshold is the smallest value with 5 b >= k n. ``ties_up=True``: score =
    5 - floor(5 a / n) with a = count strictly above, i.e. thresholds are the smallest
    values with 5 a < j n. Integer arithmetic throughout.
    """
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    upto = np.cumsum(counts)
    if ties_up:
        above = n - upto
        cuts = [_first(values, 5 * above < j * n) for j in range(4, 0, -1)]
    else:
        below = upto - counts
        cuts = [_first(values, 5 * below >= k * n) for k in range(1, 5)]
    return cuts


def top_threshold(values: np.ndarray, counts: np.ndarray, pct: float) -> float | None:
    """The smallest value v with (share of the population at or above v) <= pct %.

    Ties at the cut are left out, so a "top 10%" segment never holds more than 10%.
    """
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    at_or_above = n - (np.cumsum(counts) - counts)
    return _first(values, at_or_above * 100 <= pct * n)


def _first(values: np.ndarray, mask: np.ndarray) -> float | None:
    hits = np.flatnonzero(mask)
    if len(hits) == 0:
        return None
    value = values[hits[0]]
    return int(value) if np.issubdtype(np.asarray(values).dtype, np.integer) else float(value)
