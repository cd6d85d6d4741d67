"""The flow library (docs/flow-library.md): every file parses and its templates validate,
and the main flows run on hand-built customer timelines over simulated time: who gets
what, when, and who leaves the flow.

Library flows are installed as they ship, holdout included (10% for most): which
customers it draws is a hash of the flow and the customer id, so `expect_messages` works
out who is held out and expects their messages to be recorded as skipped ("holdout")
instead of sent (and no coupon). Times are exact: the hourly grid of `flows run`.

Every timeline runs on SQLite; the event-driven flows (welcome, cart abandonment,
complaint recovery, referral ask) also run together in one PostgreSQL store, with the
default trigger scan of `flows run` (a day ahead), and the flows that give something on
the loyalty ledger or read segment history (the birthday experiment's store credit,
vip-gift, renewal-bonus) run on both engines. Most SQLite timelines scan further
ahead so the simulated clock jumps over quiet days and months (replenishment runs over a
year): all data is loaded up front, so the result is the same, which the PostgreSQL run
of the same four scenarios cross-checks.
"""

from __future__ import annotations

import email
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from email import policy
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.campaigns.campaign_store import (
    DAY,
    Person,
    Product,
    at,
    build_store,
    customer_ids,
    outbox_of,
    query,
    runs_of,
)

from boomerang.campaigns.channels.files import FileChannel, file_stem
from boomerang.campaigns.engine import in_holdout, variant_for
from boomerang.campaigns.flow import Broadcast, IssueCoupon, Send
from boomerang.campaigns.templates import BUILTIN_DIR, TemplateError, TemplateSet, carried_before
from boomerang.errors import InputError, NotFoundError
from boomerang.services import campaign_runtime, campaigns, flow_library
from boomerang.services import loyalty as loyalty_service
from boomerang.services import memberships as membership_service
from boomerang.services import segments as segments_service
from boomerang.services.campaign_context import build_contexts
from boomerang.services.campaign_render import validate_flow_templates
from boomerang.services.campaigns import read_flow_files
from boomerang.services.context import open_engine

CONSENT = at("2026-01-01 00:00")
HOLDOUT = "holdout: measured, never sent"
Event = tuple[str, str, dict[str, Any]]
EXPECTED = {
    "welcome", "post-purchase", "cart-abandonment", "browse-abandonment", "win-back",
    "replenishment", "vip-gift", "complaint-recovery", "birthday", "points-expiring",
    "tier-upgrade", "renewal-bonus", "referral-ask", "daily-deal", "newsletter",
}  # fmt: skip


# -- the files -------------------------------------------------------------------------------


def test_every_library_flow_parses_and_its_templates_validate() -> None:
    entries = flow_library.library()
    assert {e.name for e in entries} == EXPECTED
    parsed = read_flow_files([e.path for e in entries])
    templates = TemplateSet(None)
    for entry, flow in zip(entries, parsed, strict=True):
        assert entry.path.stem == flow.name
        assert flow.title and flow.description and entry.seed and entry.trigger
        assert validate_flow_templates(flow, None) == [], flow.name  # no warnings either
        sends = [s for s in flow.steps if isinstance(s, Send)]
        assert sends, flow.name
        for i, name in enumerate(dict.fromkeys(x.send.template for x in sends), start=1):
            assert name == f"lib-{flow.name}-{i}"  # lib-<flow>-<n>
        for step in sends:
            assert templates.has(step.send.template, step.send.channel)
        service = flow.holdout == 0.0
        assert service == (flow.name in {"complaint-recovery", "points-expiring", "tier-upgrade"})
        assert service or flow.holdout == 0.10
        if isinstance(flow.trigger, Broadcast):
            assert flow.trigger.segment == "email-engaged" and flow.reentry == "always"
    by_name = {f.name: f for f in parsed}
    assert by_name["complaint-recovery"].priority > by_name["welcome"].priority
    assert by_name["welcome"].priority > by_name["newsletter"].priority
    assert by_name["newsletter"].priority > by_name["daily-deal"].priority
    for name in ("win-back", "cart-abandonment", "browse-abandonment", "welcome"):
        assert by_name[name].exit.placed_order, name
    # Templates are validated with each combination of coupons and store credits a run can
    # hold at the step: the birthday card with the credit arm's credits.gift, and with the
    # discount arm's coupons.gift.
    assert carried_before(by_name["birthday"])["card"] == [
        {("credits", "gift"): "gift-credit"},
        {("coupons", "gift"): "gift-discount"},
    ]


def test_a_mistake_in_the_store_credit_branch_of_a_template_is_caught(tmp_path: Path) -> None:
    """An override of the birthday card whose store-credit branch names a field a credit
    does not have fails validation: that branch is rendered, though only one arm of the
    experiment grants credit."""
    (flow,) = flow_library.flows(["birthday"])
    source = (BUILTIN_DIR / "lib-birthday-1.html.j2").read_text(encoding="utf-8")
    broken = source.replace("credits.gift.amount |", "credits.gift.code |", 1)
    assert broken != source
    (tmp_path / "lib-birthday-1.html.j2").write_text(broken, encoding="utf-8")
    with pytest.raises(TemplateError, match=r"step 'card'.*'code' is undefined") as err:
        validate_flow_templates(flow, tmp_path)
    assert "amount, balance, currency, description" in err.value.message
    assert validate_flow_templates(flow, None) == []


def test_every_lib_template_belongs_to_a_library_flow() -> None:
    used = {t for e in flow_library.library() for t in e.templates}
    files = Path(flow_library.__file__).parent.parent / "campaigns" / "templates"
    found = {p.name.split(".")[0] for p in files.glob("lib-*.j2")}
    assert found == used


def test_the_win_back_series_is_instacarts() -> None:
    """9 emails over two weeks; free delivery with an expiry before the 6th, which extends
    it with a new coupon; the 9th a dollar amount (or the percent arm of the experiment)."""
    (flow,) = flow_library.flows(["win-back"])
    sends = [s for s in flow.steps if isinstance(s, Send)]
    assert [s.send.template for s in sends] == [f"lib-win-back-{i}" for i in range(1, 10)]
    steps = {s.id: s.coupon for s in flow.steps if isinstance(s, IssueCoupon)}
    assert steps["delivery"].kind == steps["extended"].kind == "free_shipping"
    assert steps["delivery"].expires_days == 5  # ends before the 6th email (day 6)
    assert steps["final-dollar"].kind == "amount_off" and steps["final-dollar"].value == 1000
    assert steps["final-percent"].kind == "percent_off"


def test_library_listing_show_and_unknown_names() -> None:
    entry = flow_library.library_flow("win-back")
    assert entry.segment == "at-risk" and entry.trigger == "entered segment at-risk"
    assert "Instacart" in entry.seed and entry.templates[0] == "lib-win-back-1"
    assert flow_library.source("welcome").startswith("# Seed 004")
    with pytest.raises(NotFoundError, match="no library flow 'nope'"):
        flow_library.source("nope")
    with pytest.raises(InputError, match="named twice"):
        flow_library.flows(["welcome", "welcome"])


def test_install_reports_missing_segments(sqlite_db: str) -> None:
    db = sqlite_db
    # (a store with no category anywhere fails `segments refresh`: see the xfail below)
    visit = ("2026-01-02 10:00", "product_viewed", {"category": "Hair"})
    build_store(db, "shop", [Person("ann", events=[visit])], consent_at=CONSENT)
    with pytest.raises(InputError, match="win-back needs 'at-risk'") as err:
        flow_library.install(db, "shop", ["welcome", "win-back"], start=CONSENT)
    assert "segments refresh" in (err.value.hint or "")
    assert query(db, "SELECT COUNT(*) FROM flows") == [(0,)]  # named: all or nothing

    result = flow_library.install(db, "shop", start=CONSENT)  # all: the rest are installed
    assert result.missing_segments == {
        "daily-deal": "email-engaged", "newsletter": "email-engaged",
        "vip-gift": "high-spenders", "win-back": "at-risk",
    }  # fmt: skip
    assert len(result.installed) == len(EXPECTED) - 4
    segments_service.refresh(db, "shop", as_of=CONSENT)  # creates the built-in segments
    rest = flow_library.install(db, "shop", sorted(result.missing_segments), start=CONSENT)
    assert rest.missing_segments == {} and rest.warnings == []
    assert [(s.name, s.version, s.changed) for s in rest.installed] == [
        (name, 1, True) for name in sorted(result.missing_segments)
    ]
    assert query(db, "SELECT COUNT(*) FROM flows") == [(len(EXPECTED),)]


def test_segments_refresh_works_on_a_store_without_events(sqlite_db: str) -> None:
    db = sqlite_db
    build_store(db, "shop", [Person("ann", orders=[("2025-12-01 10:00", 1000)])],
                consent_at=CONSENT)  # fmt: skip
    segments_service.refresh(db, "shop", as_of=at("2026-01-02 00:00"))
    assert query(db, "SELECT COUNT(*) FROM segments WHERE name = 'at-risk'") == [(1,)]


# -- running ---------------------------------------------------------------------------------


def install(db: str, names: list[str], start: str) -> None:
    result = flow_library.install(db, "shop", names, start=at(start))
    assert [s.name for s in result.installed] == names


def simulate(db: str, until: str, tmp: Path, *, scan_days: int = 1) -> campaigns.RunSummary:
    """What `boomerang flows run --until` does (`campaign_runtime.simulate_until`: hourly
    grid, messages to files in ``tmp/out``), without an fsync per file. ``scan_days`` > 1
    scans triggers further ahead so the clock can jump over empty months: the same result
    on a timeline whose data is all loaded up front (runs that enter early wait)."""
    engine = open_engine(db)
    rt = campaign_runtime.runtime(engine, "shop", out_dir=tmp / "out")
    opened: dict[str, FileChannel] = {}

    def channels(name: str) -> FileChannel:
        if name not in opened:
            opened[name] = FileChannel(tmp / "out", name=name, fsync=False)
        return opened[name]

    try:
        return campaigns.run_until(
            engine, "shop", at(until), channels=channels, build=rt.build, scan=scan_days * DAY
        )
    finally:
        rt.close()
        engine.dispose()


def held_out(db: str, flow: str, share: float = 0.10) -> set[str]:
    return {k for k, cid in customer_ids(db).items() if in_holdout(flow, cid, share)}


def expect_messages(db: str, flow: str, expected: dict[tuple[str, str], Any]) -> None:
    """The flow's outbox is exactly ``expected``: (customer, step) -> the time it was sent
    ('YYYY-MM-DD HH:MM'), or ("skipped", reason). A held-out customer's message that would
    have been sent is skipped as holdout instead."""
    got = outbox_of(db, flow)
    assert set(got) == set(expected), flow
    held = held_out(db, flow)
    for (key, step), want in expected.items():
        m = got[(key, step)]
        if isinstance(want, tuple):
            assert (m["status"], m["reason"]) == want, (key, step)
        elif key in held:
            assert (m["status"], m["reason"], m["not_before"]) == ("skipped", HOLDOUT, at(want))
        else:
            assert (m["status"], m["sent_at"]) == ("sent", at(want)), (key, step, m)


def email_of(tmp: Path, db: str, flow: str, key: str, step: str) -> email.message.EmailMessage:
    (run_id,) = query(db, f"""
        SELECT r.id FROM flow_runs r JOIN flows f ON f.id = r.flow_id
        JOIN customers c ON c.id = r.customer_id
        WHERE f.name = '{flow}' AND c.external_id = '{key}'""")[0]  # fmt: skip
    path = tmp / "out" / f"{file_stem(f'run:{run_id}:{step}')}.eml"
    parsed = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


def text_of(message: email.message.EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


# -- event-driven flows: one scenario each on SQLite, all four together on PostgreSQL ------


EVENTS_START, EVENTS_UNTIL = "2026-03-01 00:00", "2026-03-12 00:00"
NO_CONSENT = ("skipped", "no email marketing consent (no consent record)")


@dataclass(frozen=True)
class Scenario:
    """A flow's timeline: its people (keys end with a suffix so several scenarios can share
    a store) and the checks run after simulating EVENTS_START..EVENTS_UNTIL."""

    flow: str
    people: Callable[[str], list[Person]]
    check: Callable[[str, Path, str], None]


def welcome_people(s: str) -> list[Person]:
    return [
        Person(f"ann{s}", events=[("2026-03-02 10:00", "signed_up", {})]),
        # bob orders the next day: he leaves before the second email
        Person(
            f"bob{s}",
            events=[("2026-03-02 12:00", "newsletter_signup", {})],
            orders=[("2026-03-03 09:00", 3000)],
        ),
        # cat already bought before signing up: no first-order code at all
        Person(
            f"cat{s}",
            events=[("2026-03-04 08:00", "signed_up", {})],
            orders=[("2026-02-10 09:00", 2000)],
        ),
        Person(f"dan{s}", email_consent=False, events=[("2026-03-02 10:00", "signed_up", {})]),
        Person(f"eve{s}"),  # never signs up
    ]


def welcome_check(db: str, tmp: Path, s: str) -> None:
    ann, bob, cat, dan = (f"{k}{s}" for k in ("ann", "bob", "cat", "dan"))
    expect_messages(db, "welcome", {
        (ann, "hello"): "2026-03-02 10:00",  # at once: the 15% code
        (ann, "loyalty"): "2026-03-04 10:00",  # day 2: the loyalty program
        (ann, "reminder"): "2026-03-09 10:00",  # day 7: a week left on the code
        (bob, "hello"): "2026-03-02 12:00",
        (dan, "hello"): NO_CONSENT, (dan, "loyalty"): NO_CONSENT, (dan, "reminder"): NO_CONSENT,
    })  # fmt: skip
    held = held_out(db, "welcome")
    assert runs_of(db, "welcome") == [
        (ann, "done", None, ann in held),
        (bob, "exited", "placed an order", bob in held),
        (cat, "exited", "exit rule: orders.count >= 1", cat in held),
        (dan, "done", None, dan in held),
    ]
    messages = outbox_of(db, "welcome")
    for key in (ann, bob):
        coupons = messages[(key, "hello")]["context"].get("coupons", {})
        if key in held:  # the holdout gets no code
            assert coupons == {}
            continue
        code = coupons["welcome"]
        assert (code["kind"], code["value"]) == ("percent_off", 1500)
        assert code["expires_at"] == messages[(key, "hello")]["not_before"] + 14 * DAY
        body = text_of(email_of(tmp, db, "welcome", key, "hello"))
        assert "15% off" in body and code["code"] in body


def cart_people(s: str) -> list[Person]:
    started = "checkout_started"
    return [
        Person(f"ann{s}", events=[("2026-03-02 10:00", started, {"value": 5400})]),
        Person(f"bob{s}", events=[("2026-03-02 10:00", started, {})],  # ordered within 4 h
               orders=[("2026-03-02 11:00", 5400)]),
        Person(f"cat{s}", events=[("2026-03-02 09:00", started, {})],  # orders on day 2
               orders=[("2026-03-04 12:00", 3000)]),
    ]  # fmt: skip


def cart_check(db: str, tmp: Path, s: str) -> None:
    ann, cat = f"ann{s}", f"cat{s}"
    expect_messages(db, "cart-abandonment", {
        (ann, "saved-cart"): "2026-03-02 14:00",  # 4 h after the checkout: the saved cart
        (ann, "help"): "2026-03-03 14:00",
        (ann, "last-call"): "2026-03-05 14:00",  # only now free shipping
        (cat, "saved-cart"): "2026-03-02 13:00",
        (cat, "help"): "2026-03-03 13:00",
    })  # fmt: skip
    assert [r[:3] for r in runs_of(db, "cart-abandonment")] == [
        (ann, "done", None), (cat, "exited", "placed an order"),
    ]  # fmt: skip
    messages = outbox_of(db, "cart-abandonment")
    assert "coupons" not in messages[(ann, "saved-cart")]["context"]  # value before discount
    if ann not in held_out(db, "cart-abandonment"):
        shipping = messages[(ann, "last-call")]["context"]["coupons"]["shipping"]
        assert shipping["kind"] == "free_shipping"
        assert shipping["expires_at"] == at("2026-03-08 14:00")
        body = text_of(email_of(tmp, db, "cart-abandonment", ann, "saved-cart"))
        assert "Your cart is saved" in body


def complaint_people(s: str) -> list[Person]:
    complaint = "complaint_logged"
    return [
        Person(f"ann{s}", orders=[("2026-03-01 10:00", 5000)],
               events=[("2026-03-03 15:00", complaint, {"reason": "arrived broken"})]),
        Person(f"bob{s}", email_consent=False, events=[("2026-03-04 09:00", complaint, {})]),
        Person(f"cat{s}", orders=[("2026-03-01 10:00", 5000)]),  # happy
    ]  # fmt: skip


def complaint_check(db: str, tmp: Path, s: str) -> None:
    ann, bob = f"ann{s}", f"bob{s}"
    expect_messages(db, "complaint-recovery", {
        (ann, "apology"): "2026-03-03 15:00", (ann, "check-in"): "2026-03-10 15:00",
        # transactional service messages: sent without marketing consent, no holdout
        (bob, "apology"): "2026-03-04 09:00", (bob, "check-in"): "2026-03-11 09:00",
    })  # fmt: skip
    assert [r[:3] for r in runs_of(db, "complaint-recovery")] == [
        (ann, "done", None), (bob, "done", None),
    ]  # fmt: skip
    ids, title = customer_ids(db), "Complaint: answer today, replace or refund"
    tasks = [
        (t["customer_id"], t["title"], t["created_at"]) for t in campaigns.staff_tasks(db, "shop")
    ]
    assert sorted(x for x in tasks if x[0] in (ids[ann], ids[bob])) == sorted([
        (ids[ann], title, at("2026-03-03 15:00")), (ids[bob], title, at("2026-03-04 09:00")),
    ])  # fmt: skip
    code = outbox_of(db, "complaint-recovery")[(ann, "apology")]["context"]["coupons"]
    assert (code["next_order"]["kind"], code["next_order"]["value"]) == ("amount_off", 1000)
    body = text_of(email_of(tmp, db, "complaint-recovery", ann, "apology"))
    assert "replace it or refund you" in body and "$10.00 off" in body
    assert f"order {ann}-o0" in body


def referral_people(s: str) -> list[Person]:
    review = "review_written"
    return [
        Person(f"ann{s}", events=[("2026-03-02 18:00", review, {"rating": 5})]),
        Person(f"bob{s}", events=[("2026-03-02 18:00", review, {"rating": 2})]),
        Person(f"cat{s}", events=[("2026-03-02 09:00", review, {"rating": "4"})]),
        Person(f"dan{s}", events=[("2026-03-02 09:00", review, {})]),  # no rating
    ]


def referral_check(db: str, tmp: Path, s: str) -> None:
    ann, cat = f"ann{s}", f"cat{s}"
    expect_messages(db, "referral-ask", {
        (ann, "ask"): "2026-03-03 18:00",  # a day after the 5-star review
        (cat, "ask"): "2026-03-03 09:00",  # 4 stars (sent as text) is positive too
    })  # fmt: skip
    assert [r[:3] for r in runs_of(db, "referral-ask")] == [
        (ann, "done", None),
        (cat, "done", None),
    ]


WELCOME = Scenario("welcome", welcome_people, welcome_check)
CART = Scenario("cart-abandonment", cart_people, cart_check)
COMPLAINT = Scenario("complaint-recovery", complaint_people, complaint_check)
REFERRAL = Scenario("referral-ask", referral_people, referral_check)


def run_scenarios(
    db: str, tmp: Path, scenarios: dict[str, Scenario], *, scan_days: int = 30
) -> None:
    """Build one store with every scenario's people (suffix -> scenario), install their
    flows, simulate, then run each scenario's checks."""
    people = [p for suffix, sc in scenarios.items() for p in sc.people(suffix)]
    build_store(db, "shop", people, consent_at=CONSENT)
    install(db, [sc.flow for sc in scenarios.values()], EVENTS_START)
    simulate(db, EVENTS_UNTIL, tmp, scan_days=scan_days)
    for suffix, sc in scenarios.items():
        sc.check(db, tmp, suffix)


def test_welcome_gives_the_15_percent_code_and_leaves_on_the_first_order(
    sqlite_db: str, tmp_path: Path
) -> None:
    run_scenarios(sqlite_db, tmp_path, {"": WELCOME})


def test_cart_abandonment_saved_cart_then_help_then_free_shipping(
    sqlite_db: str, tmp_path: Path
) -> None:
    run_scenarios(sqlite_db, tmp_path, {"": CART})


def test_complaint_recovery_apologises_at_once_even_without_marketing_consent(
    sqlite_db: str, tmp_path: Path
) -> None:
    run_scenarios(sqlite_db, tmp_path, {"": COMPLAINT})


def test_referral_ask_after_a_positive_review_only(sqlite_db: str, tmp_path: Path) -> None:
    run_scenarios(sqlite_db, tmp_path, {"": REFERRAL})


def test_the_event_driven_flows_together_on_postgresql(pg_db: str, tmp_path: Path) -> None:
    """The four scenarios above in one PostgreSQL store (their customers apart), with the
    default trigger scan of `flows run` (the SQLite runs scan 30 days ahead: same result)."""
    scenarios = {"-w": WELCOME, "-c": CART, "-x": COMPLAINT, "-r": REFERRAL}
    run_scenarios(pg_db, tmp_path, scenarios, scan_days=1)


HAIR = [
    Product("SHAMPOO", "Shampoo", 1200, "Hair"),
    Product("CONDITIONER", "Conditioner", 1400, "Hair"),
    Product("BRUSH", "Brush", 900, "Tools"),
    Product("EXT", "Hair extensions", 8900, "Hair", lifespan_days=90),
]


def test_post_purchase_one_email_a_week_after_the_first_order(
    sqlite_db: str, tmp_path: Path
) -> None:
    db = sqlite_db
    history = [  # January buyers of shampoo + conditioner: what "complements" shampoo
        Person(f"h{i}", orders=[("2026-01-05 10:00", 2600)], lines={0: ["SHAMPOO", "CONDITIONER"]})
        for i in range(3)
    ]
    people = [
        *history,
        Person("ann", orders=[("2026-03-02 10:00", 1200)], lines={0: ["SHAMPOO"]}),
        # bob, a guest, orders twice in the week: one email, a week after the first order
        Person("bob", account_status="guest", lines={0: ["SHAMPOO", "BRUSH"], 1: ["BRUSH"]},
               orders=[("2026-03-03 08:00", 2100), ("2026-03-05 09:00", 900)]),
        # cat's first order was before the flow started: her second order starts nothing
        Person("cat", orders=[("2026-02-01 10:00", 900), ("2026-03-04 10:00", 900)],
               lines={0: ["BRUSH"], 1: ["BRUSH"]}),
    ]  # fmt: skip
    build_store(db, "shop", people, consent_at=CONSENT, products=HAIR)
    install(db, ["post-purchase"], "2026-03-01 00:00")
    simulate(db, "2026-03-14 00:00", tmp_path, scan_days=30)
    expect_messages(db, "post-purchase", {
        ("ann", "thanks"): "2026-03-09 10:00",
        ("bob", "thanks-guest"): "2026-03-10 08:00",
    })  # fmt: skip
    assert [r[:3] for r in runs_of(db, "post-purchase")] == [
        ("ann", "done", None), ("bob", "done", None),
    ]  # fmt: skip
    ids = customer_ids(db)
    for key, step in (("ann", "thanks"), ("bob", "thanks-guest")):
        context = outbox_of(db, "post-purchase")[(key, step)]["context"]
        variant = ["ten", "twenty"][variant_for("post-purchase", "ten-vs-twenty", ids[key], [1, 1])]
        assert context["variants"]["ten-vs-twenty"] == variant
        assert context["coupons"]["next_order"]["value"] == {"ten": 1000, "twenty": 2000}[variant]
    ann = text_of(email_of(tmp_path, db, "post-purchase", "ann", "thanks"))
    assert "review" in ann and "Goes well with your order" in ann
    assert "Conditioner" in ann  # bought with shampoo by others: the complement
    assert "Create my account" not in ann
    bob = text_of(email_of(tmp_path, db, "post-purchase", "bob", "thanks-guest"))
    assert "Save your details for next time" in bob and "You checked out as a guest" in bob


def test_win_back_instacart_series_from_the_at_risk_segment(sqlite_db: str, tmp_path: Path) -> None:
    db = sqlite_db
    regular = [("2026-01-01 10:00", 4000), ("2026-01-31 10:00", 4000)]  # every 30 days
    people = [
        Person("ann", orders=regular),
        Person("bob", orders=[*regular, ("2026-03-22 12:00", 4000)]),  # back after email 3
        Person("cat", orders=regular[:1]),  # one order: not at risk
        Person("dan", orders=[regular[0], ("2026-03-10 10:00", 4000)]),  # recent: not at risk
        Person(
            "eve", email_consent=False, sms_consent=True, phone="+14155550101", orders=regular
        ),  # at risk, but no email consent
    ]
    view = ("2026-01-01 09:00", "product_viewed", {"category": "Hair"})
    people[0].events.append(view)
    build_store(db, "shop", people, consent_at=CONSENT)
    # 48 days after the last order of a 30-day rhythm: overdue 1.6x -> at risk
    segments_service.refresh(db, "shop", as_of=at("2026-03-20 09:00"))
    install(db, ["win-back"], "2026-03-19 00:00")
    simulate(db, "2026-04-05 00:00", tmp_path, scan_days=30)
    days = {1: 20, 2: 21, 3: 22, 4: 23, 5: 24, 6: 26, 7: 28, 8: 30, 9: 33}  # March day
    schedule = {
        n: f"2026-03-{d} 09:00" if d <= 31 else f"2026-04-{d - 31:02d} 09:00"
        for n, d in days.items()
    }
    no_consent = ("skipped", "no email marketing consent (no consent record)")
    expected: dict[tuple[str, str], Any] = {("ann", f"email-{n}"): t for n, t in schedule.items()}
    expected |= {("bob", f"email-{n}"): schedule[n] for n in (1, 2, 3)}
    expected |= {("eve", f"email-{n}"): no_consent for n in schedule}
    expect_messages(db, "win-back", expected)
    assert [r[:3] for r in runs_of(db, "win-back")] == [
        ("ann", "done", None), ("bob", "exited", "placed an order"), ("eve", "done", None),
    ]  # fmt: skip
    messages = outbox_of(db, "win-back")
    first = messages[("ann", "email-1")]["context"]["coupons"]["delivery"]
    assert (first["kind"], first["expires_at"]) == ("free_shipping", at("2026-03-25 09:00"))
    sixth = messages[("ann", "email-6")]["context"]["coupons"]
    assert sixth["delivery"]["expires_at"] < messages[("ann", "email-6")]["not_before"]
    assert sixth["extended"]["expires_at"] == at("2026-03-31 09:00")  # extended past expiry
    ninth = messages[("ann", "email-9")]["context"]
    arm = ["dollar", "percent"][variant_for("win-back", "dollar-vs-percent",
                                            customer_ids(db)["ann"], [1, 1])]  # fmt: skip
    assert ninth["variants"]["dollar-vs-percent"] == arm
    final = ninth["coupons"]["final"]
    assert (final["kind"], final["value"]) == (
        ("amount_off", 1000) if arm == "dollar" else ("percent_off", 1000)
    )
    assert final["expires_at"] == at("2026-04-09 09:00")
    body = text_of(email_of(tmp_path, db, "win-back", "ann", "email-9"))
    assert ("$10.00 off" if arm == "dollar" else "10% off") in body
    six = email_of(tmp_path, db, "win-back", "ann", "email-6")
    assert "extended" in str(six["Subject"]) and "March 31, 2026" in text_of(six)


def test_replenishment_reminds_at_3_6_and_12_months(sqlite_db: str, tmp_path: Path) -> None:
    db = sqlite_db
    bought = ("2026-01-10 10:00", 8900)
    people = [
        Person("hal", orders=[bought], lines={0: ["EXT"]}),  # (held out of this flow)
        Person("ann", orders=[bought], lines={0: ["EXT"]}),
        # bob reorders before it runs out: no reminder for the first pair (the second is due
        # after the end of this timeline... see below)
        Person("bob", orders=[bought, ("2026-03-20 10:00", 8900)], lines={0: ["EXT"], 1: ["EXT"]}),
        # cat orders shampoo after the first reminder: she leaves the series
        Person("cat", orders=[bought, ("2026-04-20 10:00", 1200)],
               lines={0: ["EXT"], 1: ["SHAMPOO"]}),
        Person("dan", orders=[bought], lines={0: ["SHAMPOO"]}),  # no lifespan: nothing
    ]  # fmt: skip
    build_store(db, "shop", people, consent_at=CONSENT, products=HAIR)
    assert held_out(db, "replenishment") & {"hal", "ann", "bob", "cat"} == {"hal"}
    install(db, ["replenishment"], "2026-03-01 00:00")
    simulate(db, "2026-06-01 00:00", tmp_path, scan_days=400)
    # Jan 10 + 90 days - 7 days = Apr 3; then 90 days later Jul 2; then 180 days, Dec 29
    first = "2026-04-03 10:00"
    expect_messages(db, "replenishment", {
        ("hal", "running-low"): first, ("ann", "running-low"): first,
        ("cat", "running-low"): first,
    })  # fmt: skip
    simulate(db, "2027-01-01 00:00", tmp_path, scan_days=400)
    expect_messages(db, "replenishment", {
        ("hal", "running-low"): first, ("hal", "still-need"): "2026-07-02 10:00",
        ("hal", "last"): "2026-12-29 10:00",
        ("ann", "running-low"): first, ("ann", "still-need"): "2026-07-02 10:00",
        ("ann", "last"): "2026-12-29 10:00",
        ("cat", "running-low"): first,
        # bob's second purchase (Mar 20) runs low on Jun 11, and again Sep 9
        ("bob", "running-low"): "2026-06-11 10:00", ("bob", "still-need"): "2026-09-09 10:00",
    })  # fmt: skip
    assert [r[:3] for r in runs_of(db, "replenishment")] == [
        ("ann", "done", None), ("bob", "active", None), ("cat", "exited", "placed an order"),
        ("hal", "done", None),
    ]  # fmt: skip
    context = outbox_of(db, "replenishment")[("ann", "running-low")]["context"]
    assert context["trigger"]["product"] == "Hair extensions"
    assert context["trigger"]["interval_days"] == 90
    body = email_of(tmp_path, db, "replenishment", "ann", "running-low")
    assert str(body["Subject"]) == "Running low on Hair extensions?"


def test_birthday_gift_at_9_local_with_a_text_for_sms_subscribers(
    sqlite_db: str, tmp_path: Path
) -> None:
    db = sqlite_db
    people = [
        Person("ann", birthday="1990-05-10"),
        Person(
            "bob",
            birthday="1985-05-10",
            timezone="America/New_York",
            sms_consent=True,
            phone="+14155550123",
        ),
        Person("cat"),  # no birthday known
        Person("dan", birthday="1970-06-01"),  # not in this window
    ]
    build_store(db, "shop", people, consent_at=CONSENT)
    install(db, ["birthday"], "2026-05-01 00:00")
    simulate(db, "2026-05-12 00:00", tmp_path, scan_days=30)
    expect_messages(db, "birthday", {
        ("ann", "card"): "2026-05-10 09:00",
        ("bob", "card"): "2026-05-10 13:00",  # 09:00 in New York
        ("bob", "text"): "2026-05-10 13:00",
    })  # fmt: skip
    assert [r[:3] for r in runs_of(db, "birthday")] == [
        ("ann", "done", None),
        ("bob", "done", None),
    ]
    messages, ids = outbox_of(db, "birthday"), customer_ids(db)
    assert {key: arm_of(ids[key]) for key in ("ann", "bob")} == {"ann": "credit", "bob": "discount"}
    # ann, the credit arm: $10 of store credit on her account, no code
    card = messages[("ann", "card")]["context"]
    assert card["credits"] == {"gift": {"amount": 1000, "currency": "USD", "balance": 1000}}
    assert "coupons" not in card
    body = text_of(email_of(tmp_path, db, "birthday", "ann", "card"))
    assert "$10.00 of store credit" in body and "used automatically at checkout" in body
    # bob, the discount arm: a 10% off code valid two weeks from 09:00 New York time
    gift = messages[("bob", "card")]["context"]["coupons"]["gift"]
    assert (gift["kind"], gift["value"]) == ("percent_off", 1000)
    assert gift["expires_at"] == at("2026-05-24 13:00")
    assert "credits" not in messages[("bob", "card")]["context"]
    body = text_of(email_of(tmp_path, db, "birthday", "bob", "card"))
    assert "10% off" in body and gift["code"] in body
    assert messages[("bob", "text")]["channel"] == "sms"
    text = sms_of(tmp_path, db, "birthday", "bob", "text")
    assert gift["code"] in text and "until May 24, 2026" in text


def arm_of(customer_id: int) -> str:
    """The birthday experiment's arm of a customer (held out or not)."""
    return ["credit", "discount"][
        variant_for("birthday", "credit-vs-discount", customer_id, [1, 1])
    ]


def sms_of(tmp: Path, db: str, flow: str, key: str, step: str) -> str:
    """The text of an SMS the file channel wrote (a JSON document per message)."""
    (run_id,) = query(db, f"""
        SELECT r.id FROM flow_runs r JOIN flows f ON f.id = r.flow_id
        JOIN customers c ON c.id = r.customer_id
        WHERE f.name = '{flow}' AND c.external_id = '{key}'""")[0]  # fmt: skip
    path = tmp / "out" / f"{file_stem(f'run:{run_id}:{step}')}.json"
    return str(json.loads(path.read_text(encoding="utf-8"))["text"])


CODE = re.compile(r"\b[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}\b")  # a coupon code as shown


def test_birthday_credit_arm_gets_store_credit_once_and_no_code(db: str, tmp_path: Path) -> None:
    """The credit arm of the birthday experiment is store credit on the loyalty ledger:
    exactly 1000 cents per customer, once, even when two ticks run the gift step at the
    same moment (and again after); its email and text say so and show no code. The
    discount arm gets a 10% off code; the holdout gets neither."""
    names = ["ann", "bob", "cat", "dan", "eve", "fay", "gus", "hal", "ivy", "jon", "kim"]
    people = [Person(k, birthday="1990-05-10") for k in names]
    people[2] = Person("cat", birthday="1990-05-10", sms_consent=True, phone="+14155550124")
    build_store(db, "shop", people, consent_at=CONSENT)
    ids, held = customer_ids(db), held_out(db, "birthday")
    arms = {k: arm_of(ids[k]) for k in names}
    credit = {k for k in names if arms[k] == "credit" and k not in held}
    discount = {k for k in names if arms[k] == "discount" and k not in held}
    # (the hashes of these customer ids put someone in each group, cat in the credit arm)
    assert credit and discount and {arms[k] for k in held} == {"credit", "discount"}
    assert "cat" in credit
    install(db, ["birthday"], "2026-05-01 00:00")
    # Everyone enters at 00:00 UTC on May 10 and waits for 09:00 (their timezone: UTC).
    simulate(db, "2026-05-10 08:00", tmp_path, scan_days=30)
    assert {r[1] for r in runs_of(db, "birthday")} == {"active"}
    # At 09:00 two workers tick at once, then one ticks again: each run advances once.
    results: list[campaigns.TickResult] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def tick() -> None:
        engine = open_engine(db)
        try:
            barrier.wait()
            results.append(campaigns.tick(engine, "shop", at("2026-05-10 09:00")))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=tick) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    engine = open_engine(db)
    try:
        results.append(campaigns.tick(engine, "shop", at("2026-05-10 09:00")))
    finally:
        engine.dispose()
    assert sum(r.advanced for r in results) == len(names)  # 11 runs, once each
    assert sum(r.queued for r in results) == len(names) + 1  # a card each, cat's text
    simulate(db, "2026-05-12 00:00", tmp_path)  # the messages go out at 09:00
    expected: dict[tuple[str, str], Any] = {(k, "card"): "2026-05-10 09:00" for k in names}
    expected[("cat", "text")] = "2026-05-10 09:00"
    expect_messages(db, "birthday", expected)
    assert [r[:3] for r in runs_of(db, "birthday")] == [(k, "done", None) for k in names]
    messages = outbox_of(db, "birthday")
    engine = open_engine(db)
    try:
        for key in names:
            context = messages[(key, "card")]["context"]
            balance = loyalty_service.balance(engine, "shop", ids[key])
            assert balance["store_credit_minor"] == (1000 if key in credit else 0), key
            assert balance["balance"] == 0  # no points either
            if key in held:  # measured, never treated: no credit, no code
                assert "credits" not in context and "coupons" not in context
            elif key in credit:
                assert context["credits"] == {
                    "gift": {"amount": 1000, "currency": "USD", "balance": 1000}
                }
                assert "coupons" not in context
                card = email_of(tmp_path, db, "birthday", key, "card")
                assert str(card["Subject"]) == (
                    f"Happy birthday, {key.capitalize()}! $10.00 of store credit, on us"
                )
                body = text_of(card)
                assert "$10.00 of store credit" in body and "is in your account" in body
                assert "used automatically at checkout" in body and "anything" in body
                assert CODE.search(body) is None and "code" not in body.lower()
            else:
                gift = context["coupons"]["gift"]
                assert (gift["kind"], gift["value"]) == ("percent_off", 1000)
                assert gift["expires_at"] == at("2026-05-24 09:00")  # two weeks
                assert "credits" not in context
                body = text_of(email_of(tmp_path, db, "birthday", key, "card"))
                assert "10% off" in body and gift["code"] in body
                assert "valid until May 24, 2026" in body and "store credit" not in body
        text = sms_of(tmp_path, db, "birthday", "cat", "text")
        assert "$10.00 of store credit is in your account" in text
        assert CODE.search(text) is None
        # A retry of the step (its idempotency key: the run and the step) changes nothing.
        (run_id,) = query(db, """
            SELECT r.id FROM flow_runs r JOIN customers c ON c.id = r.customer_id
            WHERE c.external_id = 'cat'""")[0]  # fmt: skip
        again = loyalty_service.grant_credit(
            engine, "shop", ids["cat"], 1000, key=f"flow-run:{run_id}:gift-credit",
            reason="birthday gift", actor="campaign", now=at("2026-05-11 09:00"), system=True,
        )  # fmt: skip
        assert (again.replayed, again.balance) == (True, 1000)
        assert loyalty_service.balance(engine, "shop", ids["cat"])["store_credit_minor"] == 1000
    finally:
        engine.dispose()


def test_daily_deal_expires_the_same_day(sqlite_db: str, tmp_path: Path) -> None:
    """The deal goes to the email-engaged segment at 10:00 and ends at midnight. With the
    store's defer_priority lowered to the deal's priority (30), a deal blocked by the email
    cap is queued when the cap frees before midnight (cat) and skipped when it would only
    free after the deal expired (bob); by default (50) a capped deal is skipped at once."""
    db = sqlite_db
    opened: Event = ("2026-02-20 10:00", "email_opened", {})
    viewed = ("2026-02-20 10:05", "product_viewed", {"category": "Hair"})
    people = [
        Person("ann", events=[opened, viewed]),
        Person("bob", events=[opened, ("2026-03-03 08:00", "signed_up", {})]),
        Person("cat", events=[opened, ("2026-03-02 20:00", "signed_up", {})]),
        Person("dan"),  # never opened an email: not in the segment
    ]
    build_store(db, "shop", people, consent_at=CONSENT)
    settings = tmp_path / "settings.yaml"
    settings.write_text("arbiter: {defer_priority: 30}\n", encoding="utf-8")
    campaign_runtime.set_settings(db, "shop", settings)
    segments_service.refresh(db, "shop", as_of=at("2026-03-01 00:00"))
    install(db, ["welcome"], "2026-03-02 00:00")
    install(db, ["daily-deal"], "2026-03-03 00:00")
    simulate(db, "2026-03-04 00:00", tmp_path)
    expect_messages(db, "welcome", {
        ("bob", "hello"): "2026-03-03 08:00", ("cat", "hello"): "2026-03-02 20:00",
    })  # fmt: skip
    expect_messages(db, "daily-deal", {
        ("ann", "todays-deal"): "2026-03-03 10:00",
        ("bob", "todays-deal"): ("skipped", "frequency cap (email): would expire before it "
                                            "could be sent"),
        ("cat", "todays-deal"): "2026-03-03 12:00",  # the cap (16 h after 20:00) freed
    })  # fmt: skip
    deals = outbox_of(db, "daily-deal")
    assert {m["expires_at"] for m in deals.values()} == {at("2026-03-04 00:00")}
    assert deals[("ann", "todays-deal")]["context"]["coupons"]["deal"]["kind"] == "percent_off"
    body = text_of(email_of(tmp_path, db, "daily-deal", "ann", "todays-deal"))
    assert "Ends March 4, 2026, 00:00" in body


def test_on_a_newsletter_day_the_newsletter_takes_the_daily_deals_slot(
    sqlite_db: str, tmp_path: Path
) -> None:
    """Both broadcasts at 10:00 UTC on a newsletter day (every 14 days from Jan 13): the
    newsletter (priority 35) is dispatched first and takes the email slot; the deal (30)
    is then capped and, below defer_priority, skipped."""
    db = sqlite_db
    opened: Event = ("2026-02-20 10:00", "email_opened", {})
    viewed = ("2026-02-20 10:05", "product_viewed", {"category": "Hair"})
    build_store(db, "shop", [Person("ann", events=[opened, viewed])], consent_at=CONSENT)
    segments_service.refresh(db, "shop", as_of=at("2026-03-01 00:00"))
    install(db, ["daily-deal", "newsletter"], "2026-03-10 00:00")
    simulate(db, "2026-03-10 12:00", tmp_path)
    expect_messages(db, "newsletter", {("ann", "issue"): "2026-03-10 10:00"})
    expect_messages(db, "daily-deal", {
        ("ann", "todays-deal"): ("skipped", "frequency cap (email); priority 30 < 50"),
    })  # fmt: skip


def test_browse_abandonment_picks_without_a_discount(sqlite_db: str, tmp_path: Path) -> None:
    db = sqlite_db
    viewed = ("2026-03-02 10:00", "product_viewed", {"sku": "SHAMPOO", "category": "Hair"})
    people = [
        Person("ann", events=[viewed]),
        Person("bob", events=[viewed, ("2026-03-02 11:00", "add_to_cart", {"sku": "SHAMPOO"})]),
        Person("cat", events=[viewed], orders=[("2026-03-02 15:00", 1200)]),
        # two views the same day: one email
        Person("dan", events=[viewed, ("2026-03-02 14:00", "product_viewed", {"sku": "BRUSH"})]),
    ]
    build_store(db, "shop", people, consent_at=CONSENT, products=HAIR)
    install(db, ["browse-abandonment"], "2026-03-01 00:00")
    simulate(db, "2026-03-05 00:00", tmp_path)
    expect_messages(db, "browse-abandonment", {
        ("ann", "picks"): "2026-03-03 10:00", ("dan", "picks"): "2026-03-03 10:00",
    })  # fmt: skip
    assert "coupons" not in outbox_of(db, "browse-abandonment")[("ann", "picks")]["context"]


PROGRAM = """
earn: {points_per_unit: 1}
tiers:
  basis: points
  period: rolling_365
  levels:
    - {name: Silver, threshold: 0}
    - {name: Gold, threshold: 1000, perks: [free shipping]}
expiry: {mode: lot, days: 365, warn_days: 30}
"""


def loyalty_store(db: str, tmp: Path, people: list[Person]) -> None:
    build_store(db, "shop", people, consent_at=CONSENT)
    program = tmp / "program.yaml"
    program.write_text(PROGRAM, encoding="utf-8")
    loyalty_service.set_program(db, "shop", program)


def test_tier_upgrade_and_points_expiring_notices(sqlite_db: str, tmp_path: Path) -> None:
    db = sqlite_db
    loyalty_store(db, tmp_path, [Person("ann"), Person("bob")])
    ids, engine = customer_ids(db), open_engine(db)
    try:  # ann earns 1,200 points expiring on Mar 20: Gold at once, warned on Mar 3
        loyalty_service.earn(engine, "shop", ids["ann"], 1200, key="ann-1",
                             expires_at=at("2026-03-20 10:00"), now=at("2026-03-02 10:00"))  # fmt: skip
        change = loyalty_service.evaluate_tier(
            engine, "shop", ids["ann"], now=at("2026-03-02 10:00")
        )
        assert (change.old, change.new) == (None, "Gold")
        assert (
            loyalty_service.warn_expiring(engine, "shop", days=30, now=at("2026-03-03 09:00")) == 1
        )
    finally:
        engine.dispose()
    install(db, ["points-expiring", "tier-upgrade"], "2026-03-01 00:00")
    simulate(db, "2026-03-05 00:00", tmp_path)
    expect_messages(db, "tier-upgrade", {("ann", "congrats"): "2026-03-02 10:00"})
    expect_messages(db, "points-expiring", {("ann", "notice"): "2026-03-03 09:00"})
    subject = email_of(tmp_path, db, "tier-upgrade", "ann", "congrats")["Subject"]
    assert str(subject) == "Welcome to Gold, Ann!"


def test_tier_upgrade_is_not_sent_on_a_downgrade(sqlite_db: str, tmp_path: Path) -> None:
    db = sqlite_db
    loyalty_store(db, tmp_path, [Person("cat")])
    cid, engine = customer_ids(db)["cat"], open_engine(db)
    try:  # Gold in January 2025; at the review date (a year on) no points in 365 days
        loyalty_service.earn(engine, "shop", cid, 1200, key="cat-1", now=at("2025-01-10 10:00"))
        loyalty_service.evaluate_tier(engine, "shop", cid, now=at("2025-01-10 10:00"))
        change = loyalty_service.evaluate_tier(engine, "shop", cid, now=at("2026-03-02 12:00"))
        assert (change.old, change.new) == ("Gold", "Silver")
        install(db, ["tier-upgrade"], "2026-03-01 00:00")
        campaigns.enter(engine, "shop", at("2026-03-05 00:00"))
    finally:
        engine.dispose()
    assert runs_of(db, "tier-upgrade") == []


def test_browse_abandonment_min_views_is_honoured(sqlite_db: str, tmp_path: Path) -> None:
    db = sqlite_db
    viewed = ("2026-03-02 10:00", "product_viewed", {"sku": "SHAMPOO"})
    build_store(db, "shop", [Person("ann", events=[viewed])], consent_at=CONSENT)
    raw = yaml.safe_load(flow_library.source("browse-abandonment"))
    raw["trigger"]["min_views"] = 3
    path = tmp_path / "browse.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    campaigns.set_flows(db, "shop", [path], start=at("2026-03-01 00:00"))
    engine = open_engine(db)
    try:
        campaigns.enter(engine, "shop", at("2026-03-05 00:00"))
    finally:
        engine.dispose()
    assert runs_of(db, "browse-abandonment") == []


def test_vip_gift_a_staff_task_then_a_thank_you_two_days_later(db: str, tmp_path: Path) -> None:
    """Who enters is the high-spenders segment (top 10% of buyers by lifetime revenue, ties
    left out) as each refresh sees it; each entrant gets a staff task at once, the vip-gift
    tag, and the thank-you email two days later. The holdout gets no task, no tag and no
    email; a customer who drops out and comes back within the year is not let in again."""
    people = [
        Person("ann", orders=[("2026-01-05 10:00", 30000), ("2026-02-05 10:00", 30000)]),
        Person("bob", orders=[("2026-01-06 10:00", 40000)]),
        # cat is a small buyer until a big order on Mar 5
        Person("cat", orders=[("2026-01-07 10:00", 2000), ("2026-03-05 10:00", 80000)]),
        Person("dan", orders=[("2026-01-08 10:00", 50000)]),  # held out of this flow
        # 26 buyers of $15-$40
        *(Person(f"s{i:02d}", orders=[("2026-01-10 10:00", 1000 + 100 * i)]) for i in range(5, 31)),
        # 10 first orders in mid-March
        *(Person(f"n{i:02d}", orders=[("2026-03-15 10:00", 1000)]) for i in range(31, 41)),
    ]
    build_store(db, "shop", people, consent_at=CONSENT)
    assert held_out(db, "vip-gift") & {"ann", "bob", "cat", "dan"} == {"dan"}

    def refresh(when: str) -> tuple[int, int, int]:
        """(members, entered, exited) of high-spenders at a refresh as of ``when``."""
        done = segments_service.refresh(db, "shop", as_of=at(when))
        name = "high-spenders"
        entered, exited = done.entered_by_segment, done.exited_by_segment
        return done.members[name], entered.get(name, 0), exited.get(name, 0)

    # Mar 2: 30 buyers, the top 10% is 3: ann ($600), dan ($500), bob ($400).
    assert refresh("2026-03-02 09:00") == (3, 3, 0)
    install(db, ["vip-gift"], "2026-03-01 00:00")
    # Mar 9: cat ($820) is in, bob (4th) is out.
    assert refresh("2026-03-09 09:00") == (3, 1, 1)
    # Mar 20: 40 buyers, the top 10% is 4: bob is back (11 days after he left).
    assert refresh("2026-03-20 09:00") == (4, 1, 0)
    simulate(db, "2026-03-25 00:00", tmp_path, scan_days=30)
    expect_messages(db, "vip-gift", {
        ("ann", "thank-you"): "2026-03-04 09:00",  # entered Mar 2 09:00, + 2 days
        ("bob", "thank-you"): "2026-03-04 09:00",
        ("cat", "thank-you"): "2026-03-11 09:00",  # entered Mar 9 09:00
        ("dan", "thank-you"): "2026-03-04 09:00",  # held out: recorded as skipped
    })  # fmt: skip
    # One run each: bob's return on Mar 20 is within the 365 days of his first entry.
    assert runs_of(db, "vip-gift") == [
        ("ann", "done", None, False), ("bob", "done", None, False),
        ("cat", "done", None, False), ("dan", "done", None, True),
    ]  # fmt: skip
    ids = customer_ids(db)
    title = "VIP gift: send a gift with a handwritten note"
    tasks = campaigns.staff_tasks(db, "shop")
    assert sorted((t["customer_id"], t["title"], t["created_at"]) for t in tasks) == [
        (ids["ann"], title, at("2026-03-02 09:00")),  # at entry, two days before the email
        (ids["bob"], title, at("2026-03-02 09:00")),
        (ids["cat"], title, at("2026-03-09 09:00")),
    ]  # no task for dan (the holdout)
    for t in tasks:
        assert t["body"].startswith("This customer just became one of the store's top 10%")
        assert "handwritten, personal note" in t["body"] and "goes out in two days" in t["body"]
    engine = open_engine(db)
    try:
        contexts = build_contexts(engine, "shop", [ids[k] for k in ("ann", "bob", "cat", "dan")],
                                  sections=["customer"], create_referral_codes=False)  # fmt: skip
    finally:
        engine.dispose()
    tags = {c["customer"]["email"].split("@")[0]: c["customer"]["tags"] for c in contexts.values()}
    assert tags == {"ann": ["vip-gift"], "bob": ["vip-gift"], "cat": ["vip-gift"], "dan": []}
    email_ann = email_of(tmp_path, db, "vip-gift", "ann", "thank-you")
    assert str(email_ann["Subject"]) == "Ann, a little thank-you is on its way"
    body = text_of(email_ann)
    assert "2 orders so far" in body and "We have sent you a small gift with a note" in body
    assert "coupons" not in outbox_of(db, "vip-gift")[("ann", "thank-you")]["context"]


PLANS = Path(__file__).parents[2] / "examples" / "membership-plans.yaml"


def test_renewal_bonus_points_two_weeks_before_a_membership_renews(db: str, tmp_path: Path) -> None:
    """Chase's renewal bonus: 14 days before an annual membership renews, 1,000 points on
    the ledger (once, however often the tick runs) and the advocacy email; nothing for a
    non-member or a member who is cancelling; the holdout gets the run but no points and no
    email; the next year's renewal lets the member in again."""
    people = [Person("ann"), Person("bob"), Person("cat"), Person("dan")]
    build_store(db, "shop", people, consent_at=CONSENT)
    assert held_out(db, "renewal-bonus") == {"dan"}
    membership_service.set_plans(db, "shop", PLANS, now=at("2026-01-02 00:00"))
    ids, engine = customer_ids(db), open_engine(db)
    try:
        # ann, cat and dan join the annual plan ($99, no trial) on Jan 15, 2026 at 10:00: it
        # renews on Jan 15, 2027 at 10:00; bob never joins. cat will not renew.
        for key in ("ann", "cat", "dan"):
            joined = membership_service.subscribe(
                engine, "shop", ids[key], "plus-annual", key=f"join-{key}",
                now=at("2026-01-15 10:00"),
            )  # fmt: skip
            assert (joined.status, joined.period_end) == ("active", "2027-01-15T10:00:00+00:00")
        membership_service.cancel(engine, "shop", ids["cat"], now=at("2026-06-01 12:00"))
    finally:
        engine.dispose()
    install(db, ["renewal-bonus"], "2026-12-01 00:00")
    simulate(db, "2027-01-10 00:00", tmp_path, scan_days=400)
    # Jan 15 10:00 - 14 days = Jan 1, 2027 10:00: the bonus, then the email at once.
    expect_messages(db, "renewal-bonus", {
        ("ann", "advocacy"): "2027-01-01 10:00",
        ("dan", "advocacy"): "2027-01-01 10:00",  # held out: recorded as skipped
    })  # fmt: skip
    assert runs_of(db, "renewal-bonus") == [
        ("ann", "done", None, False), ("dan", "done", None, True),
    ]  # fmt: skip
    engine = open_engine(db)
    try:
        # The same moment ticked again, and the time simulated again: nothing more.
        assert campaigns.tick(engine, "shop", at("2027-01-01 10:00")).advanced == 0
        simulate(db, "2027-01-10 00:00", tmp_path, scan_days=400)
        points = {k: loyalty_service.balance(engine, "shop", ids[k])["balance"] for k in ids}
        assert points == {"ann": 1000, "bob": 0, "cat": 0, "dan": 0}
        body = text_of(email_of(tmp_path, db, "renewal-bonus", "ann", "advocacy"))
        assert "Plus (annual)" in body and "renews on January 15, 2027" in body
        assert "you now have 1000 points" in body
        # ann pays for her second year on Jan 14; the lifecycle job renews her on Jan 15
        # (the program has no renewal bonus of its own: the flow's is the only one), and
        # dan, who did not pay, is past due.
        membership_service.record_payment(engine, "shop", ids["ann"], key="ann-2027",
                                           now=at("2027-01-14 10:00"))  # fmt: skip
        job = membership_service.tick(engine, "shop", now=at("2027-01-15 12:00"))
        assert job.renewal_bonuses == 0
        assert job.events.get("membership_past_due") == 1
        ann = membership_service.status(engine, "shop", ids["ann"])["membership"]
        assert (ann["status"], ann["period_end"]) == ("active", "2028-01-15T10:00:00+00:00")
    finally:
        engine.dispose()
    # Next year: ann enters again on Jan 1, 2028 10:00 (365 days after her first entry; the
    # flow lets a member in again after 300): 1,000 more points and a second email. dan
    # (past due) and cat (cancelled on Jan 15) are no longer renewing.
    simulate(db, "2028-01-10 00:00", tmp_path, scan_days=400)
    assert runs_of(db, "renewal-bonus") == [
        ("ann", "done", None, False), ("ann", "done", None, False), ("dan", "done", None, True),
    ]  # fmt: skip
    sent = query(db, f"""
        SELECT o.status, o.sent_at FROM outbox o JOIN flows f ON f.id = o.flow_id
        WHERE f.name = 'renewal-bonus' AND o.customer_id = {ids["ann"]}
        ORDER BY o.not_before""")  # fmt: skip
    assert sent == [("sent", at("2027-01-01 10:00")), ("sent", at("2028-01-01 10:00"))]
    engine = open_engine(db)
    try:
        points = {k: loyalty_service.balance(engine, "shop", ids[k])["balance"] for k in ids}
    finally:
        engine.dispose()
    assert points == {"ann": 2000, "bob": 0, "cat": 0, "dan": 0}


def test_cli_list_show_install(sqlite_db: str) -> None:
    from typer.testing import CliRunner

    from boomerang.cli.library import app

    runner = CliRunner()
    listed = runner.invoke(app, ["list"])
    assert listed.exit_code == 0 and "win-back" in listed.output and "at-risk" in listed.output
    shown = runner.invoke(app, ["show", "welcome"])
    assert shown.exit_code == 0 and shown.output == flow_library.source("welcome")
    build_store(sqlite_db, "shop", [Person("ann")], consent_at=CONSENT)
    where = ["--db", sqlite_db, "--store", "shop"]
    named = runner.invoke(app, ["install", "win-back", "--from", "2026-03-01", *where])
    assert named.exit_code == 1 and isinstance(named.exception, InputError)
    everything = runner.invoke(app, ["install", "--from", "2026-03-01", *where])
    assert everything.exit_code == 1
    assert "welcome: version 1 (installed)" in everything.output
    assert "not installed win-back: needs segment 'at-risk'" in everything.output
    assert "boomerang flows library install daily-deal newsletter vip-gift win-back" in (
        everything.output
    )
    missing = runner.invoke(app, ["install", "nope", *where])
    assert missing.exit_code == 1 and isinstance(missing.exception, NotFoundError)
