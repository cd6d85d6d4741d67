"""Acceptance: 64 `boomerang loyalty redeem` processes race for one balance (SQLite and PG).

Why: this is how the issue was reported: checkout workers each running the CLI against a
customer with 1,000 points, all at once. Each process is a real OS process running
`.venv/bin/boomerang loyalty redeem <customer> 100 --key k<i> --db <db> --store <store>`
(its own interpreter, engine and connection), all 64 started before any is waited for.
Exactly 10 must exit 0 (their JSON results show the balances 900, 800, ... 0), the other
54 exit 1 with the one-line `insufficient` error naming the balance and the request, and
the balance ends at 0, never below, with every transaction balanced.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from tests.loyalty.ledger_support import BOOMERANG, Shop, assert_sound, cli_env, make_shop, points

from boomerang.services import loyalty as service

RACERS = 64
BALANCE = 1_000
POINTS = 100


@pytest.fixture
def shop(db: str) -> Iterator[Shop]:
    found = make_shop(db, 3)
    yield found
    found.close()


@pytest.mark.slow
@pytest.mark.xdist_group("loyalty-processes")
def test_64_cli_processes_redeem_exactly_the_balance(shop: Shop) -> None:
    cid = shop.customers[0]
    with shop.engine.connect() as conn:
        email = conn.execute(text("SELECT email FROM customers WHERE id = :c"), {"c": cid}).scalar()
    assert email, "the simulated customer has an email to name them by"
    service.earn(shop.engine, shop.store, cid, BALANCE, key="seed")
    assert service.resolve_customer(shop.engine, shop.store, email) == cid

    started = time.monotonic()
    procs = [
        subprocess.Popen(
            [
                str(BOOMERANG), "loyalty", "redeem", email, str(POINTS), "--key", f"k{i}",
                "--db", shop.db, "--store", shop.store,
            ],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
        )
        for i in range(RACERS)
    ]  # fmt: skip
    finished = [p.communicate(timeout=600) for p in procs]
    elapsed = time.monotonic() - started
    codes = [p.returncode for p in procs]

    winners = [json.loads(out) for (out, _), code in zip(finished, codes, strict=True) if code == 0]
    losers = [err for (_, err), code in zip(finished, codes, strict=True) if code != 0]
    assert len(winners) == BALANCE // POINTS, (codes, losers[:3])
    assert sorted(w["balance"] for w in winners) == list(range(0, BALANCE, POINTS))
    assert {(w["delta"], w["replayed"]) for w in winners} == {(-POINTS, False)}
    assert len(losers) == RACERS - BALANCE // POINTS
    assert set(codes) == {0, 1}
    want = f"error (insufficient) customer {cid} has 0 points, {POINTS} requested"
    assert all(err.startswith(want) for err in losers), {e.splitlines()[0] for e in losers}
    assert points(shop, cid) == 0
    assert service.balance(shop.engine, shop.store, cid)["lots"] == []
    assert_sound(shop)
    print(f"\nCLI race {shop.db.split(':')[0]}: {RACERS} processes in {elapsed:.1f}s")
