"""The one place every message passes before it is sent: consent, frequency caps, flow
priority and quiet hours. Pure: the dispatcher gathers the facts and applies the decision
(and takes the capped slot atomically, see `store.repos.campaigns.take_slot`).

Order of checks: holdout, expiry, a reachable address; transactional messages then go
(no consent, cap or quiet hours applies to a receipt); marketing needs the channel's
latest consent to be ``granted`` at send time; inside quiet hours it waits for their end;
a message outranked for the capped slot by a higher-priority one of the same customer
(held by any worker) waits for it; when a cap blocks it, a message of priority >= ``defer_priority`` that is still worth
sending when the cap frees is queued until then, the rest are skipped. Every decision
carries its reason, which the outbox keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field

from boomerang.domain.clock import from_micros, to_micros
from boomerang.segments.model import parse_window

Action = Literal["send", "skip", "defer"]
YIELD_MICROS = 15 * 60 * 1_000_000  # a message outranked for its capped slot looks again


class QuietHours(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    start: time = time(21, 0)
    end: time = time(9, 0)


class ArbiterSettings(BaseModel):
    """Per-store rules (``boomerang flows settings``); defaults from the issue: one
    marketing email per 16 h, one SMS per 24 h, SMS quiet 21:00-09:00 local time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    caps: dict[str, str] = Field(
        default_factory=lambda: {"email": "16h", "sms": "24h", "push": "8h"}
    )
    quiet_hours: dict[str, QuietHours] = Field(default_factory=lambda: {"sms": QuietHours()})
    defer_priority: int = Field(50, ge=0, le=100)
    max_defer: str = "72h"

    def cap_micros(self, channel: str) -> int | None:
        text = self.caps.get(channel)
        return None if not text else parse_window(text, f"caps.{channel}")


@dataclass(frozen=True)
class Candidate:
    channel: str
    transactional: bool
    priority: int
    holdout: bool
    expires_at: int | None
    address: str | None  # email, phone, device token or URL; None: unreachable
    consent: str | None  # the channel's latest consent status
    last_marketing_at: int | None  # on this channel
    timezone: str | None
    created_at: int
    outranked_by: int | None = None  # priority of a rival message for the capped slot


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    until: int | None = None  # for defer


def zone_of(timezone: str | None) -> ZoneInfo:
    """The customer's timezone; UTC when unknown or not a valid IANA name."""
    try:
        return ZoneInfo(timezone) if timezone else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def quiet_until(at: int, quiet: QuietHours, timezone: str | None) -> int | None:
    """End of the quiet period ``at`` falls in (customer's wall clock), else None."""
    local = from_micros(at).astimezone(zone_of(timezone))
    now_t = local.timetz().replace(tzinfo=None)
    start, end = quiet.start, quiet.end
    inside = (start <= now_t or now_t < end) if start > end else (start <= now_t < end)
    if not inside:
        return None
    ends = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if ends <= local:
        ends = (ends + timedelta(days=1)).replace(hour=end.hour, minute=end.minute)
    return to_micros(ends.astimezone(UTC))


def decide(c: Candidate, settings: ArbiterSettings, now: int) -> Decision:
    if c.holdout:
        return Decision("skip", "holdout: measured, never sent")
    if c.expires_at is not None and now >= c.expires_at:
        return Decision("skip", "expired before it could be sent")
    if not c.address:
        return Decision("skip", f"no {c.channel} address")
    if c.transactional:
        return Decision("send", "transactional")
    if c.consent != "granted":
        why = "withdrawn" if c.consent == "withdrawn" else "no consent record"
        return Decision("skip", f"no {c.channel} marketing consent ({why})")
    quiet = settings.quiet_hours.get(c.channel)
    if quiet is not None:
        until = quiet_until(now, quiet, c.timezone)
        if until is not None:
            return _defer_or_skip(c, settings, now, until, "quiet hours")
    cap = settings.cap_micros(c.channel)
    if cap is not None and c.outranked_by is not None and c.outranked_by > c.priority:
        return _defer_or_skip(
            c, settings, now, now + YIELD_MICROS,
            f"frequency cap ({c.channel}): priority {c.outranked_by} goes first",
        )  # fmt: skip
    if cap is not None and c.last_marketing_at is not None and now < c.last_marketing_at + cap:
        free_at = c.last_marketing_at + cap
        if c.priority >= settings.defer_priority:
            return _defer_or_skip(c, settings, now, free_at, f"frequency cap ({c.channel})")
        return Decision(
            "skip",
            f"frequency cap ({c.channel}); priority {c.priority} < {settings.defer_priority}",
        )
    return Decision("send", "allowed")


def _defer_or_skip(
    c: Candidate, settings: ArbiterSettings, now: int, until: int, why: str
) -> Decision:
    limit = c.created_at + parse_window(settings.max_defer, "max_defer")
    if c.expires_at is not None and until >= c.expires_at:
        return Decision("skip", f"{why}: would expire before it could be sent")
    if until > limit:
        return Decision("skip", f"{why}: would wait longer than {settings.max_defer}")
    return Decision("defer", f"{why}: queued", until)
