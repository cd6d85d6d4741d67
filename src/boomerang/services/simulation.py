"""Simulate a store: fill a database directly, or write Shopify-layout exports to import.

Either way the true parameters go to a truth.json the analytics can be checked against:
inside ``--out-dir``, or next to the SQLite file (``<db stem>.<store>.truth.json``; in the
current directory for a server URL) in direct mode.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from boomerang.errors import InputError
from boomerang.services.imports import apply_frames
from boomerang.simulate import simulate_store
from boomerang.simulate.params import SimulationParams
from boomerang.simulate.shopify_csv import write_exports, write_truth
from boomerang.simulate.store import SimulatedStore
from boomerang.store.repos.imports import ApplyResult

MAX_CUSTOMERS = 10_000_000
MAX_DAYS = 20 * 366


@dataclass
class SimulationResult:
    """What was generated and where it went (a directory of files or a store)."""

    seed: int
    days: int
    counts: dict[str, object]
    truth_path: Path
    out_dir: Path | None = None
    files: list[Path] = field(default_factory=list)
    db: str | None = None
    store: str | None = None
    applied: ApplyResult | None = None
    seconds: float = 0.0

    def describe(self) -> list[str]:
        c = self.counts
        by_type = c.get("events_by_type")
        revenue = int(str(c["revenue_minor"])) / 100
        lines = [
            f"Simulated {c['customers']:,} customers over {self.days:,} days (seed {self.seed}): "
            f"{c['buyers']:,} buyers ({c['replenishers']:,} replenish a consumable), "
            f"{c['subscribers']:,} newsletter subscribers who never buy, "
            f"{c['anonymous_visitors']:,} anonymous visitors",
            f"Orders: {c['orders']:,} ({c['guest_orders']:,} guest checkouts, "
            f"{c['offline_orders']:,} in store, {c['cancelled_orders']:,} cancelled, "
            f"{c['refunded_orders']:,} refunded, {c['partially_refunded_orders']:,} partially "
            f"refunded) with {c['lines']:,} lines",
            f"Revenue: {revenue:,.2f} {c['currency']} (net of refunds, cancelled orders excluded)",
            f"Events: {c['events']:,}"
            + (
                " (" + ", ".join(f"{k} {v:,}" for k, v in by_type.items()) + ")"
                if isinstance(by_type, dict)
                else ""
            ),
        ]
        if self.out_dir is not None:
            lines.append(f"Wrote {', '.join(p.name for p in self.files)} to {self.out_dir}")
        elif self.applied is not None:
            a = self.applied
            lines.append(
                f"Filled store {self.store!r} in {self.db}: customers {a.customers.inserted:,} "
                f"new / {a.customers.updated:,} updated, orders {a.orders.inserted:,} new / "
                f"{a.orders.updated:,} updated, products {a.products.inserted:,} new, "
                f"consents {a.consents_recorded:,}, events {a.events_inserted:,} new"
            )
        lines.append(f"True parameters: {self.truth_path}")
        lines.append(f"Took {self.seconds:.1f} s")
        return lines


def truth_path_for(db: str, store: str) -> Path:
    """Where direct mode puts truth.json: beside the SQLite file, else the current directory."""
    if db.startswith("sqlite:///"):
        db = db[len("sqlite:///") :]
    elif "://" in db:
        return Path.cwd() / f"{store}.truth.json"
    path = Path(db).expanduser()
    return path.with_name(f"{path.stem}.{store}.truth.json")


def _check(customers: int, days: int) -> None:
    if not 1 <= customers <= MAX_CUSTOMERS:
        raise InputError(
            f"--customers must be between 1 and {MAX_CUSTOMERS:,} (got {customers:,})",
            hint="pick a smaller store",
        )
    if not 1 <= days <= MAX_DAYS:
        raise InputError(
            f"--days must be between 1 and {MAX_DAYS:,} (got {days:,})",
            hint="simulate at most twenty years",
        )


def run(
    *,
    customers: int,
    days: int,
    seed: int,
    out_dir: Path | None,
    db: str,
    store: str,
    end_date: str | None = None,
) -> SimulationResult:
    """Generate the store, then write the exports (``out_dir``) or apply it to ``db``/``store``.

    ``end_date`` (YYYY-MM-DD, exclusive) moves the history's end; by default the simulator's
    fixed date, so a seed always gives the same rows.
    """
    _check(customers, days)
    started = time.perf_counter()
    params = SimulationParams() if end_date is None else SimulationParams(end_date=end_date)
    sim: SimulatedStore = simulate_store(customers, days, seed, params)
    counts = sim.counts()
    if out_dir is not None:
        files = write_exports(sim, out_dir)
        truth = next(p for p in files if p.name == "truth.json")
        return SimulationResult(
            seed=seed,
            days=days,
            counts=counts,
            truth_path=truth,
            out_dir=out_dir,
            files=files,
            seconds=time.perf_counter() - started,
        )
    applied = apply_frames(db, store, sim.store_frames(), currency=sim.params.currency)
    truth = truth_path_for(db, store)
    truth.parent.mkdir(parents=True, exist_ok=True)
    write_truth(sim, truth, truth.with_name(truth.name.replace(".json", "_customers.csv")))
    return SimulationResult(
        seed=seed,
        days=days,
        counts=counts,
        truth_path=truth,
        db=db,
        store=store,
        applied=applied,
        seconds=time.perf_counter() - started,
    )
