"""Content digests that let imports tell "unchanged" without comparing every column.

Polars hashes are stable for a given polars version; after an upgrade a re-import may report
unchanged orders as updated once (their content is rewritten identically).
"""

from __future__ import annotations

import polars as pl

SEEDS = (0x5EED, 0xB00)


def row_digest(columns: list[str]) -> pl.Expr:
    """A 128-bit digest of some columns per row, as text (two seeded 64-bit hashes)."""
    row = pl.struct([pl.col(c) for c in columns])
    return pl.concat_str([row.hash(seed).cast(pl.String) for seed in SEEDS], separator="-")


def line_hash_sums(columns: list[str]) -> list[pl.Expr]:
    """Aggregations ``__a``/``__b``: wrapping sums of per-row hashes within a group."""
    row = pl.struct([pl.col(c) for c in columns])
    return [
        row.hash(seed).sum().alias(name) for seed, name in zip(SEEDS, ("__a", "__b"), strict=True)
    ]
