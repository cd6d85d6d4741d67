"""Machinery the outbox reliability tests (S1-S7) share.

- `SmtpSink`: an aiosmtpd server in its own OS process, on a free loopback port, that
  advertises PIPELINING (as real servers do), refuses the recipients it is told to, and
  appends one JSON line per accepted message (Message-ID, recipient, the List-Unsubscribe
  headers, when) or refused recipient to a log file *before* it answers: every ``250`` a
  worker ever saw is in the log, even when that worker is killed a moment later.
- `sqlite_held_open`: a tiny separate process that keeps one idle connection to a SQLite
  database. The store opens a connection per transaction (``NullPool``); without another
  connection open, closing each one is the last close, which checkpoints and truncates the
  WAL (about 10 ms a transaction here). It is a separate process because a process that
  forks must have no SQLite connection open (SQLite's locks are per process).
- Workers as forked OS processes (`start`, `kill`): `wall_clock_worker` (what `boomerang
  worker` does: enter, tick, dispatch on the wall clock, in a loop, with a small claim
  size), `dispatch_worker` (dispatch only, in a loop, until the queue stays empty) and
  `sim_cycle` (one worker pass at a simulated moment). Each opens its own engine and uses
  its own worker id; the parent must have no SQLite connection open when it forks.
- `install_audit` / `audit`: a trigger (SQLite and PostgreSQL) that records every change
  of an outbox row's status or ``claimed_by`` with the database clock at that statement,
  so a test can check what happened to each message without touching the engine's code.
- `make_shop`: a store (`campaign_store.build_store`), its campaign settings (SMTP to the
  sink, an https ``base_url``, arbiter rules) and flows; `outbox`, `status_counts`,
  `expected_message_id` read the outcome back.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, text
from tests.campaigns.campaign_store import Person, build_store, write_flows

from boomerang.campaigns import mime
from boomerang.domain.clock import now_micros
from boomerang.services import campaign_runtime, campaigns
from boomerang.services.campaign_render import RenderRequest, render_messages
from boomerang.services.context import open_engine
from boomerang.store.repos import stores as stores_repo

ROOT = Path(__file__).resolve().parents[2]
BOOMERANG = ROOT / ".venv" / "bin" / "boomerang"
FORK = mp.get_context("fork")
STORE = "shop"
BASE_URL = "https://links.shop.example"
SENDER = "Shop <hello@shop.example>"
SENDER_DOMAIN = "shop.example"
HOUR = 3_600_000_000
DAY = 24 * HOUR
NO_CAPS: dict[str, Any] = {"caps": {}, "quiet_hours": {}}


def stamp(micros: int) -> str:
    """Epoch micros -> 'YYYY-MM-DD HH:MM' (UTC), the format `campaign_store` takes."""
    return datetime.fromtimestamp(micros / 1e6, UTC).strftime("%Y-%m-%d %H:%M")


# -- the SMTP sink ---------------------------------------------------------------------------


def _sink_main(
    log: str, refuse: dict[str, str], pipe: Any
) -> None:  # pragma: no cover - runs in the sink's process
    """The sink process: aiosmtpd on a free port (sent back through ``pipe``), until the
    parent says stop (or kills it)."""
    import re

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP, Envelope, Session

    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    wanted = ("Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post")
    patterns = {h: re.compile(rf"^{h}:[ \t]*(.*(?:\r\n[ \t].*)*)", re.M | re.I) for h in wanted}

    def header(head: str, name: str) -> str:
        found = patterns[name].search(head)  # unfolded: CRLF before whitespace removed
        return re.sub(r"\r\n(?=[ \t])", "", found.group(1)).strip() if found else ""

    def record(entry: dict[str, Any]) -> None:
        os.write(fd, (json.dumps(entry, sort_keys=True) + "\n").encode())

    class Handler:
        async def handle_EHLO(
            self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
            responses: list[str],
        ) -> list[str]:  # fmt: skip
            session.host_name = hostname
            responses.insert(-1, "250-PIPELINING")
            return responses

        async def handle_RCPT(
            self, server: SMTP, session: Session, envelope: Envelope, address: str,
            options: list[str],
        ) -> str:  # fmt: skip
            if address in refuse:
                record({"refused": address, "reply": refuse[address], "at": time.time_ns() // 1000})
                return refuse[address]
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            data = envelope.original_content or b""
            head = data.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
            record({
                "message_id": header(head, "Message-ID"),
                "rcpt": list(envelope.rcpt_tos),
                "list_unsubscribe": header(head, "List-Unsubscribe"),
                "list_unsubscribe_post": header(head, "List-Unsubscribe-Post"),
                "at": time.time_ns() // 1000,
            })  # fmt: skip
            return "250 Message accepted"

    class FreePortController(Controller):
        def _trigger_server(self) -> None:
            server: Any = self.server
            self.port = server.sockets[0].getsockname()[1]  # the port the OS picked
            super()._trigger_server()  # type: ignore[no-untyped-call]

    controller = FreePortController(Handler(), hostname="127.0.0.1", port=0)
    controller.start()
    pipe.send(controller.port)
    with suppress(EOFError):
        pipe.recv()  # "stop", or EOF when the parent is gone
    controller.stop()
    os.close(fd)


@dataclass
class SmtpSink:
    """An SMTP server in its own process, logging what it accepts to ``log``."""

    log: Path
    refuse: dict[str, str] = field(default_factory=dict)
    port: int = 0
    _proc: BaseProcess | None = None
    _pipe: Any = None
    _read: int = 0
    _count: int = 0

    def start(self) -> SmtpSink:
        parent, child = FORK.Pipe()
        self._proc = FORK.Process(
            target=_sink_main, args=(str(self.log), self.refuse, child), daemon=True
        )
        self._proc.start()
        child.close()
        if not parent.poll(30):
            raise RuntimeError("the SMTP sink did not start")
        self.port = int(parent.recv())
        self._pipe = parent
        return self

    def stop(self) -> None:
        if self._proc is None:
            return
        with suppress(OSError):
            self._pipe.send("stop")
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        self._proc = None

    def entries(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        lines = self.log.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def received(self) -> list[dict[str, Any]]:
        return [e for e in self.entries() if "message_id" in e]

    def refused(self) -> list[dict[str, Any]]:
        return [e for e in self.entries() if "refused" in e]

    def count(self) -> int:
        """How many messages the sink has accepted (read incrementally)."""
        if not self.log.exists():
            return 0
        with self.log.open("rb") as fh:
            fh.seek(self._read)
            chunk = fh.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._read += len(complete)
        self._count += complete.count(b'"message_id"')
        return self._count

    def wait_for(self, n: int, *, timeout: float, poll: float = 0.005) -> None:
        """Until the sink has accepted ``n`` messages."""
        deadline = time.monotonic() + timeout
        while self.count() < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the sink got {self.count()} messages, not {n}")
            time.sleep(poll)


@contextmanager
def smtp_sink(log: Path, *, refuse: dict[str, str] | None = None) -> Iterator[SmtpSink]:
    sink = SmtpSink(log, refuse or {}).start()
    try:
        yield sink
    finally:
        sink.stop()


def duplicates(ids: list[str]) -> dict[str, int]:
    """Message-IDs received more than once, with their count."""
    return {k: n for k, n in Counter(ids).items() if n > 1}


# -- SQLite held open ------------------------------------------------------------------------

_HOLDER = (
    "import sqlite3, sys\n"
    "c = sqlite3.connect(sys.argv[1])\n"
    "c.execute('SELECT count(*) FROM sqlite_master').fetchall()\n"
    "print('ready', flush=True)\n"
    "sys.stdin.read()\n"
    "c.close()\n"
)


@contextmanager
def sqlite_held_open(db: str) -> Iterator[None]:
    """Keep one idle connection to a SQLite database open in another process (nothing for
    PostgreSQL): connections that close are then never the last one, so they do not
    checkpoint the WAL on every transaction."""
    if "://" in db:
        yield
        return
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, db], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline().strip() == b"ready"
    try:
        yield
    finally:
        proc.stdin.close()
        proc.wait(30)


# -- worker processes ------------------------------------------------------------------------


def start(target: Callable[..., None], *args: Any) -> BaseProcess:
    """Run ``target(*args)`` in a forked OS process."""
    proc = FORK.Process(target=target, args=args, daemon=True)
    proc.start()
    return proc


def kill(proc: BaseProcess) -> bool:
    """SIGKILL the process (if it still runs); True when it was still running."""
    alive = proc.is_alive()
    if alive and proc.pid is not None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    return alive


def _quiet(part: campaigns.DispatchResult) -> bool:
    return not (part.sent or part.skipped or part.deferred or part.failed or part.retried)


def wall_clock_worker(
    db: str, store: str, worker: str, limit: int, poll: float
) -> None:  # pragma: no cover - runs in a worker process
    """What `boomerang worker` (`campaign_runtime.worker`) does, with claims of ``limit``
    messages: a pass at the wall clock's ``now`` (enter, tick, dispatch until nothing is
    ready, as `campaigns.cycle`), sleep ``poll``, again, forever."""
    engine = open_engine(db)
    rt = campaign_runtime.runtime(engine, store)
    while True:
        now = now_micros()
        campaigns.enter(engine, store, now)
        campaigns.tick(engine, store, now)
        while True:
            part = campaigns.dispatch(
                engine, store, now, channels=rt.channels, build=rt.build, worker=worker,
                limit=limit,
            )  # fmt: skip
            if _quiet(part):
                break
        time.sleep(poll)


def dispatch_worker(
    db: str, store: str, worker: str, limit: int, now: int | None, go: Any, idle_rounds: int
) -> None:  # pragma: no cover - runs in a worker process
    """Dispatch (at ``now``, else the wall clock) in a loop until ``idle_rounds`` passes in
    a row find nothing; starts when ``go`` (an Event) is set."""
    engine = open_engine(db)
    rt = campaign_runtime.runtime(engine, store)
    if go is not None:
        go.wait(60)
    idle = 0
    while idle < idle_rounds:
        part = campaigns.dispatch(
            engine, store, now_micros() if now is None else now, channels=rt.channels,
            build=rt.build, worker=worker, limit=limit,
        )  # fmt: skip
        if _quiet(part):
            idle += 1
            time.sleep(0.02)
        else:
            idle = 0
    rt.close()
    engine.dispose()


def sim_cycle(db: str, store: str, worker: str, now: int) -> None:  # pragma: no cover
    """One worker pass at the simulated moment ``now`` (enter, tick, dispatch until idle)."""
    engine = open_engine(db)
    rt = campaign_runtime.runtime(engine, store)
    summary = campaigns.RunSummary(started_at=now, until=now)
    campaigns.cycle(engine, store, now, summary, channels=rt.channels, build=rt.build,
                    worker=worker)  # fmt: skip
    rt.close()
    engine.dispose()


def run_workers(
    db: str, count: int, *, limit: int, now: int | None = None, idle_rounds: int = 5,
    prefix: str = "w",
) -> list[str]:  # fmt: skip
    """``count`` `dispatch_worker` processes released together; waits for all of them and
    checks they exited cleanly. Returns their worker ids."""
    go = FORK.Event()
    ids = [f"{prefix}{i}" for i in range(count)]
    procs = [start(dispatch_worker, db, STORE, w, limit, now, go, idle_rounds) for w in ids]
    go.set()
    for p in procs:
        p.join(600)
    assert [p.exitcode for p in procs] == [0] * count, [p.exitcode for p in procs]
    return ids


def boomerang(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the real CLI (`.venv/bin/boomerang`)."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [str(BOOMERANG), *args], capture_output=True, text=True, timeout=timeout, env=env,
        check=True, cwd=ROOT,
    )  # fmt: skip


# -- the audit trigger -----------------------------------------------------------------------

_PG_AUDIT = (
    """CREATE TABLE outbox_audit (
        id BIGSERIAL PRIMARY KEY, outbox_id BIGINT NOT NULL, old_status TEXT,
        new_status TEXT, old_worker TEXT, new_worker TEXT, attempts INT, at_us BIGINT NOT NULL)""",
    """CREATE FUNCTION outbox_audit_fn() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.status IS DISTINCT FROM OLD.status
           OR NEW.claimed_by IS DISTINCT FROM OLD.claimed_by THEN
            INSERT INTO outbox_audit
                (outbox_id, old_status, new_status, old_worker, new_worker, attempts, at_us)
            VALUES (NEW.id, OLD.status, NEW.status, OLD.claimed_by, NEW.claimed_by,
                    NEW.attempts, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint);
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER outbox_audit_t AFTER UPDATE ON outbox
        FOR EACH ROW EXECUTE FUNCTION outbox_audit_fn()""",
)
_SQLITE_AUDIT = (
    """CREATE TABLE outbox_audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT, outbox_id INTEGER NOT NULL, old_status TEXT,
        new_status TEXT, old_worker TEXT, new_worker TEXT, attempts INTEGER,
        at_us INTEGER NOT NULL)""",
    # SQLite's clock has millisecond resolution and is read down: a recorded time is never
    # later than the real one.
    """CREATE TRIGGER outbox_audit_t AFTER UPDATE ON outbox FOR EACH ROW
        WHEN NEW.status IS NOT OLD.status OR NEW.claimed_by IS NOT OLD.claimed_by
        BEGIN
            INSERT INTO outbox_audit
                (outbox_id, old_status, new_status, old_worker, new_worker, attempts, at_us)
            VALUES (NEW.id, OLD.status, NEW.status, OLD.claimed_by, NEW.claimed_by,
                    NEW.attempts,
                    CAST(round((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000);
        END""",
)


def install_audit(engine: Engine) -> None:
    """Record every status / claimed_by change of an outbox row in ``outbox_audit``."""
    statements = _PG_AUDIT if engine.dialect.name == "postgresql" else _SQLITE_AUDIT
    with engine.begin() as conn:
        for sql in statements:
            conn.exec_driver_sql(sql)


@dataclass(frozen=True)
class Change:
    outbox_id: int
    old_status: str
    new_status: str
    old_worker: str | None
    new_worker: str | None
    attempts: int
    at: int  # database clock, epoch micros


def audit(engine: Engine) -> dict[int, list[Change]]:
    """outbox id -> its changes, in the order they were made."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT outbox_id, old_status, new_status, old_worker, new_worker, attempts, "
                "at_us FROM outbox_audit ORDER BY id"
            )
        ).all()
    out: dict[int, list[Change]] = {}
    for r in rows:
        change = Change(int(r[0]), str(r[1]), str(r[2]), r[3], r[4], int(r[5] or 0), int(r[6]))
        out.setdefault(change.outbox_id, []).append(change)
    return out


def audit_problems(changes: dict[int, list[Change]]) -> list[str]:
    """What breaks the claim protocol: a message marked ``sending`` again without a failed
    attempt having put it back in the queue, claimed from another state than ``queued``
    (a double claim), moved on by another worker than the one that claimed it, or whose
    owner changed while it was being sent."""
    problems = []
    for oid, seq in changes.items():
        sendings = sum(1 for c in seq if c.new_status == "sending")
        retries = sum(1 for c in seq if c.old_status == "sending" and c.new_status == "queued")
        if sendings > 1 + retries:
            problems.append(f"message {oid} was marked sending {sendings} times")
        owner: str | None = None
        for c in seq:
            if c.new_status == "claimed":
                if c.old_status != "queued":
                    problems.append(f"message {oid} claimed from {c.old_status}: {c}")
                owner = c.new_worker
            elif c.old_status in ("claimed", "sending") and c.new_status != "queued":
                # moved on by its owner (recovery, which sets queued / in_doubt, aside)
                if c.new_status != "in_doubt" and c.old_worker != owner:
                    problems.append(f"message {oid}: {c} by another worker than {owner}")
                if c.old_status == "sending" and c.new_worker != c.old_worker:
                    problems.append(f"message {oid}: owner changed while sending: {c}")
    return problems


# -- stores ----------------------------------------------------------------------------------


@dataclass
class Shop:
    db: str
    engine: Engine
    store_id: int
    tmp: Path

    def close(self) -> None:
        self.engine.dispose()


def write_settings(path: Path, *, smtp_port: int, arbiter: dict[str, Any] | None) -> Path:
    settings: dict[str, Any] = {
        "base_url": BASE_URL,
        "sender": SENDER,
        "channels": {
            "email": {"type": "smtp", "host": "127.0.0.1", "port": smtp_port, "timeout": 20}
        },
    }
    if arbiter is not None:
        settings["arbiter"] = arbiter
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


def make_shop(
    db: str, tmp: Path, people: list[Person], flows: list[dict[str, Any]], *, start: int,
    smtp_port: int, consent_at: int, arbiter: dict[str, Any] | None = None,
) -> Shop:  # fmt: skip
    """A store with ``people``, SMTP to the sink, an https base_url and ``flows`` (seeing
    triggers from ``start``); the audit trigger is installed and this process's template
    and recommender caches are warm."""
    build_store(db, STORE, people, consent_at=consent_at)
    campaign_runtime.set_settings(
        db, STORE, write_settings(tmp / "settings.yaml", smtp_port=smtp_port, arbiter=arbiter)
    )
    if flows:
        campaigns.set_flows(db, STORE, [write_flows(tmp, flows)], start=start)
    engine = open_engine(db)
    install_audit(engine)
    with engine.connect() as conn:
        store_id = stores_repo.get(conn, STORE).id
    shop = Shop(db, engine, store_id, tmp)
    warm_up(shop)
    return shop


def outbox(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT o.id, o.message_key, o.customer_id, c.email, o.flow_id, o.run_id, "
                "o.step_id, o.status, o.reason, o.sent_at, o.claimed_by, o.transactional, "
                "o.attempts, o.provider_id, o.not_before, o.created_at "
                "FROM outbox o JOIN customers c ON c.id = o.customer_id ORDER BY o.id"
            )
        ).mappings()
        return [dict(r) for r in rows]


def status_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT status, count(*) FROM outbox GROUP BY status")).all()
    return {str(s): int(n) for s, n in rows}


def expected_message_id(message_key: str) -> str:
    """The Message-ID the SMTP channel gives a message (stable per message key)."""
    return mime.message_id(message_key, SENDER_DOMAIN)


def warm_up(shop: Shop) -> None:
    """Load the templates and fit the store's recommender in this process, so the worker
    processes it forks start warm (as a long-running worker is)."""
    with shop.engine.connect() as conn:
        cid = int(conn.execute(text("SELECT min(id) FROM customers")).scalar_one())
    render_messages(shop.engine, STORE, [RenderRequest(cid, "generic", "email")],
                    templates_dir=None)  # fmt: skip


def fill_outbox(shop: Shop, now: int) -> int:
    """Enter and tick in the test process: the flows' messages are queued, none sent."""
    campaigns.enter(shop.engine, STORE, now)
    queued = campaigns.tick(shop.engine, STORE, now).queued
    return queued
