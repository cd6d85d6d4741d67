"""BG/NBD: published CDNOW estimates, parameter recovery, theory checks, failure modes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit, hyp2f1
from scipy.stats import beta as beta_dist
from scipy.stats import gamma as gamma_dist

from boomerang.analytics.clv import BGNBD, ModelFitError, fit_bgnbd
from boomerang.errors import BoomerangError

CDNOW = Path(__file__).parents[2] / "data" / "cdnow"
PUBLISHED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}


@pytest.fixture(scope="module")
def cdnow() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = np.genfromtxt(
        CDNOW / "cdnow_customers_summary_with_transactions.csv", delimiter=",", names=True
    )
    return d["x"], d["t_x"], d["T"]


def test_cdnow_bgnbd_fit_matches_published_estimates(cdnow: tuple[np.ndarray, ...]) -> None:
    fit = fit_bgnbd(*cdnow)
    for name, value in PUBLISHED.items():
        assert fit.params[name] == pytest.approx(value, rel=5e-3), name
    assert fit.log_likelihood == pytest.approx(-9582.4, rel=5e-3)
    assert fit.log_likelihood == pytest.approx(-9582.4, abs=0.05)
    assert fit.n_customers == 2357
    assert fit.diagnostics.converged
    assert fit.diagnostics.n_starts_agreeing == fit.diagnostics.n_starts
    # Laplace covariance: positive definite, plausible standard errors.
    assert np.all(np.linalg.eigvalsh(fit.covariance) > 0)
    se = fit.standard_errors()
    assert 0.005 < se["r"] < 0.05 and 0.1 < se["alpha"] < 1.0


def test_cdnow_bgnbd_log_likelihood_at_published_parameters(
    cdnow: tuple[np.ndarray, ...],
) -> None:
    model = BGNBD(**PUBLISHED)
    assert model.log_likelihood(*cdnow) == pytest.approx(-9582.4, abs=0.1)


def test_cdnow_bgnbd_compressed_fit_equals_uncompressed_likelihood(
    cdnow: tuple[np.ndarray, ...],
) -> None:
    fit = fit_bgnbd(*cdnow)
    assert fit.log_likelihood == pytest.approx(fit.model.log_likelihood(*cdnow), abs=1e-6)


def test_p_alive_is_one_without_repeat_purchases() -> None:
    model = BGNBD(**PUBLISHED)
    p = model.p_alive(np.zeros(4), np.zeros(4), np.array([1.0, 10.0, 39.0, 100.0]))
    np.testing.assert_array_equal(p, 1.0)


def test_predictions_follow_theory() -> None:
    model = BGNBD(**PUBLISHED)
    x, t_x, T = np.array([3.0]), np.array([20.0]), np.array([39.0])
    horizons = np.array([[0.0], [1.0], [5.0], [26.0], [52.0], [520.0]])
    e = model.expected_purchases(horizons, x, t_x, T)[:, 0]
    assert e[0] == 0 and np.all(np.diff(e) > 0)
    # A customer gone quiet for longer is less likely alive and expected to buy less.
    recency = np.array([5.0, 20.0, 35.0, 39.0])
    p = model.p_alive(np.full(4, 3.0), recency, np.full(4, 39.0))
    assert np.all(np.diff(p) > 0)
    later = model.p_alive(np.full(3, 3.0), np.full(3, 20.0), np.array([25.0, 39.0, 60.0]))
    assert np.all(np.diff(later) < 0)
    more = model.expected_purchases(
        10.0, np.array([1.0, 3.0, 10.0]), np.full(3, 38.0), np.full(3, 39.0)
    )
    assert np.all(np.diff(more) > 0)


def test_expected_purchases_equals_paper_equation_10() -> None:
    """The Euler-transformed form used in code equals eq. (10) as printed."""
    r, alpha, a, b = PUBLISHED.values()
    model = BGNBD(r, alpha, a, b)
    x = np.array([0.0, 1.0, 2.0, 5.0, 10.0])
    t_x = np.array([0.0, 1.71, 30.43, 20.0, 38.0])
    T = np.full(5, 38.86)
    t = 39.0
    z = t / (alpha + T + t)
    bracket = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1(
        r + x, b + x, a + b + x - 1, z
    )
    odds = np.where(x > 0, a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x), 0.0)
    expected = (a + b + x - 1) / (a - 1) * bracket / (1 + odds)
    np.testing.assert_allclose(model.expected_purchases(t, x, t_x, T), expected, rtol=1e-10)


def test_predictions_match_numerical_integration_over_lambda_and_p() -> None:
    """P(alive) and E[Y(t)] as posterior integrals on a fine grid (independent of 2F1)."""
    model = BGNBD(**PUBLISHED)
    v = np.linspace(-25.0, 5.0, 1501)[:, None]  # log λ
    w = np.linspace(-30.0, 30.0, 1501)[None, :]  # logit p
    lam, p = np.exp(v), expit(w)
    prior = gamma_dist.pdf(lam, 0.243, scale=1 / 4.414) * lam * beta_dist.pdf(p, 0.793, 2.426)
    prior = prior * p * (1 - p)
    for x, t_x, T in [(1, 1.71, 20.0), (2, 30.43, 38.86), (7, 20.0, 38.86)]:
        alive = (1 - p) ** x * lam**x * np.exp(-lam * T)
        dead = p * (1 - p) ** (x - 1) * lam**x * np.exp(-lam * t_x)
        evidence = ((alive + dead) * prior).sum()
        p_alive = (alive * prior).sum() / evidence
        future = (alive * prior * -np.expm1(-lam * p * 39.0) / p).sum() / evidence
        assert model.p_alive([x], [t_x], [T])[0] == pytest.approx(p_alive, rel=1e-7)
        assert model.expected_purchases(39.0, [x], [t_x], [T])[0] == pytest.approx(future, rel=1e-7)


def test_parameter_recovery_on_synthetic_customers() -> None:
    """20,000 simulated customers: every true value within 3 Laplace standard errors."""
    true = BGNBD(r=0.25, alpha=4.0, a=0.8, b=2.5)
    rng = np.random.default_rng(20240501)
    T = rng.uniform(26.0, 52.0, 20_000)
    x, t_x = true.simulate(T, rng)
    fit = fit_bgnbd(x, t_x, T)
    log_se = np.sqrt(np.diag(fit.log_covariance))
    z = (np.log(fit.model.vector()) - np.log(true.vector())) / log_se
    assert np.all(np.abs(z) < 3), dict(zip(fit.param_names, z, strict=True))
    for name, value in zip(fit.param_names, true.vector(), strict=True):
        assert fit.params[name] == pytest.approx(value, rel=0.2)


def test_laplace_intervals_have_roughly_nominal_coverage() -> None:
    """Repeated small samples: 95% intervals cover the truth about 95% of the time."""
    true = BGNBD(r=0.5, alpha=5.0, a=0.7, b=3.0)
    rng = np.random.default_rng(7)
    covered = []
    for _ in range(40):
        T = rng.uniform(20.0, 52.0, 2_000)
        x, t_x = true.simulate(T, rng)
        intervals = fit_bgnbd(x, t_x, T).intervals(0.95)
        covered += [
            lo <= v <= hi for v, (lo, hi) in zip(true.vector(), intervals.values(), strict=True)
        ]
    assert np.mean(covered) >= 0.85


def test_all_customers_without_repeat_purchases_raise_model_fit_error() -> None:
    T = np.linspace(1.0, 39.0, 500)
    with pytest.raises(ModelFitError) as info:
        fit_bgnbd(np.zeros(500), np.zeros(500), T)
    err = info.value
    assert isinstance(err, BoomerangError)
    assert err.code == "model_fit"
    assert "calibration period" in err.hint


def test_input_conventions_are_checked() -> None:
    with pytest.raises(BoomerangError, match="t_x <= T"):
        fit_bgnbd([1, 2], [5.0, 50.0], [10.0, 10.0])
    with pytest.raises(BoomerangError, match="t_x must be 0"):
        fit_bgnbd([0, 2], [5.0, 5.0], [10.0, 10.0])
