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

from boomerang.domain.clock import MICROS_PER_DAY, to_micros
from boomerang.services import campaign_runtime, flow_library, segments, simulation
from boomerang.services.admin import store_overview
from boomerang.services.analytics import ReportResult, build_report
from boomerang.services.campaigns import RunSummary
from boomerang.services.imports import ImportSummary, run_import
from boomerang.store.repos.overview import StoreCounts

DEMO_STORE = "demo"
#: Days of simulated campaign time the demo runs the flow library over.
FLOW_DAYS = 90
#: Library flows the demo leaves off: the two broadcasts would send about 900,000 and
#: 60,000 messages in 90 days to the 10,000 engaged customers, and browse abandonment and
#: replenishment another 18,000 runs; `boomerang flows library install NAME` adds them.
DEMO_SKIPS = ("daily-deal", "newsletter", "browse-abandonment", "replenishment")
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
    flows: RunSummary | None = None
    messages_dir: Path | None = None


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
    # Campaigns over the last FLOW_DAYS days of simulated time: segments as they were
    # then (so at-risk customers enter the win-back series), the library's flows from
    # then, run to today on a 6-hour clock; every message goes to a file.
    midnight = datetime.combine(datetime.now(UTC).date(), datetime.min.time(), tzinfo=UTC)
    flows_from = to_micros(midnight) - FLOW_DAYS * MICROS_PER_DAY
    step(f"refreshing segments as of {FLOW_DAYS} days ago")
    segments.refresh(db, DEMO_STORE, as_of=flows_from)
    names = [f.name for f in flow_library.library() if f.name not in DEMO_SKIPS]
    flow_library.install(db, DEMO_STORE, names, start=flows_from)
    step(f"running {len(names)} library flows over the last {FLOW_DAYS} days (simulated time)")
    result.messages_dir = directory / "messages"
    result.flows = campaign_runtime.simulate_until(
        db, DEMO_STORE, to_micros(midnight), out_dir=result.messages_dir,
        step=6 * 3_600_000_000, scan=7 * MICROS_PER_DAY,
    )  # fmt: skip
    step("refreshing segments")
    result.segments = segments.refresh(db, DEMO_STORE)
    step("writing the retention report")
    result.report = build_report(db, DEMO_STORE, directory / "report.html")
    return result
