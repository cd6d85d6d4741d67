"""Full segment refresh of 30 segments on 1,000,000 simulated customers: Boomerang vs pandas.

    python bench/segments_bench.py [--customers 1000000] [--days 730] [--runs 2]

What is compared. A *full refresh* evaluates every segment for every customer: the 12 plain
built-ins, the 11 RFM segments and 7 rules written in the text syntax that cover what the
built-ins do not (event property filters with windows, order-line filters, AOV, consent per
channel, every prediction field, top-x%, nested not/any, a segment reference, country lists,
tags, dates and category affinity). Boomerang compiles the plan into one Ibis query on
DuckDB (`segments.bulk.evaluate_all`); the baseline is the same 30 rules hand-written in
plain pandas (bench/segments_reference.py), vectorised groupby/merge, no per-customer loops.

Why: the refresh is the job that re-evaluates every segment over the whole store, and it
must give exactly the members that the documented semantics (`segments.bulk`, `.single`,
`.rfm`) define. The run FAILS when any segment's member set differs between the two sides.

Data. `boomerang.simulate.simulate_store` with `benchmark_params()` (about 10 orders per
customer; the tracker records 22 % of sessions so events land near 20 per customer), plus a
few records the simulator never produces so that the comparison exercises those rules too:
return orders (negative totals, some with a line, some dated after ``as_of``), orders in
another currency, push-consent records (ties on ``occurred_at`` decided by ``id``, records
after ``as_of``), customers without a creation time or created after ``as_of``. Predictions
are drawn with numpy from a fixed seed. ``as_of`` is the simulated history's end,
2026-11-01 00:00 UTC.

The event property ``category`` is extracted from the events' JSON ``properties`` once,
while the data is written (its own process), with polars ``str.json_path_match("$.category")``
into the column ``prop_column("category")``: neither side times it. Each side runs in its own
process reading the Parquet files (not timed: Arrow tables are cast to the column types of
`segments.data`, pandas gets `read_parquet`'s defaults), so the peak memory printed is its
own. Boomerang's timing starts from Arrow tables in memory and includes `Engine()`, the
zero-copy table registration, the thresholds (RFM cuts, top-x%) and the per-customer flags
back as Arrow; pandas' timing starts from DataFrames in memory and ends with the flags
DataFrame. Each side runs ``--runs`` times (alternating); the best time counts.

Full size (2 cores, other jobs running): ~20M events, ~10M orders; Boomerang ~13-20 s and
~4.2 GiB peak, pandas ~34 s and ~9 GiB; the whole run takes about 4 minutes.
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
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SEED = 2026
EXTRA_SEED = 7  # the injected edge cases and the predictions
CURRENCY = "USD"
AS_OF = 1_793_491_200_000_000  # 2026-11-01T00:00:00Z in epoch micros: the simulated data's end
DAY = 86_400_000_000
TRACKING_RATE = 0.22  # benchmark_params() has 0.2: ~18 events per customer; this gives ~20

#: The 7 rules of our own (text syntax), besides the 12 plain built-ins and the 11 RFM ones.
CUSTOM: tuple[tuple[str, str], ...] = (
    ("coffee-browsers",
     'events.count(type="product_viewed", category="Coffee")[30d] >= 2 '
     'and not orders.count(category="Coffee")[60d] >= 1'),
    ("apparel-spenders",
     'orders.revenue(category=["Apparel", "Accessories"])[365d] >= 100 '
     'and orders.days_since_last(category="Apparel") <= 120'),
    ("big-baskets-europe",
     'orders.aov[365d] >= 120 and customer.country in ["DE", "FR", "GB"] '
     "and orders.first_at < 2026-01-01"),
    ("sms-or-push-only",
     '(consent.sms or consent.push or customer.tags contains "newsletter") '
     "and not consent.email"),
    ("valuable-slipping",
     "predictions.clv top 20% and predictions.p_alive between 0.2 and 0.8 "
     'and (predictions.risk_band = "high" or predictions.days_to_next_order < -30) '
     "and predictions.expected_purchases >= 0.5"),
    ("vip-winback",
     'segment("high-spenders") and not (orders.days_since_last <= 60 '
     'or (events.count(type="visit")[30d] >= 1 and not consent.email))'),
    ("coffee-lovers-north-america",
     'customer.country in ["US", "CA"] and affinity.top_category[180d] = "Coffee" '
     'and affinity.share(category="Coffee")[180d] >= 0.5 and customer.days_since_created >= 90'),
)  # fmt: skip


def _peak_mib() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss on Linux, it is not
    inherited from the parent across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def definitions() -> list[Any]:
    """The 30 segments: built-ins without the per-category affinity ones, RFM, our 7."""
    from boomerang.segments.builtin import builtin_definitions
    from boomerang.segments.model import parse_definition
    from boomerang.simulate.catalogue import CATEGORIES

    builtins = builtin_definitions(c.name for c in CATEGORIES)
    chosen = [d for d in builtins if not d.name.startswith("affinity-")]
    own = [parse_definition({"name": name, "where": rule}) for name, rule in CUSTOM]
    out = chosen + own
    assert len(out) == 30, len(out)
    return out


# -- data -----------------------------------------------------------------------------------


def simulate(customers: int, days: int, folder: Path) -> dict[str, int]:
    """The store's facts as Parquet, in the columns of `boomerang.segments.data`."""
    import numpy as np
    import polars as pl

    from boomerang.segments.data import prop_column
    from boomerang.simulate import benchmark_params, simulate_store

    params = dataclasses.replace(benchmark_params(), tracking_rate=TRACKING_RATE)
    sim = simulate_store(customers, days, SEED, params)
    if sim.calendar.end_us != AS_OF:
        raise SystemExit(f"the simulated history ends at {sim.calendar.end_us}, not {AS_OF}")
    rng = np.random.default_rng(EXTRA_SEED)
    people = sim.customers()
    n = people.height

    # Customers: a few without a creation time, a few created after as_of (not evaluated).
    created = people["created_at"].to_numpy().copy()
    pick = rng.random(n)
    created_at = pl.Series(
        np.where(pick < 0.001, AS_OF + (pick * 1e4 * DAY).astype(np.int64), created)
    )
    created_at = created_at.set(pl.Series((pick >= 0.001) & (pick < 0.003)), None)
    people.with_columns(created_at=created_at).select(
        pl.col("idx").alias("id"),
        "created_at",
        pl.when(pl.col("registered")).then(pl.lit("registered")).otherwise(pl.lit("guest"))
        .alias("account_status"),
        "country",
        pl.when(pl.col("province") != "").then(pl.col("province")).alias("region"),
        "city",
        "zip",
        "timezone",
        pl.when(pl.col("segment") == "subscriber").then(pl.lit(["newsletter"]))
        .otherwise(pl.lit([], dtype=pl.List(pl.String))).alias("tags"),
        pl.col("email").is_not_null().alias("has_email"),
        pl.col("phone").is_not_null().alias("has_phone"),
    ).write_parquet(folder / "customers.parquet")  # fmt: skip

    # Orders, plus returns (negative totals) of 0.5 % of live customer orders, and 0.3 % of
    # orders in another currency.
    book = sim.book.orders
    owner = book["owner"].to_numpy()
    orders = book.select(
        pl.col("order_idx").alias("id"),
        pl.when(pl.col("owner") >= 0).then(pl.col("owner")).alias("customer_id"),
        "placed_at",
        pl.when(pl.Series(rng.random(book.height) < 0.003)).then(pl.lit("EUR"))
        .otherwise(pl.lit(CURRENCY)).alias("currency"),
        "total_minor",
        "refunded_minor",
        "status",
    )  # fmt: skip
    live = np.flatnonzero((owner >= 0) & (book["status"] != "cancelled").to_numpy())
    src = live[rng.random(len(live)) < 0.005]
    ret_ids = np.arange(book.height, book.height + len(src), dtype=np.int64)
    ret_total = -np.ceil(book["total_minor"].to_numpy()[src] * rng.uniform(0.2, 1.0, len(src)))
    returns = pl.DataFrame(
        {
            "id": ret_ids,
            "customer_id": owner[src],
            "placed_at": book["placed_at"].to_numpy()[src]
            + (rng.uniform(1, 40, len(src)) * DAY).astype(np.int64),
            "currency": CURRENCY,
            "total_minor": ret_total.astype(np.int64),
            "refunded_minor": np.zeros(len(src), dtype=np.int64),
            "status": "paid",
        }
    )
    orders = pl.concat([orders, returns])
    orders.write_parquet(folder / "orders.parquet")

    products = sim.catalogue.frame.select("sku", "category")
    product = sim.book.lines["product"].to_numpy()
    lines = sim.book.lines.select(
        pl.col("order_idx").alias("order_id"),
        products["sku"].gather(product),
        products["category"].gather(product),
        "quantity",
        "unit_price_minor",
        "discount_minor",
    )
    with_line = rng.random(len(src)) < 0.5  # half the returns carry a (returned) line
    picked = rng.integers(0, products.height, int(with_line.sum()))
    return_lines = pl.DataFrame(
        {
            "order_id": ret_ids[with_line],
            "sku": products["sku"].gather(picked),
            "category": products["category"].gather(picked),
            "quantity": np.full(len(picked), -1, dtype=np.int64),
            "unit_price_minor": -ret_total[with_line].astype(np.int64),
            "discount_minor": np.zeros(len(picked), dtype=np.int64),
        }
    )
    lines = pl.concat([lines, return_lines])
    lines.write_parquet(folder / "lines.parquet")

    # Events: the category property extracted once, here (untimed for both sides).
    events = sim.events.select(
        pl.when(pl.col("person") >= 0).then(pl.col("person")).alias("customer_id"),
        "type",
        "occurred_at",
        pl.col("properties").str.json_path_match("$.category").alias(prop_column("category")),
    )
    events.write_parquet(folder / "events.parquet")
    event_count, identified = events.height, int(events["customer_id"].is_not_null().sum())
    del events

    # Consents: the simulator's (email granted at creation, withdrawn on unsubscribing, SMS
    # granted at creation) plus push records with ties and records after as_of.
    email = people.filter(pl.col("email_opt_in")).select(
        customer_id="idx",
        channel=pl.lit("email"),
        status=pl.lit("granted"),
        occurred_at="created_at",
    )
    withdrawn = people.filter(pl.col("unsubscribed_at").is_not_null()).select(
        customer_id="idx", channel=pl.lit("email"), status=pl.lit("withdrawn"),
        occurred_at=pl.max_horizontal("unsubscribed_at", pl.col("created_at") + 1_000_000),
    )  # fmt: skip
    sms = people.filter(pl.col("sms_opt_in")).select(
        customer_id="idx", channel=pl.lit("sms"), status=pl.lit("granted"), occurred_at="created_at"
    )
    who = np.flatnonzero(rng.random(n) < 0.10)
    who = np.repeat(who, 1 + rng.poisson(0.6, len(who)))
    at = created[who] + (rng.random(len(who)) * (AS_OF - created[who])).astype(np.int64)
    same = np.concatenate(([False], who[1:] == who[:-1])) & (rng.random(len(who)) < 0.3)
    at = np.where(same, np.roll(at, 1), at)  # a tie with the customer's previous record
    late = rng.random(len(who)) < 0.02
    at = np.where(late, AS_OF + (rng.random(len(who)) * 10 * DAY).astype(np.int64), at)
    push = pl.DataFrame(
        {
            "customer_id": who.astype(np.int64),
            "channel": "push",
            "status": np.where(rng.random(len(who)) < 0.6, "granted", "withdrawn"),
            "occurred_at": at,
        }
    )
    consents = pl.concat([email, withdrawn, sms, push])
    consents = consents.with_columns(
        id=pl.Series(rng.permutation(consents.height).astype(np.int64))
    )  # ids in no particular order, so a tie on occurred_at is decided by a random id
    consents.write_parquet(folder / "consents.parquet")

    # Predictions of a CLV fit for 92 % of customers (a few without P(alive)).
    scored = np.sort(rng.permutation(n)[: int(n * 0.92)])
    m = len(scored)
    p_alive = rng.beta(2.0, 2.0, m)
    p_alive_col = pl.Series(p_alive).set(pl.Series(rng.random(m) < 0.01), None)
    risk = np.where(p_alive < 0.3, "high", np.where(p_alive < 0.7, "medium", "low"))
    predictions = pl.DataFrame(
        {
            "customer_id": scored.astype(np.int64),
            "p_alive": p_alive_col,
            "clv_minor": np.rint(rng.lognormal(9.0, 1.2, m)).astype(np.int64),
            "expected_purchases": rng.gamma(1.5, 1.0, m),
            "next_order_at": AS_OF + (rng.normal(0.0, 60.0, m) * DAY).astype(np.int64),
            "risk_band": pl.Series(risk).set(p_alive_col.is_null(), None),
        }
    )
    predictions.write_parquet(folder / "predictions.parquet")
    return {
        "customers": n,
        "orders": orders.height,
        "returns": len(src),
        "lines": lines.height,
        "events": event_count,
        "identified_events": identified,
        "consents": consents.height,
        "predictions": m,
    }


# -- workers (one process each) -------------------------------------------------------------

INPUTS = ("customers", "orders", "lines", "events", "consents", "predictions")


def worker_ours(folder: Path) -> dict[str, Any]:
    import polars as pl
    import pyarrow.parquet as pq

    from boomerang.analytics.engine import Engine
    from boomerang.segments.bulk import evaluate_all
    from boomerang.segments.data import SegmentData
    from boomerang.segments.plan import build_plan

    tables = {name: _arrow(pq.read_table(folder / f"{name}.parquet"), name) for name in INPUTS}
    data = SegmentData(currency=CURRENCY, **tables)
    plan = build_plan(definitions())
    started = time.perf_counter()
    evaluation = evaluate_all(Engine(), data, plan, AS_OF)
    seconds = time.perf_counter() - started
    flags = pl.from_arrow(evaluation.flags)
    assert isinstance(flags, pl.DataFrame)
    _write_members(flags, plan.order, folder / "ours_members.parquet")
    return {
        "seconds": seconds,
        "peak_mib": _peak_mib(),
        "evaluated": flags.height,
        "features": len(plan.features),
    }


def _arrow(table: Any, name: str) -> Any:
    """The column types of `boomerang.segments.data` (what the store's loader hands over):
    polars writes text as large_string, which the engine would otherwise re-cast (copy)
    inside the timing. Event property columns are text."""
    import pyarrow as pa

    from boomerang.segments import data

    declared = {
        "customers": data.CUSTOMER_COLUMNS,
        "orders": data.ORDER_COLUMNS,
        "lines": data.LINE_COLUMNS,
        "events": data.EVENT_COLUMNS,
        "consents": data.CONSENT_COLUMNS,
        "predictions": data.PREDICTION_COLUMNS,
    }[name]
    return pa.table({c: table[c].cast(declared.get(c, pa.string())) for c in table.column_names})


def worker_pandas(folder: Path) -> dict[str, Any]:
    import pandas as pd
    import polars as pl

    sys.path.insert(0, str(ROOT))
    from bench.segments_reference import refresh

    frames = {name: pd.read_parquet(folder / f"{name}.parquet") for name in INPUTS}
    started = time.perf_counter()
    flags = refresh(**frames, as_of=AS_OF, currency=CURRENCY)
    seconds = time.perf_counter() - started
    out = pl.from_pandas(flags.reset_index(names="customer_id"))
    _write_members(out, list(flags.columns), folder / "pandas_members.parquet")
    return {"seconds": seconds, "peak_mib": _peak_mib(), "evaluated": len(flags)}


def _write_members(flags: Any, names: list[str], path: Path) -> None:
    """Long format: one row per (segment, member)."""
    import polars as pl

    parts = [
        flags.filter(pl.col(name)).select(pl.lit(name).alias("segment"), "customer_id")
        for name in names
    ]
    pl.concat(parts).write_parquet(path)


# -- driver ---------------------------------------------------------------------------------


def run_worker(name: str, folder: Path, *extra: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", name, "--data", str(folder), *extra],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{name} worker failed:\n{proc.stderr}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def compare(folder: Path, defs: list[Any]) -> list[str]:
    """Print each segment's member counts; return the segments whose members differ."""
    import polars as pl

    ours = pl.read_parquet(folder / "ours_members.parquet")
    ref = pl.read_parquet(folder / "pandas_members.parquet")
    problems = []
    print(f"{'segment':<30} {'kind':<8} {'boomerang':>10} {'pandas':>10}  same")
    for d in defs:
        a = ours.filter(pl.col("segment") == d.name)["customer_id"].sort()
        b = ref.filter(pl.col("segment") == d.name)["customer_id"].sort()
        same = a.len() == b.len() and bool((a == b).all())
        note = "yes"
        if not same:
            problems.append(d.name)
            only_ours = a.filter(~a.is_in(b.implode()))
            only_ref = b.filter(~b.is_in(a.implode()))
            note = (
                f"NO: {only_ours.len()} only in boomerang (e.g. {only_ours.head(3).to_list()}), "
                f"{only_ref.len()} only in pandas (e.g. {only_ref.head(3).to_list()})"
            )
        print(f"{d.name:<30} {d.kind:<8} {a.len():>10,} {b.len():>10,}  {note}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--runs", type=int, default=2, help="runs per side; the best counts")
    parser.add_argument("--worker", choices=["simulate", "ours", "pandas"])
    parser.add_argument("--data", type=Path)
    args = parser.parse_args()
    if args.worker == "simulate":
        print(json.dumps(simulate(args.customers, args.days, args.data)))
        return
    if args.worker:
        fn = {"ours": worker_ours, "pandas": worker_pandas}[args.worker]
        print(json.dumps(fn(args.data)))
        return
    wall = time.perf_counter()
    defs = definitions()
    with tempfile.TemporaryDirectory(prefix="boomerang-segments-bench-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        size = run_worker(
            "simulate", folder, "--customers", str(args.customers), "--days", str(args.days)
        )  # in its own process too, so the driver stays small while the sides run
        print(f"simulated {size['customers']:,} customers, {size['orders']:,} orders "
              f"({size['returns']:,} returns), {size['lines']:,} lines, {size['events']:,} events "
              f"({size['identified_events']:,} of customers), {size['consents']:,} consent "
              f"records, {size['predictions']:,} predictions over {args.days} days "
              f"in {time.perf_counter() - started:.1f} s (written to Parquet)")  # fmt: skip
        ours_runs, pandas_runs = [], []
        for run in range(args.runs):
            ours_runs.append(run_worker("ours", folder))
            pandas_runs.append(run_worker("pandas", folder))
            print(f"run {run + 1}: boomerang {ours_runs[-1]['seconds']:.2f} s "
                  f"(peak {ours_runs[-1]['peak_mib']:,.0f} MiB), pandas "
                  f"{pandas_runs[-1]['seconds']:.2f} s (peak {pandas_runs[-1]['peak_mib']:,.0f} MiB)")  # fmt: skip
        problems = compare(folder, defs)
    ours = min(ours_runs, key=lambda r: r["seconds"])
    pandas = min(pandas_runs, key=lambda r: r["seconds"])
    if ours["evaluated"] != pandas["evaluated"]:
        problems.append(f"customers evaluated ({ours['evaluated']} vs {pandas['evaluated']})")
    print(f"customers evaluated: {ours['evaluated']:,} (created before as_of or undated); "
          f"{ours['features']} feature columns")  # fmt: skip
    print(f"boomerang (Ibis + DuckDB): {ours['seconds']:.2f} s for 30 segments, "
          f"peak {ours['peak_mib']:,.0f} MiB (best of {args.runs})")  # fmt: skip
    print(f"pandas baseline: {pandas['seconds']:.2f} s, peak {pandas['peak_mib']:,.0f} MiB "
          f"(best of {args.runs})")  # fmt: skip
    print(
        "same members on both sides: " + ("yes" if not problems else "NO: " + ", ".join(problems))
    )
    print(f"whole run {time.perf_counter() - wall:.0f} s")
    if problems:
        raise SystemExit(f"FAILED: member sets differ for {len(problems)} segment(s)")
    print(f"BENCH segments_full_refresh value={ours['seconds']:.3f} unit=s "
          f"baseline=pandas ratio={pandas['seconds'] / ours['seconds']:.2f}")  # fmt: skip
    print(f"BENCH segments_pandas_refresh value={pandas['seconds']:.3f} unit=s "
          "baseline=pandas ratio=1.00")  # fmt: skip


if __name__ == "__main__":
    main()
