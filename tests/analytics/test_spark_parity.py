"""The same expressions on PySpark (local mode) give the embedded engine's numbers.

Slow (a JVM starts): runs on CI, or locally with BOOMERANG_TEST_SPARK=1.
"""

from __future__ import annotations

import os

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from boomerang.analytics.cohorts import cohort_table
from boomerang.analytics.engine import Engine, SourceTables
from boomerang.analytics.metrics import metrics_table
from boomerang.analytics.options import MetricOptions
from boomerang.analytics.periods import Granularity
from boomerang.analytics.prepare import prepare
from boomerang.simulate.store import simulate_store

pytestmark = pytest.mark.skipif(
    not (os.environ.get("CI") or os.environ.get("BOOMERANG_TEST_SPARK")),
    reason="Spark parity is slow: set BOOMERANG_TEST_SPARK=1 (CI runs it)",
)


def _source() -> SourceTables:
    s = simulate_store(400, 500, 11)
    o = s.book.orders
    orders = o.select(
        pl.col("order_idx").alias("id"),
        pl.when(pl.col("owner") >= 0).then(pl.col("owner")).alias("customer_id"),
        "placed_at",
        pl.lit("USD").alias("currency"),
        "total_minor",
        "refunded_minor",
        "status",
    )
    # a few Online Retail-style return records, to exercise the netting on both engines
    returns = (
        orders.filter(pl.col("customer_id").is_not_null())
        .head(15)
        .with_columns(
            pl.col("id") + 1_000_000,
            pl.col("placed_at") + 86_400_000_000 * 5,
            (-pl.col("total_minor") // 4).alias("total_minor"),
            pl.lit(0, pl.Int64).alias("refunded_minor"),
            pl.lit("refunded").alias("status"),
        )
    )
    events = s.events.select(
        pl.when(pl.col("person") >= 0).then(pl.col("person")).alias("customer_id"),
        pl.col("visitor").cast(pl.String).alias("anonymous_id"),
        "type",
        "occurred_at",
    )
    return SourceTables(
        orders=pl.concat([orders, returns]).to_arrow(),
        customers=pa.table({"id": np.arange(s.population.size)}),
        currency="USD",
        events=events.to_arrow(),
    )


def _run(engine: Engine, source: SourceTables, g: Granularity) -> tuple[pl.DataFrame, pl.DataFrame]:
    p = prepare(engine, engine.load(source), g, options=MetricOptions(activity_window_days=90))
    return metrics_table(p), cohort_table(p, 0.01)


def test_pyspark_matches_duckdb() -> None:
    pytest.importorskip("pyspark")
    source = _source()
    spark = Engine("pyspark")
    duck = Engine("duckdb")
    for g in (Granularity.MONTH,):
        m_spark, c_spark = _run(spark, source, g)
        m_duck, c_duck = _run(duck, source, g)
        assert m_spark.columns == m_duck.columns
        for col in m_duck.columns:
            a, b = m_spark[col].to_list(), m_duck[col].to_list()
            if m_duck[col].dtype == pl.Float64:
                assert a == pytest.approx(b, nan_ok=True), (g, col)
            else:
                assert a == b, (g, col)
        assert c_spark.equals(c_duck)
