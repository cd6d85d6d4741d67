"""Per-customer predictions from a fitted purchase model and a fitted spend model.

Point predictions plug in the maximum-likelihood parameters. Intervals reflect parameter
uncertainty only: parameter vectors are drawn from the Laplace approximation (normal in
log-parameters, seeded), each prediction is recomputed per draw, and the requested
quantiles are reported. They do not include the Poisson noise of the purchases
themselves, so a customer's actual count can fall outside them; small stores get wide
intervals rather than an error.

CLV follows the discounted-cash-flow recipe popularised by the ``lifetimes`` package,
written here in vectorised form:

    CLV = margin · E[order value] · Σ_{i=1..months} (E[N(m_i)] − E[N(m_{i−1})]) / (1+d)^i

with m_i = i months (a month is 365.25/12 days) and d the monthly discount rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from boomerang.analytics.clv.fitting import (
    FittedModel,
    FloatArray,
    ParametricModel,
    as_float_array,
    unique_rows,
    validate_rfm,
)
from boomerang.analytics.clv.gammagamma import GammaGamma, expected_order_value
from boomerang.analytics.clv.summary import UNIT_DAYS, DateLike, TimeUnit, as_day
from boomerang.errors import InputError

__all__ = [
    "CHURN_HIGH_BELOW",
    "CHURN_MEDIUM_BELOW",
    "DAYS_PER_MONTH",
    "CustomerPredictions",
    "TransactionModel",
    "churn_risk",
    "customer_lifetime_value",
    "discounted_expected_purchases",
    "next_order_date",
    "predict_customers",
]

DAYS_PER_MONTH = 365.25 / 12
#: Churn-risk bands on P(alive): "high" below 0.3, "medium" below 0.7, else "low".
CHURN_HIGH_BELOW = 0.3
CHURN_MEDIUM_BELOW = 0.7
#: Draw-by-customer cells handled at once when computing CLV quantiles (memory bound).
_CHUNK_CELLS = 4_000_000


class TransactionModel(ParametricModel, Protocol):
    """What BG/NBD, MBG/NBD and Pareto/NBD have in common for prediction."""

    def p_alive(self, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray: ...

    def expected_purchases(
        self, t: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
    ) -> FloatArray: ...

    def time_to_next_purchase(
        self, x: ArrayLike, t_x: ArrayLike, T: ArrayLike, quantile: float = 0.5
    ) -> FloatArray: ...


TM = TypeVar("TM", bound=TransactionModel)


def churn_risk(
    p_alive: ArrayLike,
    *,
    high_below: float = CHURN_HIGH_BELOW,
    medium_below: float = CHURN_MEDIUM_BELOW,
) -> NDArray[np.str_]:
    """Band P(alive) into "high" (< 0.3), "medium" (< 0.7) and "low" churn risk.

    The cut-offs are conventions, not model output; pass others to suit the store.
    """
    p = np.asarray(p_alive, dtype=np.float64)
    bands = np.where(p < high_below, "high", np.where(p < medium_below, "medium", "low"))
    return np.asarray(bands, dtype=np.str_)


def _month_grid(months: int, unit: TimeUnit) -> FloatArray:
    if unit not in UNIT_DAYS:
        raise InputError(f"unknown time unit {unit!r}", hint="use 'days' or 'weeks'")
    if months < 1:
        raise InputError("the CLV horizon must be at least one month")
    return np.arange(months + 1, dtype=np.float64) * (DAYS_PER_MONTH / UNIT_DAYS[unit])


def _discount(months: int, monthly_discount: float) -> FloatArray:
    if monthly_discount <= -1:
        raise InputError("the monthly discount rate must be greater than -1")
    return np.asarray((1.0 + monthly_discount) ** -np.arange(1, months + 1), dtype=np.float64)


def discounted_expected_purchases(
    model: TransactionModel,
    x: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    *,
    months: int = 12,
    monthly_discount: float = 0.01,
    unit: TimeUnit = "weeks",
) -> FloatArray:
    """Σ_i (E[N(month i)] − E[N(month i−1)]) / (1+d)^i per customer: CLV per unit of margin."""
    grid = _month_grid(months, unit)
    cumulative = model.expected_purchases(grid[:, None], x, t_x, T)
    increments = np.diff(cumulative, axis=0)
    return np.asarray(np.einsum("m,mn->n", _discount(months, monthly_discount), increments))


def customer_lifetime_value(
    model: TransactionModel,
    spend: GammaGamma,
    x: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    zbar: ArrayLike,
    *,
    months: int = 12,
    margin: float = 1.0,
    monthly_discount: float = 0.01,
    unit: TimeUnit = "weeks",
) -> FloatArray:
    """Point CLV per customer over ``months`` (see the module docstring for the formula).

    ``margin`` is the fraction of order value kept as profit; ``unit`` is the time unit
    the purchase model was fitted in.
    """
    factor = discounted_expected_purchases(
        model, x, t_x, T, months=months, monthly_discount=monthly_discount, unit=unit
    )
    return np.asarray(margin * spend.expected_order_value(x, zbar) * factor, dtype=np.float64)


def next_order_date(
    calibration_end: DateLike, wait: ArrayLike, unit: TimeUnit = "weeks"
) -> NDArray[np.datetime64]:
    """Calendar date of an expected next order: calibration end + wait (rounded to days).

    Use with ``time_to_next_purchase`` (the median wait of a customer who is still alive);
    infinite waits give NaT.
    """
    days = np.asarray(wait, dtype=np.float64) * UNIT_DAYS[unit]
    finite = np.isfinite(days) & (days < 1e6)
    offset = np.where(finite, np.round(np.where(finite, days, 0.0)), 0).astype(np.int64)
    dates = as_day(calibration_end, "calibration_end") + offset.astype("timedelta64[D]")
    return np.where(finite, dates, np.datetime64("NaT", "D"))


@dataclass(frozen=True, slots=True)
class CustomerPredictions:
    """Per-customer predictions, aligned with the input rows.

    Times are in the model's unit. ``expected_purchases`` is over ``horizon``; ``clv`` over
    ``months``; ``*_low``/``*_high`` are the ``interval`` quantiles over ``n_draws``
    parameter draws (NaN when ``n_draws`` is 0). ``time_to_next_purchase`` is the median
    wait from the calibration end to the next order *if the customer is still alive*
    (see :func:`next_order_date`); read it together with ``p_alive``.
    """

    p_alive: FloatArray
    churn_risk: NDArray[np.str_]
    expected_purchases: FloatArray
    expected_purchases_low: FloatArray
    expected_purchases_high: FloatArray
    expected_order_value: FloatArray
    clv: FloatArray
    clv_low: FloatArray
    clv_high: FloatArray
    time_to_next_purchase: FloatArray
    horizon: float
    months: int
    unit: TimeUnit
    interval: tuple[float, float]
    n_draws: int

    def columns(self) -> dict[str, NDArray[np.float64] | NDArray[np.str_]]:
        """The per-customer arrays by name (ready for a polars/arrow table)."""
        return {
            "p_alive": self.p_alive,
            "churn_risk": self.churn_risk,
            "expected_purchases": self.expected_purchases,
            "expected_purchases_low": self.expected_purchases_low,
            "expected_purchases_high": self.expected_purchases_high,
            "expected_order_value": self.expected_order_value,
            "clv": self.clv,
            "clv_low": self.clv_low,
            "clv_high": self.clv_high,
            "time_to_next_purchase": self.time_to_next_purchase,
        }


def predict_customers(
    purchases: FittedModel[TM],
    spend: FittedModel[GammaGamma],
    x: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    zbar: ArrayLike,
    *,
    horizon: float | None = None,
    months: int = 12,
    margin: float = 1.0,
    monthly_discount: float = 0.01,
    unit: TimeUnit = "weeks",
    n_draws: int = 200,
    interval: tuple[float, float] = (0.05, 0.95),
    seed: int = 0,
) -> CustomerPredictions:
    """Everything the retention engine shows per customer, vectorised.

    ``horizon`` (model time units) defaults to ``months`` months. The work per draw is one
    hypergeometric evaluation per distinct (x, t_x, T) and month, so intervals on large
    stores cost seconds, not minutes; pass ``n_draws=0`` to skip them.
    """
    xa, ta, Ta = validate_rfm(x, t_x, T)
    za = as_float_array(zbar, "zbar")
    if za.shape != xa.shape:
        raise InputError("zbar must have one entry per customer")
    lo_q, hi_q = interval
    if not 0 <= lo_q < hi_q <= 1:
        raise InputError("interval must be two quantiles 0 <= low < high <= 1")
    grid = _month_grid(months, unit)
    h = float(grid[-1]) if horizon is None else float(horizon)
    if h < 0:
        raise InputError("the horizon must be non-negative")
    times = np.append(grid, h)[:, None]
    disc = _discount(months, monthly_discount)
    (ux, ut, uT), _, inv = unique_rows(xa, ta, Ta, return_inverse=True)
    assert inv is not None

    def per_row(model: TransactionModel) -> tuple[FloatArray, FloatArray]:
        cumulative = model.expected_purchases(times, ux, ut, uT)
        return cumulative[-1], np.einsum("m,mn->n", disc, np.diff(cumulative[:-1], axis=0))

    model = purchases.model
    expected_u, factor_u = per_row(model)
    value = spend.model.expected_order_value(xa, za)
    clv = margin * value * factor_u[inv]
    p_alive = model.p_alive(ux, ut, uT)[inv]

    nan = np.full(xa.shape, np.nan)
    e_lo, e_hi, c_lo, c_hi = nan, nan.copy(), nan.copy(), nan.copy()
    if n_draws > 0:
        cls = type(model)
        draws = purchases.draw_vectors(n_draws, seed)
        expected_d = np.empty((n_draws, ux.shape[0]))
        factor_d = np.empty((n_draws, ux.shape[0]))
        for i, vec in enumerate(draws):
            expected_d[i], factor_d[i] = per_row(cls.from_vector(vec))
        e_lo_u, e_hi_u = np.quantile(expected_d, [lo_q, hi_q], axis=0)
        e_lo, e_hi = e_lo_u[inv], e_hi_u[inv]
        spend_draws = spend.draw_vectors(
            n_draws, seed + 1, accept=lambda v: np.asarray(v[:, 1] > 1.0)
        )
        chunk = max(1, _CHUNK_CELLS // n_draws)
        for start in range(0, xa.shape[0], chunk):
            rows = slice(start, start + chunk)
            values_d = expected_order_value(spend_draws, xa[rows], za[rows])
            clv_d = margin * values_d * factor_d[:, inv[rows]]
            c_lo[rows], c_hi[rows] = np.quantile(clv_d, [lo_q, hi_q], axis=0)

    return CustomerPredictions(
        p_alive=p_alive,
        churn_risk=churn_risk(p_alive),
        expected_purchases=expected_u[inv],
        expected_purchases_low=e_lo,
        expected_purchases_high=e_hi,
        expected_order_value=value,
        clv=clv,
        clv_low=c_lo,
        clv_high=c_hi,
        time_to_next_purchase=model.time_to_next_purchase(ux, ut, uT)[inv],
        horizon=h,
        months=months,
        unit=unit,
        interval=(lo_q, hi_q),
        n_draws=n_draws,
    )
