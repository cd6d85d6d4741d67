"""Import a store export: read and validate, then apply all of it in one transaction, or none.

Policy (docs/importing.md): rows that fail validation take their whole order with them into
the rejects file. When more rows are rejected than ``allow_rejects``, nothing is applied and
`ImportRejectedError` is raised; otherwise the valid orders apply and the rejects are reported.
Re-running the same file changes nothing; a killed run leaves the store as it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from boomerang.errors import ImportRejectedError
from boomerang.ingest.batch import ParsedBatch
from boomerang.ingest.options import ReadOptions
from boomerang.ingest.registry import reader_for
from boomerang.services.context import open_engine
from boomerang.store.bulk import bulk_transaction
from boomerang.store.repos import imports as imports_repo
from boomerang.store.repos import stores as stores_repo
from boomerang.store.repos.imports import ApplyResult

Phase = Callable[[str, int], None]


class _DryRun(Exception):
    """Raised inside the transaction to roll a dry run back after counting."""


@dataclass
class ImportSummary:
    kind: str
    file: str
    store: str
    rows_read: int
    rows_rejected: int
    guest_orders: int
    applied: bool
    dry_run: bool
    result: ApplyResult = field(default_factory=ApplyResult)
    rejects_file: str | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds else 0.0


def write_rejects(batch: ParsedBatch, target: Path) -> None:
    batch.rejects.select(
        pl.lit(str(batch.path)).alias("file"), "row", "column", "value", "reason"
    ).write_csv(target)


def apply_frames(
    db: str,
    store: str,
    frames: dict[str, pl.DataFrame],
    *,
    currency: str = "USD",
    dry_run: bool = False,
) -> ApplyResult:
    """Stage normalised frames (see `ingest.batch.FRAME_SCHEMAS`) and upsert them atomically.

    Used by every importer and by the simulator's direct-to-database mode.
    """
    engine = open_engine(db)
    try:
        with engine.begin() as conn:
            store_row = stores_repo.get_or_create(conn, store, currency)
        result = ApplyResult()
        try:
            with bulk_transaction(engine, lock_key=store_row.id) as session:
                result = imports_repo.apply_batch(session, store_row.id, frames)
                if dry_run:
                    raise _DryRun
        except _DryRun:
            pass
        return result
    finally:
        engine.dispose()


DEFAULT_CURRENCY = "USD"


def _dominant_currency(batch: ParsedBatch, fallback: str) -> str:
    """A new store's currency when none was named: the one most of the file's orders use."""
    orders = batch.frames.get("orders")
    if orders is None or not orders.height:
        return fallback
    top = orders["currency"].drop_nulls().mode().sort()
    return str(top[0]) if top.len() else fallback


def run_import(
    kind: str,
    path: Path,
    *,
    db: str,
    store: str,
    currency: str | None = None,
    timezone: str = "UTC",
    mapping: Path | None = None,
    dry_run: bool = False,
    rejects_path: Path | None = None,
    allow_rejects: int = 0,
    on_phase: Phase | None = None,
) -> ImportSummary:
    started = time.perf_counter()
    phase = on_phase or (lambda _name, _rows: None)
    phase("reading and validating", 0)
    options = ReadOptions(
        currency=(currency or DEFAULT_CURRENCY).upper(),
        currency_given=currency is not None,
        timezone=timezone,
        mapping=mapping,
    )
    batch = reader_for(kind)(path, options)
    summary = ImportSummary(
        kind=kind,
        file=str(path),
        store=store,
        rows_read=batch.rows_read,
        rows_rejected=batch.rejected_rows,
        guest_orders=batch.guest_orders,
        applied=False,
        dry_run=dry_run,
        notes=batch.notes,
    )
    if batch.rejects.height:
        target = rejects_path or Path(f"{path.name}.rejects.csv")
        write_rejects(batch, target)
        summary.rejects_file = str(target)
    if summary.rows_rejected > allow_rejects:
        summary.seconds = time.perf_counter() - started
        raise ImportRejectedError(
            f"{path}: {summary.rows_rejected} row(s) rejected (allowed: {allow_rejects}); nothing was imported",
            hint=f"see {summary.rejects_file} for row, column and reason; fix the file or pass --allow-rejects N",
        )
    phase("applying", batch.rows_read)
    store_currency = options.currency if currency else _dominant_currency(batch, options.currency)
    summary.result = apply_frames(db, store, batch.frames, currency=store_currency, dry_run=dry_run)
    summary.applied = not dry_run
    summary.seconds = time.perf_counter() - started
    return summary
