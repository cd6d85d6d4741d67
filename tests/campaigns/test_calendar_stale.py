"""The communication calendar (SQLite and PostgreSQL): last contact, last interaction, the
customers not contacted in N days, and a customer's merged timeline.

As of day 40 (2026-03-01 is day 0), --days 30 (cut-off: day 10):

| customer | orders          | marketing sent           | stale? (last contact)          |
|----------|-----------------|--------------------------|--------------------------------|
| ann      | d0              | d1 (opened d20)          | yes (d1)                       |
| bob      | d0              | d35                      | no                             |
| cat      | d5              | -                        | yes (never), site event d30    |
| dan      | -               | -                        | no: not a customer yet         |
| eve      | d3              | transactional d38 only   | yes (never)                    |
| fay      | d4              | holdout row d38 (skipped)| yes (never)                    |
| gus      | d2, cancelled   | -                        | no: no order that counts       |
| hal      | d1              | d10 exactly              | yes (d10: N days ago counts)   |
| ivy      | d6              | d2, and d45 (after as_of)| yes (d2)                       |

Order: never contacted first (by latest order: cat d5, fay d4, eve d3), then the longest
ago: ann d1, ivy d2, hal d10.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select
from tests.campaigns.campaign_store import DAY, HOUR, Person, at, build_store, write_flows

from boomerang.errors import InputError, NotFoundError
from boomerang.services import calendar, campaigns
from boomerang.services.context import open_engine
from boomerang.store.schema import customers, events, flows, loyalty_events, message_events, outbox
from boomerang.store.schema import orders as orders_table

D0 = at("2026-03-01 00:00")
AS_OF = D0 + 40 * DAY
FLOW = {"name": "news", "trigger": {"type": "order_placed", "which": "first"}, "holdout": 0.0,
        "steps": [{"send": {"channel": "email", "template": "generic"}}]}  # fmt: skip


def seed(db: str, tmp_path: Path) -> None:
    orders = {"ann": [0], "bob": [0], "cat": [5], "eve": [3], "fay": [4], "hal": [1], "ivy": [6]}
    people = [
        Person(k, orders=[(f"2026-03-{1 + d:02d} 12:00", 2500) for d in orders.get(k, [])])
        for k in ("ann", "bob", "cat", "dan", "eve", "fay", "gus", "hal", "ivy")
    ]
    build_store(db, "shop", people, consent_at=at("2026-01-01 00:00"))
    campaigns.set_flows(db, "shop", [write_flows(tmp_path, [FLOW])], start=D0)
    engine = open_engine(db)
    try:
        with engine.begin() as conn:
            store_id = int(conn.execute(select(flows.c.store_id).limit(1)).scalar_one())
            fid = int(conn.execute(select(flows.c.id)).scalar_one())
            cid = {
                r.external_id: int(r.id)
                for r in conn.execute(select(customers.c.id, customers.c.external_id))
            }
            n = 0

            def message(who: str, day: float, **kw: Any) -> int:
                nonlocal n
                n += 1
                when = D0 + int(day * DAY)
                status = kw.get("status", "sent")
                return int(conn.execute(
                    insert(outbox).values(
                        store_id=store_id, message_key=f"m{n}", flow_id=fid, run_id=None,
                        step_id="s1", customer_id=cid[who], channel="email", template="generic",
                        transactional=kw.get("transactional", 0), priority=50,
                        holdout=kw.get("holdout", 0), status=status, reason=kw.get("reason"),
                        not_before=when, attempts=1, sent_at=when if status == "sent" else None,
                        context="{}", created_at=when, updated_at=when,
                    ).returning(outbox.c.id)
                ).scalar_one())  # fmt: skip

            ann_msg = message("ann", 1)
            message("bob", 35)
            message("eve", 38, transactional=1)
            message("fay", 38, holdout=1, status="skipped", reason="holdout: measured, never sent")
            message("hal", 10)
            message("ivy", 2)
            message("ivy", 45)
            conn.execute(insert(message_events).values(
                store_id=store_id, outbox_id=ann_msg, customer_id=cid["ann"], type="open",
                url=None, occurred_at=D0 + 20 * DAY,
            ))  # fmt: skip
            conn.execute(insert(events).values(
                store_id=store_id, customer_id=cid["cat"], anonymous_id=None, type="visit",
                occurred_at=D0 + 30 * DAY, properties='{"page": "/"}', dedupe_key="v1",
            ))  # fmt: skip
            conn.execute(insert(loyalty_events).values(
                store_id=store_id, customer_id=cid["ann"], type="points_earned",
                payload='{"points": 25}', dedupe_key="l1", occurred_at=D0 + 12 * HOUR + 1,
            ))  # fmt: skip
            conn.execute(insert(orders_table).values(
                store_id=store_id, external_id="gus-o0", customer_id=cid["gus"],
                placed_at=D0 + 2 * DAY, currency="USD", subtotal_minor=900, discount_minor=0,
                shipping_minor=0, tax_minor=0, total_minor=900, refunded_minor=0,
                status="cancelled", cancelled_at=D0 + 2 * DAY, channel="online", source="test",
                digest="d-gus",
            ))  # fmt: skip
    finally:
        engine.dispose()


def test_stale_lists_existing_customers_not_contacted_in_n_days(db: str, tmp_path: Path) -> None:
    seed(db, tmp_path)
    result = calendar.stale(db, "shop", days=30, as_of=AS_OF)
    assert result.total == 6
    got = [(c.external_id, c.last_contact_at) for c in result.customers]
    assert got == [
        ("cat", None), ("fay", None), ("eve", None),
        ("ann", D0 + DAY), ("ivy", D0 + 2 * DAY), ("hal", D0 + 10 * DAY),
    ]  # fmt: skip
    by = {c.external_id: c for c in result.customers}
    assert by["ann"].last_interaction_at == D0 + 20 * DAY  # the open
    assert by["cat"].last_interaction_at == D0 + 30 * DAY  # the site visit
    assert by["eve"].last_interaction_at == D0 + 3 * DAY + 12 * HOUR  # the order
    assert by["ann"].orders == 1 and by["ann"].last_order_at == D0 + 12 * HOUR
    assert by["ann"].consent == {"email": "granted"}
    # bob was contacted on day 35: stale for --days 5 (exactly 5 days ago), not for 6.
    assert calendar.stale(db, "shop", days=5, as_of=AS_OF).total == 7
    assert calendar.stale(db, "shop", days=6, as_of=AS_OF).total == 6
    page = calendar.stale(db, "shop", days=30, as_of=AS_OF, limit=2)
    assert page.total == 6 and [c.external_id for c in page.customers] == ["cat", "fay"]
    # As of day 50, ivy's d45 message counts and she is no longer stale.
    later = calendar.stale(db, "shop", days=30, as_of=D0 + 50 * DAY)
    assert "ivy" not in {c.external_id for c in later.customers}
    with pytest.raises(InputError):
        calendar.stale(db, "shop", days=0)


def test_timeline_merges_everything_in_order(db: str, tmp_path: Path) -> None:
    seed(db, tmp_path)
    t = calendar.timeline(db, "shop", "ann", as_of=AS_OF)
    assert (t.external_id, t.last_contact_at, t.last_interaction_at) == (
        "ann", D0 + DAY, D0 + 20 * DAY,
    )  # fmt: skip
    assert [(i.kind, i.at) for i in t.items] == [
        ("order", D0 + 12 * HOUR),
        ("loyalty", D0 + 12 * HOUR + 1),
        ("message", D0 + DAY),
        ("open", D0 + 20 * DAY),
    ]
    assert t.items[0].summary == "order ann-o0: 25.00 USD, completed"
    assert t.items[2].summary == "email news · s1 (generic): sent"
    assert not t.more
    short = calendar.timeline(db, "shop", "ann@example.com", limit=2, as_of=AS_OF)
    assert [i.kind for i in short.items] == ["message", "open"] and short.more
    fay = calendar.timeline(db, "shop", "fay", as_of=AS_OF)
    assert fay.last_contact_at is None
    assert "skipped (holdout): holdout: measured, never sent" in fay.items[-1].summary
    with pytest.raises(NotFoundError):
        calendar.timeline(db, "shop", "nobody")
