"""Predictive CLV use cases: fit and store predictions, backtest, fit from a file, export.

Each call reads the store's orders once as Arrow (ADBC), fits in memory (vectorised numpy)
and, for ``fit``, replaces the store+model's rows of ``customer_predictions`` in one
transaction, so segments and campaigns always read one complete fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from boomerang import __version__
from boomerang.analytics.clv import ModelFitError, fit_gammagamma, summarize_transactions
from boomerang.analytics.clv.summary import TimeUnit, as_day
from boomerang.analytics.clv_store import (
    PURCHASE_MODELS,
    Backtest,
    ClvFit,
    Transactions,
    backtest,
    fit_clv,
    fit_purchases,
    transactions_from_columns,
    transactions_from_orders,
)
from boomerang.analytics.metrics import money_scale
from boomerang.domain.clock import now_micros
from boomerang.errors import InputError
from boomerang.reports.clv import render_clv_section
from boomerang.services.context import open_engine
from boomerang.store.bulk import bulk_transaction
from boomerang.store.repos import analytics_source
from boomerang.store.repos import predictions as predictions_repo
from boomerang.store.repos import stores as stores_repo

__all__ = [
    "FILE_MODELS",
    "BacktestResult",
    "FitResult",
    "backtest_store",
    "clv_section",
    "export_predictions",
    "fit_from_csv",
    "fit_store",
]

#: Models ``fit_from_csv`` accepts: the purchase models and the spend model.
FILE_MODELS = (*PURCHASE_MODELS, "gammagamma")
#: Stored with every prediction: bump when a model change alters the numbers.
MODEL_VERSION = f"boomerang-{__version__}/clv-1"
MICROS_PER_DAY = 86_400_000_000


@dataclass
class FitResult:
    store: str
    currency: str
    model: str
    calibration_end: date
    n_customers: int
    params: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    log_likelihood: float
    spend_params: dict[str, float]
    rows_written: int
    horizon_days: int
    months: int
    expected_purchases_total: float
    clv_total: float
    risk_bands: dict[str, int]
    notes: list[str] = field(default_factory=list)


@dataclass
class BacktestResult:
    store: str
    backtest: Backtest
    notes: list[str] = field(default_factory=list)


def _load(db: str, store: str) -> tuple[Any, stores_repo.Store, Transactions]:
    engine = open_engine(db)
    with engine.connect() as conn:
        row = stores_repo.get(conn, store)
    orders = analytics_source.read_orders(engine, row.id)
    return engine, row, transactions_from_orders(orders, money_scale(row.currency))


def _fit_notes(fit: ClvFit) -> list[str]:
    notes = []
    for name, fitted in (("purchase model", fit.purchases), ("spend model", fit.spend)):
        if fitted.diagnostics.penalty > 0:
            notes.append(f"{name}: {fitted.diagnostics.message}")
    if len(fit.summary) < 500:
        notes.append(
            f"only {len(fit.summary)} customers: intervals are wide; read them, not the point values"
        )
    return notes


def _day_micros(day: np.datetime64) -> int:
    return int(np.asarray(day).astype("datetime64[D]").astype(np.int64)) * MICROS_PER_DAY


def prediction_rows(fit: ClvFit, store_id: int, currency: str, fitted_at: int) -> pa.Table:
    """One ``customer_predictions`` row per customer of a fit (money in minor units)."""
    p = fit.predictions
    to_minor = 1.0 / money_scale(currency)
    n = len(fit.summary)

    def minor(values: np.ndarray[Any, Any]) -> pa.Array:
        finite = np.isfinite(values)
        return pa.array(np.rint(np.where(finite, values, 0.0) * to_minor).astype(np.int64),
                        mask=~finite)  # fmt: skip

    def maybe(values: np.ndarray[Any, Any]) -> pa.Array:
        return pa.array(values, mask=~np.isfinite(values))

    nat = np.isnat(fit.next_order)
    next_at = np.where(nat, 0, fit.next_order.astype("datetime64[D]").astype(np.int64))
    return pa.table(
        {
            "store_id": pa.array(np.full(n, store_id, dtype=np.int64)),
            "customer_id": pa.array(fit.summary.customer_id.astype(np.int64)),
            "model": pa.array([fit.model_name] * n, pa.string()),
            "model_version": pa.array([MODEL_VERSION] * n, pa.string()),
            "fitted_at": pa.array(np.full(n, fitted_at, dtype=np.int64)),
            "inputs_through": pa.array(
                np.full(n, _day_micros(fit.summary.calibration_end) + MICROS_PER_DAY)
            ),
            "p_alive": pa.array(p.p_alive),
            "horizon_days": pa.array(np.full(n, fit.horizon_days, dtype=np.int64)),
            "expected_purchases": pa.array(p.expected_purchases),
            "expected_purchases_low": maybe(p.expected_purchases_low),
            "expected_purchases_high": maybe(p.expected_purchases_high),
            "next_order_at": pa.array(next_at * MICROS_PER_DAY, mask=nat),
            "clv_minor": minor(np.nan_to_num(p.clv)),
            "clv_low_minor": minor(p.clv_low),
            "clv_high_minor": minor(p.clv_high),
            "currency": pa.array([currency] * n, pa.string()),
            "risk_band": pa.array(p.churn_risk.astype(object), pa.string()),
        }
    )


def fit_store(
    db: str,
    store: str,
    *,
    model: str = "bgnbd",
    calibration_end: str | None = None,
    horizon_days: int = 90,
    months: int = 12,
    margin: float = 1.0,
    monthly_discount: float = 0.01,
    n_draws: int = 200,
    write: bool = True,
) -> FitResult:
    """Fit on the store's orders up to ``calibration_end`` (default: the last order day) and
    replace the store+model's stored predictions."""
    if model not in PURCHASE_MODELS:
        raise InputError(f"unknown model {model!r}", hint="use " + ", ".join(PURCHASE_MODELS))
    engine, row, trans = _load(db, store)
    try:
        fit = fit_clv(
            trans,
            calibration_end=calibration_end,
            model=model,
            horizon_days=horizon_days,
            months=months,
            margin=margin,
            monthly_discount=monthly_discount,
            n_draws=n_draws,
        )
        written = 0
        if write:
            rows = prediction_rows(fit, row.id, row.currency, now_micros())
            with bulk_transaction(engine, lock_key=row.id) as session:
                written = predictions_repo.replace_predictions(session, row.id, model, rows)
    finally:
        engine.dispose()
    p = fit.predictions
    bands, counts = np.unique(p.churn_risk, return_counts=True)
    return FitResult(
        store=store,
        currency=row.currency,
        model=model,
        calibration_end=fit.summary.calibration_end.astype(object),
        n_customers=len(fit.summary),
        params=fit.purchases.params,
        intervals=fit.purchases.intervals(),
        log_likelihood=fit.purchases.log_likelihood,
        spend_params=fit.spend.params,
        rows_written=written,
        horizon_days=horizon_days,
        months=months,
        expected_purchases_total=float(p.expected_purchases.sum()),
        clv_total=float(np.nansum(p.clv)),
        risk_bands={str(b): int(c) for b, c in zip(bands, counts, strict=True)},
        notes=_fit_notes(fit),
    )


def backtest_store(
    db: str,
    store: str,
    *,
    calibration_end: str,
    holdout_days: int | None = None,
    model: str = "bgnbd",
) -> BacktestResult:
    """Model vs naive baseline on the store's holdout period (nothing is written)."""
    engine, _, trans = _load(db, store)
    engine.dispose()
    result = backtest(
        trans, calibration_end=calibration_end, holdout_days=holdout_days, model=model
    )
    notes = []
    if not result.model_wins:
        notes.append(
            "the naive baseline beat the model on this holdout: check the note in docs/clv.md"
        )
    return BacktestResult(store=store, backtest=result, notes=notes)


# --------------------------------------------------------------------------- files


def _read_dates(frame: pl.DataFrame, column: str) -> np.ndarray[Any, Any]:
    col = frame[column]
    if col.dtype.is_integer():  # 19970101
        parsed = col.cast(pl.String).str.to_date("%Y%m%d", strict=False)
    elif col.dtype == pl.String:
        parsed = col.str.strip_chars().str.to_date(strict=False)
        if parsed.null_count() > col.null_count():
            parsed = col.str.strip_chars().str.to_datetime(strict=False).dt.date()
    else:
        parsed = col.cast(pl.Date, strict=False)
    if parsed.null_count():
        raise InputError(
            f"{parsed.null_count()} values of column {column!r} are not dates",
            hint="use YYYY-MM-DD (or YYYYMMDD) dates",
        )
    return parsed.to_numpy().astype("datetime64[D]")


def fit_from_csv(
    path: Path,
    *,
    customer: str,
    date_column: str,
    value: str | None,
    calibration_end: str,
    unit: TimeUnit = "weeks",
    model: str = "bgnbd",
) -> dict[str, Any]:
    """Fit one model straight from a transactions CSV; returns JSON-ready parameters.

    Parameters are named as in the papers (r, alpha, a, b; r, alpha, s, beta; p, q, gamma).
    """
    if model not in FILE_MODELS:
        raise InputError(f"unknown model {model!r}", hint="use " + ", ".join(FILE_MODELS))
    if model == "gammagamma" and value is None:
        raise InputError("the gammagamma model needs a value column", hint="pass --value COL")
    if not path.exists():
        raise InputError(f"no such file: {path}")
    frame = pl.read_csv(path, infer_schema_length=10_000)
    missing = [
        c for c in (customer, date_column, value) if c is not None and c not in frame.columns
    ]
    if missing:
        raise InputError(
            f"column(s) not in {path.name}: {', '.join(missing)}",
            hint="columns are: " + ", ".join(frame.columns),
        )
    trans = transactions_from_columns(
        frame[customer].cast(pl.String).to_numpy(),
        _read_dates(frame, date_column),
        None if value is None else frame[value].cast(pl.Float64).to_numpy(),
    )
    cal = as_day(calibration_end, "calibration_end")
    s = summarize_transactions(
        trans.customer_id, trans.day, trans.value, calibration_end=cal, unit=unit
    )
    if model == "gammagamma":
        assert s.zbar is not None
        fitted: Any = fit_gammagamma(s.x, s.zbar)
    else:
        fitted = fit_purchases(model, s)
    return {
        "model": model,
        "unit": unit,
        "calibration_end": str(cal),
        "params": fitted.params,
        "intervals_95": {k: list(v) for k, v in fitted.intervals().items()},
        "log_likelihood": fitted.log_likelihood,
        "n_customers": fitted.n_customers,
        "notes": [fitted.diagnostics.message] if fitted.diagnostics.penalty > 0 else [],
    }


def export_predictions(
    db: str, store: str, *, out: Path, fmt: str = "csv", model: str | None = None
) -> int:
    """Write the stored predictions (with customers' external ids) to CSV or Parquet."""
    if fmt not in ("csv", "parquet"):
        raise InputError(f"unknown format {fmt!r}", hint="use csv or parquet")
    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            row = stores_repo.get(conn, store)
        table = predictions_repo.read_predictions(engine, row.id, model)
    finally:
        engine.dispose()
    if table.num_rows == 0:
        raise InputError(
            f"no stored predictions for store {store!r}", hint="run `boomerang clv fit` first"
        )
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    if fmt == "csv":
        frame.write_csv(out)
    else:
        frame.write_parquet(out)
    return frame.height


# --------------------------------------------------------------------------- report


def default_holdout_days(trans: Transactions) -> int:
    """A third of the history, between 4 and 26 weeks: long enough to score, short enough
    to leave most of the history for calibration."""
    span = int((trans.last_day - trans.first_day).astype(np.int64))
    return int(min(182, max(28, span // 3)))


def clv_section(
    db: str,
    store: str,
    *,
    model: str = "bgnbd",
    months: int = 12,
    margin: float = 1.0,
    monthly_discount: float = 0.01,
) -> str:
    """The report's CLV section (HTML fragment; plotly.js must already be on the page).

    Fits on all orders (nothing is written) and backtests on the last
    :func:`default_holdout_days` days, so every prediction is shown beside its track record.
    """
    engine, row, trans = _load(db, store)
    engine.dispose()
    notes: list[str] = []
    try:
        fit: ClvFit | None = fit_clv(
            trans, model=model, months=months, margin=margin,
            monthly_discount=monthly_discount, n_draws=100,
        )  # fmt: skip
    except (ModelFitError, InputError) as exc:
        fit = None
        notes.append(f"CLV models could not be fitted: {exc.one_line()}")
    bt: Backtest | None = None
    if fit is not None:
        notes += _fit_notes(fit)
        holdout = default_holdout_days(trans)
        try:
            bt = backtest(
                trans,
                calibration_end=trans.last_day - np.timedelta64(holdout, "D"),
                holdout_days=holdout,
                model=model,
            )
        except (ModelFitError, InputError) as exc:
            notes.append(f"backtest not available: {exc.one_line()}")
    return render_clv_section(
        fit, bt, currency=row.currency, store=store, margin=margin, notes=notes
    )
