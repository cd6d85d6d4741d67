"""Live re-evaluation of one customer's 50 segments after a new event, vs a full refresh.

    python bench/segments_live_bench.py [--customers 20000] [--samples 300]

A store (SQLite file, the embedded default) is simulated straight into the database, its 50
segments are refreshed once (the baseline: what a store would run without live updates),
then for ``--samples`` random customers a new event is inserted (not timed) and the
customer is re-evaluated with `services.segments.reevaluate_customer`: read its rows, apply
the 50 rules in Python with the last refresh's thresholds, write entered/exited events, in
one transaction. The figure is the median; p95 is printed too. The ratio is full refresh
time / live median: how many single-customer updates fit in one refresh.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert

from boomerang.services import segments as service
from boomerang.services import simulation
from boomerang.services.context import open_engine
from boomerang.store.schema import events

STORE = "bench"
CUSTOM = [
    ("views-{c}-7d", 'events.count(type="product_viewed", category="{c}")[7d] >= 2'),
    ("bought-{c}-90d", 'orders.count(category="{c}")[90d] >= 1'),
    ("spent-{c}-365d", 'orders.revenue(category="{c}")[365d] >= 60'),
]
GENERIC = [
    ("visited-48h", 'events.count(type="visit")[48h] >= 1'),
    ("carted-not-bought", 'events.count(type="added_to_cart")[7d] >= 1 and orders.count[7d] = 0'),
    ("big-aov", "orders.aov[365d] >= 120"),
    ("sms-reachable-repeat", "consent.sms and orders.count >= 2"),
    (
        "quiet-high-spenders",
        'segment("high-spenders") and events.days_since_last(type="visit") > 21',
    ),
    ("second-order-due", "orders.count = 1 and orders.days_since_last between 30 and 90"),
    ("email-cold", 'consent.email and events.count(type="email_opened")[90d] = 0'),
    ("top-5pct-revenue", "orders.revenue top 5%"),
]


def definitions_file(folder: Path, categories: list[str], wanted: int) -> Path:
    rules = list(GENERIC)
    for cat in categories:
        for name, rule in CUSTOM:
            rules.append((name.format(c=cat.lower().replace(" ", "-")), rule.format(c=cat)))
    lines = []
    for name, rule in rules[:wanted]:
        escaped = rule.replace("'", "''")
        lines.append(f"- name: {name}\n  where: '{escaped}'")
    path = folder / "bench_segments.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--segments", type=int, default=50)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="boomerang-live-"))
    db = str(folder / "store.db")
    t0 = time.perf_counter()
    simulation.run(
        customers=args.customers, days=args.days, seed=3, out_dir=None, db=db, store=STORE
    )
    print(f"simulated {args.customers:,} customers into {db} in {time.perf_counter() - t0:.1f} s")

    service.list_segments(db, STORE)  # installs the built-ins
    engine = open_engine(db)
    builtins = len(service.list_segments(db, STORE))
    categories = service.store_categories(engine, 1)
    service.create_segments(
        db, STORE, definitions_file(folder, categories, args.segments - builtins)
    )
    total = len(service.list_segments(db, STORE))
    t0 = time.perf_counter()
    result = service.refresh(db, STORE)
    full = time.perf_counter() - t0
    print(f"full refresh: {total} segments, {result.customers:,} customers in {full:.2f} s")

    rng = random.Random(11)
    ids = rng.sample(range(1, result.customers + 1), args.samples)
    timings, changes = [], 0
    for i, cid in enumerate(ids):
        with engine.begin() as conn:
            conn.execute(
                insert(events).values(
                    store_id=1, customer_id=cid, type="product_viewed",
                    occurred_at=time.time_ns() // 1000,
                    properties=f'{{"category": "{rng.choice(categories)}"}}',
                    dedupe_key=f"live-bench-{i}",
                )
            )  # fmt: skip
        t0 = time.perf_counter()
        live = service.reevaluate_customer(engine, STORE, cid)
        timings.append(time.perf_counter() - t0)
        changes += len(live.entered) + len(live.exited)
    engine.dispose()
    median = statistics.median(timings) * 1000
    p95 = sorted(timings)[int(0.95 * len(timings))] * 1000
    print(
        f"live re-evaluation of {total} segments: median {median:.2f} ms, p95 {p95:.2f} ms "
        f"over {len(timings)} customers ({changes} membership changes written)"
    )
    print(
        f"BENCH segments_live_reevaluation value={median:.2f} unit=ms "
        f"baseline=full_refresh ratio={full * 1000 / median:.1f}"
    )


if __name__ == "__main__":
    main()
