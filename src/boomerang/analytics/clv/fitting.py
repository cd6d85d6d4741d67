"""Shared maximum-likelihood machinery for the CLV models.

Every model is fitted the same way, so the numerics live here once:

* data are compressed to unique rows with integer weights (customers who share
  ``(x, t_x, T)`` contribute identical likelihood terms), which is what makes a fit on a
  million customers cheap;
* parameters are optimised on the log scale (they are all positive) from a few starting
  points, on a random subsample first when the data are large, then polished on all rows.
  The optimisers (damped Newton with an analytic Hessian, BFGS otherwise) are written out
  here: scipy's L-BFGS-B calls multithreaded BLAS on 4x4 problems, which costs
  milliseconds per iteration on a busy machine;
* a maximum-likelihood fit is rejected when the optimiser gives up, a parameter runs to a
  bound or the Hessian is not positive definite: a CLV computed from it would look
  precise and be meaningless. By default such a fit is redone once with a weak normal
  penalty on the log-parameters and flagged in its diagnostics (small stores hit this
  often); with ``penalty=0`` it raises :class:`ModelFitError` instead. Degenerate inputs
  (no repeat buyers at all) always raise;
* the covariance is the inverse Hessian of the negative log-likelihood in log space
  (Laplace approximation), which also drives the parameter draws used for intervals.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar, Generic, Protocol, Self, TypeAlias, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from boomerang.errors import BoomerangError, InputError

FloatArray: TypeAlias = NDArray[np.float64]
IntArray: TypeAlias = NDArray[np.int64]

#: An objective on log-parameters: (mean negative log-likelihood per customer, its gradient).
Objective: TypeAlias = Callable[[FloatArray], tuple[float, FloatArray]]
#: The same with the Hessian in log-parameters as a third element (enables Newton steps).
CurvatureObjective: TypeAlias = Callable[[FloatArray], tuple[float, FloatArray, FloatArray]]
#: Objective values at many log-parameter rows at once, shape (m, k) -> (m,).
BatchObjective: TypeAlias = Callable[[FloatArray], FloatArray]

#: Log-parameters are confined to this box, on internally rescaled data (mean T = 1, mean
#: spend = 1) where the estimates real stores give are O(0.1-10): [e^-5, e^5] = [0.0067,
#: 148]. A shape parameter of 148 means the heterogeneity it governs has all but vanished
#: (coefficient of variation 8%): the degenerate limit an optimiser drifts to when a small
#: sample cannot identify it, where the likelihood is flat and, for Pareto/NBD, the
#: hypergeometric function slow to evaluate. An optimum on the edge raises ModelFitError.
LOG_BOUND = 5.0
#: Large data sets pick their starting point on a subsample of this many customers.
SCREEN_CUSTOMERS = 20_000


class ModelFitError(BoomerangError):
    """The likelihood has no trustworthy maximum on these data; nothing was fitted."""

    code = "model_fit"


# --------------------------------------------------------------------------- data


def dot(a: FloatArray, b: FloatArray) -> float:
    """Sum of products without BLAS: its worker threads thrash on busy machines, and these
    memory-bound reductions gain nothing from them."""
    return float(np.einsum("i,i->", a, b))


def as_float_array(values: ArrayLike, name: str) -> FloatArray:
    """A finite 1-D float64 copy of ``values``; input errors are the caller's to fix."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name} contains NaN or infinite values", hint="drop or fix those rows")
    return arr


def validate_rfm(x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> tuple[FloatArray, ...]:
    """Check the (x, t_x, T) conventions the likelihoods rely on and return float arrays."""
    xa = as_float_array(x, "x")
    ta = as_float_array(t_x, "t_x")
    Ta = as_float_array(T, "T")
    if not (xa.shape == ta.shape == Ta.shape):
        raise InputError("x, t_x and T must have the same length", hint="pass one row per customer")
    if np.any(xa < 0) or np.any(xa != np.round(xa)):
        raise InputError("x must be non-negative whole numbers of repeat transactions")
    if np.any(ta < 0) or np.any(ta > Ta * (1 + 1e-12) + 1e-12):
        raise InputError("need 0 <= t_x <= T for every customer", hint="recompute the summary")
    if np.any((xa == 0) & (ta != 0)):
        raise InputError("t_x must be 0 for customers without repeat transactions")
    return xa, np.minimum(ta, Ta), Ta


def unique_rows(
    *columns: FloatArray, return_inverse: bool = False
) -> tuple[list[FloatArray], FloatArray, IntArray | None]:
    """Unique rows of equally long float columns, their counts and (optionally) the inverse.

    Each column is coded against its own sorted unique values and the codes are packed into
    one int64 key, so the work is a few 1-D sorts instead of a slow row-wise ``np.unique``.
    """
    n = columns[0].shape[0]
    uniques = [np.unique(c) for c in columns]
    sizes = [u.shape[0] for u in uniques]
    if n == 0:
        empty = np.zeros(0, dtype=np.int64) if return_inverse else None
        return [c.copy() for c in columns], np.zeros(0), empty
    if float(np.prod(np.asarray(sizes, dtype=np.float64))) < 2.0**62:
        key = np.zeros(n, dtype=np.int64)
        for col, uniq, size in zip(columns, uniques, sizes, strict=True):
            key = key * size + np.searchsorted(uniq, col).astype(np.int64)
        ukey, counts = np.unique(key, return_counts=True)
        out: list[FloatArray] = []
        rest = ukey
        for uniq, size in zip(reversed(uniques), reversed(sizes), strict=True):
            out.append(uniq[rest % size])
            rest = rest // size
        out.reverse()
        inverse = np.searchsorted(ukey, key).astype(np.int64) if return_inverse else None
        return out, counts.astype(np.float64), inverse
    # Too many distinct values to pack: fall back to a lexicographic sort.
    order = np.lexsort(columns[::-1])
    new = np.ones(n, dtype=bool)
    new[1:] = np.any([c[order][1:] != c[order][:-1] for c in columns], axis=0)
    starts = np.flatnonzero(new)
    run_lengths = np.diff(np.append(starts, n)).astype(np.float64)
    firsts = [c[order][starts] for c in columns]
    positions = None
    if return_inverse:
        positions = np.empty(n, dtype=np.int64)
        positions[order] = np.cumsum(new) - 1
    return firsts, run_lengths, positions


def subsample_rows(
    weight: FloatArray, n: int, rng: np.random.Generator
) -> tuple[NDArray[np.intp], FloatArray]:
    """Rows and new weights for ``n`` customers drawn with replacement from weighted rows."""
    counts = rng.multinomial(n, weight / weight.sum()).astype(np.float64)
    keep = np.flatnonzero(counts > 0)
    return keep, counts[keep]


@dataclass(frozen=True, slots=True)
class RFMData:
    """Calibration data compressed to unique ``(x, t_x, T)`` rows; ``weight`` counts customers."""

    x: FloatArray
    t_x: FloatArray
    T: FloatArray
    weight: FloatArray

    @classmethod
    def from_arrays(cls, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> RFMData:
        xa, ta, Ta = validate_rfm(x, t_x, T)
        (ux, ut, uT), counts, _ = unique_rows(xa, ta, Ta)
        return cls(ux, ut, uT, counts)

    @property
    def n_customers(self) -> int:
        return round(float(self.weight.sum()))

    @property
    def n_repeat_buyers(self) -> int:
        return round(float(self.weight[self.x > 0].sum()))

    @property
    def mean_x(self) -> float:
        return dot(self.weight, self.x) / float(self.weight.sum())

    def rescaled(self, scale: float) -> RFMData:
        """The same customers with times divided by ``scale`` (conditioning, not semantics)."""
        return RFMData(self.x, self.t_x / scale, self.T / scale, self.weight)

    def subsample(self, n: int, rng: np.random.Generator) -> RFMData:
        """``n`` customers drawn with replacement, kept in compressed form."""
        keep, counts = subsample_rows(self.weight, n, rng)
        return RFMData(self.x[keep], self.t_x[keep], self.T[keep], counts)


# --------------------------------------------------------------------------- models


class ParametricModel(Protocol):
    """A model fully described by a vector of positive parameters."""

    param_names: ClassVar[tuple[str, ...]]

    def vector(self) -> FloatArray: ...

    @classmethod
    def from_vector(cls, values: FloatArray) -> Self: ...


M = TypeVar("M", bound=ParametricModel)


@dataclass(frozen=True, slots=True)
class FitDiagnostics:
    """How the optimum was reached, so a caller can judge (and log) the fit."""

    converged: bool
    message: str
    n_starts: int
    n_starts_agreeing: int
    n_iterations: int
    n_evaluations: int
    max_abs_gradient: float
    hessian_min_eigenvalue: float
    hessian_condition_number: float
    seconds: float
    penalty: float = 0.0


@dataclass(frozen=True)
class FittedModel(Generic[M]):
    """A model with the maximum-likelihood parameters and their Laplace uncertainty.

    ``log_covariance`` is the covariance of the log-parameters (the inverse Hessian of the
    negative log-likelihood in log space); ``covariance`` is its delta-method image on the
    natural scale. ``log_likelihood`` is the total over all customers (not the mean) at
    the estimate, without any penalty; ``diagnostics.penalty`` > 0 marks a regularised fit,
    whose covariance then includes the penalty's curvature.
    """

    model: M
    log_likelihood: float
    n_customers: int
    log_covariance: FloatArray
    diagnostics: FitDiagnostics = field(repr=False)

    @property
    def param_names(self) -> tuple[str, ...]:
        return type(self.model).param_names

    @property
    def params(self) -> dict[str, float]:
        return {k: float(v) for k, v in zip(self.param_names, self.model.vector(), strict=True)}

    @property
    def covariance(self) -> FloatArray:
        """Covariance of the natural parameters: diag(θ) Σ_log diag(θ)."""
        theta = self.model.vector()
        return np.asarray(self.log_covariance * np.outer(theta, theta), dtype=np.float64)

    def standard_errors(self) -> dict[str, float]:
        se = np.sqrt(np.diag(self.covariance))
        return {k: float(v) for k, v in zip(self.param_names, se, strict=True)}

    def intervals(self, level: float = 0.95) -> dict[str, tuple[float, float]]:
        """Laplace intervals built on the log scale (so they stay positive)."""
        from scipy.stats import norm

        z = float(norm.ppf(0.5 + level / 2))
        log_theta = np.log(self.model.vector())
        half = z * np.sqrt(np.diag(self.log_covariance))
        lo, hi = np.exp(log_theta - half), np.exp(log_theta + half)
        return {k: (float(a), float(b)) for k, a, b in zip(self.param_names, lo, hi, strict=True)}

    def draw_vectors(
        self,
        n_draws: int,
        seed: int | np.random.Generator = 0,
        accept: Callable[[FloatArray], NDArray[np.bool_]] | None = None,
    ) -> FloatArray:
        """Parameter vectors drawn from the Laplace normal in log space, shape (n_draws, k).

        ``accept`` filters draws row-wise (rejection sampling, e.g. to keep a finite mean).
        """
        rng = np.random.default_rng(seed)
        mean = np.log(self.model.vector())
        chol = _psd_sqrt(self.log_covariance)
        kept: list[FloatArray] = []
        have = 0
        for _ in range(50):
            z = rng.standard_normal((max(n_draws, 16) * 2, mean.shape[0]))
            theta = np.exp(mean + z @ chol.T)
            if accept is not None:
                theta = theta[accept(theta)]
            kept.append(theta)
            have += theta.shape[0]
            if have >= n_draws:
                break
        draws = np.concatenate(kept)[:n_draws]
        if draws.shape[0] < n_draws:
            raise ModelFitError(
                "the fitted parameters are too uncertain to draw valid samples",
                hint="use more customers or a longer calibration period",
            )
        return np.asarray(draws, dtype=np.float64)

    def draw_models(self, n_draws: int, seed: int | np.random.Generator = 0) -> list[M]:
        """Models with parameters drawn from the Laplace approximation."""
        cls = type(self.model)
        return [cls.from_vector(v) for v in self.draw_vectors(n_draws, seed)]


def _psd_sqrt(cov: FloatArray) -> FloatArray:
    """A matrix square root robust to tiny negative eigenvalues from rounding."""
    vals, vecs = np.linalg.eigh((cov + cov.T) / 2)
    return np.asarray(vecs * np.sqrt(np.clip(vals, 0.0, None)), dtype=np.float64)


# --------------------------------------------------------------------------- derivatives


def central_gradient(
    batch: BatchObjective, theta: FloatArray, step: float = 1e-5
) -> tuple[float, FloatArray]:
    """Value and central-difference gradient from one batched call of the objective.

    ``batch`` maps (m, k) log-parameter rows to m objective values; evaluating all 2k+1
    points in one vectorised call keeps this nearly as cheap as a single evaluation.
    """
    k = theta.shape[0]
    pts = np.repeat(theta[None, :], 2 * k + 1, axis=0)
    idx = np.arange(k)
    pts[1 + idx, idx] += step
    pts[1 + k + idx, idx] -= step
    vals = batch(pts)
    grad = (vals[1 : 1 + k] - vals[1 + k :]) / (2 * step)
    return float(vals[0]), np.asarray(grad, dtype=np.float64)


def batched_hessian(batch: BatchObjective, theta: FloatArray, step: float = 1e-3) -> FloatArray:
    """Central second differences of the objective, all points in one batched call."""
    k = theta.shape[0]
    offsets = [np.zeros(k)]
    for i in range(k):
        for sign in (1.0, -1.0):
            e = np.zeros(k)
            e[i] = sign * step
            offsets.append(e)
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    for i, j in pairs:
        for si, sj in ((1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0)):
            e = np.zeros(k)
            e[i], e[j] = si * step, sj * step
            offsets.append(e)
    vals = batch(theta[None, :] + np.array(offsets))
    hess = np.empty((k, k))
    for i in range(k):
        hess[i, i] = (vals[1 + 2 * i] - 2 * vals[0] + vals[2 + 2 * i]) / step**2
    base = 1 + 2 * k
    for n, (i, j) in enumerate(pairs):
        pp, pm, mp, mm = vals[base + 4 * n : base + 4 * n + 4]
        hess[i, j] = hess[j, i] = (pp - pm - mp + mm) / (4 * step**2)
    return hess


def hessian_from_gradient(
    objective: Objective, theta: FloatArray, step: float = 1e-4
) -> FloatArray:
    """Symmetrised central differences of an (analytic) gradient."""
    k = theta.shape[0]
    hess = np.empty((k, k))
    for j in range(k):
        up = theta.copy()
        dn = theta.copy()
        up[j] += step
        dn[j] -= step
        hess[:, j] = (objective(up)[1] - objective(dn)[1]) / (2 * step)
    return np.asarray((hess + hess.T) / 2, dtype=np.float64)


# --------------------------------------------------------------------------- optimiser


@dataclass(frozen=True, slots=True)
class Likelihood:
    """What a model supplies for fitting, on log-parameters, as a mean per customer.

    ``value_and_gradient`` is required; ``curvature`` (value, gradient, analytic Hessian)
    switches the optimiser to Newton's method; ``batch`` (values at many parameter rows at
    once) gives a cheap finite-difference Hessian when there is no analytic one.
    """

    value_and_gradient: Objective
    curvature: CurvatureObjective | None = None
    batch: BatchObjective | None = None

    def penalised(self, weight: float, centre: FloatArray) -> Likelihood:
        """Add weight/2 · |θ − centre|² (a normal prior on log-parameters, per customer)."""
        if weight == 0:
            return self
        vg, curv, batch = self.value_and_gradient, self.curvature, self.batch

        def value_and_gradient(theta: FloatArray) -> tuple[float, FloatArray]:
            value, grad = vg(theta)
            diff = theta - centre
            return value + weight / 2 * float(diff @ diff), grad + weight * diff

        def curvature(theta: FloatArray) -> tuple[float, FloatArray, FloatArray]:
            assert curv is not None
            value, grad, hess = curv(theta)
            diff = theta - centre
            return (
                value + weight / 2 * float(diff @ diff),
                grad + weight * diff,
                hess + weight * np.eye(theta.shape[0]),
            )

        def penalised_batch(thetas: FloatArray) -> FloatArray:
            assert batch is not None
            diff = thetas - centre
            return np.asarray(batch(thetas) + weight / 2 * np.sum(diff * diff, axis=1))

        return Likelihood(
            value_and_gradient,
            curvature=None if curv is None else curvature,
            batch=None if batch is None else penalised_batch,
        )

    def hessian(self, theta: FloatArray) -> FloatArray:
        if self.curvature is not None:
            return self.curvature(theta)[2]
        if self.batch is not None:
            return batched_hessian(self.batch, theta)
        return hessian_from_gradient(self.value_and_gradient, theta)


@dataclass(frozen=True, slots=True)
class _Run:
    theta: FloatArray
    value: float
    grad: FloatArray
    iterations: int
    evaluations: int
    message: str


#: Largest change of any log-parameter in one step (a factor e² on the natural scale).
_MAX_STEP = 2.0
_GTOL = 1e-10


def _line_search(
    f: Callable[[FloatArray], tuple[float, FloatArray]],
    theta: FloatArray,
    value: float,
    grad: FloatArray,
    step: FloatArray,
) -> tuple[FloatArray, float, FloatArray, int] | None:
    """Backtracking (Armijo) search along ``step`` inside the parameter box.

    Points where the value or gradient cannot be computed count as failures, so the
    search backs away from regions where the special functions lose accuracy.
    """
    size = 1.0
    for used in range(1, 40):
        trial = np.clip(theta + size * step, -LOG_BOUND, LOG_BOUND)
        t_value, t_grad = f(trial)
        finite = np.isfinite(t_value) and bool(np.all(np.isfinite(t_grad)))
        if finite and t_value <= value + 1e-4 * float(grad @ (trial - theta)):
            return trial, t_value, t_grad, used
        size /= 2
    return None


def _cap(step: FloatArray) -> FloatArray:
    largest = float(np.max(np.abs(step)))
    return step * (_MAX_STEP / largest) if largest > _MAX_STEP else step


def _free(theta: FloatArray, grad: FloatArray) -> NDArray[np.bool_]:
    """Coordinates not pinned to a bound by a gradient pushing outwards."""
    pinned = ((theta <= -LOG_BOUND) & (grad > 0)) | ((theta >= LOG_BOUND) & (grad < 0))
    return ~pinned


def newton_minimise(curvature: CurvatureObjective, x0: FloatArray, max_iter: int = 200) -> _Run:
    """Damped Newton in a box: |eigenvalues| of the Hessian (floored) make every step a
    descent direction even far from the optimum; quadratic convergence near it."""
    theta = np.clip(x0, -LOG_BOUND, LOG_BOUND)
    value, grad, hess = curvature(theta)
    evals = 1
    cache: dict[bytes, FloatArray] = {}

    def f(point: FloatArray) -> tuple[float, FloatArray]:
        v, g, h = curvature(point)
        cache[point.tobytes()] = h
        return v, g

    message = "iteration limit reached"
    it = 0
    for it in range(max_iter):  # noqa: B007 (reported after the loop)
        free = _free(theta, grad)
        if float(np.max(np.abs(grad[free]), initial=0.0)) < _GTOL:
            message = "gradient below tolerance"
            break
        vals, vecs = np.linalg.eigh(hess[np.ix_(free, free)])
        floor = 1e-8 * max(1.0, float(np.max(np.abs(vals))))
        step = np.zeros_like(theta)
        step[free] = -(vecs @ ((vecs.T @ grad[free]) / np.maximum(np.abs(vals), floor)))
        found = _line_search(f, theta, value, grad, _cap(step))
        if found is None:
            message = "line search stalled (at the numerical precision limit)"
            break
        trial, value, grad, used = found
        evals += used
        moved = float(np.max(np.abs(trial - theta)))
        theta = trial
        hess = cache.pop(theta.tobytes())
        cache.clear()
        if moved < 1e-14:
            message = "step below tolerance"
            break
    return _Run(theta, value, grad, it + 1, evals, message)


def bfgs_minimise(
    objective: Objective,
    x0: FloatArray,
    max_iter: int = 500,
    inverse_hessian: FloatArray | None = None,
) -> _Run:
    """Quasi-Newton (BFGS, inverse-Hessian form) in a box, for likelihoods without an
    analytic Hessian. Written out because four parameters need no more than this.

    Coordinates pinned at a bound (gradient pushing outwards) are frozen and the
    curvature estimate restarts whenever that set changes, so a run that ends on the
    edge of the box gets there in a few steps instead of crawling along it.
    ``inverse_hessian`` warm-starts the curvature (e.g. from a subsample's optimum).
    """
    theta = np.clip(x0, -LOG_BOUND, LOG_BOUND)
    value, grad = objective(theta)
    evals = 1
    k = theta.shape[0]
    inv_h = np.eye(k) if inverse_hessian is None else inverse_hessian.copy()
    fresh = inverse_hessian is None
    pinned_before = np.zeros(k, dtype=bool)
    quiet = 0
    message = "iteration limit reached"
    it = 0
    for it in range(max_iter):  # noqa: B007 (reported after the loop)
        free = _free(theta, grad)
        # Differenced gradients carry ~1e-10 of noise: 1e-8 is as far as they can go.
        if float(np.max(np.abs(grad[free]), initial=0.0)) < 1e-8:
            message = "gradient below tolerance"
            break
        if np.any(free == pinned_before):
            inv_h, fresh = np.eye(k), True
        pinned_before = ~free
        step = np.zeros(k)
        step[free] = -(inv_h[np.ix_(free, free)] @ grad[free])
        if float(grad @ step) >= 0:
            inv_h, fresh = np.eye(k), True
            step = -grad * free
        found = _line_search(objective, theta, value, grad, _cap(step))
        if found is None:
            message = "line search stalled (at the numerical precision limit)"
            break
        trial, t_value, t_grad, used = found
        evals += used
        s, y = (trial - theta) * free, (t_grad - grad) * free
        sy = float(s @ y)
        if sy > 1e-12 * float(np.sqrt((s @ s) * (y @ y))):
            if fresh:
                inv_h = np.eye(k) * (sy / float(y @ y))
                fresh = False
            rho = 1.0 / sy
            left = np.eye(k) - rho * np.outer(s, y)
            inv_h = left @ inv_h @ left.T + rho * np.outer(s, s)
        gain = value - t_value
        quiet = quiet + 1 if gain < 1e-15 * (1 + abs(value)) else 0
        theta, value, grad = trial, t_value, t_grad
        if quiet >= 3 or float(np.max(np.abs(s))) < 1e-14:
            message = "no further progress (at the numerical precision limit)"
            break
        if np.any(~_free(theta, grad)) and gain < 1e-10:
            message = "stopped on the edge of the parameter box"
            break
    return _Run(theta, value, grad, it + 1, evals, message)


def _minimise(
    likelihood: Likelihood, x0: FloatArray, inverse_hessian: FloatArray | None = None
) -> _Run:
    if likelihood.curvature is not None:
        return newton_minimise(likelihood.curvature, x0)
    return bfgs_minimise(likelihood.value_and_gradient, x0, inverse_hessian=inverse_hessian)


def _inverse_if_positive(hess: FloatArray) -> FloatArray | None:
    vals, vecs = np.linalg.eigh((hess + hess.T) / 2)
    if not np.all(np.isfinite(vals)) or vals[0] <= 1e-8 * max(1.0, float(vals[-1])):
        return None
    return np.asarray((vecs / vals) @ vecs.T, dtype=np.float64)


_PENALTY_HINT = "; or refit with a small penalty (e.g. penalty=0.1) to regularise the estimates"


@dataclass(frozen=True, slots=True)
class Optimum:
    """The accepted maximum on the log scale; objective values are per customer."""

    log_theta: FloatArray
    log_covariance: FloatArray
    diagnostics: FitDiagnostics


#: Penalty used when the maximum-likelihood fit is degenerate and the caller left
#: ``penalty`` unset: weak (prior s.d. about 3 on the log scale for 1 customer, vanishing
#: relative to the data as customers are added) yet enough to keep small stores fittable.
FALLBACK_PENALTY = 0.1


def maximise_likelihood(
    likelihood: Likelihood,
    starts: Sequence[Sequence[float]],
    *,
    n_customers: int,
    model_name: str,
    screen: Likelihood | None = None,
    screen_customers: int = 0,
    penalty: float | None = None,
) -> Optimum:
    """Maximum likelihood, falling back to a weakly penalised fit if the MLE is degenerate.

    ``penalty=None`` (the default) first tries the pure MLE; if that is rejected (a
    parameter on the edge of its range, a flat or saddle-shaped likelihood, no
    convergence) it refits with :data:`FALLBACK_PENALTY` and says so in
    ``diagnostics.message`` and ``diagnostics.penalty``. Small stores (a few hundred
    customers) hit degenerate MLEs often: the data cannot separate "little heterogeneity"
    from "none". ``penalty=0`` is strict maximum likelihood (raise instead);
    ``penalty > 0`` always penalises. Degenerate *inputs* raise in every mode.
    """

    def run(weight: float) -> Optimum:
        return _maximise(
            likelihood,
            starts,
            n_customers=n_customers,
            model_name=model_name,
            screen=screen,
            screen_customers=screen_customers,
            penalty=weight,
        )

    if penalty is not None:
        return run(penalty)
    try:
        return run(0.0)
    except ModelFitError as strict:
        try:
            opt = run(FALLBACK_PENALTY)
        except ModelFitError:
            raise ModelFitError(
                f"{strict.message} (a penalised fit failed too)",
                hint=strict.hint.replace(_PENALTY_HINT, ""),
            ) from None
        note = (
            f"maximum likelihood was degenerate ({strict.message}); "
            f"estimates regularised with penalty={FALLBACK_PENALTY}"
        )
        return replace(opt, diagnostics=replace(opt.diagnostics, message=note))


def _maximise(
    likelihood: Likelihood,
    starts: Sequence[Sequence[float]],
    *,
    n_customers: int,
    model_name: str,
    screen: Likelihood | None,
    screen_customers: int,
    penalty: float,
) -> Optimum:
    """Maximise a log-likelihood from several starts and vet the optimum.

    The likelihood is given as the *mean* negative log-likelihood per customer, so the
    tolerances do not depend on the number of customers. With ``screen`` (the same
    likelihood on a subsample) the starts are compared there and only the best one is
    polished on all data. Raises :class:`ModelFitError` with advice when the optimum cannot
    be trusted: no convergence, a parameter at its bound, or a Hessian that is not positive
    definite.

    ``penalty`` > 0 maximises the log-likelihood minus penalty/2 · |log θ − log θ₀|² instead
    (θ₀ = the first start): a weak normal prior on the log-parameters that keeps
    heterogeneity parameters finite when a small sample cannot identify them. The
    covariance is then the inverse Hessian of the penalised objective.
    """
    began = time.perf_counter()
    if penalty < 0:
        raise ValueError("penalty must be non-negative")
    centre = np.log(np.asarray(starts[0], dtype=np.float64))
    likelihood = likelihood.penalised(penalty / n_customers, centre)
    if screen is not None:
        screen = screen.penalised(penalty / max(screen_customers, 1), centre)
    first = screen if screen is not None else likelihood
    runs: list[_Run] = []
    n_iter = n_eval = 0
    for start in starts:
        x0 = np.clip(np.log(np.asarray(start, dtype=np.float64)), -LOG_BOUND + 1, LOG_BOUND - 1)
        with np.errstate(all="ignore"):
            run = _minimise(first, x0)
        n_iter += run.iterations
        n_eval += run.evaluations
        if np.isfinite(run.value):
            runs.append(run)
    advice = (
        "too few repeat buyers or too short a calibration period to estimate "
        f"{model_name}; try a longer calibration period or more customers"
    )
    if not runs:
        raise ModelFitError(
            f"{model_name}: the likelihood could not be evaluated from any starting point",
            hint=advice,
        )
    best = min(runs, key=lambda r: r.value)
    agreeing = sum(abs(r.value - best.value) < 1e-7 for r in runs)
    if screen is not None:
        with np.errstate(all="ignore"):
            # The subsample's curvature is the full data's, per customer, up to noise.
            warm = None
            if screen.curvature is None:
                warm = _inverse_if_positive(screen.hessian(best.theta))
            best = _minimise(likelihood, best.theta, warm)
        n_iter += best.iterations
        n_eval += best.evaluations
    theta = best.theta
    max_grad = float(np.max(np.abs(best.grad)))
    if np.any(np.abs(theta) > LOG_BOUND - 1e-3):
        raise ModelFitError(
            f"{model_name}: a parameter ran to the edge of its range (the maximum likelihood is "
            "at a degenerate limit the data cannot distinguish from a finite value)",
            hint=advice + _PENALTY_HINT,
        )
    if not np.isfinite(best.value) or not max_grad < 1e-6:
        raise ModelFitError(
            f"{model_name}: the optimiser did not converge ({best.message}; "
            f"largest gradient {max_grad:.2g}); the maximum may lie at extreme parameter "
            "values, i.e. heterogeneity these data cannot identify",
            hint=advice + _PENALTY_HINT,
        )
    hess = likelihood.hessian(theta)
    hess = (hess + hess.T) / 2 * n_customers
    vals, vecs = np.linalg.eigh(hess)
    if not np.all(np.isfinite(vals)) or vals[0] <= 1e-9 * max(1.0, float(vals[-1])):
        raise ModelFitError(
            f"{model_name}: the likelihood is flat or saddle-shaped at the optimum "
            "(Hessian not positive definite)",
            hint=advice + _PENALTY_HINT,
        )
    cov = (vecs / vals) @ vecs.T
    diagnostics = FitDiagnostics(
        converged=True,
        message=best.message,
        n_starts=len(starts),
        n_starts_agreeing=int(agreeing),
        n_iterations=n_iter,
        n_evaluations=n_eval,
        max_abs_gradient=max_grad,
        hessian_min_eigenvalue=float(vals[0]),
        hessian_condition_number=float(vals[-1] / vals[0]),
        seconds=time.perf_counter() - began,
        penalty=penalty,
    )
    return Optimum(theta, np.asarray((cov + cov.T) / 2, dtype=np.float64), diagnostics)


def fit_rfm_model(
    cls: type[M],
    make_likelihood: Callable[[RFMData], Likelihood],
    data: RFMData,
    starts: Sequence[Sequence[float]],
    *,
    time_params: Sequence[str],
    model_name: str,
    seed: int = 0,
    penalty: float | None = None,
) -> FittedModel[M]:
    """Fit a purchase model on compressed data; the common path of BG, MBG and Pareto.

    Times are divided by the mean T during optimisation so starting values and bounds are
    scale-free. Only the rate-scale parameters (``time_params``) change with the time unit;
    they are mapped back afterwards, and the log-likelihood is reported in the caller's
    unit: rescaling time by c changes each customer's ln L by −x ln c (the density of x
    event times), nothing else. ``penalty``: see :func:`maximise_likelihood` (its centre is
    the first start, in rescaled units).
    """
    began = time.perf_counter()
    if data.n_customers == 0:
        raise ModelFitError(f"{model_name}: no customers to fit", hint="check the date range")
    if data.n_repeat_buyers == 0:
        raise ModelFitError(
            f"{model_name}: no customer made a repeat purchase in the calibration period",
            hint="use a longer calibration period; the model learns from repeat purchases",
        )
    scale = float(np.average(data.T, weights=data.weight))
    if not scale > 0:
        raise ModelFitError(f"{model_name}: all customers have T = 0", hint="move the end date")
    scaled = data.rescaled(scale)
    screen = None
    if scaled.x.shape[0] > SCREEN_CUSTOMERS:
        sub = scaled.subsample(SCREEN_CUSTOMERS, np.random.default_rng(seed))
        screen = make_likelihood(sub)
    full = make_likelihood(scaled)
    opt = maximise_likelihood(
        full,
        starts,
        n_customers=data.n_customers,
        model_name=model_name,
        screen=screen,
        screen_customers=SCREEN_CUSTOMERS,
        penalty=penalty,
    )
    log_theta = opt.log_theta.copy()
    for name in time_params:
        log_theta[cls.param_names.index(name)] += np.log(scale)
    value, _ = full.value_and_gradient(opt.log_theta)
    log_likelihood = -value * data.n_customers - dot(data.weight, data.x) * np.log(scale)
    return FittedModel(
        model=cls.from_vector(np.exp(log_theta)),
        log_likelihood=float(log_likelihood),
        n_customers=data.n_customers,
        log_covariance=opt.log_covariance,
        diagnostics=replace(opt.diagnostics, seconds=time.perf_counter() - began),
    )
