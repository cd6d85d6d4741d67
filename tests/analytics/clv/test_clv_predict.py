"""Per-customer predictions: invariants, CLV arithmetic, intervals, small stores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from boomerang.analytics.clv import (
    BGNBD,
    MBGNBD,
    GammaGamma,
    ModelFitError,
    ParetoNBD,
    churn_risk,
    customer_lifetime_value,
    fit_bgnbd,
    fit_gammagamma,
    fit_mbgnbd,
    fit_paretonbd,
    next_order_date,
    predict_customers,
)
from boomerang.analytics.clv.predict import DAYS_PER_MONTH

CDNOW = Path(__file__).parents[2] / "data" / "cdnow"
HORIZONS = np.array([0.0, 0.5, 1.0, 4.0, 13.0, 52.0, 260.0, 2600.0])[:, None]

positive = st.floats(min_value=0.02, max_value=50.0, allow_nan=False, allow_infinity=False)
scale = st.floats(min_value=0.05, max_value=500.0, allow_nan=False, allow_infinity=False)
history = st.tuples(
    st.integers(min_value=0, max_value=200),
    st.floats(min_value=0.0, max_value=1.0),
    st.floats(min_value=0.01, max_value=500.0),
)


def _customer(h: tuple[int, float, float]) -> tuple[list[float], list[float], list[float]]:
    x, frac, T = h
    return [float(x)], [frac * T if x > 0 else 0.0], [T]


def _check_expected_purchases(e: np.ndarray) -> None:
    assert np.all(np.isfinite(e))
    assert e[0] == pytest.approx(0.0, abs=1e-12)
    assert np.all(e >= -1e-12)
    assert np.all(np.diff(e) >= -1e-9 * np.maximum(1.0, np.abs(e[1:])))


@settings(max_examples=150, deadline=None)
@given(r=positive, alpha=scale, a=positive, b=positive, h=history)
def test_bgnbd_expected_purchases_nonnegative_and_nondecreasing(
    r: float, alpha: float, a: float, b: float, h: tuple[int, float, float]
) -> None:
    model = BGNBD(r, alpha, a, b)
    _check_expected_purchases(model.expected_purchases(HORIZONS, *_customer(h))[:, 0])
    p = model.p_alive(*_customer(h))[0]
    assert 0.0 <= p <= 1.0


@settings(max_examples=150, deadline=None)
@given(r=positive, alpha=scale, a=positive, b=positive, h=history)
def test_mbgnbd_expected_purchases_nonnegative_and_nondecreasing(
    r: float, alpha: float, a: float, b: float, h: tuple[int, float, float]
) -> None:
    model = MBGNBD(r, alpha, a, b)
    _check_expected_purchases(model.expected_purchases(HORIZONS, *_customer(h))[:, 0])


@settings(max_examples=150, deadline=None)
@given(r=positive, alpha=scale, s=positive, beta=scale, h=history)
def test_paretonbd_expected_purchases_nonnegative_and_nondecreasing(
    r: float, alpha: float, s: float, beta: float, h: tuple[int, float, float]
) -> None:
    model = ParetoNBD(r, alpha, s, beta)
    _check_expected_purchases(model.expected_purchases(HORIZONS, *_customer(h))[:, 0])
    p = model.p_alive(*_customer(h))[0]
    assert 0.0 <= p <= 1.0


def test_clv_is_the_discounted_sum_of_monthly_increments() -> None:
    model, spend = BGNBD(0.243, 4.414, 0.793, 2.426), GammaGamma(6.25, 3.74, 15.44)
    x, t_x, T, z = [2.0, 0.0], [30.43, 0.0], [38.86, 38.86], [22.35, 0.0]
    month = DAYS_PER_MONTH / 7
    cumulative = model.expected_purchases(month * np.arange(4)[:, None], x, t_x, T)
    monthly = np.diff(cumulative, axis=0)
    value = spend.expected_order_value(x, z)
    d = 0.02
    expected = 0.3 * value * (monthly / (1 + d) ** np.arange(1, 4)[:, None]).sum(axis=0)
    clv = customer_lifetime_value(
        model, spend, x, t_x, T, z, months=3, margin=0.3, monthly_discount=d
    )
    np.testing.assert_allclose(clv, expected, rtol=1e-12)
    # No discount: margin x value x expected purchases over the horizon.
    flat = customer_lifetime_value(
        model, spend, x, t_x, T, z, months=3, margin=0.3, monthly_discount=0.0
    )
    np.testing.assert_allclose(flat, 0.3 * value * cumulative[-1], rtol=1e-12)
    assert np.all(clv < flat)
    # Days and weeks agree when the model is expressed in the matching unit.
    daily = BGNBD(0.243, 4.414 * 7, 0.793, 2.426)
    in_days = customer_lifetime_value(
        daily,
        spend,
        x,
        np.multiply(t_x, 7),
        np.multiply(T, 7),
        z,
        months=3,
        margin=0.3,
        monthly_discount=d,
        unit="days",
    )
    np.testing.assert_allclose(in_days, clv, rtol=1e-9)


def test_churn_risk_bands() -> None:
    bands = churn_risk([0.0, 0.29, 0.3, 0.69, 0.7, 1.0])
    assert list(bands) == ["high", "high", "medium", "medium", "low", "low"]


def test_next_order_date_adds_the_wait_to_the_calibration_end() -> None:
    dates = next_order_date("1997-09-30", [0.0, 1.0, 2.5, np.inf], unit="weeks")
    expected = np.array(["1997-09-30", "1997-10-07", "1997-10-18", "NaT"], dtype="datetime64[D]")
    np.testing.assert_array_equal(dates, expected)


@pytest.mark.parametrize("fit", [fit_bgnbd, fit_mbgnbd, fit_paretonbd])
def test_cdnow_predictions_with_intervals(fit: object) -> None:
    d = np.genfromtxt(
        CDNOW / "cdnow_customers_summary_with_transactions.csv", delimiter=",", names=True
    )
    x, t_x, T, z = d["x"], d["t_x"], d["T"], d["zbar"]
    purchases = fit(x, t_x, T)  # type: ignore[operator]
    spend = fit_gammagamma(x, z)
    out = predict_customers(
        purchases, spend, x, t_x, T, z, months=12, margin=0.2, n_draws=100, seed=1
    )
    assert out.p_alive.shape == out.clv.shape == (2357,)
    for low, point, high in [
        (out.expected_purchases_low, out.expected_purchases, out.expected_purchases_high),
        (out.clv_low, out.clv, out.clv_high),
    ]:
        assert np.all(np.isfinite(low) & np.isfinite(high))
        assert np.all(low <= point + 1e-12) and np.all(point <= high + 1e-12)
    direct = customer_lifetime_value(
        purchases.model, spend.model, x, t_x, T, z, months=12, margin=0.2
    )
    np.testing.assert_allclose(out.clv, direct, rtol=1e-12)
    again = predict_customers(
        purchases, spend, x, t_x, T, z, months=12, margin=0.2, n_draws=100, seed=1
    )
    np.testing.assert_array_equal(out.clv_high, again.clv_high)
    assert set(np.unique(out.churn_risk)) <= {"high", "medium", "low"}


def _small_store(seed: int, n: int) -> tuple[np.ndarray, ...]:
    """A store of n customers drawn from CDNOW-like BG/NBD and Gamma-Gamma parameters."""
    rng = np.random.default_rng(seed)
    T = rng.uniform(27.0, 39.0, n)
    x, t_x = BGNBD(0.243, 4.414, 0.793, 2.426).simulate(T, rng)
    nu = rng.gamma(3.74, 1 / 15.44, n)
    k = np.maximum(x, 1)
    zbar = np.where(x > 0, rng.gamma(6.25 * k, 1 / (k * nu)), 0.0)
    return x, t_x, T, zbar


def test_small_store_gets_finite_intervals_around_the_point_estimate() -> None:
    x, t_x, T, zbar = _small_store(seed=0, n=200)
    out = predict_customers(fit_bgnbd(x, t_x, T), fit_gammagamma(x, zbar), x, t_x, T, zbar)
    for low, point, high in [
        (out.expected_purchases_low, out.expected_purchases, out.expected_purchases_high),
        (out.clv_low, out.clv, out.clv_high),
    ]:
        assert np.all(np.isfinite(low) & np.isfinite(point) & np.isfinite(high))
        assert np.all(low <= point) and np.all(point <= high)
    # Wider than on CDNOW's 2,357 customers: relative width of the purchase interval.
    width = (out.expected_purchases_high - out.expected_purchases_low) / out.expected_purchases
    assert float(np.median(width)) > 0.2


def test_degenerate_small_store_is_regularised_by_default_and_strict_on_request() -> None:
    """200 customers whose MLE puts the dropout heterogeneity at a degenerate limit."""
    x, t_x, T, zbar = _small_store(seed=7, n=200)
    with pytest.raises(ModelFitError, match="edge of its range") as info:
        fit_bgnbd(x, t_x, T, penalty=0.0)
    assert "penalty" in info.value.hint
    fit = fit_bgnbd(x, t_x, T)
    assert fit.diagnostics.penalty > 0
    assert "regularised" in fit.diagnostics.message
    out = predict_customers(fit, fit_gammagamma(x, zbar), x, t_x, T, zbar, n_draws=50)
    assert np.all(np.isfinite(out.clv_low) & np.isfinite(out.clv_high))
