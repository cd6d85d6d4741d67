"""From a store's orders to CLV fits, predictions and backtests (the models live in ``clv/``).

Why a separate module: the models take plain arrays; this is where the store's conventions
meet the papers' ones. A transaction is a non-cancelled order with a known customer, dated by
its UTC calendar day, worth its net revenue (total − refunded, major units, floored at 0);
same-day orders merge into one transaction (``summarize_transactions`` does that).

The backtest compares the model with a naive baseline (each customer keeps buying at their
calibration repeat rate x/T) on the same holdout, customer by customer, by calibration
frequency and along the cumulative tracking curve of Fader, Hardie & Lee (2005, fig. 3).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from boomerang.analytics.clv import (
    CustomerPredictions,
    FittedModel,
    GammaGamma,
    RFMSummary,
    TransactionModel,
    fit_bgnbd,
    fit_gammagamma,
    fit_mbgnbd,
    fit_paretonbd,
    next_order_date,
    predict_customers,
    summarize_transactions,
)
from boomerang.analytics.clv.fitting import unique_rows
from boomerang.analytics.clv.summary import UNIT_DAYS, DateLike, TimeUnit, as_day
from boomerang.errors import InputError

__all__ = [
    "PURCHASE_MODELS",
    "Backtest",
    "ClvFit",
    "ErrorStats",
    "PurchaseModelName",
    "Transactions",
    "backtest",
    "fit_clv",
    "p_alive_falling",
    "transactions_from_columns",
    "transactions_from_orders",
]

PurchaseModelName: TypeAlias = Literal["bgnbd", "mbgnbd", "paretonbd"]
FitFn: TypeAlias = Callable[..., FittedModel[Any]]
PURCHASE_MODELS: dict[str, FitFn] = {
    "bgnbd": fit_bgnbd,
    "mbgnbd": fit_mbgnbd,
    "paretonbd": fit_paretonbd,
}
MICROS_PER_DAY = 86_400_000_000
#: Calibration frequency buckets of the backtest table: 0, 1, ..., 6 and "7+".
BUCKET_TOP = 7


@dataclass(frozen=True, slots=True)
class Transactions:
    """One row per order kept for the models (not yet merged by day)."""

    customer_id: NDArray[Any]
    day: NDArray[np.datetime64]  # datetime64[D], UTC calendar day
    value: NDArray[np.float64]  # major currency units

    def __len__(self) -> int:
        return int(self.customer_id.shape[0])

    @property
    def first_day(self) -> np.datetime64:
        return np.datetime64(self.day.min(), "D")

    @property
    def last_day(self) -> np.datetime64:
        return np.datetime64(self.day.max(), "D")


def transactions_from_orders(orders: pa.Table, minor_to_major: float) -> Transactions:
    """Orders as read by ``store.repos.analytics_source.read_orders`` -> model transactions."""
    keep = pc.and_(
        pc.is_valid(orders["customer_id"]),
        pc.not_equal(pc.fill_null(orders["status"], ""), "cancelled"),
    )
    kept = orders.filter(keep)
    cid = kept["customer_id"].to_numpy().astype(np.int64)
    micros = kept["placed_at"].to_numpy().astype(np.int64)
    net = (kept["total_minor"].to_numpy() - kept["refunded_minor"].to_numpy()).astype(np.float64)
    return Transactions(
        customer_id=cid,
        day=(micros // MICROS_PER_DAY).astype("datetime64[D]"),
        value=np.maximum(net, 0.0) * minor_to_major,
    )


def transactions_from_columns(
    customer: NDArray[Any], date: NDArray[Any], value: NDArray[Any] | None
) -> Transactions:
    """Raw columns (e.g. from a CSV) -> transactions; rows without customer or date are errors."""
    try:
        days = np.asarray(date).astype("datetime64[D]")
    except (ValueError, TypeError) as exc:
        raise InputError(
            "the date column could not be read as dates", hint="use YYYY-MM-DD"
        ) from exc
    if np.any(np.isnat(days)):
        raise InputError("some transaction dates are missing", hint="drop or fix those rows")
    values = np.zeros(days.shape) if value is None else np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise InputError("some transaction values are missing or not numbers")
    return Transactions(np.asarray(customer), days, values)


# --------------------------------------------------------------------------- fitting


@dataclass(frozen=True)
class ClvFit:
    """A purchase model, a spend model and the per-customer predictions they give."""

    model_name: str
    summary: RFMSummary
    purchases: FittedModel[Any]
    spend: FittedModel[GammaGamma]
    predictions: CustomerPredictions
    next_order: NDArray[np.datetime64]  # median next-order day if alive (NaT if none)
    horizon_days: int
    p_alive_falling: NDArray[np.bool_]


def _summary(
    trans: Transactions,
    calibration_end: DateLike,
    observation_end: DateLike | None = None,
    unit: TimeUnit = "weeks",
) -> RFMSummary:
    if len(trans) == 0:
        raise InputError("no orders with a customer to model", hint="import orders first")
    return summarize_transactions(
        trans.customer_id,
        trans.day,
        trans.value,
        calibration_end=calibration_end,
        observation_end=observation_end,
        unit=unit,
    )


def fit_purchases(name: str, s: RFMSummary, seed: int = 0) -> FittedModel[Any]:
    """Fit the named purchase model on a summary."""
    try:
        fit = PURCHASE_MODELS[name]
    except KeyError:
        raise InputError(
            f"unknown model {name!r}", hint="use " + ", ".join(PURCHASE_MODELS)
        ) from None
    return fit(s.x, s.t_x, s.T, seed=seed)


def p_alive_falling(
    model: TransactionModel, s: RFMSummary, lookback_days: float = 30.0
) -> NDArray[np.bool_]:
    """True where P(alive) is lower now than ``lookback_days`` ago with no purchase since.

    A customer's P(alive) only falls while they stay silent, so "falling" means: no repeat
    purchase in the lookback window and P(alive) now below P(alive) then by > 0.01.
    """
    back = lookback_days / UNIT_DAYS[s.unit]
    earlier_T = s.T - back
    silent = (earlier_T >= s.t_x) & (s.x > 0)
    then = np.ones_like(s.T)
    if np.any(silent):
        then[silent] = model.p_alive(s.x[silent], s.t_x[silent], earlier_T[silent])
    now = model.p_alive(s.x, s.t_x, s.T)
    return np.asarray(silent & (then - now > 0.01), dtype=np.bool_)


def fit_clv(
    trans: Transactions,
    *,
    calibration_end: DateLike | None = None,
    model: str = "bgnbd",
    unit: TimeUnit = "weeks",
    horizon_days: int = 90,
    months: int = 12,
    margin: float = 1.0,
    monthly_discount: float = 0.01,
    n_draws: int = 200,
    seed: int = 0,
) -> ClvFit:
    """Fit purchases + spend on everything up to ``calibration_end`` (default: the last
    order day) and predict every customer seen by then."""
    if not 0 < margin <= 1:
        raise InputError("margin must be in (0, 1]", hint="e.g. --margin 0.3 for a 30% margin")
    if horizon_days < 1:
        raise InputError("the horizon must be at least one day")
    end = trans.last_day if calibration_end is None else as_day(calibration_end, "calibration_end")
    s = _summary(trans, end, unit=unit)
    purchases = fit_purchases(model, s, seed)
    assert s.zbar is not None
    spend = fit_gammagamma(s.x, s.zbar, seed=seed)
    pred = predict_customers(
        purchases,
        spend,
        s.x,
        s.t_x,
        s.T,
        s.zbar,
        horizon=horizon_days / UNIT_DAYS[unit],
        months=months,
        margin=margin,
        monthly_discount=monthly_discount,
        unit=unit,
        n_draws=n_draws,
        seed=seed,
    )
    return ClvFit(
        model_name=model,
        summary=s,
        purchases=purchases,
        spend=spend,
        predictions=pred,
        next_order=next_order_date(end, pred.time_to_next_purchase, unit),
        horizon_days=horizon_days,
        p_alive_falling=p_alive_falling(purchases.model, s),
    )


# --------------------------------------------------------------------------- backtest


@dataclass(frozen=True, slots=True)
class ErrorStats:
    """Holdout error of one predictor, over all calibration customers."""

    mae: float
    rmse: float
    predicted_total: float
    actual_total: float

    @property
    def aggregate_error(self) -> float:
        """(predicted − actual) / actual repeat transactions in the holdout, all customers."""
        return (self.predicted_total - self.actual_total) / max(self.actual_total, 1e-12)

    @classmethod
    def of(cls, predicted: NDArray[np.float64], actual: NDArray[np.float64]) -> ErrorStats:
        err = predicted - actual
        return cls(
            mae=float(np.mean(np.abs(err))),
            rmse=float(np.sqrt(np.mean(err**2))),
            predicted_total=float(predicted.sum()),
            actual_total=float(actual.sum()),
        )


@dataclass(frozen=True)
class Backtest:
    """Model vs naive baseline on the holdout (calibration_end, calibration_end + days]."""

    model_name: str
    calibration_end: np.datetime64
    holdout_days: int
    n_customers: int
    params: dict[str, float]
    model: ErrorStats
    naive: ErrorStats
    buckets: pl.DataFrame  # frequency, customers, actual, model, naive (mean per customer)
    tracking: pl.DataFrame  # day, actual, model (cumulative repeat transactions)

    @property
    def model_wins(self) -> bool:
        return self.model.mae < self.naive.mae


def _frequency_buckets(
    x: NDArray[np.int64], actual: NDArray[np.float64], model: NDArray[np.float64],
    naive: NDArray[np.float64],
) -> pl.DataFrame:  # fmt: skip
    bucket = np.minimum(x, BUCKET_TOP)
    frame = pl.DataFrame({"bucket": bucket, "actual": actual, "model": model, "naive": naive})
    out = (
        frame.group_by("bucket")
        .agg(
            pl.len().alias("customers"),
            pl.col("actual").mean(),
            pl.col("model").mean(),
            pl.col("naive").mean(),
        )
        .sort("bucket")
    )
    label = pl.when(pl.col("bucket") >= BUCKET_TOP).then(pl.lit(f"{BUCKET_TOP}+"))
    return out.with_columns(
        label.otherwise(pl.col("bucket").cast(pl.String)).alias("frequency")
    ).select("frequency", "customers", "actual", "model", "naive")


def _tracking(
    trans: Transactions,
    s: RFMSummary,
    model: TransactionModel,
    end: np.datetime64,
    step_days: int = 7,
) -> pl.DataFrame:
    """Cumulative repeat transactions of the calibration cohort, actual vs model, by day.

    The model curve is the papers' one: Σ_i E[X(t − first_i)] for a new customer (x = t_x =
    T = 0), so the calibration part tests the fit and the holdout part the forecast.
    """
    scale = UNIT_DAYS[s.unit]
    first_day = np.datetime64(s.first_purchase.min(), "D")
    grid = np.arange(first_day, end + np.timedelta64(1, "D"), np.timedelta64(step_days, "D"))
    if grid[-1] != end:
        grid = np.append(grid, end)
    # Actual: distinct purchase days after each cohort customer's first day.
    cohort = np.isin(trans.customer_id, s.customer_id)
    pairs = np.unique(
        np.stack(
            [
                np.searchsorted(s.customer_id, trans.customer_id[cohort]).astype(np.int64),
                trans.day[cohort].astype(np.int64),
            ]
        ),
        axis=1,
    )
    first = s.first_purchase.astype(np.int64)[pairs[0]]
    repeat_days = np.sort(pairs[1][pairs[1] > first])
    actual = np.searchsorted(repeat_days, grid.astype(np.int64), side="right")
    # Model: customers grouped by first day; E[X(age)] on every needed age once.
    f_days, f_counts = np.unique(s.first_purchase.astype(np.int64), return_counts=True)
    ages = grid.astype(np.int64)[:, None] - f_days[None, :]
    max_age = int(max(ages.max(), 0))
    age_grid = np.arange(max_age + 1, dtype=np.float64)
    zeros = np.zeros(age_grid.shape[0])
    e_age = model.expected_purchases(age_grid / scale, zeros, zeros, zeros)
    e = np.where(ages >= 0, e_age[np.clip(ages, 0, max_age)], 0.0)
    predicted = e @ f_counts.astype(np.float64)
    return pl.DataFrame(
        {"day": grid.astype("datetime64[D]"), "actual": actual.astype(np.float64),
         "model": predicted}
    ).with_columns(pl.col("day").cast(pl.Date))  # fmt: skip


def backtest(
    trans: Transactions,
    *,
    calibration_end: DateLike,
    holdout_days: int | None = None,
    model: str = "bgnbd",
    unit: TimeUnit = "weeks",
    seed: int = 0,
) -> Backtest:
    """Fit on the calibration period, predict the holdout, score model and naive baseline.

    ``holdout_days`` defaults to everything after the calibration end up to the last order.
    The naive baseline predicts x/T · holdout: each customer repeats at their past rate.
    """
    cal = as_day(calibration_end, "calibration_end")
    if len(trans) == 0:
        raise InputError("no orders with a customer to model", hint="import orders first")
    if holdout_days is None:
        holdout_days = int((trans.last_day - cal).astype(np.int64))
    if holdout_days < 1:
        raise InputError(
            "no holdout period: the calibration end is on or after the last order",
            hint="choose an earlier --calibration-end or pass --holdout-days",
        )
    obs = cal + np.timedelta64(holdout_days, "D")
    s = _summary(trans, cal, obs, unit)
    assert s.x_holdout is not None and s.holdout_duration is not None
    fitted = fit_purchases(model, s, seed)
    h = s.holdout_duration
    (ux, ut, uT), _, inv = unique_rows(s.x.astype(np.float64), s.t_x, s.T, return_inverse=True)
    assert inv is not None
    predicted = fitted.model.expected_purchases(h, ux, ut, uT)[inv]
    with np.errstate(divide="ignore", invalid="ignore"):
        naive = np.where(s.T > 0, s.x / np.where(s.T > 0, s.T, 1.0), 0.0) * h
    actual = s.x_holdout.astype(np.float64)
    return Backtest(
        model_name=model,
        calibration_end=cal,
        holdout_days=holdout_days,
        n_customers=len(s),
        params=fitted.params,
        model=ErrorStats.of(predicted, actual),
        naive=ErrorStats.of(naive, actual),
        buckets=_frequency_buckets(s.x, actual, predicted, naive),
        tracking=_tracking(trans, s, fitted.model, obs),
    )
