"""MBG/NBD: published CDNOW estimates and the ways it differs from BG/NBD."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit
from scipy.stats import beta as beta_dist
from scipy.stats import gamma as gamma_dist

from boomerang.analytics.clv import BGNBD, MBGNBD, fit_mbgnbd

CDNOW = Path(__file__).parents[2] / "data" / "cdnow"
PUBLISHED = {"r": 0.525, "alpha": 6.183, "a": 0.891, "b": 1.614}


@pytest.fixture(scope="module")
def cdnow() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = np.genfromtxt(
        CDNOW / "cdnow_customers_summary_with_transactions.csv", delimiter=",", names=True
    )
    return d["x"], d["t_x"], d["T"]


def test_cdnow_mbgnbd_fit_matches_published_estimates(cdnow: tuple[np.ndarray, ...]) -> None:
    fit = fit_mbgnbd(*cdnow)
    for name, value in PUBLISHED.items():
        assert fit.params[name] == pytest.approx(value, rel=5e-3), name
    assert fit.log_likelihood == pytest.approx(fit.model.log_likelihood(*cdnow), abs=1e-6)
    assert fit.n_customers == 2357
    assert np.all(np.linalg.eigvalsh(fit.covariance) > 0)


def test_customers_without_repeat_purchases_may_have_left() -> None:
    model = MBGNBD(**PUBLISHED)
    p = model.p_alive(np.zeros(3), np.zeros(3), np.array([1.0, 10.0, 39.0]))
    assert np.all((p > 0) & (p < 1)) and np.all(np.diff(p) < 0)
    # With the same parameters BG/NBD keeps them alive and so expects more purchases.
    bg = BGNBD(**PUBLISHED)
    assert (
        bg.expected_purchases(10.0, [0.0], [0.0], [39.0])[0]
        > model.expected_purchases(10.0, [0.0], [0.0], [39.0])[0]
    )


def test_predictions_match_numerical_integration_over_lambda_and_p() -> None:
    model = MBGNBD(**PUBLISHED)
    v = np.linspace(-25.0, 5.0, 1501)[:, None]
    w = np.linspace(-30.0, 30.0, 1501)[None, :]
    lam, p = np.exp(v), expit(w)
    prior = gamma_dist.pdf(lam, 0.525, scale=1 / 6.183) * lam * beta_dist.pdf(p, 0.891, 1.614)
    prior = prior * p * (1 - p)
    for x, t_x, T in [(1, 1.71, 20.0), (2, 30.43, 38.86), (25, 38.0, 38.86)]:
        base = (1 - p) ** x * lam**x * np.exp(-lam * t_x)
        alive = base * (1 - p) * np.exp(-lam * (T - t_x))
        evidence = ((alive + base * p) * prior).sum()
        p_alive = (alive * prior).sum() / evidence
        future = (alive * prior * -np.expm1(-lam * p * 39.0) / p).sum() / evidence
        assert model.p_alive([x], [t_x], [T])[0] == pytest.approx(p_alive, rel=1e-7)
        assert model.expected_purchases(39.0, [x], [t_x], [T])[0] == pytest.approx(future, rel=1e-7)
