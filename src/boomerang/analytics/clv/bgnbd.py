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
from scipy.special import digamma, expit, gammaln, hyp2f1, polygamma

from boomerang.analytics.clv.fitting import (
    FittedModel,
    FloatArray,
    Likelihood,
    RFMData,
    dot,
    fit_rfm_model,
    unique_rows,
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
            gammaln(r + xa)
            - gammaln(r)
            + r * np.log(alpha)
            + gammaln(a + b)
            + gammaln(b + xa)
            - gammaln(b)
            - gammaln(a + b + xa)
        )
        return _f64(
            head - (r + xa) * np.log(alpha + Ta) + np.logaddexp(0.0, self._log_odds(xa, ta, Ta))
        )

    def log_likelihood(self, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> float:
        """Total log-likelihood (comparable with the paper: −9582.4 on CDNOW in weeks)."""
        return float(self.individual_log_likelihood(x, t_x, T).sum())

    def _log_odds(self, x: FloatArray, t_x: FloatArray, T: FloatArray) -> FloatArray:
        return bg_family_log_odds(self.r, self.alpha, self.a, self.b, 0, x, t_x, T)

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
        return _f64(alive * bg_family_future(self.r, self.alpha, self.a, self.b, 0, tt, xa, Ta))

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

    def simulate(self, T: ArrayLike, rng: np.random.Generator) -> tuple[FloatArray, FloatArray]:
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


def bg_family_future(
    r: float,
    alpha: float,
    a: float,
    b: float,
    shift: int,
    t: FloatArray,
    x: FloatArray,
    T: FloatArray,
) -> FloatArray:
    """E[purchases in (T, T+t] | alive at T] for BG (shift 0) and MBG (shift 1).

    Given alive, λ ~ Gamma(r+x, α+T) and p ~ Beta(a, b+x+shift); the future count is
    (1 − e^(−λpt))/p in expectation, which integrates to (with z = t/(α+T+t))

        (a+b+x+shift−1)/(a−1) · [1 − (1−z)^(a−1) 2F1(a+b+shift−1−r, a−1; a+b+x+shift−1; z)].

    Depends on (x, T) only, so with a common horizon it is evaluated once per distinct pair.
    """
    a = nudge_from_one(a)
    c0 = a + b + shift - 1
    per_customer_t = t.ndim > 0 and t.shape[-1] != 1
    if per_customer_t:
        ux, uT, inv = x, T, None
    else:
        (ux, uT), _, inv = unique_rows(x, T, return_inverse=True)
    z = t / (alpha + uT + t)
    with np.errstate(divide="ignore"):
        tail = np.exp((a - 1) * np.log1p(-z)) * hyp2f1_safe(c0 - r, a - 1, c0 + ux, z)
    future = (c0 + ux) / (a - 1) * (1 - tail)
    return _f64(future if inv is None else future[..., inv])


def hyp2f1_safe(a: ArrayLike, b: ArrayLike, c: ArrayLike, z: ArrayLike) -> FloatArray:
    """scipy's 2F1, re-evaluated with c nudged by 1e-10 (relative) where it is not finite.

    scipy returns inf for some z near 1 when c − a − b is a whole number (for example
    2F1(1, 1; 101; 0.98)); the function is continuous in c, so the nudge costs ~1e-10.
    """
    aa, bb, cc, zz = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (a, b, c, z)))
    value = np.asarray(hyp2f1(aa, bb, cc, zz), dtype=np.float64)
    bad = ~np.isfinite(value)
    if np.any(bad):
        value = value.copy()
        value[bad] = hyp2f1(aa[bad], bb[bad], cc[bad] * (1 + 1e-10), zz[bad])
    return value


def bg_family_log_odds(
    r: float,
    alpha: float,
    a: float,
    b: float,
    shift: int,
    x: FloatArray,
    t_x: FloatArray,
    T: FloatArray,
) -> FloatArray:
    """ln(dropped-out term / alive term) of the BG (shift 0) or MBG (shift 1) likelihood.

    P(alive) = expit(−this). For BG/NBD with x = 0 it is −inf (no purchase to drop after).
    """
    active = x + shift > 0
    out = np.full(x.shape, -np.inf)
    xp, tp, Tp = x[active], t_x[active], T[active]
    out[active] = (
        np.log(a)
        - np.log(b + xp + shift - 1)
        + (r + xp) * (np.log(alpha + Tp) - np.log(alpha + tp))
    )
    return out


def nudge_from_one(a: float) -> float:
    """Move a off the removable singularity at a = 1 (error O(1e-7), far below noise)."""
    return a if abs(a - 1.0) > 1e-7 else 1.0 + (1e-7 if a >= 1.0 else -1e-7)


class BGFamilyLikelihood:
    """Log-likelihood of BG/NBD (``shift=0``) and MBG/NBD (``shift=1``) with derivatives.

    Both have, per customer, ln L = X(x) − (r+x) ln(α+T) + softplus(D) with
    D = ln a − ln(b+x+shift−1) − (r+x)(ln(α+t_x) − ln(α+T)); BG/NBD customers with x = 0
    have no softplus term (they cannot have dropped out). X(x) depends on x only, so it
    is summed over the distinct x values. The gradient and Hessian of softplus(D) are
    s·∇D and s(1−s)∇D∇Dᵀ + s·∇²D with s = expit(D); all are returned in log-parameters.
    """

    def __init__(self, data: RFMData, shift: int) -> None:
        self.shift = shift
        self.n = float(data.weight.sum())
        self.ux, inv = np.unique(data.x, return_inverse=True)
        self.wx = np.bincount(inv, weights=data.weight)
        mix = data.x + shift > 0
        self.T0, self.w0 = data.T[~mix], data.weight[~mix]
        self.x1, self.t1, self.T1 = data.x[mix], data.t_x[mix], data.T[mix]
        self.w1 = data.weight[mix]
        self.ux1, self.inv1 = np.unique(self.x1, return_inverse=True)

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
        """Mean negative log-likelihood per customer, gradient and (optionally) Hessian."""
        k = self.shift
        r, alpha, a, b = np.exp(theta)
        n, ux, wx = self.n, self.ux, self.wx
        ab = a + b
        # Terms in x only (summed over distinct x with their weights).
        ll = n * (r * np.log(alpha) - gammaln(r) + gammaln(ab) - gammaln(b)) + wx @ (
            gammaln(r + ux) + gammaln(b + ux) - gammaln(ab + ux + k) + k * np.log(b + ux)
        )
        g = np.array(
            [
                n * (np.log(alpha) - digamma(r)) + wx @ digamma(r + ux),
                n * r / alpha,
                n * digamma(ab) - wx @ digamma(ab + ux + k),
                n * (digamma(ab) - digamma(b))
                + wx @ (digamma(b + ux) - digamma(ab + ux + k) + k / (b + ux)),
            ]
        )
        h = np.zeros((4, 4))
        if hessian:
            h[0, 0] = wx @ polygamma(1, r + ux) - n * polygamma(1, r)
            h[0, 1] = n / alpha
            h[1, 1] = -n * r / alpha**2
            h[2, 2] = h[2, 3] = n * polygamma(1, ab) - wx @ polygamma(1, ab + ux + k)
            h[3, 3] = n * (polygamma(1, ab) - polygamma(1, b)) + wx @ (
                polygamma(1, b + ux) - polygamma(1, ab + ux + k) - k / (b + ux) ** 2
            )
        # Customers with the "alive" term only: −r ln(α+T).
        inv0 = 1.0 / (alpha + self.T0)
        lT0 = np.log(alpha + self.T0)
        ll -= r * dot(self.w0, lT0)
        g[0] -= dot(self.w0, lT0)
        g[1] -= r * dot(self.w0, inv0)
        if hessian:
            h[0, 1] -= dot(self.w0, inv0)
            h[1, 1] += r * dot(self.w0, inv0**2)
        # Customers with both terms: −(r+x) ln(α+T) + softplus(D).
        x, w = self.x1, self.w1
        rx = r + x
        inv_T = 1.0 / (alpha + self.T1)
        inv_t = 1.0 / (alpha + self.t1)
        lT = np.log(alpha + self.T1)
        gap = np.log(alpha + self.t1) - lT
        inv_b = (1.0 / (b + self.ux1 + k - 1))[self.inv1]
        d = np.log(a) + np.log(inv_b) - rx * gap
        s = expit(d)
        ws = w * s
        ll += dot(w, np.logaddexp(0.0, d) - rx * lT)
        dinv = inv_t - inv_T
        grads_d = np.stack([-gap, -rx * dinv, np.full_like(x, 1.0 / a), -inv_b])
        g += np.einsum("kn,n->k", grads_d, ws)
        g[0] -= dot(w, lT)
        g[1] -= dot(w, rx * inv_T)
        if hessian:
            h += np.einsum("kn,ln->kl", grads_d * (ws * (1 - s)), grads_d)
            h[0, 1] -= dot(ws, dinv) + dot(w, inv_T)
            h[1, 1] += dot(ws, rx * (inv_t**2 - inv_T**2)) + dot(w, rx * inv_T**2)
            h[2, 2] -= float(ws.sum()) / a**2
            h[3, 3] += dot(ws, inv_b**2)
        # Chain rule to log-parameters: ∂/∂φ = θ∂/∂θ, ∂²/∂φ∂φ = θθᵀ∘H + diag(θ∘g).
        theta_nat = np.array([r, alpha, a, b])
        grad = g * theta_nat
        hess_out = None
        if hessian:
            h = np.triu(h) + np.triu(h, 1).T
            hess_out = -(h * np.outer(theta_nat, theta_nat) + np.diag(grad)) / n
        return -float(ll) / n, -grad / n, hess_out


def bg_family_starts(data: RFMData) -> list[tuple[float, float, float, float]]:
    """Starting points (r, alpha, a, b) shared by BG/NBD and MBG/NBD.

    Times are rescaled to mean T = 1 for fitting, where the purchase rate is mean(x).
    """
    rate = max(data.mean_x, 1e-3)
    return [
        (1.0, 1.0 / rate, 1.0, 1.0),
        (0.5, 0.5 / rate, 0.5, 2.0),
        (0.25, 0.25 / rate, 1.0, 3.0),
        (2.0, 2.0 / rate, 0.8, 5.0),
    ]


def fit_bgnbd(
    x: ArrayLike, t_x: ArrayLike, T: ArrayLike, *, seed: int = 0, penalty: float | None = None
) -> FittedModel[BGNBD]:
    """Maximum-likelihood BG/NBD on calibration summaries (one row per customer).

    ``penalty``: None (default) = maximum likelihood, refitted with a weak penalty only if
    the MLE is degenerate (flagged in ``diagnostics``); 0 = strict maximum likelihood
    (raise instead); > 0 = always penalised (see ``fitting.maximise_likelihood``).
    ``seed`` fixes the subsample used to compare starting points on large data.
    Raises ModelFitError when the data cannot support the model (e.g. no repeat buyers).
    """
    data = RFMData.from_arrays(x, t_x, T)
    return fit_rfm_model(
        BGNBD,
        lambda d: BGFamilyLikelihood(d, 0).likelihood(),
        data,
        bg_family_starts(data),
        time_params=("alpha",),
        model_name="BG/NBD",
        seed=seed,
        penalty=penalty,
    )
