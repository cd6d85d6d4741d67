"""Scale smoke test: 100,000 customers are generated vectorised (the time is printed, never
asserted; bench/ holds the real benchmarks)."""

from __future__ import annotations

import time

from boomerang.simulate import simulate_store


def test_hundred_thousand_customers_generate_quickly() -> None:
    started = time.perf_counter()
    sim = simulate_store(100_000, 730, 1)
    generated = time.perf_counter() - started
    frames = sim.store_frames()
    total = time.perf_counter() - started
    counts = sim.counts()
    print(
        f"\n100,000 customers / 730 days: {counts['orders']:,} orders, {counts['lines']:,} lines, "
        f"{counts['events']:,} events generated in {generated:.1f} s, store frames in {total:.1f} s"
    )
    assert counts["customers"] == 100_000
    assert frames["orders"].height == counts["orders"] > 150_000
    assert frames["events"].height == counts["events"]
