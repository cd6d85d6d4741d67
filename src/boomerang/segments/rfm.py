"""RFM: recency, frequency and monetary scores 1-5 and the eleven named segments.

Scores (docs/segments.md#rfm). Among buyers (at least one order before the evaluation
time), a value's *mid-rank percentile* is p = (buyers below + half the buyers equal) / buyers
and its score is 1 + floor(5p). Equal values always get equal scores (ties never split by
row order); a store where everyone has one order scores F = 3 for all; a store with one
buyer scores 3/3/3. Recency ranks on minus the whole days since the latest order (recent =
high), frequency on the number of orders, monetary on lifetime revenue in minor units
(integers, so cents are exact and ranks are stable).

The scores are applied through four thresholds per dimension (t_k = the smallest value
whose percentile reaches k/5; score = 1 + number of thresholds reached). A full refresh
computes and stores them; re-evaluating one customer reuses them, so the two agree.

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


def thresholds_from_counts(values: np.ndarray, counts: np.ndarray) -> Thresholds:
    """Mid-rank thresholds from distinct ``values`` (ascending) and their ``counts``.

    Integer arithmetic: p >= k/5  <=>  5 * (2 * below + equal) >= 2 * k * n.
    """
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    below = np.cumsum(counts) - counts
    reach = 5 * (2 * below + counts)
    return [_first(values, reach >= 2 * k * n) for k in range(1, 5)]


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
