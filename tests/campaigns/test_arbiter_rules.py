"""The arbiter's decisions (pure): consent, caps, priority, queue-instead-of-drop, quiet
hours in the customer's timezone, expiry, holdout, transactional messages."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from boomerang.campaigns.arbiter import ArbiterSettings, Candidate, decide, quiet_until
from boomerang.domain.clock import to_micros

HOUR = 3_600_000_000
NOON = to_micros(datetime(2026, 6, 1, 12, 0, tzinfo=UTC))
DEFAULT = ArbiterSettings()

EMAIL = Candidate(
    channel="email", transactional=False, priority=50, holdout=False, expires_at=None,
    address="a@example.com", consent="granted", last_marketing_at=None, timezone="UTC",
    created_at=NOON,
)  # fmt: skip


def test_a_consenting_reachable_customer_gets_the_message() -> None:
    assert decide(EMAIL, DEFAULT, NOON).action == "send"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"holdout": True}, "holdout"),
        ({"expires_at": NOON}, "expired"),
        ({"address": None}, "no email address"),
        ({"consent": None}, "no email marketing consent (no consent record)"),
        ({"consent": "withdrawn"}, "no email marketing consent (withdrawn)"),
        ({"priority": 10, "last_marketing_at": NOON - HOUR}, "frequency cap (email); priority 10 < 50"),
    ],
)  # fmt: skip
def test_skips_say_why(change: dict[str, object], reason: str) -> None:
    decision = decide(replace(EMAIL, **change), DEFAULT, NOON)  # type: ignore[arg-type]
    assert decision.action == "skip"
    assert reason in decision.reason


def test_a_capped_high_priority_message_is_queued_until_the_cap_frees() -> None:
    last = NOON - 10 * HOUR  # 16 h cap: free at NOON + 6 h
    decision = decide(replace(EMAIL, priority=80, last_marketing_at=last), DEFAULT, NOON)
    assert (decision.action, decision.until) == ("defer", NOON + 6 * HOUR)
    assert decision.reason == "frequency cap (email): queued"
    # ... unless it would expire first, or wait longer than max_defer.
    expiring = replace(EMAIL, priority=80, last_marketing_at=last, expires_at=NOON + HOUR)
    assert decide(expiring, DEFAULT, NOON).action == "skip"
    stale = replace(EMAIL, priority=80, last_marketing_at=last, created_at=NOON - 70 * HOUR)
    assert "longer than 72h" in decide(stale, DEFAULT, NOON).reason
    # After the cap the slot is free.
    assert (
        decide(replace(EMAIL, last_marketing_at=NOON - 16 * HOUR), DEFAULT, NOON).action == "send"
    )


def test_a_message_outranked_for_the_capped_slot_waits_for_the_higher_priority_one() -> None:
    """Another worker holds a priority-80 message for the same customer and channel: the
    priority-50 one waits 15 minutes (by then the slot is taken and the cap decides)."""
    decision = decide(replace(EMAIL, outranked_by=80), DEFAULT, NOON)
    assert (decision.action, decision.until) == ("defer", NOON + HOUR // 4)
    assert decision.reason == "frequency cap (email): priority 80 goes first: queued"
    assert decide(replace(EMAIL, outranked_by=50), DEFAULT, NOON).action == "send"  # a tie
    no_cap = ArbiterSettings(caps={})
    assert decide(replace(EMAIL, outranked_by=80), no_cap, NOON).action == "send"


def test_transactional_messages_ignore_consent_caps_and_quiet_hours() -> None:
    receipt = replace(
        EMAIL, channel="sms", transactional=True, consent=None, last_marketing_at=NOON,
        timezone="America/Los_Angeles",
    )  # fmt: skip
    assert decide(receipt, DEFAULT, NOON).action == "send"


def test_sms_waits_for_the_end_of_quiet_hours_in_the_customers_timezone() -> None:
    sms = replace(EMAIL, channel="sms", address="+14155550100", timezone="America/Los_Angeles")
    # 12:00 UTC = 05:00 in Los Angeles (PDT): quiet until 09:00 local = 16:00 UTC.
    decision = decide(sms, DEFAULT, NOON)
    assert (decision.action, decision.until) == ("defer", NOON + 4 * HOUR)
    assert decision.reason == "quiet hours: queued"
    # 12:00 UTC = 21:00 in Tokyo: quiet until 09:00 tomorrow local = 00:00 UTC.
    tokyo = decide(replace(sms, timezone="Asia/Tokyo"), DEFAULT, NOON)
    assert tokyo.until == NOON + 12 * HOUR
    assert decide(replace(sms, timezone="Europe/London"), DEFAULT, NOON).action == "send"  # 13:00


def test_quiet_hours_boundaries() -> None:
    quiet = DEFAULT.quiet_hours["sms"]
    at_nine = to_micros(datetime(2026, 6, 1, 9, 0, tzinfo=UTC))
    assert quiet_until(at_nine, quiet, "UTC") is None  # 09:00 is outside
    at_nine_pm = to_micros(datetime(2026, 6, 1, 21, 0, tzinfo=UTC))
    assert quiet_until(at_nine_pm, quiet, "UTC") == at_nine + 24 * HOUR


def test_settings_are_per_store() -> None:
    relaxed = ArbiterSettings.model_validate(
        {"caps": {"email": "4h"}, "quiet_hours": {}, "defer_priority": 90}
    )
    sms = replace(EMAIL, channel="sms", timezone="America/Los_Angeles")
    assert decide(sms, relaxed, NOON).action == "send"  # no quiet hours, no sms cap
    capped = replace(EMAIL, priority=80, last_marketing_at=NOON - 3 * HOUR)
    assert decide(capped, relaxed, NOON).action == "skip"  # 80 < 90: skipped, not queued
