"""Flow statistics: tracking (sends, opens, clicks, unsubscribes), attribution (conversions
and attributed revenue), holdout incrementality with its interval, and A/B/n experiments;
the report's flows section. Definitions: docs/attribution.md.

Read-only: one connection reads the store's flows, runs, messages, events and orders; the
statistics are computed by `campaigns.attribution` and `campaigns.experiments`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl
from sqlalchemy import Connection

from boomerang.campaigns.attribution import (
    MIN_HOLDOUT,
    Incrementality,
    attribute,
    flow_span,
    incrementality,
    reach_micros,
    window_outcomes,
)
from boomerang.campaigns.experiments import Arm, ExperimentResult, analyse
from boomerang.campaigns.flow import Ab, Flow, Send, parse_flow
from boomerang.domain.clock import MICROS_PER_DAY, from_micros, now_micros
from boomerang.domain.money import currency_exponent
from boomerang.errors import InputError, NotFoundError
from boomerang.services.context import open_engine
from boomerang.store.repos import campaign_stats as repo
from boomerang.store.repos import campaign_web as settings_repo
from boomerang.store.repos import stores as stores_repo

__all__ = [
    "DEFAULT_WINDOW_DAYS",
    "ExperimentStats",
    "ExperimentsResult",
    "FlowStats",
    "StatsResult",
    "StepStats",
    "experiment_stats",
    "flow_section",
    "flow_stats",
]

DEFAULT_WINDOW_DAYS = 5
SETTING = "attribution_window_days"


@dataclass
class StepStats:
    """One send step of a flow (non-holdout messages)."""

    step_id: str
    sends: int
    opens: int
    clicks: int
    conversions: int
    attributed_revenue_minor: int


@dataclass
class FlowStats:
    name: str
    status: str
    holdout_share: float
    entrants: int  # runs (one per entry), holdout included
    holdout_entrants: int
    sends: int  # messages sent (holdout rows are never sent)
    not_sent: int  # non-holdout messages skipped, failed, in doubt or still queued
    suppressed: int  # holdout messages (recorded, never sent)
    opens: int  # sent messages opened at least once
    clicks: int  # sent messages clicked at least once
    unsubscribes: int  # sent messages whose unsubscribe link was used
    bounces: int
    conversions: int  # orders attributed to this flow's messages
    attributed_revenue_minor: int
    horizon_days: float  # the incrementality horizon after entry
    horizon_exact: bool  # False when the flow waits until a date (its span is a guess)
    measured_entrants: int  # entrants whose horizon ended by as_of
    incrementality: Incrementality | None
    steps: list[StepStats] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def open_rate(self) -> float | None:
        return self.opens / self.sends if self.sends else None

    @property
    def click_rate(self) -> float | None:
        return self.clicks / self.sends if self.sends else None


@dataclass
class StatsResult:
    store: str
    currency: str
    exponent: int
    as_of: int
    window_days: int
    flows: list[FlowStats]
    attributed_orders: int
    attributed_revenue_minor: int

    def records(self) -> dict[str, Any]:
        out = asdict(self)
        for f, row in zip(self.flows, out["flows"], strict=True):
            row["open_rate"], row["click_rate"] = f.open_rate, f.click_rate
        out["as_of"] = from_micros(self.as_of).isoformat()
        return out


@dataclass
class ExperimentStats:
    flow: str
    step_id: str
    control: str
    start_days: float  # the window opens this long after entry (when the step is reached)
    length_days: float  # ... and lasts this long
    holdout_excluded: int  # holdout runs that passed the step (they received nothing)
    not_measured: int  # recipients whose window had not ended by as_of
    result: ExperimentResult


@dataclass
class ExperimentsResult:
    store: str
    currency: str
    exponent: int
    as_of: int
    window_days: int
    experiments: list[ExperimentStats]

    def records(self) -> dict[str, Any]:
        out = asdict(self)
        out["as_of"] = from_micros(self.as_of).isoformat()
        return out


# -- settings -------------------------------------------------------------------------------------


def _window_days(conn: Connection, store_id: int, given: int | None) -> int:
    """``--window``, else the store's ``attribution_window_days`` setting, else 5."""
    if given is not None:
        value: Any = given
        origin = "--window"
    else:
        value = settings_repo.load_config(conn, store_id).get(SETTING, DEFAULT_WINDOW_DAYS)
        origin = f"campaign setting {SETTING}"
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 365:
        raise InputError(
            f"{origin} must be a whole number of days from 1 to 365 (got {value!r})",
            hint="the attribution window is usually 1-7 days (default 5)",
        )
    return value


def _horizon(given: int | None) -> int | None:
    if given is not None and not 1 <= given <= 3650:
        raise InputError(
            f"--horizon must be from 1 to 3650 days (got {given})",
            hint="leave it out to use each flow's span plus the attribution window",
        )
    return given


# -- loading --------------------------------------------------------------------------------------


@dataclass
class _Data:
    store: stores_repo.Store
    as_of: int
    window: int  # days
    flows: list[dict[str, Any]]
    runs: pl.DataFrame
    messages: pl.DataFrame
    events: pl.DataFrame
    orders: pl.DataFrame


def _frame(rows: list[Any], columns: tuple[str, ...], schema: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={c: schema[c] for c in columns}, orient="row")


_I = pl.Int64
_SCHEMA: dict[str, Any] = {
    "run_id": _I, "flow_id": _I, "customer_id": _I, "holdout": _I, "entered_at": _I,
    "status": pl.String, "outbox_id": _I, "step_id": pl.String, "transactional": _I,
    "sent_at": _I, "type": pl.String, "occurred_at": _I, "order_id": _I, "placed_at": _I,
    "revenue_minor": _I,
}  # fmt: skip


def _load(conn: Connection, store: str, window_days: int | None, as_of: int | None) -> _Data:
    row = stores_repo.get(conn, store)
    window = _window_days(conn, row.id, window_days)
    if as_of is None:
        latest = repo.latest_activity(conn, row.id)
        as_of = max(now_micros(), latest or 0)
    flows = repo.list_flows(conn, row.id)
    runs = _frame(repo.runs(conn, row.id), repo.RUN_COLUMNS, _SCHEMA).filter(
        pl.col("entered_at") <= as_of
    )
    messages = _frame(repo.messages(conn, row.id, as_of), repo.MESSAGE_COLUMNS, _SCHEMA)
    events = _frame(repo.message_event_rows(conn, row.id, as_of), repo.EVENT_COLUMNS, _SCHEMA)
    starts = [
        int(v)  # type: ignore[arg-type]
        for v in (runs["entered_at"].min(), messages["sent_at"].min())
        if v is not None
    ]
    since = min(starts) - 1 if starts else as_of
    orders = _frame(
        repo.order_rows(conn, row.id, row.currency, since, as_of), repo.ORDER_COLUMNS, _SCHEMA
    )
    return _Data(row, as_of, window, flows, runs, messages, events, orders)


def _parse(raw: dict[str, Any]) -> Flow:
    return parse_flow(raw["definition"], f"stored flow {raw['name']}")


def _pick(flows: list[dict[str, Any]], name: str | None) -> list[dict[str, Any]]:
    if name is None:
        return flows
    found = [f for f in flows if f["name"] == name]
    if not found:
        raise NotFoundError(f"no flow {name!r}", hint="see `boomerang flows list`")
    return found


# -- flow statistics ------------------------------------------------------------------------------


def _attributed(data: _Data) -> pl.DataFrame:
    """Every order's credited message, with the message's flow and step."""
    m = data.messages
    marketing = m.filter(
        pl.col("sent_at").is_not_null() & (pl.col("holdout") == 0) & (pl.col("transactional") == 0)
    )
    clicks = data.events.filter(pl.col("type") == "click").select(
        "outbox_id", "customer_id", pl.col("occurred_at").alias("clicked_at")
    )
    credited = attribute(
        data.orders, marketing.select("outbox_id", "customer_id", "sent_at"), clicks,
        data.window * MICROS_PER_DAY,
    )  # fmt: skip
    return credited.join(m.select("outbox_id", "flow_id", "step_id"), on="outbox_id")


def _flow_stats(
    data: _Data, raw: dict[str, Any], credited: pl.DataFrame, horizon_days: int | None
) -> FlowStats:
    flow = _parse(raw)
    fid = raw["id"]
    runs = data.runs.filter(pl.col("flow_id") == fid)
    msgs = data.messages.filter(pl.col("flow_id") == fid)
    treated_msgs = msgs.filter(pl.col("holdout") == 0)
    sent = treated_msgs.filter(pl.col("sent_at").is_not_null())
    ev = data.events.filter(pl.col("outbox_id").is_in(sent["outbox_id"].implode()))

    def with_event(kind: str) -> pl.Series:
        return ev.filter(pl.col("type") == kind)["outbox_id"].unique()

    mine = credited.filter(pl.col("flow_id") == fid)
    steps = []
    for step in flow.steps:
        if not isinstance(step, Send):
            continue
        ids = sent.filter(pl.col("step_id") == step.id)["outbox_id"]
        step_ev = ev.filter(pl.col("outbox_id").is_in(ids.implode()))
        step_credit = mine.filter(pl.col("step_id") == step.id)
        steps.append(StepStats(
            step.id, ids.len(),
            step_ev.filter(pl.col("type") == "open")["outbox_id"].n_unique(),
            step_ev.filter(pl.col("type") == "click")["outbox_id"].n_unique(),
            step_credit.height, int(step_credit["revenue_minor"].sum()),
        ))  # fmt: skip

    span = flow_span(flow)
    horizon = horizon_days if horizon_days is not None else span.days + data.window
    horizon_micros = round(horizon * MICROS_PER_DAY)
    mature = runs.filter(pl.col("entered_at") + horizon_micros <= data.as_of)
    warnings: list[str] = []
    effect: Incrementality | None = None
    held = int(runs["holdout"].sum()) if runs.height else 0
    if flow.holdout == 0 and held == 0:
        warnings.append(
            "no holdout: incremental revenue cannot be measured (set holdout: 0.1 to keep "
            "10% of entrants out)"
        )
    elif mature.height:
        outcomes = window_outcomes(
            mature.select(
                "run_id", "customer_id", pl.col("entered_at").alias("start"),
                (pl.col("entered_at") + horizon_micros).alias("end"),
            ),
            data.orders,
        ).join(mature.select("run_id", "holdout"), on="run_id")  # fmt: skip
        t = outcomes.filter(pl.col("holdout") == 0)
        h = outcomes.filter(pl.col("holdout") == 1)
        effect = incrementality(
            t["revenue_minor"].to_numpy(), h["revenue_minor"].to_numpy(),
            t["orders"].to_numpy(), h["orders"].to_numpy(),
        )  # fmt: skip
        if h.height < MIN_HOLDOUT:
            warnings.append(
                f"only {h.height} holdout entrants measured (fewer than {MIN_HOLDOUT}): "
                "the interval is too rough to act on"
            )
        if t.height < MIN_HOLDOUT:
            warnings.append(f"only {t.height} treated entrants measured")
    if runs.height > mature.height:
        warnings.append(
            f"{runs.height - mature.height:,} entrants are within {horizon:g} days of entry "
            "and not measured yet"
        )
    if not span.exact and horizon_days is None:
        warnings.append(
            "the flow waits until a date, so its span is unknown: the horizon counts only "
            "its fixed waits (give --horizon)"
        )
    return FlowStats(
        name=flow.name,
        status=raw["status"],
        holdout_share=flow.holdout,
        entrants=runs.height,
        holdout_entrants=held,
        sends=sent.height,
        not_sent=treated_msgs.height - sent.height,
        suppressed=msgs.height - treated_msgs.height,
        opens=with_event("open").len(),
        clicks=with_event("click").len(),
        unsubscribes=with_event("unsubscribe").len(),
        bounces=with_event("bounce").len(),
        conversions=mine.height,
        attributed_revenue_minor=int(mine["revenue_minor"].sum()),
        horizon_days=float(horizon),
        horizon_exact=span.exact or horizon_days is not None,
        measured_entrants=mature.height,
        incrementality=effect,
        steps=steps,
        warnings=warnings,
    )


def stats_in(
    conn: Connection, store: str, *, window_days: int | None = None,
    horizon_days: int | None = None, as_of: int | None = None, flow: str | None = None,
) -> StatsResult:  # fmt: skip
    return _stats(_load(conn, store, window_days, as_of), store, horizon_days, flow)


def _stats(data: _Data, store: str, horizon_days: int | None, flow: str | None) -> StatsResult:
    credited = _attributed(data)
    chosen = _pick(data.flows, flow)
    flows = [_flow_stats(data, raw, credited, _horizon(horizon_days)) for raw in chosen]
    ids = {f["id"] for f in chosen}
    counted = credited.filter(pl.col("flow_id").is_in(list(ids)))
    return StatsResult(
        store=store,
        currency=data.store.currency,
        exponent=currency_exponent(data.store.currency),
        as_of=data.as_of,
        window_days=data.window,
        flows=flows,
        attributed_orders=counted.height,
        attributed_revenue_minor=int(counted["revenue_minor"].sum()),
    )


def flow_stats(
    db: str, store: str, *, window_days: int | None = None, horizon_days: int | None = None,
    as_of: int | None = None, flow: str | None = None,
) -> StatsResult:  # fmt: skip
    """`boomerang flows stats`: every flow's (or one flow's) tracking, attribution and
    incrementality as of ``as_of`` (default: the later of now and the store's latest order
    or message)."""
    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            return stats_in(conn, store, window_days=window_days, horizon_days=horizon_days,
                            as_of=as_of, flow=flow)  # fmt: skip
    finally:
        engine.dispose()


# -- experiments ----------------------------------------------------------------------------------


def _experiments_of(
    data: _Data, raw: dict[str, Any], contexts: list[tuple[int, str]], horizon_days: int | None
) -> list[ExperimentStats]:
    flow = _parse(raw)
    ab_steps = [s for s in flow.steps if isinstance(s, Ab)]
    if not ab_steps:
        return []
    chosen: dict[str, list[tuple[int, str]]] = {s.id: [] for s in ab_steps}
    for run_id, text in contexts:
        variants = json.loads(text).get("variants") or {}
        for step_id, name in variants.items():
            if step_id in chosen:
                chosen[step_id].append((run_id, str(name)))
    runs = data.runs.filter(pl.col("flow_id") == raw["id"])
    out = []
    for step in ab_steps:
        reach = reach_micros(flow, step.id) or 0
        after = flow_span(flow, step.id).micros
        length = (
            horizon_days * MICROS_PER_DAY
            if horizon_days is not None
            else after + data.window * MICROS_PER_DAY
        )
        picked = pl.DataFrame(
            chosen[step.id], schema={"run_id": pl.Int64, "variant": pl.String}, orient="row"
        ).join(runs.select("run_id", "customer_id", "holdout", "entered_at"), on="run_id")
        held = picked.filter(pl.col("holdout") == 1).height
        members = (
            picked.filter(pl.col("holdout") == 0)
            .with_columns((pl.col("entered_at") + reach).alias("start"))
            .with_columns((pl.col("start") + length).alias("end"))
        )
        mature = members.filter(pl.col("end") <= data.as_of)
        outcomes = window_outcomes(
            mature.select("run_id", "customer_id", "start", "end"), data.orders
        ).join(mature.select("run_id", "variant"), on="run_id")
        names = [v.name for v in step.ab.variants]
        names += sorted(set(outcomes["variant"].unique().to_list()) - set(names))
        arms = []
        for name in names:
            arm = outcomes.filter(pl.col("variant") == name)
            arms.append(Arm(name, arm["revenue_minor"].to_numpy().astype(np.float64),
                            arm["orders"].to_numpy()))  # fmt: skip
        out.append(ExperimentStats(
            flow=flow.name, step_id=step.id, control=names[0],
            start_days=reach / MICROS_PER_DAY, length_days=length / MICROS_PER_DAY,
            holdout_excluded=held, not_measured=members.height - mature.height,
            result=analyse(arms),
        ))  # fmt: skip
    return out


def experiments_in(
    conn: Connection, store: str, *, window_days: int | None = None,
    horizon_days: int | None = None, as_of: int | None = None, flow: str | None = None,
) -> ExperimentsResult:  # fmt: skip
    return _experiments(conn, _load(conn, store, window_days, as_of), store, horizon_days, flow)


def _experiments(
    conn: Connection, data: _Data, store: str, horizon_days: int | None, flow: str | None
) -> ExperimentsResult:
    found = []
    for raw in _pick(data.flows, flow):
        contexts = repo.run_contexts(conn, data.store.id, raw["id"])
        found += _experiments_of(data, raw, contexts, _horizon(horizon_days))
    return ExperimentsResult(
        store=store, currency=data.store.currency,
        exponent=currency_exponent(data.store.currency), as_of=data.as_of,
        window_days=data.window, experiments=found,
    )  # fmt: skip


def experiment_stats(
    db: str, store: str, *, window_days: int | None = None, horizon_days: int | None = None,
    as_of: int | None = None, flow: str | None = None,
) -> ExperimentsResult:  # fmt: skip
    """`boomerang flows experiments`: every A/B/n step's variants, compared with the first
    (the control): conversion (z-test) and revenue per recipient (Welch)."""
    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            return experiments_in(conn, store, window_days=window_days,
                                  horizon_days=horizon_days, as_of=as_of, flow=flow)  # fmt: skip
    finally:
        engine.dispose()


# -- the report section ---------------------------------------------------------------------------


def flow_section(db: str, store: str, *, as_of: int | None = None) -> str:
    """The report's flows section (HTML fragment); "" when the store has no flows."""
    from boomerang.reports.flows import render_flow_section

    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            row = stores_repo.get(conn, store)
            if not repo.has_flows(conn, row.id):
                return ""
            data = _load(conn, store, None, as_of)
            stats = _stats(data, store, None, None)
            experiments = _experiments(conn, data, store, None, None)
    finally:
        engine.dispose()
    return render_flow_section(
        as_of=from_micros(stats.as_of).strftime("%Y-%m-%d %H:%M UTC"),
        currency=stats.currency,
        exponent=stats.exponent,
        window_days=stats.window_days,
        flows=[asdict(f) for f in stats.flows],
        experiments=[asdict(e) for e in experiments.experiments],
    )
