"""`boomerang flows ...`, `boomerang outbox ...` and `boomerang worker`: campaign flows,
the message outbox and the process that advances them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from boomerang.cli.common import DbOption, StoreOption, console, resolve
from boomerang.cli.segments import moment
from boomerang.domain.clock import from_micros
from boomerang.errors import InputError

if TYPE_CHECKING:
    from boomerang.services.campaigns import RunSummary

app = typer.Typer(help="Campaign flows: set, list, pause, run, preview.", no_args_is_help=True)
outbox_app = typer.Typer(help="The message outbox: what was sent, skipped, in doubt.",
                         no_args_is_help=True)  # fmt: skip
settings_app = typer.Typer(help="Campaign settings: caps, quiet hours, channels, links.",
                           no_args_is_help=True)  # fmt: skip
app.add_typer(settings_app, name="settings")

FilesArg = Annotated[list[Path], typer.Argument(help="Flow files (YAML/JSON).", exists=False)]


@app.command("set")
def set_command(
    files: FilesArg,
    start: Annotated[
        str | None,
        typer.Option("--from", help="New flows see triggers from this date (default now)."),
    ] = None,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Validate flow files and store them (a changed flow becomes a new version)."""
    from boomerang.services import campaigns

    db_url, store_name = resolve(db, store)
    for saved in campaigns.set_flows(db_url, store_name, files, start=moment(start, "--from")):
        state = "saved" if saved.changed else "unchanged"
        console.print(f"{saved.name}: version {saved.version} ({state})")


@app.command("list")
def list_command(db: DbOption = None, store: StoreOption = None) -> None:
    """Flows with their trigger, runs by status and messages by status."""
    from boomerang.services import campaigns

    db_url, store_name = resolve(db, store)
    table = Table("flow", "status", "version", "trigger", "runs", "messages")
    for f in campaigns.list_flows(db_url, store_name):
        table.add_row(
            f.name, f.status, str(f.version), f.trigger,
            ", ".join(f"{k} {v:,}" for k, v in sorted(f.runs.items())) or "-",
            ", ".join(f"{k} {v:,}" for k, v in sorted(f.messages.items())) or "-",
        )  # fmt: skip
    console.print(table)


@app.command("pause")
def pause_command(name: str, db: DbOption = None, store: StoreOption = None) -> None:
    """Stop letting customers in and advancing runs (they wait where they are)."""
    from boomerang.services import campaigns

    db_url, store_name = resolve(db, store)
    campaigns.set_status(db_url, store_name, name, "paused")
    console.print(f"{name}: paused")


@app.command("resume")
def resume_command(name: str, db: DbOption = None, store: StoreOption = None) -> None:
    """Continue a paused flow (triggers missed while paused are picked up)."""
    from boomerang.services import campaigns

    db_url, store_name = resolve(db, store)
    campaigns.set_status(db_url, store_name, name, "active")
    console.print(f"{name}: active")


def print_summary(summary: RunSummary) -> None:
    d = summary.dispatch
    console.print(
        f"{from_micros(summary.started_at):%Y-%m-%d %H:%M} → {from_micros(summary.until):%Y-%m-%d %H:%M} "
        f"({summary.steps} steps): entered {sum(summary.entered.values()):,}, "
        f"advanced {summary.tick.advanced:,}, sent {d.sent:,}, skipped {d.skipped:,}, "
        f"queued for later {d.deferred:,}, failed {d.failed:,}"
    )
    for reason, n in sorted(d.reasons.items(), key=lambda kv: -kv[1]):
        console.print(f"  {n:>8,}  {reason}")


@app.command("run")
def run_command(
    until: Annotated[str, typer.Option("--until", help="Advance simulated time to this date.")],
    out: Annotated[
        Path, typer.Option("--out", help="Write every message here (.eml/.json).")
    ] = Path("outbox"),
    step: Annotated[
        str, typer.Option("--step", help="Simulated time per step (1h, 6h, 1d).")
    ] = "1h",
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Run the flows over simulated time (demos, tests): messages go to files in --out."""
    from boomerang.segments.model import parse_window
    from boomerang.services import campaign_runtime

    db_url, store_name = resolve(db, store)
    end = moment(until, "--until")
    assert end is not None
    with console.status("running flows over simulated time…"):
        summary = campaign_runtime.simulate_until(
            db_url, store_name, end, out_dir=out, step=parse_window(step, "--step")
        )
    print_summary(summary)


@app.command("preview")
def preview_command(
    flow: str,
    customer: Annotated[str, typer.Option("--customer", help="External id, email or id.")],
    step: Annotated[str | None, typer.Option("--step", help="Only this send step.")] = None,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Render each send step of FLOW for a customer exactly as it would be sent."""
    from boomerang.services import campaign_render, campaigns

    db_url, store_name = resolve(db, store)
    for step_id, channel, template in campaigns.send_steps(db_url, store_name, flow, step):
        shown = campaign_render.preview(db_url, store_name, template, channel, customer,
                                        campaigns.templates_dir(db_url, store_name))  # fmt: skip
        r = shown.rendered
        console.rule(f"{flow} · {step_id} · {channel} · {template}")
        if r.subject:
            console.print(f"[bold]Subject:[/] {r.subject}")
        console.print(r.sms or r.text, markup=False, highlight=False)
        for warning in r.warnings:
            console.print(f"[yellow]warning:[/] {warning}")


@app.command("tasks")
def tasks_command(db: DbOption = None, store: StoreOption = None) -> None:
    """Open staff tasks the flows created (handwritten notes, calls)."""
    from boomerang.services import campaigns

    db_url, store_name = resolve(db, store)
    table = Table("id", "customer", "title", "created")
    for t in campaigns.staff_tasks(db_url, store_name):
        table.add_row(str(t["id"]), str(t["customer_id"]), t["title"],
                      f"{from_micros(t['created_at']):%Y-%m-%d %H:%M}")  # fmt: skip
    console.print(table)


@settings_app.command("show")
def settings_show(db: DbOption = None, store: StoreOption = None) -> None:
    """The store's campaign settings (secrets hidden)."""
    from boomerang.services import campaign_runtime

    db_url, store_name = resolve(db, store)
    console.print_json(json.dumps(campaign_runtime.show_settings(db_url, store_name)))


@settings_app.command("set")
def settings_set(file: Path, db: DbOption = None, store: StoreOption = None) -> None:
    """Merge a settings file (base_url, sender, templates_dir, arbiter, channels)."""
    from boomerang.services import campaign_runtime

    db_url, store_name = resolve(db, store)
    console.print_json(json.dumps(campaign_runtime.set_settings(db_url, store_name, file)))


@outbox_app.command("in-doubt")
def in_doubt_command(db: DbOption = None, store: StoreOption = None) -> None:
    """Messages whose delivery was interrupted: check the provider before resending."""
    _print_messages("in_doubt", 1000, db, store)


@outbox_app.command("list")
def list_outbox(
    status: Annotated[
        str | None, typer.Option("--status", help="queued, sent, skipped, ...")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many messages.")] = 50,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Messages in the outbox with their status and reason."""
    _print_messages(status, limit, db, store)


def _print_messages(status: str | None, limit: int, db: str | None, store: str | None) -> None:
    from boomerang.services import campaigns

    db_url, store_name = resolve(db, store)
    table = Table("id", "key", "customer", "channel", "template", "status", "reason")
    rows = campaigns.outbox(db_url, store_name, status=status, limit=limit)
    for m in rows:
        table.add_row(str(m["id"]), m["message_key"], str(m["customer_id"]), m["channel"],
                      m["template"], m["status"], m["reason"] or "")  # fmt: skip
    console.print(table)
    console.print(f"{len(rows):,} messages")


def worker(
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit.")] = False,
    poll: Annotated[float, typer.Option("--poll", help="Seconds between passes.")] = 5.0,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Advance flows and deliver messages on the wall clock (several may run at once)."""
    from boomerang.services import campaign_runtime

    if poll <= 0:
        raise InputError("--poll must be positive", hint="e.g. --poll 5")
    db_url, store_name = resolve(db, store)
    summary = campaign_runtime.worker(db_url, store_name, once=once, poll_seconds=poll,
                                      on_cycle=print_summary if not once else None)  # fmt: skip
    print_summary(summary)
