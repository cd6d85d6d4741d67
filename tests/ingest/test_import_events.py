"""Events as JSON lines on SQLite and PostgreSQL: identity, dedupe keys, rejects."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.conftest import DATA
from tests.store_digest import table_digests
from tests.support import count as _count
from tests.support import rows as _rows

from boomerang.errors import ImportRejectedError, InputError
from boomerang.ingest.events import read_events
from boomerang.ingest.options import ReadOptions
from boomerang.services.imports import run_import

SAMPLE = DATA / "events" / "events.jsonl"
CUSTOMERS = DATA / "shopify_customers" / "customers_current.csv"


def _md5_key(*parts: str) -> str:
    return "h:" + hashlib.md5("\x1f".join(parts).encode()).hexdigest()


EVENTS_SQL = (
    "SELECT e.dedupe_key, c.external_id, e.anonymous_id, e.type, e.occurred_at, e.properties "
    "FROM events e LEFT JOIN customers c ON c.id = e.customer_id ORDER BY e.occurred_at"
)


def test_sample_imports_exact_values(db: str, tmp_path: Path) -> None:
    customers = tmp_path / "customers.csv"
    shutil.copyfile(CUSTOMERS, customers)
    run_import("shopify-customers", customers, db=db, store="shop")
    summary = run_import("events", SAMPLE, db=db, store="shop")
    assert (summary.rows_read, summary.rows_rejected) == (7, 0)  # the blank line is skipped
    assert summary.notes == [
        "1 event(s) repeat an earlier line's event_id or content; the first was kept"
    ]
    r = summary.result
    assert (r.events_inserted, r.events_duplicate) == (6, 0)
    assert (r.customers.inserted, r.customers.updated, r.customers.unchanged) == (2, 0, 0)
    cart_key = _md5_key(
        "added_to_cart", "1740817022000000", "9013270589752", "", '{"sku":"MUG-BLK","quantity":2}'
    )
    assert _rows(db, EVENTS_SQL) == [
        ("evt_01HQ7X1", "nora.lind@example.se", "anon-7f3a", "signed_up", 1740816900000000,
         '{"source":"newsletter_popup","list":"weekly"}'),
        ("evt_01HQ7X2", None, "anon-7f3a", "product_viewed", 1740816990250000,
         '{"sku":"MUG-BLK","price":"12.00"}'),
        # a Shopify customer id resolves through customers.source_id
        (cart_key, "camille.durand@example.fr", None, "added_to_cart", 1740817022000000,
         '{"sku":"MUG-BLK","quantity":2}'),
        # naive time read in --timezone (UTC); an unknown platform id leaves the event unlinked
        (_md5_key("visit", "1740938400000000", "4211", "",
                  '{"page":"/collections/tea","utm":{"source":"instagram","campaign":"spring"}}'),
         None, None, "visit", 1740938400000000,
         '{"page":"/collections/tea","utm":{"source":"instagram","campaign":"spring"}}'),
        ("evt_01HQ7X5", "nora.lind@example.se", None, "email_opened", 1741003200000000,
         '{"campaign":"spring-launch"}'),
        (_md5_key("checkout_started", "1741089600000000", "jonas.berg@example.no", "", ""),
         "jonas.berg@example.no", None, "checkout_started", 1741089600000000, None),
    ]  # fmt: skip
    # newsletter sign-ups who never bought exist as (guest) customers
    assert _rows(
        db,
        "SELECT external_id, source_id, email, account_status, created_at FROM customers "
        "WHERE account_status = 'guest' ORDER BY 1",
    ) == [
        ("jonas.berg@example.no", "5521", "jonas.berg@example.no", "guest", 1741089600000000),
        ("nora.lind@example.se", None, "nora.lind@example.se", "guest", 1740816900000000),
    ]


def test_reimport_changes_nothing(db: str) -> None:
    run_import("events", SAMPLE, db=db, store="shop")
    before = table_digests(db)
    r = run_import("events", SAMPLE, db=db, store="shop").result
    assert (r.events_inserted, r.events_duplicate) == (0, 6)
    assert (r.customers.inserted, r.customers.updated, r.customers.unchanged) == (0, 0, 2)
    assert table_digests(db) == before


def _reserialised(target: Path, *, bom: bool, crlf: bool, spaced: bool) -> Path:
    """The sample rewritten: other whitespace, key order and line ends, same events."""
    out = []
    for line in SAMPLE.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            out.append("")
            continue
        obj = json.loads(line)
        if spaced:
            obj = dict(reversed(list(obj.items())))  # top-level key order does not matter
        out.append(
            json.dumps(obj, ensure_ascii=False, separators=(", ", ": ") if spaced else (",", ":"))
        )
    body = ("\r\n" if crlf else "\n").join(out) + "\n"
    target.write_bytes((b"\xef\xbb\xbf" if bom else b"") + body.encode("utf-8"))
    return target


def test_bom_crlf_and_spacing_variants_store_the_same(tmp_path: Path) -> None:
    digests = []
    for i, (bom, crlf, spaced) in enumerate(
        [(False, False, False), (True, True, False), (False, True, True), (True, False, True)]
    ):
        path = _reserialised(tmp_path / f"events_{i}.jsonl", bom=bom, crlf=crlf, spaced=spaced)
        db = str(tmp_path / f"store_{i}.db")
        run_import("events", path, db=db, store="shop")
        digests.append(table_digests(db))
    assert all(d == digests[0] for d in digests[1:])
    assert digests[0]["events"][0] == 6


DEFECTS = [
    '{"type":"visit","occurred_at":"2025-03-02T18:00:00Z","anonymous_id":"a1"}',
    "not json at all",
    "[1,2]",
    '{"occurred_at":"2025-03-02T18:00:00Z","anonymous_id":"a1"}',
    '{"type":"visit","anonymous_id":"a1"}',
    '{"type":"visit","occurred_at":"yesterday","anonymous_id":"a1"}',
    '{"type":"visit","occurred_at":"2025-03-02T18:00:00Z"}',
    '{"type":"visit","occurred_at":"2025-03-02T18:00:00Z","email":"nora(at)example.se"}',
    '{"type":"visit","occurred_at":"2025-03-02T18:00:00Z","anonymous_id":"a1","properties":[1]}',
    '{"type":"visit","occurred_at":"2025-03-02T18:00:00Z","anonymous_id":"a1",',
    '{"type":"signed_up","occurred_at":"2025-03-02T19:00:00Z","email":"ok@example.se"}',
]


def test_defects_are_rejected_by_line(db: str, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(DEFECTS) + "\n", encoding="utf-8")
    rejects = tmp_path / "rejects.csv"
    with pytest.raises(ImportRejectedError, match="nothing was imported"):
        run_import("events", path, db=db, store="shop", rejects_path=rejects)
    import csv

    with rejects.open(encoding="utf-8") as fh:
        got = [(int(r["row"]), r["column"], r["value"], r["reason"]) for r in csv.DictReader(fh)]
    assert got == [
        (2, "line", "not json at all", "not valid JSON"),
        (3, "line", "[1,2]", "not a JSON object"),
        (4, "type", "", "type is required"),
        (5, "occurred_at", "", "occurred_at is required"),
        (6, "occurred_at", "yesterday", "not an ISO-8601 date-time like 2025-03-01T10:00:00+01:00"),
        (7, "customer_id", "", "no customer_id, email or anonymous_id"),
        (8, "email", "nora(at)example.se", "not an email address"),
        (9, "properties", "[1]", "properties must be a JSON object"),
        (10, "line", DEFECTS[9], "not valid JSON"),
    ]
    assert _count(db, "events") == 0
    summary = run_import("events", path, db=db, store="shop", rejects_path=rejects, allow_rejects=9)
    assert (summary.result.events_inserted, summary.result.customers.inserted) == (2, 1)


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"type":"a","occurred_at":"2025-01-01T00:00:00Z","anonymous_id":"x"}\n'
                     b'{"type":"caf\xe9"}\n')  # fmt: skip
    with pytest.raises(InputError, match=r"not UTF-8 text \(line 2\)"):
        run_import("events", path, db=str(tmp_path / "s.db"), store="shop")


def _key_of(lines: list[str], index: int) -> str:
    """The dedupe key the reader gives line ``index`` of a file with ``lines``."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "events.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        batch = read_events(path, ReadOptions())
    assert batch.rejects.height == 0, batch.rejects
    keys: list[str] = batch.frames["events"]["dedupe_key"].to_list()
    return keys[index]


names = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=12
)
scalars = st.one_of(st.integers(-(10**6), 10**6), st.booleans(), names, st.none())
events = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["visit", "product_viewed", "added_to_cart", "Order Completed"]),
        "at": st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1)),
        "offset_minutes": st.sampled_from([0, 60, 120, -300, 330]),
        "who": st.one_of(
            st.fixed_dictionaries({"email": st.emails()}),
            st.fixed_dictionaries({"customer_id": st.from_regex(r"[0-9]{1,12}", fullmatch=True)}),
            st.fixed_dictionaries({"anonymous_id": st.uuids().map(str)}),
        ),
        "properties": st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), scalars, max_size=4),
    }
)  # fmt: skip


def _line(e: dict[str, Any], *, offset_minutes: int, spaced: bool) -> str:
    moment = e["at"].replace(tzinfo=UTC).astimezone(timezone(timedelta(minutes=offset_minutes)))
    obj = {"type": e["type"], "occurred_at": moment.isoformat(), **e["who"]}
    if e["properties"]:
        obj["properties"] = e["properties"]
    if spaced:
        return json.dumps(obj, ensure_ascii=True, separators=(" , ", " : "))
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


@settings(max_examples=40, deadline=None)
@given(events, st.integers(0, 3))
def test_dedupe_key_is_stable(e: dict[str, Any], position: int) -> None:
    """Same event -> same key, whatever its spacing, escaping, offset or line; else another key."""
    fillers = [
        f'{{"type":"visit","occurred_at":"2001-01-01T00:00:00Z","anonymous_id":"filler-{i}"}}'
        for i in range(position)
    ]
    compact = _line(e, offset_minutes=0, spaced=False)
    shifted = _line(e, offset_minutes=e["offset_minutes"], spaced=True)
    first = _key_of([compact], 0)
    moved = _key_of([*fillers, shifted], position)
    assert first == moved
    assert first.startswith("h:") and len(first) == 34
    changed = dict(e, properties={**e["properties"], "__changed": 1})
    assert _key_of([_line(changed, offset_minutes=0, spaced=False)], 0) != first


def test_reader_is_fast_enough_to_take_big_files(tmp_path: Path) -> None:
    """Smoke check of the vectorised path on 20k lines (timings live in bench/, not here)."""
    path = tmp_path / "many.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for i in range(20_000):
            fh.write(
                json.dumps(
                    {"type": "product_viewed", "occurred_at": f"2025-03-01T10:{i % 60:02d}:00Z",
                     "anonymous_id": f"a{i % 997}", "properties": {"sku": f"S{i % 50}", "i": i}}
                )
                + "\n"
            )  # fmt: skip
    batch = read_events(path, ReadOptions())
    assert batch.rows_read == 20_000
    assert batch.frames["events"].height == 20_000
    assert batch.rejects.height == 0
    os.remove(path)
