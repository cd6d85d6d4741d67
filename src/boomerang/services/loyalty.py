"""Loyalty ledger use cases: earn, redeem, adjust, expire, order sync, balances, coupons.

Every call is one database transaction and carries an idempotency key: the same key with
the same request returns the stored result and changes nothing; the same key with another
request is a `ConflictError`. A request that fails (not enough points, an invalid coupon)
changes nothing and stores nothing, so it can be retried with its key. docs/loyalty.md.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine

from boomerang.domain.clock import MICROS_PER_DAY, from_micros, now_micros, to_micros
from boomerang.domain.money import currency_exponent
from boomerang.errors import ConflictError, InputError, InsufficientError, NotFoundError
from boomerang.loyalty.ledger import (
    POINTS,
    AccountKind,
    Lot,
    customer_key,
    plan_spend,
    program_key,
    request_hash,
)
from boomerang.services.context import open_engine
from boomerang.store.repos import loyalty as repo
from boomerang.store.repos import stores as stores_repo

if TYPE_CHECKING:
    # The program's pydantic models are imported by the calls that use a program: earn,
    # redeem and the other plain ledger calls (a CLI process each) start without them.
    from boomerang.loyalty.program import Program

#: Crockford base32 (no I, L, O, U): 12 characters = 60 bits from `secrets`.
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 12
#: Namespace of the idempotency keys the ledger makes itself (see `_claim`).
SYSTEM_PREFIX = "sys:"


@dataclass
class LedgerResult:
    """What a ledger call did (or did before: ``replayed``)."""

    transaction_id: int | None
    customer_id: int
    delta: int
    balance: int
    replayed: bool = False
    detail: dict[str, Any] = field(default_factory=dict)


def _result(
    claim_id: int | None, customer_id: int, delta: int, balance: int, **detail: Any
) -> dict[str, Any]:
    return {
        "transaction_id": claim_id,
        "customer_id": customer_id,
        "delta": delta,
        "balance": balance,
        **detail,
    }


def _replay(stored: dict[str, Any]) -> LedgerResult:
    detail = {
        k: v
        for k, v in stored.items()
        if k not in ("transaction_id", "customer_id", "delta", "balance")
    }
    return LedgerResult(
        stored.get("transaction_id"), int(stored["customer_id"]), int(stored["delta"]),
        int(stored["balance"]), True, detail,
    )  # fmt: skip


def _claim(
    conn: Connection,
    store_id: int,
    *,
    key: str,
    payload: dict[str, Any],
    kind: str,
    customer_id: int | None,
    order_ref: str | None,
    reason: str,
    actor: str,
    now: int,
    system: bool = False,
) -> repo.Claim:
    """Take the key for this request. Keys the ledger makes itself (order steps, lot
    releases, birthdays) live under ``sys:``, which clients may not use, so a client key
    can never collide with one and block or replay a system write."""
    if not key or len(key) > 200:
        raise InputError("an idempotency key of 1-200 characters is required", hint="pass --key")
    if system:
        key = SYSTEM_PREFIX + key
    elif key.startswith(SYSTEM_PREFIX):
        raise InputError(
            f"idempotency keys starting {SYSTEM_PREFIX!r} are reserved for the ledger itself",
            hint="choose a key without that prefix",
        )
    if customer_id is not None and not repo.customer_in_store(conn, store_id, customer_id):
        raise NotFoundError(
            f"no customer {customer_id} in this store",
            hint="use the external id or email shown by an import (`boomerang loyalty balance`)",
        )
    digest = request_hash({"kind": kind, **payload})
    claim = repo.claim(
        conn, store_id, key=key, request_hash=digest, kind=kind, customer_id=customer_id,
        order_ref=order_ref, reason=reason, actor=actor, now=now,
    )  # fmt: skip
    if claim.id is None and claim.stored_hash != digest:
        raise ConflictError(
            f"idempotency key {key!r} was already used for a different request",
            hint="use a new key for a new request; reuse a key only to retry the same request",
        )
    return claim


def _points_accounts(
    conn: Connection, store_id: int, customer_id: int, program: AccountKind, now: int
) -> tuple[repo.Account, repo.Account]:
    ckey, pkey = customer_key(customer_id), program_key(program)
    found = repo.accounts(
        conn, store_id,
        [(ckey, customer_id, AccountKind.POINTS.value, POINTS), (pkey, None, program.value, POINTS)],
        now, lock=True,
    )  # fmt: skip
    return found[ckey], found[pkey]


def _lots(conn: Connection, account_id: int) -> list[Lot]:
    return [
        Lot(int(r["id"]), int(r["remaining"]), r["expires_at"], int(r["created_at"]))
        for r in repo.open_lots(conn, account_id)
    ]


def _credit(
    conn: Connection,
    store_id: int,
    tx: int,
    customer: repo.Account,
    program: repo.Account,
    points: int,
    expires_at: int | None,
    now: int,
) -> int:
    """Add points: first repay a negative balance, the rest becomes a lot. New balance."""
    repay = min(points, max(0, -customer.balance))
    lot = None
    if points - repay > 0:
        lot = repo.add_lot(conn, store_id, customer.id, tx, points - repay, expires_at, now)
    entries: list[tuple[repo.Account, int, int | None]] = []
    if repay:
        entries.append((customer, repay, None))
    if lot is not None:
        entries.append((customer, points - repay, lot))
    entries.append((program, -points, None))
    repo.post(conn, store_id, tx, entries)
    return customer.balance + points


def _debit(
    conn: Connection,
    store_id: int,
    tx: int,
    customer: repo.Account,
    program: repo.Account,
    points: int,
    *,
    first_lots: set[int] | None = None,
    only_lots: bool = False,
    allow_negative: bool = False,
) -> tuple[int, int]:
    """Take points, lots in spending order (``first_lots`` before the others; with
    ``only_lots``, from those lots alone). Returns (points taken, new balance); beyond the
    lots, the balance goes negative only when allowed (else the shortfall is not taken)."""
    lots = _lots(conn, customer.id)
    preferred = [lot for lot in lots if first_lots and lot.id in first_lots]
    others = [] if only_lots else [lot for lot in lots if not (first_lots and lot.id in first_lots)]
    takes, left = plan_spend(preferred, points)
    more, left = plan_spend(others, left)
    takes += more
    entries: list[tuple[repo.Account, int, int | None]] = [(customer, -t, lot) for lot, t in takes]
    for lot_id, take in takes:
        repo.take_from_lot(conn, lot_id, take)
    taken = points - left
    if left and allow_negative:
        entries.append((customer, -left, None))
        taken = points
    if taken:
        entries.append((program, taken, None))
        repo.post(conn, store_id, tx, entries)
    return taken, customer.balance - taken


def _store(conn: Connection, store: str) -> stores_repo.Store:
    return stores_repo.get(conn, store)


def _check_points(points: int) -> None:
    if isinstance(points, bool) or not isinstance(points, int) or points <= 0:
        raise InputError(f"points must be a positive whole number, not {points!r}", hint="e.g. 100")


# -- earn / redeem / adjust ------------------------------------------------------------------


def earn(
    engine: Engine,
    store: str,
    customer_id: int,
    points: int,
    *,
    key: str,
    reason: str = "earn",
    actor: str = "system",
    expires_at: int | None = None,
    order_ref: str | None = None,
    now: int | None = None,
    system: bool = False,
) -> LedgerResult:
    """Give points (a new lot, expiring at ``expires_at`` when set). ``system`` marks a key
    the ledger made itself (birthday, tier entry), kept apart from client keys."""
    _check_points(points)
    at = now_micros() if now is None else now
    with engine.begin() as conn:
        row = _store(conn, store)
        return earn_in(
            conn, row.id, customer_id, points, key=key, reason=reason, actor=actor,
            expires_at=expires_at, order_ref=order_ref, at=at, system=system,
        )  # fmt: skip


def earn_in(
    conn: Connection,
    store_id: int,
    customer_id: int,
    points: int,
    *,
    key: str,
    reason: str,
    actor: str,
    expires_at: int | None,
    order_ref: str | None,
    at: int,
    system: bool = False,
) -> LedgerResult:
    """`earn` inside the caller's transaction (a campaign step grants points atomically
    with the step that grants them)."""
    _check_points(points)
    claim = _claim(
        conn, store_id, key=key, kind="earn", customer_id=customer_id, order_ref=order_ref,
        reason=reason, actor=actor, now=at, system=system,
        payload={"customer": customer_id, "points": points, "expires_at": expires_at, "order": order_ref},
    )  # fmt: skip
    if claim.id is None:
        assert claim.stored_result is not None
        return _replay(claim.stored_result)
    customer, issued = _points_accounts(conn, store_id, customer_id, AccountKind.ISSUED, at)
    balance = _credit(conn, store_id, claim.id, customer, issued, points, expires_at, at)
    repo.add_event(
        conn, store_id, customer_id, "points_earned",
        {"points": points, "balance": balance, "reason": reason},
        f"earn:{SYSTEM_PREFIX if system else ''}{key}", at,
    )  # fmt: skip
    result = _result(claim.id, customer_id, points, balance)
    repo.finish(conn, claim.id, result)
    return LedgerResult(claim.id, customer_id, points, balance)


def redeem(
    engine: Engine,
    store: str,
    customer_id: int,
    points: int,
    *,
    key: str,
    reason: str = "redeem",
    actor: str = "system",
    order_ref: str | None = None,
    now: int | None = None,
) -> LedgerResult:
    """Spend points; never below zero (`InsufficientError`, nothing changed)."""
    _check_points(points)
    at = now_micros() if now is None else now
    with engine.begin() as conn:
        row = _store(conn, store)
        return _redeem_in(
            conn, row.id, customer_id, points, key=key, reason=reason, actor=actor,
            order_ref=order_ref, at=at, payload={},
        )  # fmt: skip


def _redeem_in(
    conn: Connection,
    store_id: int,
    customer_id: int,
    points: int,
    *,
    key: str,
    reason: str,
    actor: str,
    order_ref: str | None,
    at: int,
    payload: dict[str, Any],
    extra: Any = None,
) -> LedgerResult:
    """Redeem inside the caller's transaction; ``extra(tx_id)`` adds to the stored result
    (e.g. the coupon a reward issues), so a replay returns the same thing."""
    claim = _claim(
        conn, store_id, key=key, kind="redeem", customer_id=customer_id, order_ref=order_ref,
        reason=reason, actor=actor, now=at,
        payload={"customer": customer_id, "points": points, "order": order_ref, **payload},
    )  # fmt: skip
    if claim.id is None:
        assert claim.stored_result is not None
        return _replay(claim.stored_result)
    customer, redeemed = _points_accounts(conn, store_id, customer_id, AccountKind.REDEEMED, at)
    if customer.balance < points:
        raise InsufficientError(
            f"customer {customer_id} has {customer.balance} points, {points} requested",
            hint="redeem at most the balance (`boomerang loyalty balance`)",
        )
    _, balance = _debit(conn, store_id, claim.id, customer, redeemed, points)
    detail: dict[str, Any] = extra(claim.id) if extra is not None else {}
    result = _result(claim.id, customer_id, -points, balance, **detail)
    repo.finish(conn, claim.id, result)
    return LedgerResult(claim.id, customer_id, -points, balance, detail=detail)


def adjust(
    engine: Engine,
    store: str,
    customer_id: int,
    points: int,
    *,
    key: str,
    reason: str,
    actor: str,
    allow_negative: bool = False,
    now: int | None = None,
) -> LedgerResult:
    """A manual correction (+ or -), with the reason and who made it."""
    if not reason.strip():
        raise InputError("an adjustment needs a reason", hint='pass --reason "..."')
    if isinstance(points, bool) or not isinstance(points, int) or points == 0:
        raise InputError(f"points must be a non-zero whole number, not {points!r}", hint="e.g. -50")
    at = now_micros() if now is None else now
    with engine.begin() as conn:
        row = _store(conn, store)
        claim = _claim(
            conn, row.id, key=key, kind="adjust", customer_id=customer_id, order_ref=None,
            reason=reason, actor=actor, now=at,
            payload={"customer": customer_id, "points": points, "negative": allow_negative},
        )  # fmt: skip
        if claim.id is None:
            assert claim.stored_result is not None
            return _replay(claim.stored_result)
        customer, adjusted = _points_accounts(conn, row.id, customer_id, AccountKind.ADJUSTED, at)
        if points > 0:
            balance = _credit(conn, row.id, claim.id, customer, adjusted, points, None, at)
        else:
            if customer.balance < -points and not allow_negative:
                raise InsufficientError(
                    f"customer {customer_id} has {customer.balance} points; cannot remove {-points}",
                    hint="remove at most the balance, or allow a negative balance",
                )
            _, balance = _debit(
                conn, row.id, claim.id, customer, adjusted, -points, allow_negative=allow_negative
            )
        result = _result(claim.id, customer_id, points, balance)
        repo.finish(conn, claim.id, result)
    return LedgerResult(claim.id, customer_id, points, balance)


# -- orders: award, refunds, cancellations ---------------------------------------------------


def sync_order(
    engine: Engine,
    store: str,
    customer_id: int,
    order_ref: str,
    award: int,
    *,
    expires_at: int | None = None,
    allow_negative: bool = False,
    pending: bool = False,
    actor: str = "system",
    now: int | None = None,
) -> LedgerResult:
    """Make the points an order has earned equal ``award`` (0 when cancelled, pro-rata
    after a refund). Repeating a call with the same award changes nothing; a status flip
    completed -> cancelled -> completed nets one award. ``pending``: new points wait in the
    pending account for the return window (`release_pending`). A clawback takes the
    order's own pending points, then its own lot, then other lots; beyond the balance it
    goes negative only when allowed, otherwise the rest is written off (in the result)."""
    if isinstance(award, bool) or not isinstance(award, int) or award < 0:
        raise InputError(f"award must be a whole number >= 0, not {award!r}", hint="e.g. 120")
    at = now_micros() if now is None else now
    with engine.begin() as conn:
        row = _store(conn, store)
        if not repo.customer_in_store(conn, row.id, customer_id):
            raise NotFoundError(
                f"no customer {customer_id} in this store",
                hint="use the external id or email shown by an import",
            )
        found = repo.accounts(
            conn, row.id,
            [
                (customer_key(customer_id), customer_id, AccountKind.POINTS.value, POINTS),
                (customer_key(customer_id, AccountKind.PENDING), customer_id, AccountKind.PENDING.value, POINTS),
                (program_key(AccountKind.ISSUED), None, AccountKind.ISSUED.value, POINTS),
                (program_key(AccountKind.CLAWED_BACK), None, AccountKind.CLAWED_BACK.value, POINTS),
            ],
            at, lock=True,
        )  # fmt: skip
        customer = found[customer_key(customer_id)]
        held = found[customer_key(customer_id, AccountKind.PENDING)]
        everything = repo.order_transactions(conn, row.id, order_ref)
        history = [t for t in everything if t["kind"] in ("award", "clawback")]
        # The award the order was last moved to (not what was taken: a written-off shortfall
        # must not be clawed again on the next call).
        current = int(_stored(history[-1])["award"]) if history else 0
        delta = award - current
        if delta == 0:
            return LedgerResult(None, customer_id, 0, customer.balance, replayed=True)
        kind = "award" if delta > 0 else "clawback"
        claim = _claim(
            conn, row.id, key=f"order:{order_ref}:step:{len(history)}", kind=kind, system=True,
            customer_id=customer_id, order_ref=order_ref, reason=f"order {order_ref}",
            actor=actor, now=at,
            payload={"customer": customer_id, "order": order_ref, "award": award, "pending": pending},
        )  # fmt: skip
        if claim.id is None:
            assert claim.stored_result is not None
            return _replay(claim.stored_result)
        issued, clawed = (
            found[program_key(AccountKind.ISSUED)],
            found[program_key(AccountKind.CLAWED_BACK)],
        )
        mine = {t["id"] for t in everything}  # awards and the releases of their lots
        if delta > 0:
            target = held if pending else customer
            _credit(conn, row.id, claim.id, target, issued, delta, expires_at, at)
            taken, balance = delta, customer.balance + (0 if pending else delta)
        else:
            need = -delta
            # The order's own pending points, then its own spendable lot, then other lots
            # (never other orders' pending points).
            own_held = {
                int(lot["id"])
                for lot in repo.open_lots(conn, held.id)
                if lot["transaction_id"] in mine
            }
            from_held = 0
            if own_held:
                from_held, _ = _debit(
                    conn, row.id, claim.id, held, clawed, need, first_lots=own_held, only_lots=True
                )
            own = {
                int(lot["id"])
                for lot in repo.open_lots(conn, customer.id)
                if lot["transaction_id"] in mine
            }
            rest, balance = (0, customer.balance)
            if need - from_held:
                rest, balance = _debit(
                    conn, row.id, claim.id, customer, clawed, need - from_held,
                    first_lots=own, allow_negative=allow_negative,
                )  # fmt: skip
            taken = -(from_held + rest)
        result = _result(
            claim.id, customer_id, taken, balance, award=award, wanted=delta,
            written_off=(-delta + taken) if delta < 0 else 0,
        )  # fmt: skip
        repo.finish(conn, claim.id, result)
    return LedgerResult(
        claim.id, customer_id, taken, balance,
        detail={"award": award, "wanted": delta, "written_off": result["written_off"]},
    )  # fmt: skip


def release_pending(engine: Engine, store: str, *, days: int, now: int | None = None) -> int:
    """Move pending points older than the return window (``days``) to the spendable
    balance, one transaction per lot keyed by the lot. Returns points released."""
    at = now_micros() if now is None else now
    with engine.connect() as conn:
        row = _store(conn, store)
        due = repo.pending_lots(conn, row.id, at - days * MICROS_PER_DAY)
    released = 0
    for lot in due:
        cid = int(lot["customer_id"])
        with engine.begin() as conn:
            claim = _claim(
                conn, row.id, key=f"release:lot:{lot['id']}", kind="release", customer_id=cid, system=True,
                # The order's: its released lot stays "the order's own" for clawbacks.
                order_ref=lot["order_ref"], reason="return window passed", actor="system", now=at,
                payload={"lot": int(lot["id"])},
            )  # fmt: skip
            if claim.id is None:
                continue
            found = repo.accounts(
                conn, row.id,
                [
                    (customer_key(cid), cid, AccountKind.POINTS.value, POINTS),
                    (customer_key(cid, AccountKind.PENDING), cid, AccountKind.PENDING.value, POINTS),
                ],
                at, lock=True,
            )  # fmt: skip
            customer, held = found[customer_key(cid)], found[customer_key(cid, AccountKind.PENDING)]
            remaining = repo.lot_remaining(conn, int(lot["id"]))
            if remaining > 0:
                repo.take_from_lot(conn, int(lot["id"]), remaining)
                # Like any credit, released points first repay a negative balance.
                repay = min(remaining, max(0, -customer.balance))
                entries: list[tuple[repo.Account, int, int | None]] = [
                    (held, -remaining, int(lot["id"]))
                ]
                if repay:
                    entries.append((customer, repay, None))
                if remaining - repay:
                    new_lot = repo.add_lot(
                        conn,
                        row.id,
                        customer.id,
                        claim.id,
                        remaining - repay,
                        lot["expires_at"],
                        at,
                    )
                    entries.append((customer, remaining - repay, new_lot))
                repo.post(conn, row.id, claim.id, entries)
                released += remaining
            repo.finish(
                conn, claim.id, _result(claim.id, cid, remaining, customer.balance + remaining)
            )
    return released


def _stored(t: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(t["result"])
    return value


# -- expiry ----------------------------------------------------------------------------------


@dataclass
class ExpiryResult:
    lots: int = 0
    points: int = 0
    replayed: int = 0


def expire(engine: Engine, store: str, *, now: int | None = None) -> ExpiryResult:
    """Expire the unspent remainder of every lot past its expiry. Idempotent and safe to run
    as concurrent copies: one transaction per lot, keyed by the lot."""
    at = now_micros() if now is None else now
    with engine.connect() as conn:
        row = _store(conn, store)
        due = repo.due_lots(conn, row.id, at)
    out = ExpiryResult()
    for lot in due:
        key = f"expire:lot:{lot['id']}"
        with engine.begin() as conn:
            cid = int(lot["customer_id"])
            claim = _claim(
                conn, row.id, key=key, kind="expire", customer_id=cid, order_ref=None,
                reason="points expired", actor="expiry job", now=at, payload={"lot": int(lot["id"])},
                system=True,
            )  # fmt: skip
            if claim.id is None:
                out.replayed += 1
                continue
            customer, expired = _points_accounts(conn, row.id, cid, AccountKind.EXPIRED, at)
            remaining = repo.lot_remaining(conn, int(lot["id"]))  # re-read under the lock
            if remaining > 0:
                repo.take_from_lot(conn, int(lot["id"]), remaining)
                repo.post(
                    conn,
                    row.id,
                    claim.id,
                    [(customer, -remaining, int(lot["id"])), (expired, remaining, None)],
                )
                out.lots += 1
                out.points += remaining
            repo.finish(
                conn, claim.id, _result(claim.id, cid, -remaining, customer.balance - remaining)
            )
    return out


def warn_expiring(engine: Engine, store: str, *, days: int, now: int | None = None) -> int:
    """A `points_expiring` event (once per lot) for lots expiring within ``days``."""
    at = now_micros() if now is None else now
    written = 0
    with engine.begin() as conn:
        row = _store(conn, store)
        for lot in repo.due_lots(conn, row.id, at + days * MICROS_PER_DAY):
            if int(lot["expires_at"]) <= at:
                continue
            written += repo.add_event(
                conn, row.id, int(lot["customer_id"]), "points_expiring",
                {"points": int(lot["remaining"]), "expires_at": int(lot["expires_at"])},
                f"expiring:lot:{lot['id']}", at,
            )  # fmt: skip
    return written


# -- balances --------------------------------------------------------------------------------


def balance(engine: Engine, store: str, customer_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        row = _store(conn, store)
        account = repo.find_account(conn, row.id, customer_key(customer_id))
        held = repo.find_account(conn, row.id, customer_key(customer_id, AccountKind.PENDING))
        credit = repo.find_account(
            conn, row.id, customer_key(customer_id, AccountKind.CREDIT, row.currency)
        )
        lots = repo.open_lots(conn, account.id) if account else []
    return {
        "customer_id": customer_id,
        "balance": account.balance if account else 0,
        "pending": held.balance if held else 0,
        "store_credit_minor": credit.balance if credit else 0,
        "lots": [
            {"remaining": int(lot["remaining"]), "expires_at": lot["expires_at"]}
            for lot in sorted(
                lots, key=lambda lot: (lot["expires_at"] is None, lot["expires_at"] or 0, lot["id"])
            )
        ],
    }


# -- coupons ---------------------------------------------------------------------------------

COUPON_KINDS = ("amount_off", "percent_off", "free_shipping", "free_product", "store_credit")


def new_code() -> str:
    """12 Crockford base32 characters from the OS's CSPRNG: 60 bits (one 8-byte read,
    its low 60 bits cut into twelve 5-bit digits)."""
    value = int.from_bytes(secrets.token_bytes(8), "big") & ((1 << 60) - 1)
    return "".join(CROCKFORD[(value >> shift) & 31] for shift in range(55, -5, -5))


def normalise_code(text: str) -> str:
    """What a shopper typed -> the stored code (case, dashes, spaces, I/L->1, O->0)."""
    cleaned = text.strip().upper().replace("-", "").replace(" ", "")
    return cleaned.translate(str.maketrans("ILO", "110"))


def format_code(code: str) -> str:
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


@dataclass
class Coupon:
    code: str
    kind: str
    value: int
    max_uses: int
    expires_at: int | None


def issue_coupon(
    engine: Engine,
    store: str,
    *,
    kind: str,
    value: int,
    currency: str | None = None,
    customer_id: int | None = None,
    max_uses: int = 1,
    per_customer: int | None = None,
    expires_at: int | None = None,
    source: str = "manual",
    now: int | None = None,
) -> Coupon:
    if kind not in COUPON_KINDS:
        raise InputError(f"unknown coupon kind {kind!r}", hint="one of: " + ", ".join(COUPON_KINDS))
    if max_uses < 1:
        raise InputError("max_uses must be at least 1", hint="e.g. 1 for a single-use code")
    at = now_micros() if now is None else now
    with engine.begin() as conn:
        row = _store(conn, store)
        return issue_coupon_in(
            conn, row.id, kind=kind, value=value, currency=currency, customer_id=customer_id,
            max_uses=max_uses, per_customer=per_customer, expires_at=expires_at, source=source,
            at=at,
        )  # fmt: skip


def issue_coupon_in(
    conn: Connection,
    store_id: int,
    *,
    kind: str,
    value: int,
    currency: str | None,
    customer_id: int | None,
    max_uses: int,
    per_customer: int | None,
    expires_at: int | None,
    source: str,
    at: int,
    once: bool = False,
) -> Coupon:
    """`issue_coupon` inside the caller's transaction. ``once``: ``source`` names the one
    coupon this request may ever create (a campaign step): a retry returns that coupon."""
    if once:
        found = repo.coupon_by_source(conn, store_id, source)
        if found is not None:
            return Coupon(str(found["code"]), str(found["kind"]), int(found["value"]),
                          int(found["max_uses"]), found["expires_at"])  # fmt: skip
    code = _insert_coupon(
        conn,
        {
            "store_id": store_id, "kind": kind, "value": value, "currency": currency,
            "customer_id": customer_id, "max_uses": max_uses, "uses": 0,
            "per_customer": per_customer, "expires_at": expires_at, "source": source,
            "created_at": at,
        },
    )  # fmt: skip
    return Coupon(code, kind, value, max_uses, expires_at)


def _insert_coupon(conn: Connection, values: dict[str, Any]) -> str:
    # 60 random bits: a collision is astronomically unlikely; the unique index decides.
    code = new_code()
    repo.add_coupon(conn, {**values, "code": code})
    return code


def _check_coupon(
    c: dict[str, Any] | None, code: str, customer_id: int | None, at: int
) -> dict[str, Any]:
    if c is None:
        raise NotFoundError(f"no coupon {code!r}", hint="check the code")
    if c["expires_at"] is not None and at >= int(c["expires_at"]):
        raise InsufficientError(
            f"coupon {format_code(c['code'])} has expired", hint="issue a new one"
        )
    if c["customer_id"] is not None and c["customer_id"] != customer_id:
        raise InsufficientError(
            f"coupon {format_code(c['code'])} belongs to another customer", hint=""
        )
    if int(c["uses"]) >= int(c["max_uses"]):
        raise InsufficientError(
            f"coupon {format_code(c['code'])} is used up", hint="issue a new one"
        )
    return c


def _check_per_customer(conn: Connection, c: dict[str, Any], customer_id: int | None) -> None:
    limit = c["per_customer"]
    if (
        limit is not None
        and customer_id is not None
        and repo.coupon_uses_by(conn, int(c["id"]), customer_id) >= int(limit)
    ):
        raise InsufficientError(
            "this customer has used the coupon as often as allowed", hint="issue another code"
        )


def validate_coupon(
    engine: Engine, store: str, code: str, *, customer_id: int | None = None, now: int | None = None
) -> dict[str, Any]:
    at = now_micros() if now is None else now
    with engine.connect() as conn:
        row = _store(conn, store)
        c = _check_coupon(
            repo.coupon_for_update(conn, row.id, normalise_code(code)), code, customer_id, at
        )
        _check_per_customer(conn, c, customer_id)
    return {"code": format_code(c["code"]), "kind": c["kind"], "value": int(c["value"]),
            "uses_left": int(c["max_uses"]) - int(c["uses"])}  # fmt: skip


def consume_coupon(
    engine: Engine,
    store: str,
    code: str,
    *,
    key: str,
    customer_id: int | None = None,
    order_ref: str | None = None,
    now: int | None = None,
) -> dict[str, Any]:
    """Use a coupon once (per key): under the coupon's row lock, so a limit of N uses
    admits exactly N consumers however many arrive at once."""
    at = now_micros() if now is None else now
    with engine.begin() as conn:
        row = _store(conn, store)
        found = repo.coupon_for_update(conn, row.id, normalise_code(code))
        earlier = None if found is None else repo.redemption(conn, int(found["id"]), key)
        if found is not None and earlier is not None:
            if (earlier["customer_id"], earlier["order_ref"]) != (customer_id, order_ref):
                raise ConflictError(
                    f"key {key!r} already consumed this coupon for another customer or order",
                    hint="use a new key for a new checkout; reuse a key only to retry",
                )
            return {"code": format_code(found["code"]), "replayed": True}
        c = _check_coupon(found, code, customer_id, at)
        _check_per_customer(conn, c, customer_id)
        repo.redeem_coupon(conn, row.id, int(c["id"]), customer_id, key, order_ref, at)
    return {"code": format_code(c["code"]), "replayed": False, "uses": int(c["uses"]) + 1}


def resolve_customer(engine: Engine, store: str, ref: str) -> int:
    """A customer's id from an external id, email or numeric id (scoped to the store)."""
    from boomerang.store.repos import customers as customers_repo

    with engine.connect() as conn:
        row = _store(conn, store)
        found = customers_repo.find(conn, row.id, ref)
    if found is None:
        raise NotFoundError(
            f"no customer {ref!r} in store {store!r}",
            hint="use the external id or email shown by an import, or the numeric id",
        )
    return int(found["id"])


# -- the program: rules, rewards, tiers ------------------------------------------------------


def set_program(db: str, store: str, path: Path) -> tuple[Program, int]:
    """Validate a program file and store it (a new version when it changed)."""
    import yaml

    from boomerang.loyalty.program import parse_program

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file", hint="check the path") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML/JSON ({exc})", hint="fix the syntax") from None
    if isinstance(raw, dict):  # the simulator's assumptions travel in the same file
        raw = {k: v for k, v in raw.items() if k != "simulation"}
    program = parse_program(raw, origin=path.name)
    engine = open_engine(db)
    try:
        with engine.begin() as conn:
            row = _store(conn, store)
            version = repo.set_program(conn, row.id, program.model_dump(mode="json"), now_micros())
    finally:
        engine.dispose()
    return program, version


def load_program(conn: Connection, store_id: int) -> Program:
    from boomerang.loyalty.program import parse_program

    found = repo.get_program(conn, store_id)
    return parse_program(found[0] if found else {}, origin="stored program")


def show_program(db: str, store: str) -> dict[str, Any]:
    from boomerang.loyalty.program import parse_program

    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            row = _store(conn, store)
            found = repo.get_program(conn, row.id)
            balances = repo.program_balances(conn, row.id)
    finally:
        engine.dispose()
    program = parse_program(found[0] if found else {}, origin="stored program")
    return {
        "version": found[1] if found else 0,
        "program": program.model_dump(mode="json"),
        "program_accounts": balances,
        "outstanding_points": -sum(balances.values()),
    }


def award_order(
    engine: Engine, store: str, order_ref: str, *, now: int | None = None
) -> LedgerResult | None:
    """Points for an order as it stands now (placed, refunded, cancelled, re-completed):
    computed by the program's earn rules and applied with `sync_order`."""
    from boomerang.loyalty.program import lot_expiry, order_points

    at = now_micros() if now is None else now
    with engine.connect() as conn:
        row = _store(conn, store)
        order = repo.order_row(conn, row.id, order_ref)
        if order is None:
            raise NotFoundError(f"no order {order_ref!r}", hint="import the order first")
        if order["customer_id"] is None:
            return None  # a guest order earns nothing: there is no account to credit
        cid = int(order["customer_id"])
        program = load_program(conn, row.id)
        first = repo.orders_before(conn, row.id, cid, int(order["placed_at"])) == 0
        tier = (repo.member(conn, row.id, cid) or {}).get("tier")
    award = order_points(
        program, order, exponent=currency_exponent(row.currency), tier=tier, first_order=first
    )
    result = sync_order(
        engine, store, cid, order_ref, award,
        expires_at=lot_expiry(program, at),
        allow_negative=program.negative_balance == "allow",
        pending=program.earn.pending_days > 0, now=at,
    )  # fmt: skip
    if order["status"] == "cancelled":
        restore_redemptions(engine, store, order_ref, now=at)
    return result


def earn_action(
    engine: Engine, store: str, customer_id: int, action: str, *, key: str, now: int | None = None
) -> LedgerResult | None:
    """Points for an action (account created, review written, ...); None when worth 0."""
    from boomerang.loyalty.program import action_points, lot_expiry

    at = now_micros() if now is None else now
    with engine.connect() as conn:
        program = load_program(conn, _store(conn, store).id)
    points = action_points(program, action)
    if points == 0:
        return None
    return earn(
        engine, store, customer_id, points, key=key, reason=action,
        expires_at=lot_expiry(program, at), now=at,
    )  # fmt: skip


def redeem_reward(
    engine: Engine,
    store: str,
    customer_id: int,
    reward_id: str,
    *,
    key: str,
    actor: str = "system",
    now: int | None = None,
) -> LedgerResult:
    """Spend a reward's points and issue its coupon, in one transaction (a replay returns
    the same coupon)."""
    at = now_micros() if now is None else now
    with engine.begin() as conn:
        row = _store(conn, store)
        program = load_program(conn, row.id)
        reward = program.reward(reward_id)
        tier = (repo.member(conn, row.id, customer_id) or {}).get("tier")
        if reward.tiers and tier not in reward.tiers:
            raise InsufficientError(
                f"reward {reward.id!r} is for tiers {', '.join(reward.tiers)}; the customer is "
                f"{tier or 'in no tier'}",
                hint="choose a reward open to the customer's tier",
            )

        def issue(tx: int) -> dict[str, Any]:
            if (
                reward.per_customer_limit is not None
                and repo.reward_redemptions(conn, row.id, customer_id, reward.id)
                + repo.credit_rewards(conn, row.id, customer_id, reward.id)
                >= reward.per_customer_limit
            ):
                raise InsufficientError(
                    f"the customer has redeemed {reward.id!r} {reward.per_customer_limit} times "
                    "already (the limit)",
                    hint="choose another reward",
                )
            if reward.kind == "store_credit":  # onto the credit account, no code needed
                credit = grant_credit_in(
                    conn, row, customer_id, reward.value, key=f"reward-credit:{key}", system=True,
                    reason=f"reward {reward.id}", actor=actor, at=at,
                )  # fmt: skip
                return {
                    "reward": reward.id,
                    "store_credit": reward.value,
                    "credit_balance": credit.balance,
                }
            code = _insert_coupon(
                conn,
                {
                    "store_id": row.id, "kind": _coupon_kind(reward.kind), "value": reward.value,
                    "currency": row.currency, "customer_id": customer_id, "max_uses": 1,
                    "uses": 0, "per_customer": None,
                    "expires_at": at + reward.coupon_days * MICROS_PER_DAY,
                    "source": f"reward:{reward.id}", "created_at": at,
                },
            )  # fmt: skip
            repo.add_event(
                conn, row.id, customer_id, "reward_redeemed",
                {"reward": reward.id, "points": reward.cost, "code": format_code(code)},
                f"reward:{key}", at,
            )  # fmt: skip
            return {"reward": reward.id, "coupon": format_code(code)}

        return _redeem_in(
            conn, row.id, customer_id, reward.cost, key=key, reason=f"reward {reward.id}",
            actor=actor, order_ref=None, at=at, payload={"reward": reward.id}, extra=issue,
        )  # fmt: skip


def _coupon_kind(kind: str) -> str:
    """Rewards without a discount of their own (donation, early access) still get a code:
    a zero-value free_product voucher the store honours."""
    return kind if kind in COUPON_KINDS else "free_product"


@dataclass
class TierChange:
    customer_id: int
    old: str | None
    new: str | None
    measure: int


def evaluate_tier(
    engine: Engine, store: str, customer_id: int, *, now: int | None = None
) -> TierChange:
    """Place the customer in the tier their measure reaches: up at once (with the tier's
    entry points, in the same transaction), down only at the review date (a year after
    the last change). The customer's points account is locked first, so concurrent
    evaluations of one customer take turns (one tier change, one event)."""
    from boomerang.loyalty.program import lot_expiry, tier_for

    at = now_micros() if now is None else now
    with engine.begin() as conn:
        row = _store(conn, store)
        if not repo.customer_in_store(conn, row.id, customer_id):
            raise NotFoundError(f"no customer {customer_id} in this store", hint="check the id")
        _points_accounts(conn, row.id, customer_id, AccountKind.ISSUED, at)  # the lock
        program = load_program(conn, row.id)
        since = _period_start(program, at)
        if program.tiers.basis == "points":
            measure = repo.points_earned(conn, row.id, customer_id, since)
        else:
            spend, count = repo.spend_and_orders(conn, row.id, customer_id, since)
            measure = count if program.tiers.basis == "orders" else spend
        current = repo.member(conn, row.id, customer_id)
        old = current["tier"] if current else None
        target = tier_for(program, measure)
        names = [t.name for t in program.tiers.levels]
        rank = {name: i for i, name in enumerate(names)}
        up = target is not None and (old is None or rank.get(target, -1) > rank.get(old, -1))
        down_due = current is not None and at >= int(current["review_at"])
        new = target if up or (down_due and target != old) else old
        if new != old or current is None:
            repo.set_member(conn, row.id, customer_id, new, at, at + 365 * MICROS_PER_DAY)
        if new != old:
            repo.add_event(
                conn, row.id, customer_id, "tier_changed",
                {"from": old, "to": new, "measure": measure, "direction": "up" if up else "down"},
                f"tier:{customer_id}:{old}:{new}:{at}", at,
            )  # fmt: skip
        level = program.tier_named(new)
        if up and level is not None and level.entry_points:
            earn_in(
                conn, row.id, customer_id, level.entry_points,
                key=f"tier-entry:{customer_id}:{new}", reason=f"welcome to {new}",
                actor="system", expires_at=lot_expiry(program, at), order_ref=None, at=at,
                system=True,
            )  # fmt: skip
    return TierChange(customer_id, old, new, measure)


def _period_start(program: Program, at: int) -> int | None:
    if program.tiers.period == "lifetime":
        return None
    if program.tiers.period == "rolling_365":
        return at - 365 * MICROS_PER_DAY
    year = from_micros(at).year
    return to_micros(datetime(year, 1, 1, tzinfo=UTC))


def restore_redemptions(
    engine: Engine, store: str, order_ref: str, *, now: int | None = None
) -> int:
    """Give back the points redeemed on an order that was cancelled (once per redemption)."""
    from boomerang.loyalty.program import lot_expiry

    at = now_micros() if now is None else now
    restored = 0
    with engine.connect() as conn:
        row = _store(conn, store)
        pending = repo.redemptions_to_restore(conn, row.id, order_ref)
        program = load_program(conn, row.id)
    for t in pending:
        points = -int(_stored(t)["delta"])
        cid = int(t["customer_id"])
        with engine.begin() as conn:
            claim = _claim(
                conn, row.id, key=f"restore:{t['id']}", kind="restore", customer_id=cid, system=True,
                order_ref=order_ref, reason=f"order {order_ref} cancelled", actor="system",
                now=at, payload={"redemption": int(t["id"])},
            )  # fmt: skip
            if claim.id is None:
                continue
            customer, redeemed = _points_accounts(conn, row.id, cid, AccountKind.REDEEMED, at)
            balance = _credit(
                conn, row.id, claim.id, customer, redeemed, points, lot_expiry(program, at), at
            )
            repo.finish(conn, claim.id, _result(claim.id, cid, points, balance))
            restored += points
    return restored


def birthday_points(engine: Engine, store: str, *, now: int | None = None) -> int:
    """The program's birthday points to every customer whose birthday is today (UTC), once
    a year (keyed by customer and year)."""
    from boomerang.loyalty.program import lot_expiry

    at = now_micros() if now is None else now
    today = from_micros(at).date()
    with engine.connect() as conn:
        row = _store(conn, store)
        program = load_program(conn, row.id)
        people = repo.birthdays(conn, row.id, today.strftime("%m-%d"))
    if program.earn.birthday == 0:
        return 0
    given = 0
    for cid in people:
        result = earn(
            engine, store, cid, program.earn.birthday, key=f"birthday:{cid}:{today.year}", system=True,
            reason="birthday", expires_at=lot_expiry(program, at), now=at,
        )  # fmt: skip
        given += 0 if result.replayed else 1
    return given


def expire_inactive(engine: Engine, store: str, *, now: int | None = None) -> ExpiryResult:
    """`expiry.mode: inactivity`: the whole balance of accounts with no earn or spend for
    `expiry.days` expires (one transaction per account and last activity)."""
    at = now_micros() if now is None else now
    out = ExpiryResult()
    with engine.connect() as conn:
        row = _store(conn, store)
        program = load_program(conn, row.id)
        if program.expiry.mode != "inactivity":
            return out
        idle = repo.inactive_accounts(conn, row.id, at - program.expiry.days * MICROS_PER_DAY)
    for acc in idle:
        try:
            _expire_idle(engine, row.id, acc, at, out)
        except _Active:  # rolled back, claim included: the account is not idle any more
            continue
    return out


class _Active(Exception):
    """An account listed as idle was used before its expiry transaction locked it."""


def _expire_idle(
    engine: Engine, store_id: int, acc: dict[str, Any], at: int, out: ExpiryResult
) -> None:
    cid = int(acc["customer_id"])
    with engine.begin() as conn:  # the account lock is taken before the re-check
        claim = _claim(
            conn, store_id, key=f"expire:inactive:{acc['id']}:{acc['last_id']}", kind="expire",
            customer_id=cid, order_ref=None, reason="inactive: points expired",
            actor="expiry job", now=at, payload={"account": int(acc["id"])}, system=True,
        )  # fmt: skip
        if claim.id is None:
            out.replayed += 1
            return
        customer, expired = _points_accounts(conn, store_id, cid, AccountKind.EXPIRED, at)
        if repo.last_activity_id(conn, store_id, cid) != int(acc["last_id"]):
            raise _Active()  # earned or spent since the listing: not idle any more
        balance = customer.balance
        if customer.balance > 0:
            taken, balance = _debit(conn, store_id, claim.id, customer, expired, customer.balance)
            out.lots += 1
            out.points += taken
        repo.finish(conn, claim.id, _result(claim.id, cid, balance - customer.balance, balance))


def release_pending_due(engine: Engine, store: str, *, now: int | None = None) -> int:
    """`release_pending` with the program's return window (nothing when it has none)."""
    with engine.connect() as conn:
        program = load_program(conn, _store(conn, store).id)
    if program.earn.pending_days == 0:
        return 0
    return release_pending(engine, store, days=program.earn.pending_days, now=now)


# -- store credit ----------------------------------------------------------------------------


def _credit_accounts(
    conn: Connection, store_id: int, customer_id: int, currency: str, program: AccountKind, at: int
) -> tuple[repo.Account, repo.Account]:
    ckey = customer_key(customer_id, AccountKind.CREDIT, currency)
    pkey = program_key(program, currency)
    found = repo.accounts(
        conn, store_id,
        [(ckey, customer_id, AccountKind.CREDIT.value, currency), (pkey, None, program.value, currency)],
        at, lock=True,
    )  # fmt: skip
    return found[ckey], found[pkey]


def grant_credit(
    engine: Engine,
    store: str,
    customer_id: int,
    amount_minor: int,
    *,
    key: str,
    reason: str,
    actor: str = "system",
    now: int | None = None,
    system: bool = False,
) -> LedgerResult:
    """Store credit (minor units of the store currency) on the same ledger as points;
    ``system`` as for `earn`."""
    _check_points(amount_minor)
    at = now_micros() if now is None else now
    with engine.begin() as conn:
        row = _store(conn, store)
        return grant_credit_in(
            conn,
            row,
            customer_id,
            amount_minor,
            key=key,
            reason=reason,
            actor=actor,
            at=at,
            system=system,
        )


def grant_credit_in(
    conn: Connection,
    row: stores_repo.Store,
    customer_id: int,
    amount_minor: int,
    *,
    key: str,
    reason: str,
    actor: str,
    at: int,
    system: bool = False,
) -> LedgerResult:
    """`grant_credit` inside the caller's transaction (a campaign step grants credit
    atomically with the step that grants it); ``row`` is the store."""
    _check_points(amount_minor)
    claim = _claim(
        conn, row.id, key=key, kind="credit", customer_id=customer_id, order_ref=None,
        reason=reason, actor=actor, now=at, system=system, payload={"customer": customer_id, "amount": amount_minor},
    )  # fmt: skip
    if claim.id is None:
        assert claim.stored_result is not None
        return _replay(claim.stored_result)
    account, issued = _credit_accounts(
        conn, row.id, customer_id, row.currency, AccountKind.ISSUED, at
    )
    repo.post(
        conn, row.id, claim.id, [(account, amount_minor, None), (issued, -amount_minor, None)]
    )
    result = _result(
        claim.id, customer_id, amount_minor, account.balance + amount_minor, currency=row.currency
    )
    repo.finish(conn, claim.id, result)
    return LedgerResult(claim.id, customer_id, amount_minor, account.balance + amount_minor)


def spend_credit(
    engine: Engine,
    store: str,
    customer_id: int,
    amount_minor: int,
    *,
    key: str,
    order_ref: str | None = None,
    actor: str = "system",
    now: int | None = None,
) -> LedgerResult:
    """Use store credit at checkout; never below zero."""
    _check_points(amount_minor)
    at = now_micros() if now is None else now
    with engine.begin() as conn:
        row = _store(conn, store)
        claim = _claim(
            conn, row.id, key=key, kind="credit_spend", customer_id=customer_id,
            order_ref=order_ref, reason="store credit used", actor=actor, now=at,
            payload={"customer": customer_id, "amount": amount_minor, "order": order_ref},
        )  # fmt: skip
        if claim.id is None:
            assert claim.stored_result is not None
            return _replay(claim.stored_result)
        account, redeemed = _credit_accounts(
            conn, row.id, customer_id, row.currency, AccountKind.REDEEMED, at
        )
        if account.balance < amount_minor:
            raise InsufficientError(
                f"customer {customer_id} has {account.balance} {row.currency} minor units of "
                f"store credit, {amount_minor} requested",
                hint="use at most the credit balance",
            )
        repo.post(
            conn, row.id, claim.id, [(account, -amount_minor, None), (redeemed, amount_minor, None)]
        )
        result = _result(claim.id, customer_id, -amount_minor, account.balance - amount_minor)
        repo.finish(conn, claim.id, result)
    return LedgerResult(claim.id, customer_id, -amount_minor, account.balance - amount_minor)


def renewal_bonus(
    engine: Engine, store: str, customer_id: int, renewal_at: int, *, now: int | None = None
) -> LedgerResult | None:
    """The program's renewal-approaching bonus (as Chase gives before a card renews): once
    per renewal date, when it is at most `earn.renewal_days_before` days away. Memberships
    call it as their renewal nears."""
    from boomerang.loyalty.program import lot_expiry

    at = now_micros() if now is None else now
    with engine.connect() as conn:
        program = load_program(conn, _store(conn, store).id)
    rules = program.earn
    if (
        rules.renewal_bonus == 0
        or not 0 < renewal_at - at <= rules.renewal_days_before * MICROS_PER_DAY
    ):
        return None
    return earn(
        engine, store, customer_id, rules.renewal_bonus, key=f"renewal-bonus:{customer_id}:{renewal_at}", system=True,
        reason="renewal approaching", expires_at=lot_expiry(program, at), now=at,
    )  # fmt: skip
