"""`clv fit` writes customer_predictions; a re-fit replaces the store+model's rows (both engines)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from sqlalchemy import func, select

from boomerang.services import clv
from boomerang.services.context import open_engine
from boomerang.services.imports import apply_frames
from boomerang.simulate import simulate_store
from boomerang.store.schema import customer_predictions


def _rows(db: str) -> tuple[int, int, int]:
    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            c = customer_predictions.c
            total, distinct, clv_sum = conn.execute(
                select(
                    func.count(), func.count(func.distinct(c.customer_id)), func.sum(c.clv_minor)
                )
            ).one()
    finally:
        engine.dispose()
    return int(total), int(distinct), int(clv_sum)


def test_fit_writes_predictions_and_refit_replaces(db: str, tmp_path: Path) -> None:
    apply_frames(db, "shop", simulate_store(500, 540, 3).store_frames())
    first = clv.fit_store(db, "shop", n_draws=50)
    total, distinct, clv_first = _rows(db)
    assert first.rows_written == total == distinct == first.n_customers > 200
    again = clv.fit_store(db, "shop", n_draws=50, margin=0.5)
    total2, distinct2, clv_second = _rows(db)
    assert (total2, distinct2) == (total, distinct) == (again.rows_written, again.n_customers)
    assert abs(clv_second - clv_first / 2) <= total  # rounding: at most a cent per row
    # Another model's rows live beside the first's.
    clv.fit_store(db, "shop", model="paretonbd", n_draws=0)
    assert _rows(db)[0] == 2 * total

    out = tmp_path / "p.parquet"
    assert clv.export_predictions(db, "shop", out=out, fmt="parquet", model="bgnbd") == total
    frame = pl.read_parquet(out)
    assert frame["customer"].null_count() == 0 and frame["customer_id"].is_unique().all()
    assert set(frame["risk_band"].unique()) <= {"low", "medium", "high"}
    assert (frame["horizon_days"] == 90).all() and (frame["model"] == "bgnbd").all()
    assert (frame["clv_low_minor"] <= frame["clv_high_minor"]).all()
    csv = tmp_path / "p.csv"
    assert clv.export_predictions(db, "shop", out=csv, fmt="csv") == 2 * total
