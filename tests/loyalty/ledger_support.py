"""Helpers the loyalty reliability tests share: a store with customers, many callers at once,
and the ledger's invariants checked in SQL.

- `make_shop`: a simulated store (`apply_frames(db, store, simulate_store(...).store_frames())`)
  and its customer ids, with an engine.
- `run_threads`: N callables released together by a barrier, each thread with its own engine.
- `run_workers`: W workers (threads spread over forked OS processes, each thread with its own
  engine) doing R rounds of one call; in ``lockstep`` every round starts for all workers at
  once, and the test process runs ``between(round)`` (checks, top-ups) after each round.
- `ledger_problems`: what breaks the ledger's invariants, read with plain SQL (no service code):
  transactions whose entries do not sum to zero, balances that are not the sum of their
  entries, lots whose remainder is not the sum of the entries naming them, points accounts
  whose lots do not add up to the balance, transaction rows without a stored result.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, text

from boomerang.domain.clock import MICROS_PER_DAY
from boomerang.loyalty.ledger import customer_key
from boomerang.services.context import open_engine
from boomerang.services.imports import apply_frames
from boomerang.simulate import simulate_store
from boomerang.store.repos import stores as stores_repo

DAY = MICROS_PER_DAY
ROOT = Path(__file__).resolve().parents[2]
BOOMERANG = ROOT / ".venv" / "bin" / "boomerang"
FORK = mp.get_context("fork")


@dataclass
class Shop:
    """A store in ``db`` with simulated customers; ``engine`` belongs to the test process."""

    db: str
    store: str
    store_id: int
    customers: list[int]
    engine: Engine

    def close(self) -> None:
        self.engine.dispose()


def make_shop(db: str, customers: int, *, store: str = "shop", seed: int = 7) -> Shop:
    """A simulated store with at least ``customers`` customers (their ids in id order)."""
    apply_frames(db, store, simulate_store(customers, 30, seed).store_frames())
    engine = open_engine(db)
    with engine.connect() as conn:
        store_id = stores_repo.get(conn, store).id
        ids = [
            int(r[0])
            for r in conn.execute(
                text("SELECT id FROM customers WHERE store_id = :s ORDER BY id"), {"s": store_id}
            )
        ]
    assert len(ids) >= customers, (len(ids), customers)
    return Shop(db, store, store_id, ids, engine)


def write_program(path: Path, body: str) -> Path:
    """A program file (YAML, docs/loyalty.md) to pass to `service.set_program`."""
    path.write_text(body, encoding="utf-8")
    return path


def detach_orders(shop: Shop) -> None:
    """Make the simulated orders guest orders, so the tests' own orders are the customers'
    only ones (first-order bonus, tier measures)."""
    with shop.engine.begin() as conn:
        conn.execute(
            text("UPDATE orders SET customer_id = NULL WHERE store_id = :s"), {"s": shop.store_id}
        )


def add_order(
    shop: Shop,
    cid: int | None,
    ref: str,
    *,
    placed: int,
    subtotal: int,
    discount: int = 0,
    shipping: int = 0,
    tax: int = 0,
    refunded: int = 0,
    status: str = "paid",
) -> int:
    """An order as an import would store it (minor units); returns its total."""
    total = subtotal - discount + shipping + tax
    with shop.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO orders (store_id, external_id, customer_id, placed_at, currency, "
                "subtotal_minor, discount_minor, shipping_minor, tax_minor, total_minor, "
                "refunded_minor, status, channel, source, digest) VALUES (:s, :ref, :cid, "
                ":placed, 'USD', :subtotal, :discount, :shipping, :tax, :total, :refunded, "
                ":status, 'online', 'test', '')"
            ),
            {
                "s": shop.store_id, "ref": ref, "cid": cid, "placed": placed,
                "subtotal": subtotal, "discount": discount, "shipping": shipping, "tax": tax,
                "total": total, "refunded": refunded, "status": status,
            },
        )  # fmt: skip
    return total


def update_order(shop: Shop, ref: str, *, status: str, refunded: int = 0) -> None:
    """A re-import of the order with a new status / refunded amount."""
    with shop.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE orders SET status = :status, refunded_minor = :refunded "
                "WHERE store_id = :s AND external_id = :ref"
            ),
            {"s": shop.store_id, "ref": ref, "status": status, "refunded": refunded},
        )


# -- reading the ledger back -------------------------------------------------------------------


def scalar(engine: Engine, sql: str, **params: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql), params).scalar_one())


def points(shop: Shop, cid: int) -> int:
    """The customer's points balance (the running balance column; 0 without an account)."""
    with shop.engine.connect() as conn:
        found = conn.execute(
            text("SELECT balance FROM loyalty_accounts WHERE store_id = :s AND account_key = :k"),
            {"s": shop.store_id, "k": customer_key(cid)},
        ).scalar()
    return 0 if found is None else int(found)


def program_totals(shop: Shop) -> dict[str, int]:
    """Sum of entries per program account kind (issued is negative)."""
    with shop.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT a.kind, coalesce(sum(e.amount), 0) FROM loyalty_accounts a "
                "LEFT JOIN loyalty_entries e ON e.account_id = a.id "
                "WHERE a.store_id = :s AND a.customer_id IS NULL AND a.unit = 'PTS' "
                "GROUP BY a.kind"
            ),
            {"s": shop.store_id},
        ).all()
    return {str(kind): int(total) for kind, total in rows}


def transactions(shop: Shop, where: str = "1 = 1", **params: Any) -> list[dict[str, Any]]:
    with shop.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id, idempotency_key, kind, customer_id, order_ref, result "
                f"FROM loyalty_transactions WHERE store_id = :s AND ({where}) ORDER BY id"
            ),
            {"s": shop.store_id, **params},
        ).mappings()
        return [dict(r) for r in rows]


def ledger_problems(conn: Connection, store_id: int) -> dict[str, list[tuple[Any, ...]]]:
    """Every violation of the ledger's invariants in the store (empty lists: sound)."""
    q = {
        # Double entry: each transaction's entries sum to zero.
        "unbalanced transactions": (
            "SELECT transaction_id, sum(amount) FROM loyalty_entries WHERE store_id = :s "
            "GROUP BY transaction_id HAVING sum(amount) <> 0"
        ),
        # A running balance equals the sum of the account's entries.
        "balance != sum of entries": (
            "SELECT a.id, a.account_key, a.balance, coalesce(sum(e.amount), 0) "
            "FROM loyalty_accounts a LEFT JOIN loyalty_entries e ON e.account_id = a.id "
            "WHERE a.store_id = :s AND a.customer_id IS NOT NULL "
            "GROUP BY a.id, a.account_key, a.balance HAVING a.balance <> coalesce(sum(e.amount), 0)"
        ),
        # A lot's remainder equals the sum of the entries that name it.
        "lot != sum of its entries": (
            "SELECT l.id, l.remaining, coalesce(sum(e.amount), 0) FROM loyalty_lots l "
            "LEFT JOIN loyalty_entries e ON e.lot_id = l.id AND e.account_id = l.account_id "
            "WHERE l.store_id = :s GROUP BY l.id, l.remaining "
            "HAVING l.remaining <> coalesce(sum(e.amount), 0)"
        ),
        "negative lots": "SELECT id, remaining FROM loyalty_lots WHERE store_id = :s AND remaining < 0",
        # While the balance is >= 0 it is the sum of the lots' remainders.
        "lots != balance": (
            "SELECT a.id, a.balance, (SELECT coalesce(sum(l.remaining), 0) FROM loyalty_lots l "
            "WHERE l.account_id = a.id) AS lots FROM loyalty_accounts a "
            "WHERE a.store_id = :s AND a.customer_id IS NOT NULL AND a.unit = 'PTS' "
            "AND a.balance >= 0 AND a.balance <> (SELECT coalesce(sum(l.remaining), 0) "
            "FROM loyalty_lots l WHERE l.account_id = a.id)"
        ),
        # No half-written transaction: a committed row has its result stored.
        "transactions without a result": (
            "SELECT id, idempotency_key FROM loyalty_transactions "
            "WHERE store_id = :s AND result = '{}'"
        ),
    }
    return {
        name: [tuple(r) for r in conn.execute(text(sql), {"s": store_id})]
        for name, sql in q.items()
    }


def assert_sound(shop: Shop) -> None:
    with shop.engine.connect() as conn:
        found = ledger_problems(conn, shop.store_id)
    assert all(not rows for rows in found.values()), {k: v for k, v in found.items() if v}


# -- many callers at once ----------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one call did: its value, or the class name and message of what it raised."""

    value: Any = None
    error: str | None = None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


def _outcome(call: Callable[..., Any], *args: Any) -> Outcome:
    try:
        return Outcome(value=call(*args))
    except Exception as exc:  # the test decides which errors are expected
        return Outcome(error=type(exc).__name__, message=str(exc))


def run_threads(
    db: str, calls: Sequence[Callable[[Engine], Any]], *, timeout: float = 120
) -> list[Outcome]:
    """Run each call in its own thread with its own engine, all released by one barrier."""
    barrier = threading.Barrier(len(calls))
    out: list[Outcome | None] = [None] * len(calls)

    def run(i: int) -> None:
        engine = open_engine(db)
        try:
            barrier.wait(timeout)
            out[i] = _outcome(calls[i], engine)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    missing = [i for i, o in enumerate(out) if o is None]
    assert not missing, f"calls that did not finish: {missing}"
    return [o for o in out if o is not None]


Call = Callable[[Engine, int, int], Any]  # (engine, round, worker) -> value


@dataclass
class _Sync:
    """The barriers of one `run_workers` run."""

    start: Any  # all workers and the test process: before the first round (and each round)
    end: Any  # all workers and the test process: after each round (``between``)
    groups: list[Any]  # per group of workers: before each round
    everyone: bool  # whole-run lockstep (start/end every round)

    def abort(self) -> None:
        for barrier in (self.start, self.end, *self.groups):
            barrier.abort()


def _host(
    db: str, call: Call, workers: list[int], rounds: int, group: int, sync: _Sync, results: Any,
    timeout: float,
) -> None:  # fmt: skip
    """A forked OS process running some of the workers, one thread (and engine) each."""

    def work(w: int) -> None:
        engine = open_engine(db)
        try:
            sync.start.wait(timeout)  # everyone (and every engine) ready
            for r in range(rounds):
                if sync.everyone and r:
                    sync.start.wait(timeout)
                if sync.groups:
                    sync.groups[w // group].wait(timeout)
                results.put((r, w, _outcome(call, engine, r, w)))
                if sync.everyone:
                    sync.end.wait(timeout)
        except threading.BrokenBarrierError:
            pass  # the test process or another worker gave up: stop quietly
        except Exception:
            results.put((-1, w, Outcome(error="crash", message=traceback.format_exc())))
            sync.abort()
        finally:
            engine.dispose()

    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.close()
    results.join_thread()
    os._exit(0)


def run_workers(
    db: str,
    call: Call,
    *,
    workers: int,
    rounds: int,
    processes: int,
    lockstep: bool = True,
    group: int | None = None,
    between: Callable[[int], None] | None = None,
    timeout: float = 300,
) -> list[list[Outcome]]:
    """``workers`` concurrent callers (threads over ``processes`` forked OS processes, each
    with its own engine) each run ``call(engine, round, worker)`` for every round.

    ``lockstep``: a round starts for all workers at once and ``between(round)`` runs in this
    process after every round. ``group=k``: instead, each group of k consecutive workers
    starts each round together (groups run at their own pace). Neither: only the first
    call is synchronised. Returns outcomes[round][worker]."""
    everyone = lockstep and group is None
    if group is not None:
        assert workers % group == 0 and between is None
    sync = _Sync(
        start=FORK.Barrier(workers + 1),  # the test process takes part too
        end=FORK.Barrier(workers + 1),
        groups=[FORK.Barrier(group) for _ in range(workers // group)] if group else [],
        everyone=everyone,
    )
    results: Any = FORK.Queue()
    share = [list(range(workers))[p::processes] for p in range(processes)]
    hosts = [
        FORK.Process(
            target=_host,
            args=(db, call, mine, rounds, group or 0, sync, results, timeout),
            daemon=True,
        )
        for mine in share
        if mine
    ]
    for h in hosts:
        h.start()
    out: list[list[Outcome | None]] = [[None] * workers for _ in range(rounds)]
    got = 0

    def take(block: bool) -> bool:
        """Store one result; False when none is waiting (``block=False``)."""
        nonlocal got
        try:
            r, w, outcome = results.get(timeout=timeout) if block else results.get_nowait()
        except queue_mod.Empty:
            if block:
                raise AssertionError("the workers stopped answering") from None
            return False
        if r < 0:
            raise AssertionError(f"worker {w} crashed:\n{outcome.message}")
        out[r][w] = outcome
        got += 1
        return True

    try:
        sync.start.wait(timeout)
        for r in range(rounds if everyone else 0):
            if r:
                sync.start.wait(timeout)
            sync.end.wait(timeout)
            while got < (r + 1) * workers:
                take(block=True)
            if between is not None:
                between(r)
        while got < rounds * workers:
            take(block=True)
    except BaseException as exc:
        sync.abort()
        for h in hosts:
            h.kill()
        if isinstance(exc, threading.BrokenBarrierError):
            while take(block=False):  # a worker crashed: raise with its traceback
                pass
        raise
    finally:
        for h in hosts:
            h.join(timeout)
    return [[o for o in row if o is not None] for row in out]


# -- the CLI -----------------------------------------------------------------------------------


def cli_env() -> dict[str, str]:
    """The environment for a `boomerang` subprocess: no inherited BOOMERANG_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOMERANG_")}
    env["COLUMNS"] = "200"  # one line per message in the captured output
    return env
