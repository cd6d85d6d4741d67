"""Import 1,000,000 Shopify-layout order lines: Boomerang vs the naive pandas baseline.

Boomerang validates every row, upserts idempotently and writes indexed tables in one
transaction. The baseline (`pandas.read_csv` + `DataFrame.to_sql`) does none of that.
Each side runs in its own process on a fresh SQLite file so peak memory is its own.

    python bench/import_bench.py [--lines N]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _peak_mib() -> float:
    """This process's peak resident memory (VmHWM resets at exec, unlike ru_maxrss)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_file(target: Path, lines: int) -> int:
    """Simulate a store large enough, keep its first ``lines`` order lines."""
    import polars as pl

    from boomerang.services import simulation

    export = target.parent / "export"
    pilot = 20_000  # lines per customer from a small run, then one run sized with 15% margin
    simulation.run(customers=pilot, days=730, seed=5, out_dir=export, db="", store="bench")
    per_customer = pl.read_csv(export / "orders_export.csv", infer_schema=False).height / pilot
    customers = int(lines / per_customer * 1.15)
    while True:
        simulation.run(customers=customers, days=730, seed=5, out_dir=export, db="", store="bench")
        frame = pl.read_csv(export / "orders_export.csv", infer_schema=False)
        if frame.height >= lines:
            break
        customers = int(customers * 1.2 * lines / max(frame.height, 1))
    frame.head(lines).write_csv(target)
    return lines


def run_boomerang(path: Path, db: Path) -> dict[str, float]:
    from boomerang.services.imports import run_import

    started = time.perf_counter()
    summary = run_import("shopify-orders", path, db=str(db), store="bench", allow_rejects=10**9)
    seconds = time.perf_counter() - started
    again = time.perf_counter()
    rerun = run_import("shopify-orders", path, db=str(db), store="bench", allow_rejects=10**9)
    rerun_seconds = time.perf_counter() - again
    assert rerun.result.orders.inserted == rerun.result.orders.updated == 0
    return {
        "rows": summary.rows_read,
        "rejected": summary.rows_rejected,
        "seconds": seconds,
        "rerun_seconds": rerun_seconds,
        "peak_mib": _peak_mib(),
    }


def run_baseline(path: Path, db: Path) -> dict[str, float]:
    import sqlite3

    import pandas as pd

    started = time.perf_counter()
    frame = pd.read_csv(path)
    with sqlite3.connect(db) as conn:
        frame.to_sql("orders", conn, index=False)
    return {"rows": len(frame), "seconds": time.perf_counter() - started, "peak_mib": _peak_mib()}


def _child(which: str, path: str, db: str) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", which, path, db],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--child", nargs=3, metavar=("WHICH", "FILE", "DB"))
    args = parser.parse_args()
    if args.child:
        which, path, db = args.child
        runner = run_boomerang if which == "boomerang" else run_baseline
        print(json.dumps(runner(Path(path), Path(db))))
        return
    with tempfile.TemporaryDirectory(prefix="boomerang-bench-") as tmp:
        source = Path(tmp) / "orders_export.csv"
        started = time.perf_counter()
        lines = make_file(source, args.lines)
        print(f"simulated {lines:,} Shopify order lines in {time.perf_counter() - started:.1f} s")
        ours = _child("boomerang", str(source), str(Path(tmp) / "boomerang.db"))
        naive = _child("baseline", str(source), str(Path(tmp) / "naive.db"))
    ours_rate = ours["rows"] / ours["seconds"]
    naive_rate = naive["rows"] / naive["seconds"]
    print(
        f"boomerang: {ours['rows']:,.0f} rows ({ours['rejected']:,.0f} rejected) in "
        f"{ours['seconds']:.2f} s = {ours_rate:,.0f} rows/s, peak {ours['peak_mib']:,.0f} MiB; "
        f"re-import (0 changes) {ours['rerun_seconds']:.2f} s"
    )
    print(
        f"naive pandas read_csv + to_sql: {naive['rows']:,.0f} rows in {naive['seconds']:.2f} s "
        f"= {naive_rate:,.0f} rows/s, peak {naive['peak_mib']:,.0f} MiB"
    )
    print(
        f"BENCH import_rows_per_s value={ours_rate:.0f} unit=rows/s "
        f"baseline=pandas_read_csv_to_sql ratio={ours_rate / naive_rate:.2f}"
    )
    print(
        f"BENCH import_peak_memory value={ours['peak_mib']:.0f} unit=MiB "
        f"baseline=pandas_read_csv_to_sql ratio={ours['peak_mib'] / naive['peak_mib']:.2f}"
    )


if __name__ == "__main__":
    main()
