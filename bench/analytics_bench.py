"""Retention metrics + cohorts on 10,000,000 simulated orders: Boomerang vs plain pandas.

    python bench/analytics_bench.py [--customers 1000000] [--days 1095]

The simulator builds the orders in memory (no database: the load path from the store is
benchmarked by bench/import_bench.py); they are handed to each side as Arrow (Boomerang)
or a pandas DataFrame (baseline). Each side runs in its own process, so the peak memory
printed is its own. Same outputs on both sides: per-month activity (orders, customers,
repeat customers, revenue, new customers), CRR's S/E/N with churned customers, revenue
retention (window revenue at start and end, gross kept), churn per tenure band, and the
monthly cohort matrix (customers and revenue). A numpy floor times the cohort matrix alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WINDOW = 365
BANDS = (90, 365)
CURRENCY = "USD"


def _peak_mib() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss on Linux, it is not
    inherited from the parent across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- data -----------------------------------------------------------------------------------


def simulate(customers: int, days: int, folder: Path) -> dict[str, int]:
    """Orders only (the simulator's order book, no events), written as Parquet."""
    import numpy as np
    import polars as pl

    from boomerang.simulate.calendar import Calendar
    from boomerang.simulate.catalogue import build_catalogue
    from boomerang.simulate.customers import draw_population
    from boomerang.simulate.orders import build_orders, draw_purchases
    from boomerang.simulate.params import SimulationParams
    from boomerang.simulate.store import STREAMS

    # About ten orders per customer over three years: more frequent, longer-lived buyers.
    params = dataclasses.replace(
        SimulationParams(), buyer_share=0.97, r=2.0, a=0.6, b=9.0, acquisition_growth=0.3
    )
    seeds = np.random.SeedSequence(2026).spawn(len(STREAMS))
    streams = dict(zip(STREAMS, (np.random.default_rng(s) for s in seeds), strict=True))
    cal = Calendar.build(days, params)
    catalogue = build_catalogue(streams["catalogue"], params.products)
    pop = draw_population(streams["people"], customers, cal, catalogue, params)
    purchases = draw_purchases(streams["timing"], pop, cal, catalogue, params)
    book = build_orders(streams["baskets"], pop, cal, catalogue, params, purchases)
    orders = book.orders.select(
        pl.col("order_idx").alias("id"),
        pl.when(pl.col("owner") >= 0).then(pl.col("owner")).alias("customer_id"),
        "placed_at",
        pl.lit(CURRENCY).alias("currency"),
        "total_minor",
        "refunded_minor",
        "status",
    )
    orders.write_parquet(folder / "orders.parquet")
    return {"orders": orders.height, "customers": customers}


def month_bounds(folder: Path) -> list[int]:
    import polars as pl

    from boomerang.analytics.periods import DAY_US, Granularity, Periods

    live = pl.scan_parquet(folder / "orders.parquet").filter(pl.col("status") != "cancelled")
    span = live.select(lo=pl.col("placed_at").min(), hi=pl.col("placed_at").max()).collect()
    lo, hi = span.row(0)
    periods = Periods.between(int(lo) // DAY_US, int(hi) // DAY_US + 1, Granularity.MONTH)
    return list(periods.bounds)


# -- workers (one process each) -------------------------------------------------------------


def worker_ours(folder: Path) -> dict[str, float]:
    import polars as pl
    import pyarrow as pa
    import pyarrow.parquet as pq

    from boomerang.analytics.cohorts import cohort_table
    from boomerang.analytics.engine import Engine, SourceTables
    from boomerang.analytics.metrics import activity, metrics_table
    from boomerang.analytics.options import MetricOptions
    from boomerang.analytics.periods import Granularity
    from boomerang.analytics.prepare import prepare
    from boomerang.analytics.retention import churn_by_tenure, retention_arrays, retention_table

    orders = pq.read_table(folder / "orders.parquet")
    source = SourceTables(orders=orders, customers=pa.table({"id": [0]}), currency=CURRENCY)
    options = MetricOptions(activity_window_days=WINDOW, tenure_bands=BANDS)

    started = time.perf_counter()
    engine = Engine()
    p = prepare(engine, engine.load(source), Granularity.MONTH, options=options)
    cohorts_only = cohort_table(p, 1.0)
    cohort_seconds = time.perf_counter() - started

    started = time.perf_counter()
    engine = Engine()
    p = prepare(engine, engine.load(source), Granularity.MONTH, options=options)
    act = activity(p)
    arrays = retention_arrays(p)
    ret = retention_table(p, arrays, 1.0)
    churn = churn_by_tenure(p, arrays, 1.0)
    cohorts = cohort_table(p, 1.0)
    seconds = time.perf_counter() - started
    kept = arrays.revenue_start.sum(axis=0)[: p.k] + arrays.revenue_contraction.sum(axis=0)

    started = time.perf_counter()
    metrics_table(p, with_events=False)  # every column of `boomerang metrics`, for the record
    full_seconds = time.perf_counter() - started

    out = pl.concat([act, ret.with_columns(pl.Series("revenue_kept", kept))], how="horizontal")
    out.write_parquet(folder / "ours_periods.parquet")
    churn.filter(pl.col("tenure_band") != "all").write_parquet(folder / "ours_churn.parquet")
    cohorts.write_parquet(folder / "ours_cohorts.parquet")
    assert cohorts_only.equals(cohorts)
    return {
        "seconds": seconds,
        "cohort_seconds": cohort_seconds,
        "metrics_table_seconds": full_seconds,
        "peak_mib": _peak_mib(),
    }


def worker_pandas(folder: Path) -> dict[str, float]:
    import pandas as pd

    sys.path.insert(0, str(ROOT))
    from bench.analytics_reference import compute

    bounds = json.loads((folder / "bounds.json").read_text())
    orders = pd.read_parquet(folder / "orders.parquet")
    started = time.perf_counter()
    ref = compute(orders, CURRENCY, bounds, WINDOW, BANDS)
    seconds = time.perf_counter() - started
    ref.periods.to_parquet(folder / "pandas_periods.parquet")
    ref.churn.to_parquet(folder / "pandas_churn.parquet")
    ref.cohorts.to_parquet(folder / "pandas_cohorts.parquet")
    return {"seconds": seconds, "peak_mib": _peak_mib()}


def worker_numpy(folder: Path) -> dict[str, float]:
    """The floor: the monthly cohort matrix (customers, revenue) in a few numpy passes."""
    import numpy as np
    import pyarrow.parquet as pq

    t = pq.read_table(folder / "orders.parquet")
    status = t["status"].to_numpy(zero_copy_only=False)
    cust = t["customer_id"].to_numpy(zero_copy_only=False)
    placed = t["placed_at"].to_numpy()
    total = t["total_minor"].to_numpy()
    refunded = t["refunded_minor"].to_numpy()
    started = time.perf_counter()
    keep = (status != "cancelled") & ~np.isnan(cust.astype(np.float64)) & (total >= 0)
    c = cust[keep].astype(np.int64)
    month = (
        (placed[keep] // 86_400_000_000)
        .astype("datetime64[D]")
        .astype("datetime64[M]")
        .astype(np.int64)
    )
    net = (total - refunded)[keep]
    first = np.full(int(c.max()) + 1, np.iinfo(np.int64).max)
    np.minimum.at(first, c, month)
    age = month - first[c]
    cohort = first[c] - month.min()
    ages = int(age.max()) + 1
    cell = cohort * ages + age
    cells = int(cell.max()) + 1
    pairs = np.sort(c * cells + cell)  # np.unique is far slower than sort + diff on numpy 2.4
    pairs = pairs[np.concatenate(([True], pairs[1:] != pairs[:-1]))]
    customers = np.bincount(pairs % cells, minlength=cells)
    revenue = np.bincount(cell, weights=net, minlength=int(cell.max()) + 1)
    seconds = time.perf_counter() - started
    np.save(folder / "numpy_cells.npy", np.stack([customers, revenue]))
    return {"seconds": seconds, "peak_mib": _peak_mib()}


# -- driver ---------------------------------------------------------------------------------


def run_worker(name: str, folder: Path) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", name, "--data", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{name} worker failed:\n{proc.stderr}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def compare(folder: Path) -> list[str]:
    """Differences between the two sides' outputs (empty when they agree)."""
    import numpy as np
    import pandas as pd

    problems = []
    ours = pd.read_parquet(folder / "ours_periods.parquet")
    ref = pd.read_parquet(folder / "pandas_periods.parquet")
    exact = ["orders", "customers", "repeat_customers", "revenue", "new_customers",
             "customers_at_start", "customers_at_end", "customers_gained", "churned_customers"]  # fmt: skip
    for col in exact:
        if not np.array_equal(ours[col].to_numpy(), ref[col].to_numpy()):
            problems.append(col)
    for col in ("revenue_at_start", "revenue_retained", "revenue_kept"):
        if not np.allclose(ours[col].to_numpy(), ref[col].to_numpy(), rtol=1e-9):
            problems.append(col)
    oc = pd.read_parquet(folder / "ours_churn.parquet").sort_values(["period_start", "tenure_band"])
    rc = pd.read_parquet(folder / "pandas_churn.parquet")
    starts = sorted(oc["period_start"].unique())
    rc["period_start"] = [starts[k] for k in rc["k"]]
    rc = rc.sort_values(["period_start", "tenure_band"])
    for col in ("customers_at_start", "churned_customers"):
        if not np.array_equal(oc[col].to_numpy(), rc[col].to_numpy()):
            problems.append(f"churn.{col}")
    cohorts = pd.read_parquet(folder / "ours_cohorts.parquet")
    rcoh = pd.read_parquet(folder / "pandas_cohorts.parquet").sort_values(["cohort", "age"])
    if not np.array_equal(cohorts["customers"].to_numpy(), rcoh["customers"].to_numpy()):
        problems.append("cohorts.customers")
    if not np.allclose(cohorts["revenue"].to_numpy(), rcoh["revenue"].to_numpy()):
        problems.append("cohorts.revenue")
    floor = np.load(folder / "numpy_cells.npy")
    if int(floor[0].sum()) != int(cohorts["customers"].sum()):
        problems.append("numpy.customers")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=1095)
    parser.add_argument("--worker", choices=["ours", "pandas", "numpy"])
    parser.add_argument("--data", type=Path)
    args = parser.parse_args()
    if args.worker:
        fn = {"ours": worker_ours, "pandas": worker_pandas, "numpy": worker_numpy}[args.worker]
        print(json.dumps(fn(args.data)))
        return
    with tempfile.TemporaryDirectory(prefix="boomerang-analytics-bench-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        size = simulate(args.customers, args.days, folder)
        (folder / "bounds.json").write_text(json.dumps(month_bounds(folder)))
        print(f"simulated {size['orders']:,} orders of {size['customers']:,} customers over "
              f"{args.days} days in {time.perf_counter() - started:.1f} s (in memory, no database; "
              "Arrow handed straight to the engine)")  # fmt: skip
        ours = run_worker("ours", folder)
        floor = run_worker("numpy", folder)
        pandas = run_worker("pandas", folder)
        problems = compare(folder)
    print(f"boomerang (Ibis + DuckDB): {ours['seconds']:.2f} s for metrics + cohorts, "
          f"peak {ours['peak_mib']:,.0f} MiB; cohort matrix alone {ours['cohort_seconds']:.2f} s; "
          f"every `boomerang metrics` column {ours['metrics_table_seconds']:.2f} s more")  # fmt: skip
    print(f"pandas baseline: {pandas['seconds']:.2f} s, peak {pandas['peak_mib']:,.0f} MiB")
    print(f"numpy floor (cohort matrix only): {floor['seconds']:.2f} s")
    print(
        "same numbers on both sides: " + ("yes" if not problems else "NO: " + ", ".join(problems))
    )
    print(f"BENCH analytics_metrics_cohorts value={ours['seconds']:.3f} unit=s "
          f"baseline=pandas ratio={pandas['seconds'] / ours['seconds']:.2f}")  # fmt: skip
    print(f"BENCH analytics_cohort_matrix value={ours['cohort_seconds']:.3f} unit=s "
          f"baseline=numpy_floor ratio={ours['cohort_seconds'] / floor['seconds']:.2f}")  # fmt: skip
    print(f"BENCH analytics_peak_memory value={ours['peak_mib']:.0f} unit=MiB "
          f"baseline=pandas ratio={ours['peak_mib'] / pandas['peak_mib']:.2f}")  # fmt: skip
    if problems:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
