"""Attribution against a hand-computed table (SQLite and PostgreSQL): which message each
order is credited to, the window's edges, clicks before sends, holdout and transactional
messages never credited, refunds and cancellations, and no order counted twice.

Times are days after 2026-03-01 00:00 UTC; the window is 5 days unless said otherwise.

| customer | messages (flow, time)                         | order (time, total)    | credited to          |
|----------|-----------------------------------------------|------------------------|----------------------|
| ann      | A1 welcome d0 10:00 (opened twice, clicked    | o1 d0 10:00 50.00      | - (same moment)      |
|          | d3 12:00); B1 winback d3 00:00                | o2 d2 00:00 20.00      | A1 (send)            |
|          |                                               | o3 d4 00:00 30.00      | A1 (click beats B1)  |
|          |                                               | o4 d8 06:00 10.00      | A1 (click, 4.75 d)   |
| bob      | A2 welcome d1 00:00 (unsubscribed d1 01:00)   | o5 d6 00:00 40.00      | A2 (exactly 5 d)     |
|          |                                               | o6 d6 00:01 15.00      | - (5 d + 1 min)      |
| cat      | holdout row of welcome d0 (skipped)           | o7 d1 00:00 25.00      | - (holdout)          |
| dan      | transactional welcome message d0 (sent)       | o8 d1 00:00 35.00      | - (transactional)    |
| eve      | A3 welcome d0 00:00                           | o9 d1 cancelled 60.00  | - (cancelled)        |
|          |                                               | o10 d2 50.00 - 20.00   | A3, revenue 30.00    |
| fay      | A4 welcome and B2 winback, both d0 00:00      | o11 d1 00:00 12.00     | B2 (tie: later id)   |

welcome: conversions o2, o3, o4, o5, o10 = 5, revenue 20 + 30 + 10 + 40 + 30 = 130.00;
winback: o11 = 1, 12.00. With a 3-day window: o2, o3, o10, o11 only (welcome 3 = 80.00).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import insert, select
from tests.campaigns.campaign_store import DAY, HOUR, Person, at, build_store, write_flows

from boomerang.campaigns.attribution import attribute
from boomerang.services import campaign_stats, campaigns
from boomerang.services.context import open_engine
from boomerang.store.repos import campaign_web
from boomerang.store.schema import customers, flow_runs, flows, message_events, orders, outbox

D0 = at("2026-03-01 00:00")
MIN = 60_000_000
AS_OF = at("2026-03-20 00:00")
FLOWS = [
    {"name": n, "trigger": {"type": "order_placed", "which": "first"}, "holdout": h,
     "steps": [{"send": {"channel": "email", "template": "generic"}}]}
    for n, h in (("welcome", 0.1), ("winback", 0.0))
]  # fmt: skip


def d(days: float, hours: int = 0, minutes: int = 0) -> int:
    return D0 + int(days * DAY) + hours * HOUR + minutes * MIN


def seed(db: str, tmp_path: Path) -> dict[str, int]:
    """The table above; returns message ids by name."""
    people = [Person(k) for k in ("ann", "bob", "cat", "dan", "eve", "fay")]
    build_store(db, "shop", people, consent_at=at("2026-01-01 00:00"))
    campaigns.set_flows(db, "shop", [write_flows(tmp_path, FLOWS)], start=D0)
    engine = open_engine(db)
    ids: dict[str, int] = {}
    try:
        with engine.begin() as conn:
            store_id = int(conn.execute(select(flows.c.store_id).limit(1)).scalar_one())
            cid = {
                r.external_id: int(r.id)
                for r in conn.execute(select(customers.c.id, customers.c.external_id))
            }
            fid = {r.name: int(r.id) for r in conn.execute(select(flows.c.id, flows.c.name))}

            def message(name: str, flow: str, who: str, when: int, **kw: Any) -> None:
                run = conn.execute(
                    insert(flow_runs).values(
                        store_id=store_id, flow_id=fid[flow], customer_id=cid[who],
                        entry_key=f"k-{name}", status="done", holdout=kw.get("holdout", 0),
                        step_id="end", due_at=when, entered_at=when, updated_at=when, version=1,
                        context="{}",
                    ).returning(flow_runs.c.id)
                ).scalar_one()  # fmt: skip
                status = kw.get("status", "sent")
                ids[name] = conn.execute(
                    insert(outbox).values(
                        store_id=store_id, message_key=f"m-{name}", flow_id=fid[flow],
                        run_id=run, step_id="s1", customer_id=cid[who], channel="email",
                        template="generic", transactional=kw.get("transactional", 0),
                        priority=50, holdout=kw.get("holdout", 0), status=status,
                        reason=kw.get("reason"), not_before=when, attempts=1,
                        sent_at=when if status == "sent" else None, context="{}",
                        created_at=when, updated_at=when,
                    ).returning(outbox.c.id)
                ).scalar_one()  # fmt: skip

            message("A1", "welcome", "ann", d(0, 10))
            message("B1", "winback", "ann", d(3))
            message("A2", "welcome", "bob", d(1))
            message("H", "welcome", "cat", d(0), holdout=1, status="skipped", reason="holdout")
            message("T", "welcome", "dan", d(0), transactional=1)
            message("A3", "welcome", "eve", d(0))
            message("A4", "welcome", "fay", d(0))
            message("B2", "winback", "fay", d(0))
            assert ids["A4"] < ids["B2"]
            for kind, name, who, when in (
                ("open", "A1", "ann", d(0, 11)), ("open", "A1", "ann", d(1)),
                ("click", "A1", "ann", d(3, 12)), ("unsubscribe", "A2", "bob", d(1, 1)),
            ):  # fmt: skip
                conn.execute(insert(message_events).values(
                    store_id=store_id, outbox_id=ids[name], customer_id=cid[who], type=kind,
                    url="https://shop.example/x" if kind == "click" else None, occurred_at=when,
                ))  # fmt: skip
            for ext, who, when, total, refunded, status in (
                ("o1", "ann", d(0, 10), 5000, 0, "paid"), ("o2", "ann", d(2), 2000, 0, "paid"),
                ("o3", "ann", d(4), 3000, 0, "paid"), ("o4", "ann", d(8, 6), 1000, 0, "paid"),
                ("o5", "bob", d(6), 4000, 0, "paid"), ("o6", "bob", d(6, 0, 1), 1500, 0, "paid"),
                ("o7", "cat", d(1), 2500, 0, "paid"), ("o8", "dan", d(1), 3500, 0, "paid"),
                ("o9", "eve", d(1), 6000, 0, "cancelled"),
                ("o10", "eve", d(2), 5000, 2000, "partially_refunded"),
                ("o11", "fay", d(1), 1200, 0, "paid"),
            ):  # fmt: skip
                conn.execute(insert(orders).values(
                    store_id=store_id, external_id=ext, customer_id=cid[who], placed_at=when,
                    currency="USD", subtotal_minor=total, discount_minor=0, shipping_minor=0,
                    tax_minor=0, total_minor=total, refunded_minor=refunded, status=status,
                    cancelled_at=when if status == "cancelled" else None, channel="online",
                    source="test", digest=f"d-{ext}",
                ))  # fmt: skip
    finally:
        engine.dispose()
    return ids


def credited(db: str, window: int | None) -> dict[str, tuple[str, str]]:
    """order external id -> (message name via flow/step/touch) from the service's frames."""
    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            data = campaign_stats._load(conn, "shop", window, AS_OF)
            found = campaign_stats._attributed(data)
            names = dict(conn.execute(select(orders.c.id, orders.c.external_id)).all())
    finally:
        engine.dispose()
    return {
        str(names[r["order_id"]]): (str(r["outbox_id"]), str(r["touch"]))
        for r in found.iter_rows(named=True)
    }


def test_each_order_is_credited_to_one_message_as_computed_by_hand(db: str, tmp_path: Path) -> None:
    ids = seed(db, tmp_path)
    name_of = {str(v): k for k, v in ids.items()}
    got = {o: (name_of[m], touch) for o, (m, touch) in credited(db, None).items()}
    assert got == {
        "o2": ("A1", "send"),
        "o3": ("A1", "click"),
        "o4": ("A1", "click"),
        "o5": ("A2", "send"),
        "o10": ("A3", "send"),
        "o11": ("B2", "send"),
    }

    result = campaign_stats.flow_stats(db, "shop", as_of=AS_OF)
    assert result.window_days == 5
    by = {f.name: f for f in result.flows}
    welcome, winback = by["welcome"], by["winback"]
    assert (welcome.conversions, welcome.attributed_revenue_minor) == (5, 13000)
    assert (winback.conversions, winback.attributed_revenue_minor) == (1, 1200)
    # One order, one message: the flows' conversions add up to the attributed orders.
    assert result.attributed_orders == 6 and result.attributed_revenue_minor == 14200
    # Tracking: sends exclude the holdout row; opens and clicks count messages, not events.
    assert (welcome.sends, welcome.suppressed, welcome.not_sent) == (5, 1, 0)
    assert (welcome.opens, welcome.clicks, welcome.unsubscribes) == (1, 1, 1)
    assert welcome.open_rate == 0.2 and (winback.sends, winback.opens) == (2, 0)
    assert (welcome.entrants, welcome.holdout_entrants) == (6, 1)
    assert [s.step_id for s in welcome.steps] == ["s1"] and welcome.steps[0].conversions == 5
    assert any("holdout entrants" in w for w in welcome.warnings)  # 1 < 30
    assert any("no holdout" in w for w in winback.warnings)
    assert winback.incrementality is None
    records = json.loads(json.dumps(result.records()))
    assert records["flows"][0]["open_rate"] == 0.2


def test_the_window_comes_from_the_option_else_the_setting(db: str, tmp_path: Path) -> None:
    ids = seed(db, tmp_path)
    name_of = {str(v): k for k, v in ids.items()}
    short = {o: name_of[m] for o, (m, _) in credited(db, 3).items()}
    assert short == {"o2": "A1", "o3": "A1", "o10": "A3", "o11": "B2"}
    engine = open_engine(db)
    try:
        with engine.begin() as conn:
            store_id = int(conn.execute(select(flows.c.store_id).limit(1)).scalar_one())
            campaign_web.merge_config(conn, store_id, {"attribution_window_days": 3}, D0)
    finally:
        engine.dispose()
    by_setting = campaign_stats.flow_stats(db, "shop", as_of=AS_OF)
    assert by_setting.window_days == 3
    welcome = next(f for f in by_setting.flows if f.name == "welcome")
    assert (welcome.conversions, welcome.attributed_revenue_minor) == (3, 8000)
    # --window wins over the setting.
    assert campaign_stats.flow_stats(db, "shop", as_of=AS_OF, window_days=5).window_days == 5


def test_attribute_alone_on_a_small_frame() -> None:
    """The pure function: the window's edges in microseconds and the tie rule."""
    w = 5 * DAY
    frame = pl.DataFrame(
        {"order_id": [1, 2, 3, 4], "customer_id": [7, 7, 7, 8],
         "placed_at": [100, 100 + w, 101 + w, 50], "revenue_minor": [10, 20, 30, 40]}
    )  # fmt: skip
    sends = pl.DataFrame(
        {"outbox_id": [1, 2, 3, 4], "customer_id": [7, 8, 8, 9], "sent_at": [100, 50, 40, 0]}
    )
    clicks = pl.DataFrame(
        {"outbox_id": [99], "customer_id": [7], "clicked_at": [99]}  # not a sent message
    )
    out = attribute(frame, sends, clicks, w)
    assert out.select("order_id", "outbox_id", "touch").rows() == [
        (2, 1, "send"),  # exactly the window after the send
        (4, 3, "send"),  # the send at 50 is the same moment: the earlier one is credited
    ]
    assert attribute(frame.clear(), sends, clicks, w).is_empty()
    assert HOUR * 24 == DAY


def test_report_section_and_commands(sqlite_db: str, tmp_path: Path) -> None:
    """The report's flows section and `flows stats` / `flows experiments` on the table."""
    import typer
    from typer.testing import CliRunner

    from boomerang.cli import flow_stats

    db = sqlite_db
    build_store(db, "empty", [Person("zed")], consent_at=D0)
    assert campaign_stats.flow_section(db, "empty") == ""
    assert campaign_stats.flow_stats(db, "empty").flows == []
    seed(db, tmp_path)
    html = campaign_stats.flow_section(db, "shop", as_of=AS_OF)
    assert html.startswith('<section id="flows">')
    assert 'data-flow="welcome"' in html and 'data-flow="winback"' in html
    assert "130.00" in html and "12.00" in html  # attributed revenue per flow
    assert "no holdout" in html

    app = typer.Typer()
    app.command("stats")(flow_stats.stats)
    app.command("experiments")(flow_stats.experiments)
    runner = CliRunner()
    common = ["--db", db, "--store", "shop", "--as-of", "2026-03-20"]
    shown = runner.invoke(app, ["stats", *common, "--steps"], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    assert "welcome" in shown.output and "130.00" in shown.output
    as_json = runner.invoke(app, ["stats", *common, "--json", "--window", "3"])
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.output)
    assert data["window_days"] == 3 and data["attributed_orders"] == 4
    none = runner.invoke(app, ["experiments", *common])
    assert none.exit_code == 0 and "No A/B steps" in none.output
    bad = runner.invoke(app, ["stats", *common, "--flow", "nope"])
    assert bad.exit_code != 0
