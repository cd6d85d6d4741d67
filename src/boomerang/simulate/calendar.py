"""Time in the simulator: the period, seasonal demand, and the hour-of-day profile.

Why a time change: purchases follow an inhomogeneous Poisson process with intensity
λ·m(t), where m(t) is the daily seasonal multiplier normalised to average 1 over a calendar
year. Drawing a homogeneous process in "demand time" τ = Λ(t) = ∫ m and mapping it back
with Λ⁻¹ gives exactly the process that thinning a rate λ·max(m) process would, without
drawing and discarding candidates. λ therefore stays the *average* weekly rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from boomerang.simulate.params import SimulationParams

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

MICROS_PER_SECOND = 1_000_000
SECONDS_PER_DAY = 86_400
DAYS_PER_WEEK = 7.0


def black_friday(year: int) -> date:
    """The day after the fourth Thursday of November."""
    first = date(year, 11, 1)
    first_thursday = first + timedelta(days=(3 - first.weekday()) % 7)
    return first_thursday + timedelta(days=22)


def _raw_multipliers(days: list[date], params: SimulationParams) -> F64:
    """Month × event factors per day (weekday factors are applied separately)."""
    month = np.array([params.month_factors[d.month - 1] for d in days])
    event = np.ones(len(days))
    for i, d in enumerate(days):
        bf = black_friday(d.year)
        if bf <= d <= bf + timedelta(days=3):
            event[i] = params.black_friday_factor
        elif d.month == 12 and d.day >= 21:
            event[i] = params.late_december_factor
    return month * event


@dataclass(frozen=True)
class Calendar:
    """The simulated period [start, end) in days since ``start``, and its demand curve."""

    start: date
    days: int
    multiplier: F64  # per day, mean 1 over a reference calendar year
    cum_weeks: F64  # Λ at each day boundary (days + 1 values), in demand-weeks

    @classmethod
    def build(cls, days: int, params: SimulationParams) -> Calendar:
        end = date.fromisoformat(params.end_date)
        start = end - timedelta(days=days)
        dates = [start + timedelta(days=i) for i in range(days)]
        reference = [date(2025, 1, 1) + timedelta(days=i) for i in range(365)]
        norm = float(_raw_multipliers(reference, params).mean())
        weekday = np.array(params.weekday_factors) / float(np.mean(params.weekday_factors))
        wd = np.array([d.weekday() for d in dates], dtype=np.int64)
        mult = _raw_multipliers(dates, params) / norm * weekday[wd]
        cum = np.concatenate([[0.0], np.cumsum(mult)]) / DAYS_PER_WEEK
        return cls(start=start, days=days, multiplier=mult, cum_weeks=cum)

    @property
    def start_us(self) -> int:
        moment = datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC)
        return int(moment.timestamp()) * MICROS_PER_SECOND

    @property
    def end_us(self) -> int:
        return self.start_us + self.days * SECONDS_PER_DAY * MICROS_PER_SECOND

    def to_demand_weeks(self, t_days: F64) -> F64:
        """Λ(t): demand-time in weeks at calendar time t (days since start)."""
        grid = np.arange(self.days + 1, dtype=np.float64)
        return np.interp(t_days, grid, self.cum_weeks)

    def from_demand_weeks(self, tau: F64) -> F64:
        """Λ⁻¹: calendar days since start for demand-time τ (weeks)."""
        grid = np.arange(self.days + 1, dtype=np.float64)
        return np.interp(tau, self.cum_weeks, grid)

    def sample_days(self, rng: np.random.Generator, n: int, growth: float = 0.0) -> F64:
        """n moments (days since start) with density ∝ m(t)·(1+growth)^(t/365)."""
        t = np.arange(self.days, dtype=np.float64)
        weight = self.multiplier * np.power(1.0 + growth, t / 365.0)
        cdf = np.cumsum(weight)
        cdf /= cdf[-1]
        day = np.searchsorted(cdf, rng.random(n), side="right").clip(0, self.days - 1)
        return day + rng.random(n)

    def to_micros(self, t_days: F64) -> I64:
        """Days since start -> epoch microseconds, whole seconds (exports carry seconds)."""
        seconds = np.floor(t_days * SECONDS_PER_DAY).astype(np.int64)
        return (seconds + self.start_us // MICROS_PER_SECOND) * MICROS_PER_SECOND


def hour_profile(params: SimulationParams) -> tuple[F64, F64]:
    """Piecewise-linear CDF of the hour-of-day weights: (fractions of day, cumulative)."""
    w = np.asarray(params.hour_weights, dtype=np.float64)
    cdf = np.concatenate([[0.0], np.cumsum(w) / w.sum()])
    return np.linspace(0.0, 1.0, 25), cdf


def apply_daily_rhythm(
    t_days: F64, utc_offset_hours: F64, days: int, profile: tuple[F64, F64]
) -> F64:
    """Move each moment within its *local* day so the hours follow the profile.

    The day itself never changes, so counts per day (and the purchase process) are kept.
    The map is non-decreasing in t (moments pushed outside the period are clipped to it), so
    a customer's orders keep their order.
    """
    local = t_days + utc_offset_hours / 24.0
    day = np.floor(local)
    grid, cdf = profile
    frac = np.interp(local - day, cdf, grid)
    moved = day + frac - utc_offset_hours / 24.0
    return np.clip(moved, 0.0, np.nextafter(float(days), 0.0))
