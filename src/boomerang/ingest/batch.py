"""The normalised result of reading one file, and the validation plumbing readers share.

A reader turns its layout into the same frames (customers, consents, products, orders,
lines, events) with the columns the store's upsert expects, plus a rejects frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from boomerang.ingest.csvfile import ROW
from boomerang.ingest.fields import Parsed
from boomerang.store.digest import line_hash_sums

REJECT_SCHEMA = {"row": pl.Int64, "column": pl.String, "value": pl.String, "reason": pl.String}

# Column order and types of each frame handed to the store.
FRAME_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "customers": {
        "external_id": pl.String(),
        "source_id": pl.String(),
        "email": pl.String(),
        "phone": pl.String(),
        "first_name": pl.String(),
        "last_name": pl.String(),
        "city": pl.String(),
        "region": pl.String(),
        "country": pl.String(),
        "zip": pl.String(),
        "timezone": pl.String(),
        "birthday": pl.String(),
        "tags": pl.String(),
        "attributes": pl.String(),
        "account_status": pl.String(),
        "created_at": pl.Int64(),
    },
    "consents": {
        "customer_key": pl.String(),
        "channel": pl.String(),
        "status": pl.String(),
        "source": pl.String(),
        "text_version": pl.String(),
        "occurred_at": pl.Int64(),
    },
    "products": {
        "sku": pl.String(),
        "name": pl.String(),
        "category": pl.String(),
        "price_minor": pl.Int64(),
        "currency": pl.String(),
        "lifespan_days": pl.Int64(),
    },
    "orders": {
        "external_id": pl.String(),
        "customer_key": pl.String(),
        "email": pl.String(),
        "placed_at": pl.Int64(),
        "currency": pl.String(),
        "subtotal_minor": pl.Int64(),
        "discount_minor": pl.Int64(),
        "shipping_minor": pl.Int64(),
        "tax_minor": pl.Int64(),
        "total_minor": pl.Int64(),
        "refunded_minor": pl.Int64(),
        "status": pl.String(),
        "cancelled_at": pl.Int64(),
        "discount_code": pl.String(),
        "channel": pl.String(),
        "source": pl.String(),
        "lines_digest": pl.String(),
    },
    "lines": {
        "order_external_id": pl.String(),
        "line_no": pl.Int64(),
        "sku": pl.String(),
        "name": pl.String(),
        "category": pl.String(),
        "quantity": pl.Int64(),
        "unit_price_minor": pl.Int64(),
        "discount_minor": pl.Int64(),
    },
    "events": {
        "customer_key": pl.String(),
        "anonymous_id": pl.String(),
        "type": pl.String(),
        "occurred_at": pl.Int64(),
        "properties": pl.String(),
        "dedupe_key": pl.String(),
    },
}


@dataclass
class ParsedBatch:
    """What a reader produced: frames ready for the store, and the rows it refused."""

    kind: str
    path: Path
    rows_read: int
    frames: dict[str, pl.DataFrame]
    rejects: pl.DataFrame
    guest_orders: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def rejected_rows(self) -> int:
        return self.rejects["row"].n_unique() if self.rejects.height else 0


def file_mtime_micros(path: Path) -> int:
    """The file's modification time in UTC epoch microseconds.

    Why: some facts (a customers export's consent state) carry no date in the file; the
    export's own time is the deterministic stand-in (re-importing the file changes nothing).
    """
    return path.stat().st_mtime_ns // 1000


def conform(name: str, frame: pl.DataFrame) -> pl.DataFrame:
    """Select and cast a frame to the store's column order and types (missing -> null)."""
    schema = FRAME_SCHEMAS[name]
    return frame.select(
        [
            (pl.col(c) if c in frame.columns else pl.lit(None)).cast(t).alias(c)
            for c, t in schema.items()
        ]
    )


def empty_rejects() -> pl.DataFrame:
    return pl.DataFrame(schema=REJECT_SCHEMA)


def validate(
    frame: pl.DataFrame,
    checks: dict[str, tuple[str, Parsed]],
    *,
    when: dict[str, pl.Expr] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Add each parsed target column; return the frame and the rejects it implies.

    ``checks`` maps target -> (source column, parsed); ``when`` optionally limits a check to
    some rows (e.g. order-level fields only on an order's first row).
    """
    when = when or {}
    exprs: list[pl.Expr] = []
    for target, (_src, parsed) in checks.items():
        bad = parsed.invalid.fill_null(False)
        if target in when:
            bad = bad & when[target]
        exprs += [parsed.value.alias(target), bad.alias(f"__bad_{target}")]
    out = frame.with_columns(exprs)
    # Rejects quote the file's own value: read it (and evaluate reasons) on the input
    # columns, since a target may reuse its source's name (e.g. "status" -> "status").
    flagged = frame.hstack(out.select(f"__bad_{t}" for t in checks))
    pieces = []
    for target, (src, parsed) in checks.items():
        bad_rows = flagged.filter(pl.col(f"__bad_{target}"))
        if bad_rows.height:
            pieces.append(
                bad_rows.select(
                    pl.col(ROW).alias("row"),
                    pl.lit(src).alias("column"),
                    pl.col(src).cast(pl.String).alias("value")
                    if src in frame.columns
                    else pl.lit(None, pl.String).alias("value"),
                    (pl.lit(parsed.reason) if isinstance(parsed.reason, str) else parsed.reason)
                    .cast(pl.String)
                    .alias("reason"),
                )
            )
    rejects = pl.concat(pieces) if pieces else empty_rejects()
    return out.drop([c for c in out.columns if c.startswith("__bad_")]), rejects


def reject_whole_groups(
    frame: pl.DataFrame, rejects: pl.DataFrame, key: str, source_column: str, what: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Drop every row of a group (an order) that has a rejected row, and say why for each."""
    if not rejects.height:
        return frame, rejects
    bad_rows = rejects["row"].unique()
    marked = frame.with_columns(pl.col(ROW).is_in(bad_rows.implode()).alias("__bad"))
    bad_keys = marked.filter(pl.col("__bad"))[key].unique()
    in_bad_group = pl.col(key).is_in(bad_keys.implode())
    first_bad = (
        marked.filter(pl.col("__bad")).group_by(key).agg(pl.col(ROW).min().alias("__first_bad_row"))
    )
    siblings = (
        marked.filter(in_bad_group & ~pl.col("__bad"))
        .join(first_bad, on=key, how="left")
        .select(
            pl.col(ROW).alias("row"),
            pl.lit(source_column).alias("column"),
            pl.col(key).cast(pl.String).alias("value"),
            pl.format(
                f"{what} {{}} not imported: its row {{}} was rejected",
                pl.col(key),
                pl.col("__first_bad_row"),
            ).alias("reason"),
        )
    )
    kept = marked.filter(~in_bad_group).drop("__bad")
    return kept, pl.concat([rejects, siblings]).sort("row", "column")


def digest_lines(lines: pl.DataFrame, key: str, columns: list[str]) -> pl.DataFrame:
    """Per-group digest (key, lines_digest): wrapping sums of per-line hashes.

    The line number is among the hashed columns, so reordering lines changes the digest.
    """
    sums = lines.group_by(key).agg(*line_hash_sums(columns))
    return sums.select(
        pl.col(key),
        pl.concat_str(
            [pl.col("__a").cast(pl.String), pl.col("__b").cast(pl.String)], separator="-"
        ).alias("lines_digest"),
    )
