"""Read a delimited export into an all-text polars frame, whatever its dialect.

Handles a UTF-8 byte-order mark, CRLF line ends and `,` / `;` / tab delimiters (detected from
the header line, never per row). Every frame gets ``__row``: the record's row number as a
spreadsheet shows it (header = 1), which rejects reports point at.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from boomerang.errors import InputError

ROW = "__row"
DELIMITERS = (",", ";", "\t")


def sniff_delimiter(header: str) -> str:
    """The candidate delimiter that splits the header into the most fields (outside quotes)."""
    counts = {d: 0 for d in DELIMITERS}
    quoted = False
    for ch in header:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def _header_line(path: Path) -> str:
    with path.open("rb") as fh:
        raw = fh.readline(1 << 20)
    try:
        return raw.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text", hint="re-export the file as UTF-8 CSV") from exc


def read_text_table(path: Path, *, required: tuple[str, ...] = ()) -> pl.DataFrame:
    """All columns as text (nothing inferred), with ``__row``; missing required columns fail."""
    if not path.exists():
        raise InputError(f"{path}: no such file", hint="check the path")
    header = _header_line(path)
    if not header.strip():
        raise InputError(f"{path}: the file is empty", hint="export the data again")
    try:
        frame = pl.read_csv(
            path,
            separator=sniff_delimiter(header),
            infer_schema=False,
            encoding="utf8",
            truncate_ragged_lines=False,
        )
    except pl.exceptions.ComputeError as exc:
        raise InputError(
            f"{path}: cannot be read as CSV ({str(exc).splitlines()[0]})",
            hint="check the delimiter and quoting, or re-export the file",
        ) from exc
    frame = frame.rename({c: c.strip() for c in frame.columns})
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)}",
            hint=f"this layout needs {', '.join(required)}; found {', '.join(frame.columns[:12])}",
        )
    return frame.with_row_index(ROW, offset=2).with_columns(pl.col(ROW).cast(pl.Int64))
