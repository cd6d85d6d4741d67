"""Site and app events as JSON lines: one object per line.

    {"event_id": "e-1", "type": "product_viewed", "occurred_at": "2025-03-01T10:00:00+01:00",
     "customer_id": "42", "email": "a@example.com", "anonymous_id": "c0ffee",
     "properties": {"sku": "MUG-1"}}

Only ``type`` and ``occurred_at`` are required, plus at least one identity (customer_id,
email or anonymous_id). A line is rejected whole, with its line number as the row.
Why DuckDB for the JSON: one vectorised parse per line (tolerant of bad lines through
TRY) that also minifies ``properties``; polars' own JSON decoding stops at the first bad
line. See docs/importing.md, section events.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from boomerang.errors import InputError
from boomerang.ingest import fields as f
from boomerang.ingest.batch import ParsedBatch, conform, validate
from boomerang.ingest.csvfile import ROW
from boomerang.ingest.options import ReadOptions

FIELDS = ("event_id", "type", "occurred_at", "customer_id", "email", "anonymous_id")
_SHAPE = "{" + ",".join(f'"{k}":"VARCHAR"' for k in FIELDS) + ',"properties":"JSON"}'
LINE = "__line"
OCCURRED = "__occurred_us"
# YYYY-MM-DD, T or space, HH:MM[:SS[.fraction]], then Z, +HH, +HHMM or +HH:MM (or nothing)
ISO_8601 = (
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]([01]\d|2[0-3])(:?[0-5]\d)?)?"
)
REJECT_VALUE_CHARS = 200


def read_lines(path: Path) -> pl.DataFrame:
    """Every line as text with its 1-based number in ``__row``; blank lines dropped.

    Lines are cut from the file's bytes with numpy and handed to Arrow without copying,
    so a million lines cost well under a second.
    """
    if not path.exists():
        raise InputError(f"{path}: no such file", hint="check the path")
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(
            f"{path}: not UTF-8 text (line {line})", hint="write the events file as UTF-8"
        ) from exc
    if data.startswith(b"\xef\xbb\xbf"):
        data = b"   " + data[3:]  # same length: line numbers and offsets stay put
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10) + 1
    if not data.endswith(b"\n"):
        ends = np.append(ends, len(data))
    offsets = np.concatenate([[0], ends]).astype(np.int64)
    text = pa.LargeStringArray.from_buffers(
        len(offsets) - 1, pa.py_buffer(offsets), pa.py_buffer(data)
    )
    lines = pl.from_arrow(text)
    assert isinstance(lines, pl.Series)
    # JSON tolerates the "\r" of CRLF and surrounding blanks: no copy to strip them
    blank = pl.col(LINE).str.contains(r"^\s*$")
    return (
        lines.alias(LINE)
        .to_frame()
        .with_row_index(ROW, offset=1)
        .with_columns(pl.col(ROW).cast(pl.Int64))
        .filter(~blank)
    )


def _parse_json(con: duckdb.DuckDBPyConnection, lines: pl.DataFrame) -> pl.DataFrame:
    """The known fields as text (null when absent), ``__parsed`` (false: not JSON) and
    ``occurred_at`` read as epoch microseconds UTC in ``OCCURRED`` (null: not ISO-8601)."""
    con.register("lines", lines.select(LINE).to_arrow())
    t = "upper(s.occurred_at)"
    table = con.sql(
        f"SELECT s IS NOT NULL AS __parsed, s.*, CASE WHEN regexp_full_match({t}, '{ISO_8601}') "
        f"THEN epoch_us(try_cast({t} AS TIMESTAMPTZ)) END AS {OCCURRED} "
        f"FROM (SELECT try(json_transform({LINE}, '{_SHAPE}')) AS s FROM lines)"
    )
    parsed = pl.from_arrow(table.to_arrow_table())
    con.unregister("lines")
    assert isinstance(parsed, pl.DataFrame)
    return pl.concat([lines, parsed], how="horizontal")


def _connect(path: Path, tz: str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB whose session time zone reads offset-less times."""
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    try:
        con.execute("SET TimeZone = ?", [tz])
    except duckdb.Error as exc:
        con.close()
        raise InputError(
            f"{path}: unknown time zone {tz!r} for times without an offset",
            hint="pass --timezone with an IANA name such as Europe/Paris",
        ) from exc
    return con


def _md5(con: duckdb.DuckDBPyConnection, texts: pl.Series) -> pl.Series:
    """ "h:" + hex MD5 of each text, vectorised (stable across versions, unlike pl.hash)."""
    con.register("keys", texts.alias("k").to_frame().to_arrow())
    out = pl.from_arrow(con.sql("SELECT 'h:' || md5(k) AS h FROM keys").to_arrow_table())
    con.unregister("keys")
    assert isinstance(out, pl.DataFrame)
    return out["h"]


def dedupe_keys(events: pl.DataFrame, con: duckdb.DuckDBPyConnection | None = None) -> pl.Series:
    """``event_id`` when given, else a hash of type, time, identity and properties.

    Properties are hashed in their minified form, so re-serialising the same event with
    other whitespace yields the same key; key order inside ``properties`` is kept as sent.
    """
    basis = pl.concat_str(
        [
            pl.col("type"),
            pl.col("occurred_at").cast(pl.String),
            pl.col("customer_key").fill_null(""),
            pl.col("anonymous_id").fill_null(""),
            pl.col("properties").fill_null(""),
        ],
        separator="\x1f",
    )
    anonymous = events["event_id"].is_null()
    own = con is None
    db = duckdb.connect() if con is None else con
    try:  # only events without an event_id need hashing
        hashed = _md5(db, events.filter(anonymous).select(basis).to_series())
    finally:
        if own:
            db.close()
    return events["event_id"].alias("dedupe_key").scatter(anonymous.arg_true(), hashed)


def read_events(path: Path, options: ReadOptions) -> ParsedBatch:
    """Events, plus a guest customer for every email seen (sign-ups who never bought)."""
    lines = read_lines(path)
    con = _connect(path, options.timezone)
    try:
        return _read(path, options, con, lines)
    finally:
        con.close()


def _read(
    path: Path, options: ReadOptions, con: duckdb.DuckDBPyConnection, lines: pl.DataFrame
) -> ParsedBatch:
    frame = _parse_json(con, lines)
    col = pl.col
    ok = col("__parsed")
    is_object = col(LINE).str.contains(r"^\s*\{")
    props = col("properties")
    no_identity = col("customer_id").is_null() & col("email").is_null()
    no_identity = no_identity & col("anonymous_id").is_null()
    checks: dict[str, tuple[str, f.Parsed]] = {
        "__json": (LINE, f.Parsed(ok, ~ok, "not valid JSON")),
        "__object": (LINE, f.Parsed(is_object, ok & ~is_object, "not a JSON object")),
        "type": (
            "type",
            f.required(
                col("type"),
                f.Parsed(
                    col("type"),
                    (col("type").str.len_chars() > 64) | col("type").str.contains(r"^[\[{]"),
                    "must be a text of at most 64 characters",
                ),
                "type",
            ),
        ),
        "occurred_at": (
            "occurred_at",
            f.required(
                col("occurred_at"),
                f.Parsed(
                    col(OCCURRED),
                    col("occurred_at").is_not_null() & col(OCCURRED).is_null(),
                    "not an ISO-8601 date-time like 2025-03-01T10:00:00+01:00",
                ),
                "occurred_at",
            ),
        ),
        "email": ("email", f.email(col("email"))),
        "customer_id": ("customer_id", f.text(col("customer_id"), 320)),
        "anonymous_id": ("anonymous_id", f.text(col("anonymous_id"), 200)),
        "event_id": ("event_id", f.text(col("event_id"), 200)),
        "__identity": (
            "customer_id",
            f.Parsed(no_identity, no_identity, "no customer_id, email or anonymous_id"),
        ),
        "properties": (
            "properties",
            f.Parsed(
                pl.when(props != "null").then(props),
                props.is_not_null() & (props != "null") & ~props.str.starts_with("{"),
                "properties must be a JSON object",
            ),
        ),
    }
    valid_object = ok & is_object
    when = {k: valid_object for k in checks if k not in ("__json", "__object")}
    when["__object"] = ok
    parsed, rejects = validate(frame, checks, when=when)
    rejects = rejects.with_columns(
        pl.col("column").replace(LINE, "line"),
        pl.col("value").str.strip_chars().str.slice(0, REJECT_VALUE_CHARS),
    ).sort("row", "column")
    bad = rejects["row"].unique().implode()
    kept = parsed.filter(~col(ROW).is_in(bad)).with_columns(
        pl.coalesce(col("email"), col("customer_id")).alias("customer_key")
    )
    kept = kept.with_columns(dedupe_keys(kept, con))
    unique = kept.unique("dedupe_key", keep="first", maintain_order=True)
    notes = []
    if unique.height < kept.height:
        notes.append(
            f"{kept.height - unique.height} event(s) repeat an earlier line's event_id or "
            "content; the first was kept"
        )
    customers = (
        unique.filter(col("email").is_not_null())
        .group_by("email")
        .agg(
            col("customer_id").drop_nulls().first().alias("source_id"),
            col("occurred_at").min().alias("created_at"),
        )
        .with_columns(
            col("email").alias("external_id"),
            pl.lit("guest").alias("account_status"),
        )
        .sort("external_id")
    )
    return ParsedBatch(
        kind="events",
        path=path,
        rows_read=lines.height,
        frames={
            "customers": conform("customers", customers),
            "events": conform("events", unique),
        },
        rejects=rejects,
        notes=notes,
    )
