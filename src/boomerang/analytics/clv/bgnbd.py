"""BG/NBD: beta-geometric / negative-binomial purchase model.

Fader, Hardie & Lee (2005), "Counting your customers the easy way: an alternative to the
Pareto/NBD model", Marketing Science 24(2). While alive a customer buys as a Poisson
process with rate λ ~ Gamma(r, α); after each purchase they drop out with probability
p ~ Beta(a, b). Customers are summarised by x (repeat purchases), t_x (time of the last
one since the first purchase) and T (time from the first purchase to the end of the
calibration period).

The likelihood (paper, eq. 6) per customer, in logs::

    ln L = lnΓ(r+x) − lnΓ(r) + r ln α + lnB(a, b+x) − lnB(a, b)
           + ln[ (α+T)^−(r+x) + 1{x>0} a/(b+x−1) (α+t_x)^−(r+x) ]

is evaluated as a log-sum-exp and differentiated analytically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import digamma, expit, gammaln, hyp2f1

from boomerang.analytics.clv.fitting import (
    FittedModel,
    FloatArray,
    Objective,
    RFMData,
    fit_rfm_model,
    validate_rfm,
)

__all__ = ["BGNBD", "fit_bgnbd"]


def _f64(values: ArrayLike) -> FloatArray:
    return np.asarray(values, dtype=np.float64)


def lomax_quantile(shape: FloatArray, scale: FloatArray, quantile: float) -> FloatArray:
    """Quantile of the wait to the next purchase of a customer known to be alive.

    Given alive, λ | data ~ Gamma(r+x, α+T) in all three purchase models, so the wait
    W ~ Exp(λ) is marginally Lomax(r+x, α+T): P(W > w) = ((α+T)/(α+T+w))^(r+x).
    """
    return _f64(scale * np.expm1(-np.log1p(-quantile) / shape))


@dataclass(frozen=True, slots=True)
class BGNBD:
    """BG/NBD with parameters named as in the paper; times in the unit used for fitting."""

    r: float
    alpha: float
    a: float
    b: float

    param_names: ClassVar[tuple[str, ...]] = ("r", "alpha", "a", "b")

    def vector(self) -> FloatArray:
        return np.array([self.r, self.alpha, self.a, self.b], dtype=np.float64)

    @classmethod
    def from_vector(cls, values: FloatArray) -> Self:
        r, alpha, a, b = (float(v) for v in values)
        return cls(r, alpha, a, b)

    # ------------------------------------------------------------------ likelihood

    def individual_log_likelihood(self, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
        """ln L per customer (paper eq. 6)."""
        xa, ta, Ta = validate_rfm(x, t_x, T)
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        head = (
            gammaln(r + xa) - gammaln(r) + r * np.log(alpha)
            + gammaln(a + b) + gammaln(b + xa) - gammaln(b) - gammaln(a + b + xa)
        )
        return _f64(head - (r + xa) * np.log(alpha + Ta) + np.logaddexp(0.0, self._log_odds(xa, ta, Ta)))

    def log_likelihood(self, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> float:
        """Total log-likelihood (comparable with the paper: −9582.4 on CDNOW in weeks)."""
        return float(self.individual_log_likelihood(x, t_x, T).sum())

    def _log_odds(self, x: FloatArray, t_x: FloatArray, T: FloatArray) -> FloatArray:
        """ln of (dead-at-t_x term / alive term); −inf for x = 0 (cannot have dropped out)."""
        pos = x > 0
        out = np.full(np.broadcast(x, t_x, T).shape, -np.inf)
        xb, tb, Tb = np.broadcast_arrays(x, t_x, T)
        xp, tp, Tp = xb[pos], tb[pos], Tb[pos]
        out[pos] = (
            np.log(self.a) - np.log(self.b + xp - 1)
            + (self.r + xp) * (np.log(self.alpha + Tp) - np.log(self.alpha + tp))
        )
        return _f64(out)

    # ------------------------------------------------------------------ predictions

    def p_alive(self, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
        """P(still active at T | x, t_x, T) (paper eq. 11); exactly 1 when x = 0."""
        xa, ta, Ta = validate_rfm(x, t_x, T)
        return _f64(expit(-self._log_odds(xa, ta, Ta)))

    def expected_purchases(
        self, t: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """E[purchases in (T, T+t] | x, t_x, T] (paper eq. 10), broadcasting t against customers.

        Uses Euler's transformation 2F1(A,B;C;z) = (1−z)^(C−A−B) 2F1(C−A,C−B;C;z), which turns
        (1−z)^(r+x) 2F1(r+x, b+x; a+b+x−1; z) into (1−z)^(a−1) 2F1(a+b−1−r, a−1; a+b+x−1; z):
        the hypergeometric arguments no longer grow with x, which keeps heavy buyers accurate.
        With x = t_x = T = 0 this is the expectation for a brand-new customer (eq. 9).
        """
        xa, ta, Ta = validate_rfm(x, t_x, T)
        tt = _f64(t)
        if np.any(tt < 0):
            raise ValueError("t must be non-negative")
        alive = expit(-self._log_odds(xa, ta, Ta))
        a = _nudge_from_one(self.a)
        r, alpha, b = self.r, self.alpha, self.b
        z = tt / (alpha + Ta + tt)
        with np.errstate(divide="ignore"):
            tail = np.exp((a - 1) * np.log1p(-z)) * hyp2f1(a + b - 1 - r, a - 1, a + b + xa - 1, z)
        return _f64(alive * (a + b + xa - 1) / (a - 1) * (1 - tail))

    def time_to_next_purchase(
        self, x: ArrayLike, t_x: ArrayLike, T: ArrayLike, quantile: float = 0.5
    ) -> FloatArray:
        """Quantile (default median) of the wait from T to the next purchase, if still alive.

        Dropout in BG/NBD happens only right after a purchase, so an alive customer's next
        purchase is exactly Exp(λ) away with λ ~ Gamma(r+x, α+T): the wait is Lomax. Weigh it
        with :meth:`p_alive`: a customer who has left never buys again.
        """
        xa, _, Ta = validate_rfm(x, t_x, T)
        return lomax_quantile(self.r + xa, self.alpha + Ta, quantile)

    def simulate(
        self, T: ArrayLike, rng: np.random.Generator
    ) -> tuple[FloatArray, FloatArray]:
        """Draw (x, t_x) for customers observed for T each; for tests and synthetic demos.

        With N(T) ~ Poisson(λT) purchase opportunities and J ~ Geometric(p) purchases before
        dropout, x = min(J, N) and, given N, t_x is the x-th of N uniform order statistics.
        """
        Ta = _f64(T)
        n = Ta.shape[0]
        lam = rng.gamma(self.r, 1.0 / self.alpha, n)
        p = rng.beta(self.a, self.b, n)
        events = rng.poisson(lam * Ta)
        lifetime = rng.geometric(np.clip(p, 1e-300, 1.0))
        x = np.minimum(events, lifetime)
        t_x = np.zeros(n)
        pos = x > 0
        t_x[pos] = Ta[pos] * rng.beta(x[pos], events[pos] - x[pos] + 1)
        return x.astype(np.float64), t_x


def _nudge_from_one(a: float) -> float:
    """Move a off the removable singularity at a = 1 (error O(1e-7), far below noise)."""
    return a if abs(a - 1.0) > 1e-7 else 1.0 + (1e-7 if a >= 1.0 else -1e-7)


def _objective(data: RFMData) -> Objective:
    """Mean negative log-likelihood and its analytic gradient in log-parameters.

    Terms that depend on x only are summed over the distinct x values; the rest is the
    two-term log-sum-exp, whose derivative weights each term by its softmax share.
    """
    n = float(data.weight.sum())
    ux, inv = np.unique(data.x, return_inverse=True)
    wx = np.bincount(inv, weights=data.weight)
    zero = data.x == 0
    T0, w0 = data.T[zero], data.weight[zero]
    x1, t1, T1, w1 = data.x[~zero], data.t_x[~zero], data.T[~zero], data.weight[~zero]

    def objective(theta: FloatArray) -> tuple[float, FloatArray]:
        r, alpha, a, b = np.exp(theta)
        ln_alpha = np.log(alpha)
        ll = n * (r * ln_alpha - gammaln(r) + gammaln(a + b) - gammaln(b)) + wx @ (
            gammaln(r + ux) + gammaln(b + ux) - gammaln(a + b + ux)
        )
        g_r = n * (ln_alpha - digamma(r)) + wx @ digamma(r + ux)
        g_alpha = n * r / alpha
        g_a = n * digamma(a + b) - wx @ digamma(a + b + ux)
        g_b = n * (digamma(a + b) - digamma(b)) + wx @ (digamma(b + ux) - digamma(a + b + ux))
        # x = 0: only the "alive" term.
        lT0 = np.log(alpha + T0)
        ll -= r * (w0 @ lT0)
        g_r -= w0 @ lT0
        g_alpha -= r * (w0 @ (1.0 / (alpha + T0)))
        # x > 0: log-sum-exp of the alive and dropped-at-t_x terms.
        rx = r + x1
        lT, lt = np.log(alpha + T1), np.log(alpha + t1)
        bx = b + x1 - 1
        d = np.log(a) - np.log(bx) - rx * (lt - lT)
        share = expit(d)
        ll += w1 @ (np.logaddexp(0.0, d) - rx * lT)
        g_r += w1 @ (share * (lT - lt) - lT)
        g_alpha -= w1 @ (rx * ((1 - share) / (alpha + T1) + share / (alpha + t1)))
        g_a += (w1 @ share) / a
        g_b -= w1 @ (share / bx)
        grad = np.array([g_r * r, g_alpha * alpha, g_a * a, g_b * b])
        return -float(ll) / n, -grad / n

    return objective


def fit_bgnbd(
    x: ArrayLike, t_x: ArrayLike, T: ArrayLike, *, seed: int = 0
) -> FittedModel[BGNBD]:
    """Maximum-likelihood BG/NBD on calibration summaries (one row per customer).

    Raises ModelFitError when the data cannot support the model (e.g. no repeat buyers).
    """
    data = RFMData.from_arrays(x, t_x, T)
    rate = float(data.weight @ data.x) / float(data.weight @ data.T) * float(
        np.average(data.T, weights=data.weight)
    )
    rate = max(rate, 1e-3)
    starts = [
        (1.0, 1.0 / rate, 1.0, 1.0),
        (0.5, 0.5 / rate, 0.5, 2.0),
        (0.25, 0.25 / rate, 1.0, 3.0),
        (2.0, 2.0 / rate, 0.8, 5.0),
    ]
    return fit_rfm_model(
        BGNBD, _objective, data, starts, time_params=("alpha",), model_name="BG/NBD", seed=seed
    )
