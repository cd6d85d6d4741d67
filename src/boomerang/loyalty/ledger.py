"""The points ledger's rules, free of storage: accounts, lots, spending order, requests.

Why a ledger: every change of a balance is a transaction of entries that sum to zero
between a customer's account and a program account (issued, redeemed, expired,
clawed_back, adjusted), so "where did these points go" always has an answer and a balance
always equals the sum of its entries. Earned points form *lots*; spending consumes the
soonest-expiring lot first, then the oldest (ties: lower id), so points that would expire
are used before points that would not. Storage and locking are in `store.repos.loyalty`;
use cases in `services.loyalty`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

POINTS = "PTS"


class AccountKind(StrEnum):
    POINTS = "points"  # a customer's spendable points
    PENDING = "pending"  # a customer's points inside the return window (not spendable yet)
    CREDIT = "credit"  # a customer's store credit (unit: currency)
    ISSUED = "issued"  # program: points given out (negative balance grows)
    REDEEMED = "redeemed"  # program: points spent on rewards
    EXPIRED = "expired"  # program: points that lapsed
    CLAWED_BACK = "clawed_back"  # program: points taken back after refunds/cancellations
    ADJUSTED = "adjusted"  # program: manual corrections


PROGRAM_KINDS = frozenset(
    {
        AccountKind.ISSUED,
        AccountKind.REDEEMED,
        AccountKind.EXPIRED,
        AccountKind.CLAWED_BACK,
        AccountKind.ADJUSTED,
    }
)


def customer_key(
    customer_id: int, kind: AccountKind = AccountKind.POINTS, unit: str = POINTS
) -> str:
    return f"c:{int(customer_id)}:{kind.value}:{unit}"


def program_key(kind: AccountKind, unit: str = POINTS) -> str:
    return f"p:{kind.value}:{unit}"


def request_hash(payload: dict[str, Any]) -> str:
    """What an idempotency key is bound to: same key + same request = the stored result."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Lot:
    id: int
    remaining: int
    expires_at: int | None
    created_at: int


def spending_order(lots: list[Lot]) -> list[Lot]:
    """Soonest-expiring first (never-expiring last), then oldest, then lower id."""
    return sorted(
        (lot for lot in lots if lot.remaining > 0),
        key=lambda lot: (lot.expires_at is None, lot.expires_at or 0, lot.created_at, lot.id),
    )


def plan_spend(lots: list[Lot], amount: int) -> tuple[list[tuple[int, int]], int]:
    """Which lots pay ``amount``: [(lot id, points taken)] and the part no lot covers."""
    takes: list[tuple[int, int]] = []
    left = amount
    for lot in spending_order(lots):
        if left <= 0:
            break
        take = min(lot.remaining, left)
        takes.append((lot.id, take))
        left -= take
    return takes, left
