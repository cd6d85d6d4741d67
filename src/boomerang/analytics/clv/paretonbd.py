"""Pareto/NBD: Schmittlein, Morrison & Colombo (1987), "Counting your customers".

While alive a customer buys at rate λ ~ Gamma(r, α) and their lifetime is exponential
with rate μ ~ Gamma(s, β). The likelihood is evaluated in the numerically stable form of
Fader & Hardie (2005), "A note on deriving the Pareto/NBD model and related expressions":

    L = Γ(r+x) α^r β^s / Γ(r) · [ (α+T)^−(r+x) (β+T)^−s + s/(r+s+x) · A0 ]

    A0 = F(z(t_x)) / (ρ+t_x)^(r+s+x) − F(z(T)) / (ρ+T)^(r+s+x),
    ρ = max(α, β), z(t) = |α−β| / (ρ+t),
    F = 2F1(r+s+x, s+1; r+s+x+1; ·) if α ≥ β, else 2F1(r+s+x, r+x; r+s+x+1; ·).

Both hypergeometric functions have c = a + 1, and Euler's transformation turns them into
(1−z)^(1−b) 2F1(1, c−b; c; z), a bounded series whose arguments do not grow with x. A0 is
computed in logs as a difference with ``log1p(−exp(·))`` so customers with t_x close to T
lose no precision.

The gradient is a central difference computed in one batched (vectorised) evaluation of
the likelihood at the 2k+1 parameter points; the fit uses BFGS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import expit, gamma, gammaln, hyp2f1

from boomerang.analytics.clv.bgnbd import lomax_quantile
from boomerang.analytics.clv.fitting import (
    FittedModel,
    FloatArray,
    Likelihood,
    RFMData,
    central_gradient,
    fit_rfm_model,
    unique_rows,
    validate_rfm,
)

__all__ = ["ParetoNBD", "fit_paretonbd"]


def _hyp2f1_one_cf(b: FloatArray, c: FloatArray, z: FloatArray, max_terms: int = 600) -> FloatArray:
    """2F1(1, b; c; z) from Gauss's continued fraction (modified Lentz), NaN if unconverged.

    The fallback where scipy's series gives up (large b and c with z near 1, which is where
    an optimiser heads when dropout heterogeneity vanishes). With 2F1(b, 0; c−1; z) = 1,
    Gauss's fraction for 2F1(b, 1; c; z) / 2F1(b, 0; c−1; z) has partial numerators −k_j z,
    k_(2n+1) = (b+n)(c−1+n) / ((c−1+2n)(c+2n)), k_(2n) = n(c−1−b+n) / ((c−2+2n)(c−1+2n)).
    """
    tiny = 1e-300
    f = np.full(b.shape, tiny)
    big_c = f.copy()
    small_d = np.zeros(b.shape)
    converged = np.zeros(b.shape, dtype=bool)
    for j in range(1, max_terms + 1):
        if j == 1:
            num = np.ones(b.shape)
        elif j % 2 == 0:
            n = (j - 2) // 2
            num = -z * (b + n) * (c - 1 + n) / ((c - 1 + 2 * n) * (c + 2 * n))
        else:
            n = (j - 1) // 2
            num = -z * n * (c - 1 - b + n) / ((c - 2 + 2 * n) * (c - 1 + 2 * n))
        small_d = 1 + num * small_d
        small_d = 1 / np.where(np.abs(small_d) < tiny, tiny, small_d)
        big_c = 1 + num / big_c
        big_c = np.where(np.abs(big_c) < tiny, tiny, big_c)
        delta = big_c * small_d
        f = f * delta
        converged = np.abs(delta - 1) < 1e-15
        if j > 2 and np.all(converged):
            break
    return np.asarray(np.where(converged, f, np.nan), dtype=np.float64)


def _hyp2f1_one_near_one(b: FloatArray, c: FloatArray, z: FloatArray) -> FloatArray:
    """2F1(1, b; c; z) for z near 1 by the connection formula to 1 − z (DLMF 15.8.4):

        (c−1)/m · 2F1(1, b; 1−m; 1−z) + Γ(c)Γ(−m)/Γ(b) · (1−z)^m z^(1−c),  m = c − 1 − b,

    whose series converges fast when b(1−z) is small. For whole-number m the two terms
    have poles that cancel; there the value is the mean at m ± 1e−5 (error ~1e−9).
    """
    m = c - 1 - b
    whole = np.abs(m - np.round(m)) < 1e-5
    out = np.empty(b.shape)
    out[~whole] = _connection(b[~whole], m[~whole], z[~whole])
    if np.any(whole):
        mid = np.round(m[whole])
        out[whole] = 0.5 * (
            _connection(b[whole], mid + 1e-5, z[whole])
            + _connection(b[whole], mid - 1e-5, z[whole])
        )
    return out


def _connection(b: FloatArray, m: FloatArray, z: FloatArray) -> FloatArray:
    w = 1 - z
    term = np.ones(b.shape)
    total = np.ones(b.shape)
    for n in range(2000):
        term = term * (b + n) * w / (1 - m + n)
        total = total + term
        if np.all(np.abs(term) <= 1e-17 * np.abs(total)):
            break
    c = b + 1 + m
    second = np.exp(m * np.log(w) + (1 - c) * np.log(z) + gammaln(c) - gammaln(b)) * gamma(-m)
    return np.asarray((c - 1) / m * total + second, dtype=np.float64)


def _log_hyp2f1_c_eq_a_plus_1(a: FloatArray, b: FloatArray, z: FloatArray) -> FloatArray:
    """ln 2F1(a, b; a+1; z) = (1−b) ln(1−z) + ln 2F1(1, a+1−b; a+1; z) (Euler).

    scipy.special.hyp2f1 in general; the continued fraction where scipy is slow or fails
    (second parameter above 50 with z above 0.95: the corner where dropout or purchase
    heterogeneity vanishes); the connection formula to 1 − z for what is left near z = 1.
    Each method backs up the others; NaN only if all fail.
    """
    a, b, z = np.broadcast_arrays(a, b, z)
    bb, cc = a + 1 - b, a + 1
    value = np.full(bb.shape, np.nan)
    slow = (bb > 50) & (z > 0.95)
    near_one = (bb * (1 - z) < 2) & (cc - 1 - bb < 4) & (z > 0.5)
    for method, region in (
        (_hyp2f1_one_cf, slow),
        (lambda p, q, y: np.asarray(hyp2f1(1.0, p, q, y), dtype=np.float64), None),
        (_hyp2f1_one_cf, ~slow),
        (_hyp2f1_one_near_one, near_one),
    ):
        todo = ~np.isfinite(value) if region is None else ~np.isfinite(value) & region
        if np.any(todo):
            value[todo] = method(bb[todo], cc[todo], z[todo])
    with np.errstate(invalid="ignore"):
        return np.asarray((1 - b) * np.log1p(-z) + np.log(value), dtype=np.float64)


def _log_boundary_term(params: FloatArray, x: FloatArray, t: FloatArray) -> FloatArray:
    """ln[ F(z(t)) / (ρ+t)^(r+s+x) ], the two ends of A0, shape (m, n) for (m, 4) params."""
    p = np.atleast_2d(params)
    r, alpha, s, beta = (p[:, i : i + 1] for i in range(4))
    rsx = r + x + s
    ge = alpha >= beta
    rho = np.where(ge, alpha, beta)
    b = np.where(ge, s + 1, r + x)
    log_f = _log_hyp2f1_c_eq_a_plus_1(rsx, b, np.abs(alpha - beta) / (rho + t))
    return np.asarray(log_f - rsx * np.log(rho + t), dtype=np.float64)


def pareto_terms(
    params: FloatArray,
    x: FloatArray,
    t_x: FloatArray,
    T: FloatArray,
    *,
    at_t: FloatArray | None = None,
    at_T: FloatArray | None = None,
) -> tuple[FloatArray, FloatArray]:
    """(ln of the "alive throughout" term, ln of the "died in (t_x, T]" term), per customer.

    ``params`` is (r, α, s, β) with shape (4,) or (m, 4); the results broadcast to (m, n).
    The log-likelihood is lnΓ(r+x) − lnΓ(r) + r ln α + s ln β + logaddexp(both terms).
    ``at_t``/``at_T`` may pass the hypergeometric boundary terms precomputed (the
    likelihood evaluates them once per distinct (x, t) pair).
    """
    p = np.atleast_2d(params)
    r, alpha, s, beta = (p[:, i : i + 1] for i in range(4))
    rx = r + x
    alive = -rx * np.log(alpha + T) - s * np.log(beta + T)
    if at_t is None:
        at_t = _log_boundary_term(p, x, t_x)
    if at_T is None:
        at_T = _log_boundary_term(p, x, T)
    with np.errstate(divide="ignore"):
        log_a0 = at_t + np.log(-np.expm1(np.minimum(at_T - at_t, 0.0)))
    died = np.log(s) - np.log(rx + s) + log_a0
    return np.asarray(alive, dtype=np.float64), np.asarray(died, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class ParetoNBD:
    """Pareto/NBD with the paper's parameter names: r, α (purchase), s, β (dropout)."""

    r: float
    alpha: float
    s: float
    beta: float

    param_names: ClassVar[tuple[str, ...]] = ("r", "alpha", "s", "beta")

    def vector(self) -> FloatArray:
        return np.array([self.r, self.alpha, self.s, self.beta], dtype=np.float64)

    @classmethod
    def from_vector(cls, values: FloatArray) -> Self:
        r, alpha, s, beta = (float(v) for v in values)
        return cls(r, alpha, s, beta)

    def individual_log_likelihood(self, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
        xa, ta, Ta = validate_rfm(x, t_x, T)
        alive, died = pareto_terms(self.vector(), xa, ta, Ta)
        head = (
            gammaln(self.r + xa)
            - gammaln(self.r)
            + self.r * np.log(self.alpha)
            + self.s * np.log(self.beta)
        )
        return np.asarray(head + np.logaddexp(alive, died)[0], dtype=np.float64)

    def log_likelihood(self, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> float:
        return float(self.individual_log_likelihood(x, t_x, T).sum())

    def p_alive(self, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
        """P(alive at T) = alive term / (alive + died terms) (Fader & Hardie 2005, eq. 18)."""
        xa, ta, Ta = validate_rfm(x, t_x, T)
        alive, died = pareto_terms(self.vector(), xa, ta, Ta)
        return np.asarray(expit(alive - died)[0], dtype=np.float64)

    def expected_purchases(
        self, t: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """E[purchases in (T, T+t] | x, t_x, T], broadcasting t against customers.

        Given alive, λ ~ Gamma(r+x, α+T) and μ ~ Gamma(s, β+T), so the expectation is
        P(alive) · (r+x)/(α+T) · (β+T)/(s−1) · [1 − ((β+T)/(β+T+t))^(s−1)]; written with
        expm1 so that s → 1 tends smoothly to the logarithmic limit.
        """
        xa, ta, Ta = validate_rfm(x, t_x, T)
        tt = np.asarray(t, dtype=np.float64)
        if np.any(tt < 0):
            raise ValueError("t must be non-negative")
        alive = self.p_alive(xa, ta, Ta)
        u = np.log1p(tt / (self.beta + Ta))
        k = self.s - 1.0
        life = u if abs(k) < 1e-10 else -np.expm1(-k * u) / k
        return np.asarray(
            alive * (self.r + xa) / (self.alpha + Ta) * (self.beta + Ta) * life, dtype=np.float64
        )

    def time_to_next_purchase(
        self, x: ArrayLike, t_x: ArrayLike, T: ArrayLike, quantile: float = 0.5
    ) -> FloatArray:
        """Quantile of the wait to the next purchase if alive and staying alive (Lomax)."""
        xa, _, Ta = validate_rfm(x, t_x, T)
        return lomax_quantile(self.r + xa, self.alpha + Ta, quantile)


class _ParetoLikelihood:
    """Mean negative log-likelihood at many log-parameter rows at once.

    The hypergeometric terms depend on (x, t_x) and (x, T) only; with dates at day
    resolution those pairs repeat far more than whole (x, t_x, T) rows, so they are
    evaluated once per distinct pair and gathered.
    """

    def __init__(self, data: RFMData) -> None:
        self.data = data
        self.n = float(data.weight.sum())
        self.ux, inv = np.unique(data.x, return_inverse=True)
        self.wx = np.bincount(inv, weights=data.weight)
        (self.xt, self.tt), _, inv_t = unique_rows(data.x, data.t_x, return_inverse=True)
        (self.xT, self.TT), _, inv_T = unique_rows(data.x, data.T, return_inverse=True)
        assert inv_t is not None and inv_T is not None
        self.inv_t, self.inv_T = inv_t, inv_T

    def batch(self, log_params: FloatArray) -> FloatArray:
        p = np.exp(np.atleast_2d(log_params))
        d = self.data
        with np.errstate(invalid="ignore", over="ignore"):
            at_t = _log_boundary_term(p, self.xt, self.tt)[:, self.inv_t]
            at_T = _log_boundary_term(p, self.xT, self.TT)[:, self.inv_T]
            alive, died = pareto_terms(p, d.x, d.t_x, d.T, at_t=at_t, at_T=at_T)
            rows = np.logaddexp(alive, died)
            r, alpha, s, beta = (p[:, i] for i in range(4))
            head = np.einsum("mu,u->m", gammaln(r[:, None] + self.ux), self.wx) + self.n * (
                -gammaln(r) + r * np.log(alpha) + s * np.log(beta)
            )
            total = head + np.einsum("mn,n->m", rows, d.weight)
        out = -total / self.n
        return np.asarray(np.where(np.isfinite(out), out, np.inf), dtype=np.float64)

    def value_and_gradient(self, theta: FloatArray) -> tuple[float, FloatArray]:
        return central_gradient(self.batch, theta)

    def likelihood(self) -> Likelihood:
        return Likelihood(self.value_and_gradient, batch=self.batch)


def fit_paretonbd(
    x: ArrayLike, t_x: ArrayLike, T: ArrayLike, *, seed: int = 0, penalty: float | None = None
) -> FittedModel[ParetoNBD]:
    """Maximum-likelihood Pareto/NBD on calibration summaries (one row per customer).

    ``penalty``: None (default) = maximum likelihood, refitted with a weak penalty only if
    the MLE is degenerate (flagged in ``diagnostics``); 0 = strict maximum likelihood
    (raise instead); > 0 = always penalised (see ``fitting.maximise_likelihood``).
    ``seed`` fixes the subsample used to compare starting points on large data.
    Raises ModelFitError when the data cannot support the model (e.g. no repeat buyers).
    """
    data = RFMData.from_arrays(x, t_x, T)
    rate = max(data.mean_x, 1e-3)
    starts = [
        (1.0, 1.0 / rate, 1.0, 1.0),
        (0.5, 0.5 / rate, 0.5, 1.0),
        (0.5, 0.5 / rate, 1.0, 4.0),
        (2.0, 2.0 / rate, 0.5, 0.5),
    ]
    return fit_rfm_model(
        ParetoNBD,
        lambda d: _ParetoLikelihood(d).likelihood(),
        data,
        starts,
        time_params=("alpha", "beta"),
        model_name="Pareto/NBD",
        seed=seed,
        penalty=penalty,
    )
