"""A product's typical reorder interval, learned from the store's own history: the median
number of days between a customer's consecutive purchases of it."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from statistics import median

DAY = 86_400_000_000
MIN_GAPS = 3  # fewer repeat purchases than this across the store: no interval


def reorder_intervals(purchases: Iterable[tuple[int, str, int]]) -> dict[str, int]:
    """``(customer, sku, placed_at)`` rows -> sku: median days between repeat purchases.

    Same-day repeats (one basket split in two orders) are not a reorder and are ignored.
    """
    times: dict[tuple[int, str], list[int]] = {}
    for customer, sku, at in purchases:
        times.setdefault((customer, sku), []).append(at)
    gaps: dict[str, list[int]] = {}
    for (_, sku), seen in times.items():
        seen.sort()
        for a, b in itertools.pairwise(seen):
            days = (b - a) // DAY
            if days >= 1:
                gaps.setdefault(sku, []).append(days)
    return {sku: round(median(g)) for sku, g in gaps.items() if len(g) >= MIN_GAPS}
