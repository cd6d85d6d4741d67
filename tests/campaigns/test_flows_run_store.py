"""Flows over simulated time on a hand-built store (SQLite and PostgreSQL): who gets what,
when, who leaves, what the arbiter skips and why, and that a rerun sends nothing twice."""

from __future__ import annotations

import email
import json
from collections import Counter
from email import policy
from pathlib import Path

from sqlalchemy import text
from tests.campaigns.campaign_store import DAY, HOUR, Person, at, build_store, write_flows

from boomerang.services import campaign_runtime, campaigns
from boomerang.services.context import open_engine

START = "2026-03-01 00:00"

THANK_YOU = {
    "name": "thank-you",
    "trigger": {"type": "order_placed", "which": "first"},
    "exit": {"placed_order": True},
    "holdout": 0.0,
    "steps": [
        {"send": {"channel": "email", "template": "generic"}},
        {"wait": "7d"},
        {"send": {"channel": "email", "template": "generic"}},
    ],
}
SECOND_ORDER = {
    "name": "second-order",
    "priority": 60,
    "trigger": {"type": "order_placed", "which": "nth", "n": 2},
    "holdout": 0.0,
    "steps": [
        {"coupon": {"kind": "percent_off", "value": 1000, "expires_days": 14}},
        {"send": {"channel": "email", "template": "generic"}},
    ],
}
PEOPLE = [
    Person("ann", orders=[("2026-03-02 10:00", 5000)]),
    Person("bob", orders=[("2026-03-02 12:00", 4000), ("2026-03-05 09:00", 3000)]),
    Person("cat", email_consent=False, orders=[("2026-03-03 08:00", 2000)]),
    Person("dan"),
    Person("eve", orders=[("2026-02-20 08:00", 1000)]),  # before the flows start: ignored
]


def rows(db: str, sql: str) -> list[tuple[object, ...]]:
    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


def test_flows_send_once_per_step_and_leave_on_an_order(db: str, tmp_path: Path) -> None:
    build_store(db, "shop", PEOPLE, consent_at=at("2026-01-01 00:00"))
    path = write_flows(tmp_path, [THANK_YOU, SECOND_ORDER])
    campaigns.set_flows(db, "shop", [path], start=at(START))
    out = tmp_path / "out"
    summary = campaign_runtime.simulate_until(db, "shop", at("2026-03-20 00:00"), out_dir=out)

    sent = rows(db, """
        SELECT f.name, c.external_id, o.step_id, o.status, o.reason, o.sent_at
        FROM outbox o JOIN flows f ON f.id = o.flow_id JOIN customers c ON c.id = o.customer_id
        ORDER BY f.name, c.external_id, o.step_id""")  # fmt: skip
    assert [(f, c, s, st) for f, c, s, st, _, _ in sent] == [
        ("second-order", "bob", "s2", "sent"),
        ("thank-you", "ann", "s1", "sent"),
        ("thank-you", "ann", "s3", "sent"),
        ("thank-you", "bob", "s1", "sent"),  # bob ordered again on day 5: left before s3
        ("thank-you", "cat", "s1", "skipped"),
        ("thank-you", "cat", "s3", "skipped"),
    ]
    sent_at = {(f, c, s): t for f, c, s, _, _, t in sent}
    # Simulated hourly grid: the run enters at the order's time (10:00, a grid point), so
    # the first email goes at 10:00; the second is due 7 days after that step's scheduled
    # time, at 10:00 again. bob's 12:00 order: 12:00.
    assert sent_at[("thank-you", "ann", "s1")] == at("2026-03-02 10:00")
    assert sent_at[("thank-you", "bob", "s1")] == at("2026-03-02 12:00")
    assert sent_at[("thank-you", "ann", "s3")] == at("2026-03-09 10:00")
    assert {r for _, c, _, st, r, _ in sent if st == "skipped"} == {
        "no email marketing consent (no consent record)"
    }
    runs = rows(db, """
        SELECT f.name, c.external_id, r.status, r.exit_reason FROM flow_runs r
        JOIN flows f ON f.id = r.flow_id JOIN customers c ON c.id = r.customer_id
        ORDER BY f.name, c.external_id""")  # fmt: skip
    assert runs == [
        ("second-order", "bob", "done", None),
        ("thank-you", "ann", "done", None),
        ("thank-you", "bob", "exited", "placed an order"),
        ("thank-you", "cat", "done", None),
    ]
    assert (summary.dispatch.sent, summary.dispatch.skipped) == (4, 2)

    # The files: one .eml per sent message, with RFC 8058 headers and bob's coupon code.
    files = sorted(out.glob("*.eml"))
    assert len(files) == 4
    parsed = [email.message_from_bytes(f.read_bytes(), policy=policy.default) for f in files]
    assert Counter(str(m["To"]) for m in parsed) == Counter(
        {"ann@example.com": 2, "bob@example.com": 2}
    )
    assert all(str(m["List-Unsubscribe"]).startswith("<http") for m in parsed)
    ((code, context),) = rows(db, """
        SELECT cp.code, o.context FROM coupons cp, outbox o
        WHERE cp.source LIKE 'flow-run:%' AND o.step_id = 's2'""")  # fmt: skip
    coupon = json.loads(str(context))["coupons"]["offer"]
    assert coupon["code"].replace("-", "") == code and coupon["value"] == 1000

    # Running again over the same time sends nothing and changes nothing.
    again = campaign_runtime.simulate_until(db, "shop", at("2026-03-20 00:00"), out_dir=out)
    assert (again.dispatch.sent, again.tick.advanced, sum(again.entered.values())) == (0, 0, 0)
    assert len(rows(db, "SELECT id FROM outbox")) == 6
    assert len(list(out.glob("*.eml"))) == 4


def test_a_cap_keeps_the_higher_priority_flow_and_queues_or_skips_the_rest(
    db: str, tmp_path: Path
) -> None:
    """Three flows fire on the same first order within the 16-hour email cap: the
    priority-80 one is sent, the priority-60 one is queued until the cap frees, the
    priority-20 one is skipped with the reason recorded."""
    build_store(db, "shop", [Person("ann", orders=[("2026-03-02 10:00", 5000)])],
                consent_at=at("2026-01-01 00:00"))  # fmt: skip
    flows = [
        {"name": name, "priority": priority, "holdout": 0.0,
         "trigger": {"type": "order_placed", "which": "first"},
         "steps": [{"send": {"channel": "email", "template": "generic"}}]}
        for name, priority in (("vip", 80), ("thanks", 60), ("promo", 20))
    ]  # fmt: skip
    campaigns.set_flows(db, "shop", [write_flows(tmp_path, flows)], start=at(START))
    campaign_runtime.simulate_until(db, "shop", at("2026-03-04 00:00"), out_dir=tmp_path / "o")
    got = rows(db, """
        SELECT f.name, o.status, o.reason, o.sent_at FROM outbox o
        JOIN flows f ON f.id = o.flow_id ORDER BY f.name""")  # fmt: skip
    by_flow = {name: (status, reason, sent) for name, status, reason, sent in got}
    assert by_flow["vip"][0] == "sent" and by_flow["vip"][2] == at("2026-03-02 10:00")
    assert by_flow["thanks"][0] == "sent"  # queued, then sent when the cap freed
    assert by_flow["thanks"][1] == "frequency cap (email): queued"
    assert by_flow["thanks"][2] == at("2026-03-03 02:00")  # 10:00 + 16 h
    assert by_flow["promo"][:2] == ("skipped", "frequency cap (email); priority 20 < 50")


def test_holdout_enters_but_is_never_sent_anything(db: str, tmp_path: Path) -> None:
    people = [Person(f"p{i:03d}", orders=[("2026-03-02 10:00", 1000)]) for i in range(200)]
    build_store(db, "shop", people, consent_at=at("2026-01-01 00:00"))
    flow = {**SECOND_ORDER, "name": "first", "holdout": 0.25,
            "trigger": {"type": "order_placed", "which": "first"}}  # fmt: skip
    campaigns.set_flows(db, "shop", [write_flows(tmp_path, [flow])], start=at(START))
    campaign_runtime.simulate_until(db, "shop", at("2026-03-03 00:00"), out_dir=tmp_path / "o")
    held = rows(db, "SELECT holdout, COUNT(*) FROM flow_runs GROUP BY holdout ORDER BY holdout")
    assert sum(int(n) for _, n in held) == 200  # type: ignore[call-overload]
    n_held = dict(held).get(1, 0)
    assert 25 <= int(n_held) <= 75  # type: ignore[call-overload]
    status = rows(db, "SELECT holdout, status, COUNT(*) FROM outbox GROUP BY holdout, status")
    assert sorted(status) == sorted([(0, "sent", 200 - n_held), (1, "skipped", n_held)])
    # The holdout got no coupon either.
    assert rows(db, "SELECT COUNT(*) FROM coupons") == [(200 - n_held,)]
    assert DAY == 24 * HOUR
