"""Per-customer RFM summaries (x, t_x, T, z̄) from raw transactions.

The conventions are those of the BG/NBD, Pareto/NBD and Gamma-Gamma papers (and of the
CDNOW summaries Fader & Hardie published):

* several purchases by one customer on one calendar day are one transaction (their
  values are summed);
* the first transaction is the start of the relationship and is not counted: x is the
  number of *repeat* transactions in the calibration period;
* t_x is the time from the first to the last repeat transaction (0 if x = 0), and T the
  time from the first transaction to the calibration end, both in days or weeks (days/7);
* the calibration end day is included in the calibration period (a purchase on that day
  counts in x), and T is the plain day difference: the CDNOW files (calibration ending
  1997-09-30) give T = 38.86 weeks = 272 days for a first purchase on 1997-01-01;
* z̄ is the mean value of the repeat transactions (the first is excluded, as the
  Gamma-Gamma model requires);
* holdout counts are repeat transactions in (calibration end, observation end].

Everything is vectorised: one lexicographic sort of (customer, day), then run boundaries
and ``np.add.reduceat`` / ``np.bincount``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import numpy as np
import polars as pl
from numpy.typing import ArrayLike, NDArray

from boomerang.errors import InputError

__all__ = ["UNIT_DAYS", "DateLike", "RFMSummary", "TimeUnit", "as_day", "summarize_transactions"]

TimeUnit: TypeAlias = Literal["days", "weeks"]
#: Length of one model time unit in days.
UNIT_DAYS: dict[str, float] = {"days": 1.0, "weeks": 7.0}

DateLike: TypeAlias = np.datetime64 | dt.date | str


@dataclass(frozen=True, slots=True)
class RFMSummary:
    """One row per customer whose first purchase is on or before the calibration end.

    Rows are ordered by customer id. ``zbar`` is ``None`` when no values were given and 0
    for customers without repeat transactions. Holdout fields are ``None`` without an
    observation end.
    """

    customer_id: NDArray[Any]
    x: NDArray[np.int64]
    t_x: NDArray[np.float64]
    T: NDArray[np.float64]
    zbar: NDArray[np.float64] | None
    first_purchase: NDArray[np.datetime64]
    unit: TimeUnit
    calibration_end: np.datetime64
    observation_end: np.datetime64 | None = None
    x_holdout: NDArray[np.int64] | None = None
    value_holdout: NDArray[np.float64] | None = None
    holdout_duration: float | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])


def as_day(value: DateLike, name: str = "date") -> np.datetime64:
    """A calendar day as datetime64[D], from a datetime64, a date or an ISO string."""
    try:
        days = np.asarray(value).astype("datetime64[D]").reshape(-1)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{name} is not a date: {value!r}", hint="use YYYY-MM-DD") from exc
    if days.shape != (1,) or np.isnat(days[0]):
        raise InputError(f"{name} is not a date: {value!r}", hint="use YYYY-MM-DD")
    day: np.datetime64 = days[0]
    return day


def _runs(*keys: NDArray[np.int64]) -> NDArray[np.bool_]:
    """True where a sorted sequence of key tuples starts a new run."""
    n = keys[0].shape[0]
    new = np.ones(n, dtype=bool)
    if n > 1:
        new[1:] = np.any(np.stack([k[1:] != k[:-1] for k in keys]), axis=0)
    return new


def _sort_by_customer_then_day(
    ids: NDArray[Any], day: NDArray[np.int64]
) -> tuple[NDArray[Any], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Distinct ids, each row's id index and day, sorted by (id, day), and the sort order.

    Integer ids (the common case) need one argsort of a combined key instead of a unique()
    plus a lexsort: 3.3 s -> about 1 s on nine million orders here.
    """
    if ids.size and np.issubdtype(ids.dtype, np.integer):
        id0, day0 = int(ids.min()), int(day.min())
        span = int(day.max()) - day0 + 1
        if (int(ids.max()) - id0 + 1) * span < 2**62:
            key = (ids.astype(np.int64) - id0) * span + (day - day0)
            # polars sorts on every core (3x numpy here); ties are same-day orders, summed later
            order = pl.Series(key).arg_sort().to_numpy().astype(np.int64)
            sorted_ids = ids[order]
            new_id = _runs(sorted_ids.astype(np.int64))
            code = np.cumsum(new_id, dtype=np.int64) - 1
            return sorted_ids[new_id], code, day[order], order
    uid, inverse = np.unique(ids, return_inverse=True)
    code = inverse.astype(np.int64).reshape(-1)
    order = np.lexsort((day, code))
    return uid, code[order], day[order], order


def summarize_transactions(
    customer_ids: ArrayLike,
    dates: ArrayLike,
    values: ArrayLike | None = None,
    *,
    calibration_end: DateLike,
    observation_end: DateLike | None = None,
    unit: TimeUnit = "weeks",
) -> RFMSummary:
    """Summarise transactions per customer for the CLV models.

    ``dates`` may be datetime64 of any resolution (or ISO strings); only the calendar day
    is used. Customers whose first purchase is after ``calibration_end`` are left out.
    With ``observation_end`` the summary also counts repeat transactions (distinct days)
    and sums values in the holdout period (calibration_end, observation_end].
    """
    if unit not in UNIT_DAYS:
        raise InputError(f"unknown time unit {unit!r}", hint="use 'days' or 'weeks'")
    ids = np.asarray(customer_ids)
    try:
        days = np.asarray(dates).astype("datetime64[D]")
    except (ValueError, TypeError) as exc:
        raise InputError("dates could not be read as dates", hint="use datetime64 or ISO") from exc
    if ids.ndim != 1 or days.shape != ids.shape:
        raise InputError("customer_ids and dates must be 1-D and of the same length")
    if np.any(np.isnat(days)):
        raise InputError("some transaction dates are missing", hint="drop or fix those rows")
    amounts: NDArray[np.float64] | None = None
    if values is not None:
        amounts = np.asarray(values, dtype=np.float64)
        if amounts.shape != ids.shape:
            raise InputError("values must have one entry per transaction")
        if not np.all(np.isfinite(amounts)):
            raise InputError("some transaction values are missing or infinite")
    cal = as_day(calibration_end, "calibration_end")
    obs = None if observation_end is None else as_day(observation_end, "observation_end")
    if obs is not None and obs <= cal:
        raise InputError("observation_end must be after calibration_end")

    uid, code, day, order = _sort_by_customer_then_day(ids, days.astype(np.int64))
    amounts = None if amounts is None else amounts[order]
    n_ids = uid.shape[0]
    cal_day = int(cal.astype(np.int64))

    # First purchase per customer (rows are sorted by customer, then day).
    starts = np.flatnonzero(_runs(code))
    first = np.empty(n_ids, dtype=np.int64)
    first[code[starts]] = day[starts]
    included = first <= cal_day

    # Calibration transactions: one per (customer, day), values summed.
    in_cal = day <= cal_day
    c_code, c_day = code[in_cal], day[in_cal]
    group_start = np.flatnonzero(_runs(c_code, c_day))
    g_code, g_day = c_code[group_start], c_day[group_start]
    n_days = np.bincount(g_code, minlength=n_ids)
    is_first_day = _runs(g_code)
    is_last_day = np.roll(is_first_day, -1)  # the group before a customer's first is a last
    last = np.zeros(n_ids, dtype=np.int64)
    last[g_code[is_last_day]] = g_day[is_last_day]

    scale = UNIT_DAYS[unit]
    x = np.maximum(n_days - 1, 0)
    t_x = np.where(x > 0, (last - first) / scale, 0.0)
    T = (cal_day - first) / scale
    zbar = None
    if amounts is not None:
        g_value = np.add.reduceat(amounts[in_cal], group_start) if group_start.size else g_day * 0.0
        repeat_total = np.bincount(
            g_code[~is_first_day], weights=g_value[~is_first_day], minlength=n_ids
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            zbar = np.where(x > 0, repeat_total / np.maximum(x, 1), 0.0)

    x_hold = value_hold = None
    duration = None
    if obs is not None:
        obs_day = int(obs.astype(np.int64))
        in_hold = (day > cal_day) & (day <= obs_day)
        h_code, h_day = code[in_hold], day[in_hold]
        h_start = np.flatnonzero(_runs(h_code, h_day))
        x_hold = np.bincount(h_code[h_start], minlength=n_ids).astype(np.int64)[included]
        if amounts is not None:
            value_hold = np.asarray(
                np.bincount(h_code, weights=amounts[in_hold], minlength=n_ids)[included],
                dtype=np.float64,
            )
        duration = (obs_day - cal_day) / scale

    return RFMSummary(
        customer_id=uid[included],
        x=x[included].astype(np.int64),
        t_x=np.asarray(t_x[included], dtype=np.float64),
        T=np.asarray(T[included], dtype=np.float64),
        zbar=None if zbar is None else np.asarray(zbar[included], dtype=np.float64),
        first_purchase=first[included].astype("datetime64[D]"),
        unit=unit,
        calibration_end=cal,
        observation_end=obs,
        x_holdout=x_hold,
        value_holdout=value_hold,
        holdout_duration=duration,
    )
