"""Gamma-Gamma spend model: Fader, Hardie & Lee (2005), "RFM and CLV: using iso-value
curves for customer base analysis", JMR 42(4).

Each transaction value is Gamma(p, ν) with ν ~ Gamma(q, γ) across customers; for a
customer with x repeat transactions of mean value z̄ (the first purchase excluded, as in
the paper) the density of z̄ is

    f(z̄ | x) = Γ(px+q) / (Γ(px) Γ(q)) · γ^q z̄^(px−1) x^(px) / (γ + x z̄)^(px+q).

It is fitted on customers with x > 0 and z̄ > 0 only, and assumes spend is independent of
purchase frequency (check that before trusting a CLV built on it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import ClassVar, Self

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import digamma, gammaln, polygamma

from boomerang.analytics.clv.fitting import (
    SCREEN_CUSTOMERS,
    FittedModel,
    FloatArray,
    Likelihood,
    ModelFitError,
    as_float_array,
    dot,
    maximise_likelihood,
    subsample_rows,
    unique_rows,
)
from boomerang.errors import InputError

__all__ = ["GammaGamma", "fit_gammagamma"]


def expected_order_value(params: FloatArray, x: FloatArray, zbar: FloatArray) -> FloatArray:
    """E[mean transaction value | x, z̄] = p(γ + x z̄) / (px + q − 1) (paper, eq. 5).

    A weighted average of the population mean pγ/(q−1) and the customer's own z̄, weighted
    towards z̄ as x grows; x = 0 gives the population mean. ``params`` is (p, q, γ) with
    shape (3,) or (m, 3); results broadcast to (m, n). Infinite where the mean does not
    exist (px + q ≤ 1).
    """
    prm = np.atleast_2d(params)
    p, q, gamma = (prm[:, i : i + 1] for i in range(3))
    z = np.where(x > 0, zbar, 0.0)
    denom = p * x + q - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where(denom > 0, p * (gamma + x * z) / denom, np.inf)
    return np.asarray(value, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class GammaGamma:
    """Gamma-Gamma with the paper's parameter names p, q, γ (``gamma``); money units."""

    p: float
    q: float
    gamma: float

    param_names: ClassVar[tuple[str, ...]] = ("p", "q", "gamma")

    def vector(self) -> FloatArray:
        return np.array([self.p, self.q, self.gamma], dtype=np.float64)

    @classmethod
    def from_vector(cls, values: FloatArray) -> Self:
        p, q, gamma = (float(v) for v in values)
        return cls(p, q, gamma)

    @property
    def mean_order_value(self) -> float:
        """Population mean transaction value pγ/(q−1) (infinite if q ≤ 1)."""
        return self.p * self.gamma / (self.q - 1) if self.q > 1 else float("inf")

    def individual_log_likelihood(self, x: ArrayLike, zbar: ArrayLike) -> FloatArray:
        """ln f(z̄ | x) per customer; customers need x > 0 and z̄ > 0."""
        xa = as_float_array(x, "x")
        za = as_float_array(zbar, "zbar")
        if np.any(xa <= 0) or np.any(za <= 0):
            raise InputError("the Gamma-Gamma density needs x > 0 and zbar > 0")
        p, q, g = self.p, self.q, self.gamma
        px = p * xa
        return np.asarray(
            gammaln(px + q)
            - gammaln(px)
            - gammaln(q)
            + q * np.log(g)
            + (px - 1) * np.log(za)
            + px * np.log(xa)
            - (px + q) * np.log(g + xa * za),
            dtype=np.float64,
        )

    def log_likelihood(self, x: ArrayLike, zbar: ArrayLike) -> float:
        return float(self.individual_log_likelihood(x, zbar).sum())

    def expected_order_value(self, x: ArrayLike, zbar: ArrayLike) -> FloatArray:
        """Conditional expected value of a future transaction (z̄ ignored where x = 0)."""
        xa = as_float_array(x, "x")
        za = as_float_array(zbar, "zbar")
        return np.asarray(expected_order_value(self.vector(), xa, za)[0], dtype=np.float64)


class _GammaGammaLikelihood:
    """Mean negative log-likelihood per customer with analytic gradient and Hessian."""

    def __init__(self, x: FloatArray, z: FloatArray, w: FloatArray) -> None:
        self.x, self.z, self.w = x, z, w
        self.n = float(w.sum())
        self.log_xz = np.log(x) + np.log(z)
        self.log_z = np.log(z)
        # The special functions depend on x only, which takes few distinct values (repeat
        # counts): evaluate them once per distinct x with the summed weights of its rows.
        self.xs, where = np.unique(x, return_inverse=True)
        self.wx = np.bincount(where, weights=w).astype(np.float64)

    def likelihood(self) -> Likelihood:
        return Likelihood(self.value_and_gradient, curvature=self.curvature)

    def value_and_gradient(self, theta: FloatArray) -> tuple[float, FloatArray]:
        value, grad, _ = self.evaluate(theta, hessian=False)
        return value, grad

    def curvature(self, theta: FloatArray) -> tuple[float, FloatArray, FloatArray]:
        value, grad, hess = self.evaluate(theta, hessian=True)
        assert hess is not None
        return value, grad, hess

    def evaluate(
        self, theta: FloatArray, *, hessian: bool
    ) -> tuple[float, FloatArray, FloatArray | None]:
        p, q, g = np.exp(theta)
        x, w = self.x, self.w
        xs, wx = self.xs, self.wx
        px = p * x
        pxs = p * xs
        inv = 1.0 / (g + x * self.z)
        log_gxz = -np.log(inv)
        psi_s = digamma(pxs + q)
        ll = (
            dot(wx, gammaln(pxs + q) - gammaln(pxs))
            + dot(w, (px - 1) * self.log_z + px * np.log(x) - (px + q) * log_gxz)
            + self.n * (q * np.log(g) - gammaln(q))
        )
        grad_nat = np.array(
            [
                dot(wx, xs * (psi_s - digamma(pxs))) + dot(w, x * (self.log_xz - log_gxz)),
                dot(wx, psi_s) - dot(w, log_gxz) + self.n * (np.log(g) - digamma(q)),
                self.n * q / g - dot(w, (px + q) * inv),
            ]
        )
        nat = np.array([p, q, g])
        grad = grad_nat * nat
        hess_out = None
        if hessian:
            tri = polygamma(1, pxs + q)
            h = np.empty((3, 3))
            h[0, 0] = dot(wx, xs * xs * (tri - polygamma(1, pxs)))
            h[0, 1] = h[1, 0] = dot(wx, xs * tri)
            h[0, 2] = h[2, 0] = -dot(w, x * inv)
            h[1, 1] = dot(wx, tri) - self.n * polygamma(1, q)
            h[1, 2] = h[2, 1] = self.n / g - dot(w, inv)
            h[2, 2] = -self.n * q / g**2 + dot(w, (px + q) * inv**2)
            hess_out = -(h * np.outer(nat, nat) + np.diag(grad)) / self.n
        return -ll / self.n, -grad / self.n, hess_out


def fit_gammagamma(
    x: ArrayLike, zbar: ArrayLike, *, seed: int = 0, penalty: float | None = None
) -> FittedModel[GammaGamma]:
    """Maximum-likelihood Gamma-Gamma on (x, z̄), using customers with x > 0 and z̄ > 0.

    Customers without repeat purchases carry no spend information under the model (z̄ is
    the mean of *repeat* transactions) and are skipped, as are zero-value repeat baskets.
    Raises ModelFitError when too few repeat buyers remain or the fitted spend distribution
    has no finite mean (q ≤ 1). ``penalty`` and ``seed`` as for :func:`fit_bgnbd`.
    """
    began = time.perf_counter()
    xa = as_float_array(x, "x")
    za = as_float_array(zbar, "zbar")
    if xa.shape != za.shape:
        raise InputError("x and zbar must have the same length")
    keep = (xa > 0) & (za > 0)
    n = int(keep.sum())
    if n < 3:
        raise ModelFitError(
            f"Gamma-Gamma: only {n} customers with repeat purchases and positive spend",
            hint="use a longer calibration period or more customers",
        )
    (ux, uz), weight, _ = unique_rows(xa[keep], za[keep])
    scale = float(np.average(uz, weights=weight))
    starts = [(1.0, 2.0, 1.0), (4.0, 4.0, 0.75), (10.0, 5.0, 0.4), (2.0, 3.0, 1.0)]
    screen = None
    if ux.shape[0] > SCREEN_CUSTOMERS:
        rows, counts = subsample_rows(weight, SCREEN_CUSTOMERS, np.random.default_rng(seed))
        screen = _GammaGammaLikelihood(ux[rows], uz[rows] / scale, counts).likelihood()
    opt = maximise_likelihood(
        _GammaGammaLikelihood(ux, uz / scale, weight).likelihood(),
        starts,
        n_customers=n,
        model_name="Gamma-Gamma",
        screen=screen,
        screen_customers=SCREEN_CUSTOMERS,
        penalty=penalty,
    )
    log_theta = opt.log_theta.copy()
    log_theta[2] += np.log(scale)
    model = GammaGamma.from_vector(np.exp(log_theta))
    if model.q <= 1:
        raise ModelFitError(
            f"Gamma-Gamma: fitted q = {model.q:.3g} <= 1, so mean spend is undefined "
            "(a few very large baskets dominate)",
            hint="cap or exclude outlier order values, or use a longer calibration period",
        )
    return FittedModel(
        model=model,
        log_likelihood=dot(weight, model.individual_log_likelihood(ux, uz)),
        n_customers=n,
        log_covariance=opt.log_covariance,
        diagnostics=replace(opt.diagnostics, seconds=time.perf_counter() - began),
    )
