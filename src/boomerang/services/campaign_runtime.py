"""What a worker needs to run a store's campaigns: its settings (arbiter rules, channels,
links, sender, templates), the channel adapters, the message builder; and the two ways of
running — `worker` on the wall clock, `simulate_until` on simulated time for demos.

Settings live in the store's campaign settings (``boomerang flows settings set FILE``);
the signing key kept there is never shown.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Engine

from boomerang.campaigns.arbiter import ArbiterSettings
from boomerang.campaigns.channels.base import Channel, Message
from boomerang.campaigns.channels.registry import CHANNELS, channel_for
from boomerang.domain.clock import now_micros
from boomerang.errors import InputError
from boomerang.services import campaigns
from boomerang.services.campaign_messages import SendSettings, build_messages
from boomerang.services.context import open_engine
from boomerang.store.repos import campaign_web as settings_repo
from boomerang.store.repos import stores as stores_repo

HIDDEN = ("signing_key",)


class SettingsFile(BaseModel):
    """The keys ``flows settings set`` accepts (all optional; given keys replace)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str | None = Field(None, pattern=r"^https?://")
    sender: str | None = None
    templates_dir: str | None = None
    arbiter: ArbiterSettings | None = None
    channels: dict[str, dict[str, Any]] | None = None
    attribution_window_days: int | None = Field(None, ge=1, le=365)


def show_settings(db: str, store: str) -> dict[str, Any]:
    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            row = stores_repo.get(conn, store)
            config = settings_repo.load_config(conn, row.id)
    finally:
        engine.dispose()
    shown = {k: v for k, v in config.items() if k not in HIDDEN}
    shown.setdefault("arbiter", ArbiterSettings().model_dump(mode="json"))
    return shown


def set_settings(db: str, store: str, path: Path) -> dict[str, Any]:
    """Validate a settings file and merge its keys into the store's settings."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        parsed = SettingsFile.model_validate(raw)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file", hint="check the path") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({exc})", hint="fix the syntax") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise InputError(
            f"{path.name}: {where}: {first['msg']}", hint="see docs/campaigns.md#settings"
        ) from None
    for name, conf in (parsed.channels or {}).items():
        channel_for(name, {name: conf}).close()  # a bad adapter setting fails here, not at 3 am
    changes = parsed.model_dump(mode="json", exclude_none=True)
    engine = open_engine(db)
    try:
        with engine.begin() as conn:
            row = stores_repo.get(conn, store)
            settings_repo.merge_config(conn, row.id, changes, now_micros())
    finally:
        engine.dispose()
    return show_settings(db, store)


@dataclass
class Runtime:
    channels: Callable[[str], Channel]
    build: campaigns.Builder
    close: Callable[[], None]


def runtime(engine: Engine, store: str, *, out_dir: Path | None = None) -> Runtime:
    """Adapters and builder from the store's settings; ``out_dir`` sends every channel to
    files there instead (demos, `flows run`)."""
    with engine.connect() as conn:
        row = stores_repo.get(conn, store)
        config = settings_repo.load_config(conn, row.id)
    send = SendSettings.of(config)
    conf: dict[str, Any] = dict(config.get("channels") or {})
    if out_dir is not None:
        conf = {name: {"type": "file", "dir": str(out_dir)} for name in CHANNELS}
    opened: dict[str, Channel] = {}

    def channels(name: str) -> Channel:
        if name not in opened:
            opened[name] = channel_for(name, conf)
        return opened[name]

    def build(
        rows: list[dict[str, Any]], contacts: dict[int, dict[str, Any]]
    ) -> dict[int, Message | Exception]:
        return build_messages(engine, store, rows, contacts, send, now_micros())

    def close() -> None:
        for channel in opened.values():
            channel.close()
        opened.clear()

    return Runtime(channels, build, close)


def simulate_until(
    db: str,
    store: str,
    until: int,
    *,
    out_dir: Path,
    step: int = campaigns.HOUR,
    scan: int = 24 * campaigns.HOUR,
) -> campaigns.RunSummary:
    """`boomerang flows run --until`: simulated time, every message to files in ``out_dir``
    (``step``: the clock's grid; ``scan``: how far ahead triggers are read at a time)."""
    engine = open_engine(db)
    rt = runtime(engine, store, out_dir=out_dir)
    try:
        return campaigns.run_until(
            engine, store, until, channels=rt.channels, build=rt.build, step=step, scan=scan
        )
    finally:
        rt.close()
        engine.dispose()


def worker(
    db: str,
    store: str,
    *,
    once: bool = False,
    poll_seconds: float = 5.0,
    on_cycle: Callable[[campaigns.RunSummary], None] | None = None,
) -> campaigns.RunSummary:
    """`boomerang worker`: enter, tick and dispatch on the wall clock, until stopped."""
    engine = open_engine(db)
    rt = runtime(engine, store)
    me = f"worker-{uuid.uuid4().hex[:8]}"
    started = now_micros()
    total = campaigns.RunSummary(started_at=started, until=started)
    try:
        campaigns.recover(engine, store, started)
        while True:
            now = now_micros()
            summary = campaigns.RunSummary(started_at=now, until=now)
            campaigns.cycle(engine, store, now, summary, channels=rt.channels, build=rt.build,
                            worker=me)  # fmt: skip
            campaigns.add_summary(total, summary)
            if on_cycle is not None:
                on_cycle(summary)
            if once:
                return total
            time.sleep(poll_seconds)
    finally:
        rt.close()
        engine.dispose()
