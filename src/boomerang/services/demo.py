"""The demo job: simulate a store as Shopify exports, import them, and summarise the result.

It exercises the real importers on realistic files, so `make demo` shows what a store owner
would see after pointing Boomerang at their own exports.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from boomerang.services import segments, simulation
from boomerang.services.admin import store_overview
from boomerang.services.analytics import ReportResult, build_report
from boomerang.services.imports import ImportSummary, run_import
from boomerang.store.repos.overview import StoreCounts

DEMO_STORE = "demo"
IMPORT_ORDER = (
    ("shopify-customers", "customers_export.csv"),
    ("shopify-orders", "orders_export.csv"),
    ("events", "events.jsonl"),
)


@dataclass
class DemoResult:
    db: str
    export_dir: Path
    simulation: list[str]
    imports: list[ImportSummary] = field(default_factory=list)
    totals: StoreCounts | None = None
    report: ReportResult | None = None
    segments: segments.RefreshResult | None = None


def run_demo(
    directory: Path,
    *,
    customers: int = 20_000,
    days: int = 730,
    seed: int = 7,
    on_step: Callable[[str], None] | None = None,
) -> DemoResult:
    """Fresh demo store in ``directory`` (removed first): simulate, import, total."""
    step = on_step or (lambda _msg: None)
    if directory.exists():
        shutil.rmtree(directory)
    export = directory / "export"
    export.mkdir(parents=True)
    db = str(directory / "boomerang.db")
    step(f"simulating {customers:,} customers over {days} days")
    # The history ends today, so segments evaluated "now" see a store that is trading.
    today = datetime.now(UTC).date().isoformat()
    sim = simulation.run(
        customers=customers, days=days, seed=seed, out_dir=export, db=db, store=DEMO_STORE,
        end_date=today,
    )  # fmt: skip
    result = DemoResult(db=db, export_dir=export, simulation=sim.describe())
    for kind, name in IMPORT_ORDER:
        step(f"importing {name} as {kind}")
        result.imports.append(
            run_import(
                kind,
                export / name,
                db=db,
                store=DEMO_STORE,
                rejects_path=directory / f"{name}.rejects.csv",
            )
        )
    result.totals = next(s for s in store_overview(db) if s.name == DEMO_STORE)
    step("refreshing segments")
    result.segments = segments.refresh(db, DEMO_STORE)
    step("writing the retention report")
    result.report = build_report(db, DEMO_STORE, directory / "report.html")
    return result
