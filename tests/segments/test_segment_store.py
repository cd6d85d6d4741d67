"""Segments against a real store (SQLite and PostgreSQL): history, idempotence, live = full.

The store is the simulator's (a few hundred customers with orders, events and consents).
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support import rows

from boomerang.analytics.engine import Engine as AnalyticsEngine
from boomerang.domain.clock import MICROS_PER_DAY, to_micros
from boomerang.errors import InputError
from boomerang.ingest.batch import conform
from boomerang.segments.bulk import evaluate_all
from boomerang.segments.single import SingleEvaluator
from boomerang.services import segments as service
from boomerang.services.clv import fit_store
from boomerang.services.context import open_engine
from boomerang.services.imports import apply_frames
from boomerang.simulate import simulate_store
from boomerang.store.repos import segments as repo
from boomerang.store.repos import stores as stores_repo

STORE = "shop"
END = to_micros(datetime(2026, 11, 1, tzinfo=UTC))  # the simulator's history ends here
DAY = MICROS_PER_DAY


def _simulated(db: str, customers: int = 300, seed: int = 11) -> None:
    apply_frames(db, STORE, simulate_store(customers, 540, seed).store_frames())


def _history(db: str) -> dict[str, int]:
    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            store = stores_repo.get(conn, STORE)
            return repo.count_rows(conn, store.id)
    finally:
        engine.dispose()


def _open_members(db: str) -> set[tuple[str, int]]:
    return {
        (str(name), int(cid))
        for name, cid in rows(
            db,
            "SELECT s.name, m.customer_id FROM segment_memberships m "
            "JOIN segments s ON s.id = m.segment_id WHERE m.exited_at IS NULL",
        )
    }


def _flags(db: str, at: int, reference: dict | None = None) -> tuple[dict[str, set[int]], dict]:  # type: ignore[type-arg]
    """Every segment's members by the engine, from the store's facts as of ``at``."""
    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            store = stores_repo.get(conn, STORE)
            plan, _ = service.store_plan(conn, store.id)
        facts = service.load_segment_data(engine, store, plan, at)
    finally:
        engine.dispose()
    evaluation = evaluate_all(AnalyticsEngine(), facts, plan, at, reference)
    frame = pl.from_arrow(evaluation.flags)
    assert isinstance(frame, pl.DataFrame)
    members = {
        name: set(frame.filter(pl.col(name))["customer_id"].to_list()) for name in plan.order
    }
    return members, {"predictions_model": facts.predictions_model, **evaluation.reference}


def test_refresh_writes_history_once_and_moves_forward(db: str) -> None:
    _simulated(db)
    first = service.refresh(db, STORE, as_of=END)
    assert first.written and first.entered > 0 and first.exited == 0
    assert first.entered == sum(first.members.values())
    counts = _history(db)
    assert counts["segment_memberships"] == first.entered
    assert counts["segment_events"] == first.entered
    assert counts["segment_refreshes"] == 1

    again = service.refresh(db, STORE, as_of=END)
    assert (again.entered, again.exited, again.written) == (0, 0, False)
    assert _history(db) == counts  # refreshing twice with no new data writes nothing
    assert again.members == first.members

    later = service.refresh(db, STORE, as_of=END + 45 * DAY)
    assert later.exited > 0 and later.entered > 0  # time alone moves people (lapsed, new...)
    after = _history(db)
    assert after["segment_events"] == counts["segment_events"] + later.entered + later.exited
    assert after["segment_memberships"] == counts["segment_memberships"] + later.entered
    closed = rows(
        db,
        "SELECT COUNT(*), MIN(exited_at), MAX(exited_at) FROM segment_memberships WHERE exited_at IS NOT NULL",
    )
    assert closed[0] == (later.exited, END + 45 * DAY, END + 45 * DAY)
    # The open stays are exactly the engine's members at that time.
    members, _ = _flags(db, END + 45 * DAY)
    assert _open_members(db) == {(n, c) for n, ids in members.items() for c in ids}

    with pytest.raises(InputError, match="before the last refresh"):
        service.refresh(db, STORE, as_of=END)


def _add_activity(db: str, customer_email: str, at: int, key: str) -> None:
    """A new order (with a line) and a product view for an existing customer."""
    order = pl.DataFrame(
        {
            "external_id": [f"#live-{key}"], "customer_key": [customer_email],
            "email": [customer_email], "placed_at": [at], "currency": ["USD"],
            "subtotal_minor": [12_345], "discount_minor": [0], "shipping_minor": [0],
            "tax_minor": [0], "total_minor": [12_345], "refunded_minor": [0],
            "status": ["paid"], "channel": ["online"], "source": ["test"],
            "lines_digest": [f"d-{key}"],
        }
    )  # fmt: skip
    line = pl.DataFrame(
        {
            "order_external_id": [f"#live-{key}"], "line_no": [1], "sku": ["LIVE-1"],
            "name": ["Live"], "category": ["Coffee"], "quantity": [1],
            "unit_price_minor": [12_345], "discount_minor": [0],
        }
    )  # fmt: skip
    event = pl.DataFrame(
        {
            "customer_key": [customer_email], "anonymous_id": [None], "type": ["product_viewed"],
            "occurred_at": [at - 60_000_000], "properties": ['{"category":"Coffee","sku":"LIVE-1"}'],
            "dedupe_key": [f"live-{key}"],
        }
    )  # fmt: skip
    apply_frames(
        db,
        STORE,
        {
            "orders": conform("orders", order),
            "lines": conform("lines", line),
            "events": conform("events", event),
        },
        currency="USD",
    )


def test_live_update_writes_what_a_refresh_would(db: str) -> None:
    _simulated(db)
    service.refresh(db, STORE, as_of=END)
    at = END + 10 * DAY
    picked = rows(
        db,
        "SELECT id, email FROM customers WHERE email IS NOT NULL ORDER BY id LIMIT 6",
    )
    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            reference = repo.latest_refresh(conn, stores_repo.get(conn, STORE).id)
        assert reference is not None
        before_events = _history(db)["segment_events"]
        changed = 0
        for i, (cid, email) in enumerate(picked):
            _add_activity(db, str(email), at - DAY, str(i))
            result = service.reevaluate_customer(engine, STORE, int(cid), at=at)
            changed += len(result.entered) + len(result.exited)
            # Repeating the live update changes nothing.
            repeat = service.reevaluate_customer(engine, STORE, int(cid), at=at)
            assert (repeat.entered, repeat.exited) == ([], [])
    finally:
        engine.dispose()
    assert changed > 0
    live_events = rows(db, "SELECT COUNT(*) FROM segment_events WHERE origin = 'live'")[0][0]
    assert live_events == changed
    assert _history(db)["segment_events"] == before_events + changed
    # What the engine says at the same time with the same thresholds, for those customers.
    members, _ = _flags(db, at, reference.reference)
    open_now = _open_members(db)
    for cid, _ in picked:
        expected = {name for name, ids in members.items() if int(cid) in ids}
        assert {n for n, c in open_now if c == int(cid)} == expected


@pytest.fixture(scope="module")
def agreement_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    db = str(tmp_path_factory.mktemp("agree") / "store.db")
    _simulated(db, customers=250, seed=5)
    # Predictions from a real fit (MBG/NBD: P(alive) < 1 for one-order customers too).
    fit_store(db, STORE, model="mbgnbd", n_draws=0)
    service.refresh(db, STORE, as_of=END)  # installs the built-ins and their thresholds
    service.create_segments(db, STORE, _custom_file(tmp_path_factory.mktemp("defs")))
    return db


def _custom_file(folder: object) -> object:
    from pathlib import Path

    path = Path(str(folder)) / "custom.yaml"
    path.write_text(
        """
- name: coffee-fans
  where: 'events.count(type="product_viewed", category="Coffee")[30d] >= 2 or orders.revenue(category="Coffee")[365d] >= 50'
- name: big-baskets-not-lapsed
  rule:
    all:
      - {field: orders.aov, window: 365d, op: ">=", value: 80}
      - not: {segment: lapsed}
      - any:
          - {field: consent.email}
          - {field: customer.country, op: in, value: [US, CA, GB]}
- name: quiet-vips
  where: 'segment("high-spenders") and events.days_since_last(type="visit") > 14'
""",
        encoding="utf-8",
    )
    return path


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(offset_days=st.integers(min_value=-200, max_value=120), hours=st.integers(0, 23))
def test_single_customer_evaluation_agrees_with_the_engine(
    agreement_store: str, offset_days: int, hours: int
) -> None:
    """For every customer of the store: the live evaluator = the full refresh's engine."""
    db = agreement_store
    at = END + offset_days * DAY + hours * 3_600_000_000
    members, reference = _flags(db, at)
    ids = [int(r[0]) for r in rows(db, "SELECT id FROM customers ORDER BY id")]
    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            store = stores_repo.get(conn, STORE)
            plan, _ = service.store_plan(conn, store.id)
            single = SingleEvaluator(plan, reference, store.currency, at)
            mismatches = []
            for cid in ids:
                facts = service.customer_facts(
                    conn, store.id, cid, plan, at, reference.get("predictions_model")
                )
                assert facts is not None
                got = {name for name, member in single.evaluate(facts).items() if member}
                expected = {name for name, idset in members.items() if cid in idset}
                if got != expected:
                    mismatches.append((cid, sorted(got ^ expected)))
    finally:
        engine.dispose()
    assert mismatches == []
    assert sum(len(v) for v in members.values()) > 0
