"""Small vectorised helpers the simulator's modules share (ragged groups, masks, formats)."""

from __future__ import annotations

import numpy as np
import polars as pl
from numpy.typing import NDArray

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
B = NDArray[np.bool_]


def expand(counts: I64) -> tuple[I64, I64]:
    """For groups of the given sizes: each item's group and its position within the group."""
    counts = np.asarray(counts, dtype=np.int64)
    owner = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    starts = np.cumsum(counts) - counts
    position = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(starts, counts)
    return owner, position


def group_cumsum(values: F64, counts: I64) -> F64:
    """Running sum of ``values`` restarting at each group (groups laid out consecutively)."""
    if not len(values):
        return np.zeros(0, dtype=np.float64)
    total = np.cumsum(values)
    starts = np.cumsum(counts) - counts
    before = np.where(starts > 0, total[np.maximum(starts - 1, 0)], 0.0)
    out: F64 = total - np.repeat(before, counts)
    return out


def keep(series: pl.Series, mask: B) -> pl.Series:
    """``series`` where ``mask`` holds, null elsewhere."""
    return (
        pl.select(pl.when(pl.lit(pl.Series(mask, dtype=pl.Boolean))).then(pl.lit(series)))
        .to_series()
        .alias(series.name)
    )


def choose(mask: B, yes: pl.Series, no: pl.Series) -> pl.Series:
    """Element-wise ``yes`` where ``mask`` holds, else ``no``."""
    return yes.zip_with(pl.Series(mask, dtype=pl.Boolean), no)


def amount_text(minor: pl.Expr) -> pl.Expr:
    """Non-negative integer cents -> '1234.50' (exact, no float)."""
    return pl.concat_str(
        (minor // 100).cast(pl.String),
        pl.lit("."),
        (minor % 100).cast(pl.String).str.zfill(2),
    )


def round_half_even(x: F64) -> I64:
    return np.rint(x).astype(np.int64)
