"""MBG/NBD: the modified BG/NBD of Batislam, Denizel & Filiztekin (2007).

"Empirical validation and comparison of models for customer base analysis", IJRM 24(3).
Identical to BG/NBD except that a customer may also drop out right after the *first*
purchase (time 0), so customers without repeat purchases are not assumed alive. The
individual likelihood is

    L(λ, p) = (1−p)^x λ^x e^(−λ t_x) [ (1−p) e^(−λ(T−t_x)) + p ]

and integrating over λ ~ Gamma(r, α), p ~ Beta(a, b) gives, per customer,

    ln L = lnΓ(r+x) − lnΓ(r) + r ln α + lnΓ(a+b) + lnΓ(b+x) − lnΓ(b) − lnΓ(a+b+x+1)
           + ln[ (b+x)(α+T)^−(r+x) + a (α+t_x)^−(r+x) ].

It shares the BG/NBD evaluator (``shift = 1``), analytic gradient and Hessian included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import expit, gammaln

from boomerang.analytics.clv.bgnbd import (
    BGFamilyLikelihood,
    bg_family_future,
    bg_family_log_odds,
    bg_family_starts,
    lomax_quantile,
)
from boomerang.analytics.clv.fitting import (
    FittedModel,
    FloatArray,
    RFMData,
    fit_rfm_model,
    validate_rfm,
)

__all__ = ["MBGNBD", "fit_mbgnbd"]


@dataclass(frozen=True, slots=True)
class MBGNBD:
    """MBG/NBD with the parameter names of the BG/NBD paper (r, α, a, b)."""

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

    def _log_odds(self, x: FloatArray, t_x: FloatArray, T: FloatArray) -> FloatArray:
        return bg_family_log_odds(self.r, self.alpha, self.a, self.b, 1, x, t_x, T)

    def individual_log_likelihood(self, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
        xa, ta, Ta = validate_rfm(x, t_x, T)
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        head = (
            gammaln(r + xa)
            - gammaln(r)
            + r * np.log(alpha)
            + gammaln(a + b)
            + gammaln(b + xa)
            - gammaln(b)
            - gammaln(a + b + xa + 1)
        )
        alive = np.log(b + xa) - (r + xa) * np.log(alpha + Ta)
        return np.asarray(
            head + alive + np.logaddexp(0.0, self._log_odds(xa, ta, Ta)), dtype=np.float64
        )

    def log_likelihood(self, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> float:
        return float(self.individual_log_likelihood(x, t_x, T).sum())

    def p_alive(self, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
        """P(active at T) = 1 / (1 + a/(b+x) ((α+T)/(α+t_x))^(r+x)); below 1 even for x = 0."""
        xa, ta, Ta = validate_rfm(x, t_x, T)
        return np.asarray(expit(-self._log_odds(xa, ta, Ta)), dtype=np.float64)

    def expected_purchases(
        self, t: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """E[purchases in (T, T+t] | x, t_x, T], broadcasting t against customers.

        Given alive, λ ~ Gamma(r+x, α+T) and p ~ Beta(a, b+x+1), and the future count is
        (1 − e^(−λpt))/p in expectation, which integrates to

            P(alive) · (a+b+x)/(a−1) · [1 − (1−z)^(r+x) 2F1(r+x, b+x+1; a+b+x; z)],

        z = t/(α+T+t); Euler's transformation makes it (1−z)^(a−1) 2F1(a+b−r, a−1; a+b+x; z).
        """
        xa, ta, Ta = validate_rfm(x, t_x, T)
        tt = np.asarray(t, dtype=np.float64)
        if np.any(tt < 0):
            raise ValueError("t must be non-negative")
        alive = expit(-self._log_odds(xa, ta, Ta))
        return np.asarray(
            alive * bg_family_future(self.r, self.alpha, self.a, self.b, 1, tt, xa, Ta),
            dtype=np.float64,
        )

    def time_to_next_purchase(
        self, x: ArrayLike, t_x: ArrayLike, T: ArrayLike, quantile: float = 0.5
    ) -> FloatArray:
        """Quantile of the wait to the next purchase for a customer still alive (Lomax)."""
        xa, _, Ta = validate_rfm(x, t_x, T)
        return lomax_quantile(self.r + xa, self.alpha + Ta, quantile)


def fit_mbgnbd(
    x: ArrayLike, t_x: ArrayLike, T: ArrayLike, *, seed: int = 0, penalty: float | None = None
) -> FittedModel[MBGNBD]:
    """Maximum-likelihood MBG/NBD on calibration summaries (one row per customer).

    ``penalty``: None (default) = maximum likelihood, refitted with a weak penalty only if
    the MLE is degenerate (flagged in ``diagnostics``); 0 = strict maximum likelihood
    (raise instead); > 0 = always penalised (see ``fitting.maximise_likelihood``).
    ``seed`` fixes the subsample used to compare starting points on large data.
    Raises ModelFitError when the data cannot support the model (e.g. no repeat buyers).
    """
    data = RFMData.from_arrays(x, t_x, T)
    return fit_rfm_model(
        MBGNBD,
        lambda d: BGFamilyLikelihood(d, 1).likelihood(),
        data,
        bg_family_starts(data),
        time_params=("alpha",),
        model_name="MBG/NBD",
        seed=seed,
        penalty=penalty,
    )
