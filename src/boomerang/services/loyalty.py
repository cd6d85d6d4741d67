"""Loyalty ledger use cases: earn, redeem, adjust, expire, order sync, balances, coupons.

Every call is one database transaction and carries an idempotency key: the same key with
the same request returns the stored result and changes nothing; the same key with another
request is a `ConflictError`. A request that fails (not enough points, an invalid coupon)
changes nothing and stores nothing, so it can be retried with its key. docs/loyalty.md.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine

from boomerang.domain.clock import MICROS_PER_DAY, now_micros
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
from boomerang.store.repos import loyalty as repo
from boomerang.store.repos import stores as stores_repo

#: Crockford base32 (no I, L, O, U): 12 characters = 60 bits from `secrets`.
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 12


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
) -> repo.Claim:
    if not key or len(key) > 200:
        raise InputError("an idempotency key of 1-200 characters is required", hint="pass --key")
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
    allow_negative: bool = False,
) -> tuple[int, int]:
    """Take points, lots in spending order (``first_lots`` before the others). Returns
    (points taken, new balance); beyond the lots, the balance goes negative only when
    allowed (else the shortfall is not taken)."""
    lots = _lots(conn, customer.id)
    preferred = [lot for lot in lots if first_lots and lot.id in first_lots]
    others = [lot for lot in lots if not (first_lots and lot.id in first_lots)]
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
) -> LedgerResult:
    """Give points (a new lot, expiring at ``expires_at`` when set)."""
    _check_points(points)
    at = now_micros() if now is None else now
    with engine.begin() as conn:
        row = _store(conn, store)
        claim = _claim(
            conn, row.id, key=key, kind="earn", customer_id=customer_id, order_ref=order_ref,
            reason=reason, actor=actor, now=at,
            payload={"customer": customer_id, "points": points, "expires_at": expires_at, "order": order_ref},
        )  # fmt: skip
        if claim.id is None:
            assert claim.stored_result is not None
            return _replay(claim.stored_result)
        customer, issued = _points_accounts(conn, row.id, customer_id, AccountKind.ISSUED, at)
        balance = _credit(conn, row.id, claim.id, customer, issued, points, expires_at, at)
        repo.add_event(
            conn, row.id, customer_id, "points_earned",
            {"points": points, "balance": balance, "reason": reason}, f"earn:{key}", at,
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
        claim = _claim(
            conn, row.id, key=key, kind="redeem", customer_id=customer_id, order_ref=order_ref,
            reason=reason, actor=actor, now=at,
            payload={"customer": customer_id, "points": points, "order": order_ref},
        )  # fmt: skip
        if claim.id is None:
            assert claim.stored_result is not None
            return _replay(claim.stored_result)
        customer, redeemed = _points_accounts(conn, row.id, customer_id, AccountKind.REDEEMED, at)
        if customer.balance < points:
            raise InsufficientError(
                f"customer {customer_id} has {customer.balance} points, {points} requested",
                hint="redeem at most the balance (`boomerang loyalty balance`)",
            )
        _, balance = _debit(conn, row.id, claim.id, customer, redeemed, points)
        result = _result(claim.id, customer_id, -points, balance)
        repo.finish(conn, claim.id, result)
    return LedgerResult(claim.id, customer_id, -points, balance)


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
    actor: str = "system",
    now: int | None = None,
) -> LedgerResult:
    """Make the points an order has earned equal ``award`` (0 when cancelled, pro-rata
    after a refund). Repeating a call with the same award changes nothing; a status flip
    completed -> cancelled -> completed nets one award. A clawback takes the order's own
    lot first, then other lots; beyond the balance it goes negative only when allowed."""
    if isinstance(award, bool) or not isinstance(award, int) or award < 0:
        raise InputError(f"award must be a whole number >= 0, not {award!r}", hint="e.g. 120")
    at = now_micros() if now is None else now
    with engine.begin() as conn:
        row = _store(conn, store)
        customer, issued = _points_accounts(conn, row.id, customer_id, AccountKind.ISSUED, at)
        history = [
            t
            for t in repo.order_transactions(conn, row.id, order_ref)
            if t["kind"] in ("award", "clawback")
        ]
        current = sum(int(_stored(t)["delta"]) for t in history)
        delta = award - current
        if delta == 0:
            return LedgerResult(None, customer_id, 0, customer.balance, replayed=True)
        step = len(history)
        kind = "award" if delta > 0 else "clawback"
        claim = _claim(
            conn, row.id, key=f"order:{order_ref}:step:{step}", kind=kind,
            customer_id=customer_id, order_ref=order_ref, reason=f"order {order_ref}",
            actor=actor, now=at, payload={"customer": customer_id, "order": order_ref, "award": award},
        )  # fmt: skip
        if claim.id is None:
            assert claim.stored_result is not None
            return _replay(claim.stored_result)
        if delta > 0:
            balance = _credit(conn, row.id, claim.id, customer, issued, delta, expires_at, at)
            taken = delta
        else:
            clawed = repo.accounts(
                conn, row.id,
                [(program_key(AccountKind.CLAWED_BACK), None, AccountKind.CLAWED_BACK.value, POINTS)],
                at, lock=False,
            )[program_key(AccountKind.CLAWED_BACK)]  # fmt: skip
            own = {int(lot["id"]) for lot in repo.open_lots(conn, customer.id)
                   if lot["transaction_id"] in {t["id"] for t in history}}  # fmt: skip
            taken, balance = _debit(
                conn, row.id, claim.id, customer, clawed, -delta,
                first_lots=own, allow_negative=allow_negative,
            )  # fmt: skip
            taken = -taken
        result = _result(claim.id, customer_id, taken, balance, award=award, wanted=delta)
        repo.finish(conn, claim.id, result)
    return LedgerResult(
        claim.id, customer_id, taken, balance, detail={"award": award, "wanted": delta}
    )


def _stored(t: dict[str, Any]) -> dict[str, Any]:
    import json

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
        lots = repo.open_lots(conn, account.id) if account else []
    return {
        "customer_id": customer_id,
        "balance": account.balance if account else 0,
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
    """12 Crockford base32 characters from the OS's CSPRNG: 60 bits."""
    return "".join(secrets.choice(CROCKFORD) for _ in range(CODE_LENGTH))


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
        code = _insert_coupon(
            conn,
            {
                "store_id": row.id, "kind": kind, "value": value, "currency": currency,
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
        if found is not None and repo.redemption(conn, int(found["id"]), key) is not None:
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
