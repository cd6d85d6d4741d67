"""Pareto/NBD: published CDNOW estimates and the numerics of the 2F1 formulation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import gamma as gamma_dist

from boomerang.analytics.clv import ParetoNBD, fit_paretonbd

CDNOW = Path(__file__).parents[2] / "data" / "cdnow"
PUBLISHED = {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}


@pytest.fixture(scope="module")
def cdnow() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = np.genfromtxt(
        CDNOW / "cdnow_customers_summary_with_transactions.csv", delimiter=",", names=True
    )
    return d["x"], d["t_x"], d["T"]


def test_cdnow_paretonbd_fit_matches_published_estimates(cdnow: tuple[np.ndarray, ...]) -> None:
    fit = fit_paretonbd(*cdnow)
    for name, value in PUBLISHED.items():
        assert fit.params[name] == pytest.approx(value, rel=5e-3), name
    # Fader & Hardie (2005) report LL = -9595.0 for these data.
    assert fit.log_likelihood == pytest.approx(-9595.0, abs=0.05)
    assert fit.log_likelihood == pytest.approx(fit.model.log_likelihood(*cdnow), abs=1e-6)
    assert np.all(np.linalg.eigvalsh(fit.covariance) > 0)


def test_likelihood_is_continuous_across_the_alpha_beta_branch() -> None:
    x, t_x, T = np.array([0.0, 1.0, 4.0, 12.0]), np.array([0.0, 3.0, 20.0, 38.0]), np.full(4, 39.0)
    below = ParetoNBD(0.55, 10.0 - 1e-9, 0.6, 10.0).individual_log_likelihood(x, t_x, T)
    equal = ParetoNBD(0.55, 10.0, 0.6, 10.0).individual_log_likelihood(x, t_x, T)
    above = ParetoNBD(0.55, 10.0 + 1e-9, 0.6, 10.0).individual_log_likelihood(x, t_x, T)
    np.testing.assert_allclose(below, equal, rtol=1e-8)
    np.testing.assert_allclose(above, equal, rtol=1e-8)


def test_expected_purchases_continuous_at_s_equal_one() -> None:
    args = (26.0, [2.0], [30.0], [39.0])
    at_one = ParetoNBD(0.55, 10.0, 1.0, 12.0).expected_purchases(*args)
    near = ParetoNBD(0.55, 10.0, 1.0 + 1e-6, 12.0).expected_purchases(*args)
    np.testing.assert_allclose(at_one, near, rtol=1e-5)


def test_t_x_equal_to_T_keeps_full_precision() -> None:
    """The 'died in (t_x, T]' term vanishes; the likelihood is the alive term alone."""
    m = ParetoNBD(**PUBLISHED)
    x, T = 5.0, 39.0
    ll = m.individual_log_likelihood([x], [T], [T])[0]
    from scipy.special import gammaln

    alive = (
        gammaln(m.r + x)
        - gammaln(m.r)
        + m.r * np.log(m.alpha)
        + m.s * np.log(m.beta)
        - (m.r + x) * np.log(m.alpha + T)
        - m.s * np.log(m.beta + T)
    )
    assert ll == pytest.approx(alive, rel=1e-12)
    assert m.p_alive([x], [T], [T])[0] == pytest.approx(1.0)


def test_predictions_match_numerical_integration_over_lambda_and_mu() -> None:
    m = ParetoNBD(**PUBLISHED)
    # μ^s with s = 0.6 keeps mass at tiny μ: its grid reaches further down.
    lam = np.exp(np.linspace(-25.0, 5.0, 1501))[:, None]
    mu = np.exp(np.linspace(-50.0, 5.0, 2751))[None, :]
    prior = (
        gamma_dist.pdf(lam, m.r, scale=1 / m.alpha)
        * lam
        * gamma_dist.pdf(mu, m.s, scale=1 / m.beta)
        * mu
    )
    for x, t_x, T in [(1, 1.71, 20.0), (2, 30.43, 38.86), (25, 38.0, 38.86)]:
        alive = lam**x * np.exp(-(lam + mu) * T)
        died = lam**x * mu / (lam + mu) * (np.exp(-(lam + mu) * t_x) - np.exp(-(lam + mu) * T))
        evidence = ((alive + died) * prior).sum()
        future = (alive * prior * lam / mu * -np.expm1(-mu * 39.0)).sum() / evidence
        assert m.p_alive([x], [t_x], [T])[0] == pytest.approx(
            (alive * prior).sum() / evidence, rel=1e-6
        )
        assert m.expected_purchases(39.0, [x], [t_x], [T])[0] == pytest.approx(future, rel=1e-6)
