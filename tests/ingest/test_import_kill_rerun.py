"""SIGKILL an import at random points, run it again: the store equals one clean run."""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.store_digest import table_digests

HEADER = ["Name", "Email", "Financial Status", "Accepts Marketing", "Currency", "Subtotal",
          "Shipping", "Taxes", "Total", "Created at", "Lineitem quantity", "Lineitem name",
          "Lineitem price", "Lineitem sku", "Billing Name", "Billing Country"]  # fmt: skip


def _write_orders(path: Path, orders: int, seed: int) -> None:
    rng = random.Random(seed)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        for n in range(orders):
            lines = [(rng.randint(1, 3), rng.randint(100, 9000)) for _ in range(rng.randint(1, 4))]
            subtotal = sum(q * p for q, p in lines)
            for i, (qty, price) in enumerate(lines):
                head = i == 0
                w.writerow([
                    f"#{1000 + n}",
                    f"c{rng.randint(0, orders // 3)}@example.com" if head else "",
                    "paid" if head else "", "yes" if head else "", "USD" if head else "",
                    f"{subtotal / 100:.2f}" if head else "", "5.00" if head else "",
                    "0.00" if head else "", f"{subtotal / 100 + 5:.2f}" if head else "",
                    f"2025-{1 + n % 12:02d}-{1 + n % 28:02d} 10:{n % 60:02d}:00 +0000" if head else "",
                    str(qty), f"Product {price % 50}", f"{price / 100:.2f}", f"SKU-{price % 50}",
                    "Ann Lee" if head else "", "US" if head else "",
                ])  # fmt: skip


def _import(path: Path, db: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "boomerang", "import", "shopify-orders", str(path), "--db", db],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "BOOMERANG_STORE": "shop"},
    )


@pytest.mark.slow
def test_killed_imports_then_rerun_equal_one_clean_run(db: str, tmp_path: Path) -> None:
    source = tmp_path / "orders.csv"
    _write_orders(source, orders=6000, seed=3)
    clean_db = str(tmp_path / "clean.db")
    started = time.perf_counter()  # the clean run is also the timing run
    assert _import(source, clean_db).wait(timeout=120) == 0
    duration = time.perf_counter() - started
    expected = table_digests(clean_db)

    rng = random.Random(11)
    kills = 0
    for _ in range(5):
        proc = _import(source, db)
        # Kill somewhere in the first 60% of a clean run's time: later runs may be faster
        # than the timing run when the machine's load drops (CI shares 2 cores).
        time.sleep(rng.uniform(0.15, 0.6) * duration)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=120)
    assert kills >= 3, "the import finished before most kill points: make the file larger"
    assert _import(source, db).wait(timeout=120) == 0
    assert table_digests(db) == expected
