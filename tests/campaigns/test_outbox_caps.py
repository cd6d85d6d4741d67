"""The frequency cap holds under load (S6), on SQLite and PostgreSQL, with SMTP to an
aiosmtpd sink in its own process.

Three flows and two broadcasts (to a segment of everyone, made with `segments create` and
`segments refresh`) hit 1,000 customers within 16 hours of simulated time; two workers
(threads, each with its own engine and worker id) dispatch at each point of the simulated
grid. With the default rules (one marketing email per 16 h, defer priority 50) every
customer gets at most one marketing email in any 16-hour window (checked on the outbox's
send times and on what the sink received); what the cap blocked is skipped (priority below
50) or queued until the cap frees (sent at the earliest at the previous send + 16 h).

Also: across workers the higher-priority message wins the capped slot (it used to go to
whichever worker got there first).
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from tests.campaigns.campaign_store import Person, at, write_flows
from tests.campaigns.outbox_support import (
    DAY,
    HOUR,
    STORE,
    audit,
    audit_problems,
    duplicates,
    expected_message_id,
    make_shop,
    outbox,
    smtp_sink,
    sqlite_held_open,
    stamp,
)

from boomerang.campaigns.channels.base import Message
from boomerang.domain.clock import now_micros
from boomerang.services import campaign_runtime, campaigns, segments
from boomerang.services.context import open_engine

T0 = "2026-04-06 06:00"
CUSTOMERS = 1_000
CAP = 16 * HOUR
GRID = HOUR
HORIZON = 18 * HOUR  # the cap frees again for the customers who ordered in the first 2 h


def _flows(t0: int) -> list[dict[str, object]]:
    order = {"type": "order_placed", "which": "first"}
    send = {"send": {"channel": "email", "template": "generic"}}

    def broadcast(hours: int) -> str:
        return stamp(t0 + hours * HOUR).replace(" ", "T") + ":00Z"

    return [
        {"name": "thanks", "priority": 60, "holdout": 0.0,
         "trigger": {"type": "order_placed", "which": "any"}, "steps": [send]},
        {"name": "vip", "priority": 80, "holdout": 0.0, "trigger": order,
         "steps": [{"wait": "2h"}, send]},
        {"name": "nudge", "priority": 30, "holdout": 0.0, "trigger": order,
         "steps": [{"wait": "6h"}, send]},
        {"name": "news", "priority": 50, "holdout": 0.0,
         "trigger": {"type": "broadcast", "segment": "everyone", "at": broadcast(3)},
         "steps": [send]},
        {"name": "flash", "priority": 40, "holdout": 0.0,
         "trigger": {"type": "broadcast", "segment": "everyone", "at": broadcast(10),
                     "expires_hours": 6},
         "steps": [send]},
    ]  # fmt: skip


@pytest.mark.slow
@pytest.mark.xdist_group("campaign-processes")
def test_s6_three_flows_two_broadcasts_at_most_one_email_per_16h(db: str, tmp_path: Path) -> None:
    t0 = at(T0)
    people = [Person(f"k{i:04d}", orders=[(stamp(t0 + (i % 16) * 15 * 60_000_000), 2500)])
              for i in range(CUSTOMERS)]  # fmt: skip
    with smtp_sink(tmp_path / "sink.jsonl") as sink:
        shop = make_shop(db, tmp_path, people, [], start=t0, smtp_port=sink.port,
                         consent_at=t0 - 60 * DAY)  # fmt: skip
        try:
            (tmp_path / "segments.yaml").write_text(
                "- name: everyone\n  where: customer.has_email\n", encoding="utf-8"
            )
            segments.create_segments(db, STORE, tmp_path / "segments.yaml")
            refreshed = segments.refresh(db, STORE, as_of=t0 - HOUR, builtins=False)
            assert refreshed.members["everyone"] == CUSTOMERS
            campaigns.set_flows(db, STORE, [write_flows(tmp_path, _flows(t0))], start=t0 - GRID)
            with sqlite_held_open(db), _Workers(db, 2) as workers:
                t = t0 - GRID
                while t < t0 + HORIZON:
                    t += GRID
                    campaigns.enter(shop.engine, STORE, t)
                    campaigns.tick(shop.engine, STORE, t)
                    workers.dispatch(t)
            rows = outbox(shop.engine)
            changes = audit(shop.engine)
            with shop.engine.connect() as conn:
                flow_names: dict[int, str] = {
                    int(i): str(n) for i, n in conn.execute(text("SELECT id, name FROM flows"))
                }
        finally:
            shop.close()
    received = sink.received()

    marketing = [r for r in rows if r["status"] == "sent" and not r["transactional"]]
    times: dict[int, list[int]] = {}
    for r in marketing:
        times.setdefault(int(r["customer_id"]), []).append(int(r["sent_at"]))
    worst = max(
        sum(1 for u in ts if t <= u < t + CAP) for ts in times.values() for t in ts
    )  # the most marketing emails any customer got in a 16 h window
    gaps = [
        b - a for ts in times.values() for a, b in zip(sorted(ts), sorted(ts)[1:], strict=False)
    ]
    outcome = Counter(
        (flow_names[int(r["flow_id"])], str(r["status"]), str(r["reason"] or ""))
        for r in rows
    )  # fmt: skip
    per_customer = Counter(len(ts) for ts in times.values())
    print(f"\nS6 {shop.engine.dialect.name}: {len(rows)} messages to {CUSTOMERS} customers, "
          f"{len(marketing)} marketing emails sent, per customer {dict(per_customer)}; "
          f"max per customer in any 16 h window: {worst}; smallest gap "
          f"{min(gaps) / HOUR if gaps else None} h")  # fmt: skip
    for key, n in sorted(outcome.items()):
        print(f"  {n:5d}  {key}")

    assert len(times) == CUSTOMERS  # everyone got something
    assert worst == 1
    assert all(g >= CAP for g in gaps)
    assert gaps and min(gaps) == CAP  # a deferred message goes the moment the cap frees
    # What the cap blocked: low priority skipped with the reason, the rest queued.
    assert outcome[("nudge", "skipped", "frequency cap (email); priority 30 < 50")] == CUSTOMERS
    assert outcome[("flash", "skipped", "frequency cap (email); priority 40 < 50")] == CUSTOMERS
    assert {s for (f, s, _) in outcome if f in ("vip", "news", "thanks")} <= {"sent", "queued"}
    # The sink got exactly what the outbox says was sent, once each.
    ids = [str(e["message_id"]) for e in received]
    assert duplicates(ids) == {}
    assert sorted(ids) == sorted(expected_message_id(str(r["message_key"])) for r in marketing)
    by_address = Counter(str(e["rcpt"][0]) for e in received)
    assert max(by_address.values()) == max(per_customer)
    assert audit_problems(changes) == []


class _Workers:
    """Worker threads, each with its own engine and worker id, that dispatch together at
    the moment they are given until nothing is ready."""

    def __init__(self, db: str, count: int) -> None:
        self.engines = [open_engine(db) for _ in range(count)]
        self.runtimes = [campaign_runtime.runtime(e, STORE) for e in self.engines]

    def __enter__(self) -> _Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        for rt, engine in zip(self.runtimes, self.engines, strict=True):
            rt.close()
            engine.dispose()

    def dispatch(self, now: int) -> None:
        errors: list[BaseException] = []
        barrier = threading.Barrier(len(self.engines))

        def work(i: int) -> None:
            engine, rt = self.engines[i], self.runtimes[i]
            try:
                barrier.wait()
                while True:
                    part = campaigns.dispatch(engine, STORE, now, channels=rt.channels,
                                              build=rt.build, worker=f"t{i}", limit=50)  # fmt: skip
                    if not (part.sent or part.skipped or part.deferred or part.failed):
                        return
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(self.engines))]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert errors == []


@pytest.mark.xdist_group("campaign-processes")
def test_the_higher_priority_message_wins_the_capped_slot_across_workers(
    db: str, tmp_path: Path
) -> None:
    """One customer, two marketing emails ready at the same moment: `vip` (priority 80)
    and `news` (50). Worker A claims `vip` (claims go by priority); while A renders it,
    worker B claims `news` and sends it. The cap then refuses A, and `vip` waits 16 h."""
    now = now_micros()
    flows = [
        {"name": name, "priority": priority, "holdout": 0.0,
         "trigger": {"type": "order_placed", "which": "first"},
         "steps": [{"send": {"channel": "email", "template": "generic"}}]}
        for name, priority in (("vip", 80), ("news", 50))
    ]  # fmt: skip
    with smtp_sink(tmp_path / "sink.jsonl") as sink:
        shop = make_shop(db, tmp_path, [Person("ann", orders=[(stamp(now - HOUR), 900)])],
                         flows, start=now - DAY, smtp_port=sink.port,
                         consent_at=now - 30 * DAY)  # fmt: skip
        engine_b = open_engine(db)
        rt_a = campaign_runtime.runtime(shop.engine, STORE)
        rt_b = campaign_runtime.runtime(engine_b, STORE)
        try:
            campaigns.enter(shop.engine, STORE, now)
            assert campaigns.tick(shop.engine, STORE, now).queued == 2

            def build_a(
                rows: list[dict[str, Any]], contacts: dict[int, dict[str, Any]]
            ) -> dict[int, Message | Exception]:
                campaigns.dispatch(engine_b, STORE, now, channels=rt_b.channels,
                                   build=rt_b.build, worker="B", limit=1)  # fmt: skip
                return rt_a.build(rows, contacts)

            campaigns.dispatch(shop.engine, STORE, now, channels=rt_a.channels, build=build_a,
                               worker="A", limit=1)  # fmt: skip
            with shop.engine.connect() as conn:
                got: dict[str, str] = dict(conn.execute(text(
                    "SELECT f.name, o.status FROM outbox o JOIN flows f ON f.id = o.flow_id"
                )).all())  # fmt: skip
        finally:
            rt_a.close()
            rt_b.close()
            engine_b.dispose()
            shop.close()
    print(f"\npriority across workers: {got}")
    assert got == {"vip": "sent", "news": "queued"}
