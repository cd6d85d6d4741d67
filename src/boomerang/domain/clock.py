"""UTC time as integer epoch microseconds: the one representation stored on every engine."""

from __future__ import annotations

from datetime import UTC, datetime

MICROS_PER_SECOND = 1_000_000
MICROS_PER_DAY = 86_400 * MICROS_PER_SECOND


def to_micros(moment: datetime) -> int:
    """Aware datetime -> epoch micros; naive datetimes are refused (they hide a timezone bug)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: attach a timezone before storing it")
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * MICROS_PER_SECOND + delta.microseconds


def from_micros(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / MICROS_PER_SECOND, tz=UTC).replace(
        microsecond=micros % MICROS_PER_SECOND
    )


def now_micros() -> int:
    return to_micros(datetime.now(UTC))
