"""Gamma-Gamma: published CDNOW estimates and the conditional expectation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from boomerang.analytics.clv import GammaGamma, ModelFitError, fit_gammagamma

CDNOW = Path(__file__).parents[2] / "data" / "cdnow"
PUBLISHED = {"p": 6.25, "q": 3.74, "gamma": 15.44}


@pytest.fixture(scope="module")
def cdnow() -> tuple[np.ndarray, np.ndarray]:
    d = np.genfromtxt(
        CDNOW / "cdnow_customers_summary_with_transactions.csv", delimiter=",", names=True
    )
    return d["x"], d["zbar"]


def test_cdnow_gammagamma_fit_matches_published_estimates(cdnow: tuple[np.ndarray, ...]) -> None:
    fit = fit_gammagamma(*cdnow)
    assert fit.n_customers == 946
    for name, value in PUBLISHED.items():
        assert fit.params[name] == pytest.approx(value, rel=5e-3), name
    x, z = cdnow
    buyers = x > 0
    assert fit.log_likelihood == pytest.approx(fit.model.log_likelihood(x[buyers], z[buyers]))
    assert np.all(np.linalg.eigvalsh(fit.covariance) > 0)


def test_expected_order_value_shrinks_towards_the_population_mean() -> None:
    m = GammaGamma(**PUBLISHED)
    mean = m.p * m.gamma / (m.q - 1)
    assert m.mean_order_value == pytest.approx(mean)
    # No repeat purchases: the population mean, whatever zbar says.
    assert m.expected_order_value([0.0], [500.0])[0] == pytest.approx(mean)
    # More transactions pull the estimate towards the customer's own average.
    values = m.expected_order_value([1.0, 5.0, 50.0], [100.0, 100.0, 100.0])
    assert np.all(np.diff(values) > 0) and mean < values[0] and values[-1] < 100.0
    expected = m.p * (m.gamma + 5 * 100.0) / (m.p * 5 + m.q - 1)
    assert values[1] == pytest.approx(expected)


def test_recovers_simulated_parameters() -> None:
    true = GammaGamma(p=6.0, q=4.0, gamma=15.0)
    rng = np.random.default_rng(11)
    x = rng.integers(1, 10, 5_000).astype(float)
    nu = rng.gamma(true.q, 1 / true.gamma, x.shape[0])
    zbar = rng.gamma(true.p * x, 1 / (x * nu))
    fit = fit_gammagamma(x, zbar)
    log_se = np.sqrt(np.diag(fit.log_covariance))
    z = (np.log(fit.model.vector()) - np.log(true.vector())) / log_se
    assert np.all(np.abs(z) < 3)


def test_too_few_repeat_buyers_raise() -> None:
    with pytest.raises(ModelFitError, match="repeat"):
        fit_gammagamma([0, 0, 1, 0], [0.0, 0.0, 10.0, 0.0])
