"""Calendar periods (UTC) as whole days since 1970-01-01, and the boundary arithmetic.

Why days: every period boundary, the activity window and the tenure bands are whole UTC
days, so each order needs only its day number; a small per-day lookup table (built here with
numpy) turns a day into "how many period boundaries are at or before it", and the engines do
integer work only (no time-zone or date functions that differ between DuckDB and Spark).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

DAY_US = 86_400_000_000
EPOCH = date(1970, 1, 1)
I64 = NDArray[np.int64]


class Granularity(StrEnum):
    DAY = "day"
    WEEK = "week"  # ISO weeks, starting Monday
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"


def to_day(d: date) -> int:
    return (d - EPOCH).days


def from_day(day: int) -> date:
    return EPOCH + timedelta(days=int(day))


def period_index(days: I64, g: Granularity) -> I64:
    """Calendar index of the period holding each day (consecutive integers per granularity)."""
    days = np.asarray(days, dtype=np.int64)
    if g is Granularity.DAY:
        return days
    if g is Granularity.WEEK:
        return np.floor_divide(days + 3, 7)  # 1970-01-01 was a Thursday
    months = days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    if g is Granularity.MONTH:
        return months
    if g is Granularity.QUARTER:
        return np.floor_divide(months, 3)
    return np.floor_divide(months, 12)


def period_start(index: I64, g: Granularity) -> I64:
    """First day of each period index (inverse of `period_index`)."""
    index = np.asarray(index, dtype=np.int64)
    if g is Granularity.DAY:
        return index
    if g is Granularity.WEEK:
        return index * 7 - 3
    months = {Granularity.MONTH: 1, Granularity.QUARTER: 3, Granularity.YEAR: 12}[g]
    return (index * months).astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)


@dataclass(frozen=True)
class Periods:
    """K consecutive periods between K+1 boundary days; the first and last may be clipped.

    ``bounds[k]`` is the first day of period k, ``bounds[k+1]`` the day after its last.
    """

    granularity: Granularity
    bounds: tuple[int, ...]

    @classmethod
    def between(cls, first_day: int, end_day: int, g: Granularity) -> Periods:
        """Periods covering days [first_day, end_day), clipped to that range."""
        if end_day <= first_day:
            raise ValueError("the date range is empty")
        p0 = int(period_index(np.array([first_day]), g)[0])
        p1 = int(period_index(np.array([end_day - 1]), g)[0])
        inner = period_start(np.arange(p0 + 1, p1 + 1, dtype=np.int64), g).tolist()
        return cls(g, (first_day, *(int(b) for b in inner), end_day))

    @property
    def count(self) -> int:
        return len(self.bounds) - 1

    @property
    def start_day(self) -> int:
        return self.bounds[0]

    @property
    def end_day(self) -> int:
        return self.bounds[-1]

    def starts(self) -> list[date]:
        return [from_day(b) for b in self.bounds[:-1]]

    def ends(self) -> list[date]:
        """Last day of each period (inclusive)."""
        return [from_day(b - 1) for b in self.bounds[1:]]

    def complete(self) -> list[bool]:
        """Whether each period is a whole calendar period (not clipped by the range)."""
        lo = np.array(self.bounds[:-1], dtype=np.int64)
        hi = np.array(self.bounds[1:], dtype=np.int64)
        idx = period_index(lo, self.granularity)
        whole = (period_start(idx, self.granularity) == lo) & (
            period_start(idx + 1, self.granularity) == hi
        )
        return [bool(x) for x in whole]

    def calendar(self, min_day: int, max_day: int, window: int, bands: tuple[int, int]) -> pa.Table:
        """Per-day lookups for days [min_day, max_day] (see docs/metrics.md, "how it is computed").

        n: boundaries at or before the day; n_w: the same for day + window; cut1/cut2: for a
        customer first buying that day, the first boundary index in the medium and long band;
        pidx: calendar period index of the day.
        """
        days = np.arange(min(min_day, self.start_day), max(max_day, min_day) + 1, dtype=np.int64)
        b = np.array(self.bounds, dtype=np.int64)
        short_days, long_days = bands
        return pa.table(
            {
                "day": days,
                "n": np.searchsorted(b, days, side="right").astype(np.int64),
                "n_w": np.searchsorted(b, days + window, side="right").astype(np.int64),
                "cut1": np.searchsorted(b, days + short_days - 1, side="right").astype(np.int64),
                "cut2": np.searchsorted(b, days + long_days, side="right").astype(np.int64),
                "pidx": period_index(days, self.granularity),
            }
        )
