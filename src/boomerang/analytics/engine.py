"""Where analytics queries run: an Ibis backend (DuckDB in memory by default, or PySpark).

Why Ibis (docs/analytics-engine.md): the metrics are written once as dataframe expressions
and Ibis compiles them for each engine, so the same code runs embedded on a laptop and on a
Spark cluster. Data arrives as Arrow tables (read with ADBC from the store) and is handed to
the engine whole, never row by row through Python.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import ibis
import pyarrow as pa

ORDER_COLUMNS = {
    "id": pa.int64(),
    "customer_id": pa.int64(),
    "placed_at": pa.int64(),
    "currency": pa.string(),
    "total_minor": pa.int64(),
    "refunded_minor": pa.int64(),
    "discount_minor": pa.int64(),
    "shipping_minor": pa.int64(),
    "tax_minor": pa.int64(),
    "status": pa.string(),
    "channel": pa.string(),
}
CUSTOMER_COLUMNS = {
    "id": pa.int64(),
    "created_at": pa.int64(),
    "account_status": pa.string(),
    "country": pa.string(),
}
EVENT_COLUMNS = {
    "customer_id": pa.int64(),
    "anonymous_id": pa.string(),
    "type": pa.string(),
    "occurred_at": pa.int64(),
}
_names = itertools.count()


def conform(table: pa.Table | None, columns: dict[str, pa.DataType]) -> pa.Table:
    """Select and cast the columns analytics reads (missing ones become nulls)."""
    if table is None:
        return pa.table({c: pa.array([], t) for c, t in columns.items()})
    n = table.num_rows
    return pa.table(
        {
            c: (table[c].cast(t) if c in table.column_names else pa.nulls(n, t))
            for c, t in columns.items()
        }
    )


@dataclass(frozen=True)
class SourceTables:
    """A store's data as Arrow: what `store.repos.analytics_source` reads (or a simulator)."""

    orders: pa.Table
    customers: pa.Table
    currency: str
    events: pa.Table | None = None


@dataclass(frozen=True)
class Data:
    """The same tables registered in an engine, as Ibis tables."""

    orders: ibis.Table
    customers: ibis.Table
    events: ibis.Table
    currency: str


class Engine:
    """An Ibis backend plus helpers to register Arrow tables and run expressions."""

    def __init__(self, backend: str = "duckdb", *, spark: Any = None) -> None:
        self.backend_name = backend
        self._held: list[pa.Table] = []
        if backend == "duckdb":
            self.con: Any = ibis.duckdb.connect()
        elif backend == "pyspark":
            if spark is None:
                spark = local_spark()
            self.spark = spark
            self.con = ibis.pyspark.connect(spark)
        else:
            raise ValueError(f"unknown analytics backend {backend!r} (duckdb or pyspark)")

    def table(self, data: pa.Table, prefix: str = "t") -> ibis.Table:
        """Register an Arrow table under a fresh name."""
        name = f"_bm_{prefix}_{next(_names)}"
        if self.backend_name == "duckdb":
            # Zero-copy: DuckDB scans the Arrow buffers in place (kept alive by `_held`).
            self._held.append(data)
            self.con.con.register(name, data)
            return self.con.table(name)
        # PySpark 4 builds a DataFrame straight from Arrow; a temp view keeps it in the session.
        self.spark.createDataFrame(data).createOrReplaceTempView(name)
        return self.con.table(name)

    def load(self, source: SourceTables) -> Data:
        return Data(
            orders=self.table(conform(source.orders, ORDER_COLUMNS), "orders"),
            customers=self.table(conform(source.customers, CUSTOMER_COLUMNS), "customers"),
            events=self.table(conform(source.events, EVENT_COLUMNS), "events"),
            currency=source.currency.upper(),
        )

    def arrow(self, expr: ibis.Table) -> pa.Table:
        """Run an expression; small results come back as Arrow."""
        return self.con.to_pyarrow(expr)

    def cache(self, expr: ibis.Table) -> ibis.Table:
        """Materialise an expression that several queries read."""
        return expr.cache()

    def scalar(self, expr: Any) -> Any:
        return self.con.execute(expr)

    def close(self) -> None:
        """Nothing to release eagerly: cached tables and the in-memory database go with the
        engine object (closing first would make Ibis' cache finalizers fail)."""


def local_spark() -> Any:
    """A local-mode SparkSession for tests and single-machine runs (UTC, small shuffles)."""
    import os
    import tempfile

    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    warehouse = tempfile.mkdtemp(prefix="boomerang-spark-")
    return (
        SparkSession.builder.master("local[2]")
        .appName("boomerang-analytics")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.warehouse.dir", warehouse)
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
