"""Segment use cases: define, refresh, re-evaluate one customer, explain, export, RFM.

A full refresh reads the facts its rules need as Arrow, evaluates every segment in the
analytics engine in one query, and writes only the membership difference in one
transaction (with the thresholds live re-evaluation reuses). Re-evaluating one customer
reads that customer's rows and applies the same rules in Python, inside one short
transaction. Both take the store's segment lock, so they never interleave their writes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import yaml
from sqlalchemy import Connection, Engine

from boomerang.analytics.engine import Engine as AnalyticsEngine
from boomerang.domain.clock import from_micros, now_micros
from boomerang.domain.money import currency_exponent
from boomerang.errors import ConflictError, InputError, NotFoundError
from boomerang.segments import builtin, data
from boomerang.segments.bulk import Reference, evaluate_all
from boomerang.segments.model import Definition, parse_definition
from boomerang.segments.plan import Plan, build_plan
from boomerang.segments.single import Explanation, SingleEvaluator
from boomerang.segments.text import parse_text, to_text
from boomerang.services.context import open_engine
from boomerang.store.bulk import bulk_transaction
from boomerang.store.repos import customers as customers_repo
from boomerang.store.repos import segment_source as source_repo
from boomerang.store.repos import segments as repo
from boomerang.store.repos import stores as stores_repo

#: Category-affinity segments are made for this many of the store's biggest categories.
AFFINITY_CATEGORIES = 12
#: ... learned from this many recent product views when the catalogue has no categories.
VIEW_SAMPLE = 200_000
Progress = Callable[[str], None]


def _noop(_: str) -> None:
    return None


# -- definitions -----------------------------------------------------------------------------


def _definition(row: repo.SegmentRow) -> Definition:
    d = parse_definition(row.definition, origin=f"segment {row.name}")
    from dataclasses import replace

    return replace(d, kind=row.kind)


def _plain(d: Definition) -> dict[str, Any]:
    """What is stored: the definition as given (rule tree or text), JSON-safe."""
    plain: dict[str, Any] = json.loads(json.dumps(d.source, default=str))
    return plain


def sync_builtins(engine: Engine, store: stores_repo.Store, now: int) -> dict[str, int]:
    """Install missing built-ins and update those the store has not replaced."""
    categories = store_categories(engine, store.id)
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    with engine.begin() as conn:
        existing = {r.name: r for r in repo.list_segments(conn, store.id)}
        for d in builtin.builtin_definitions(categories):
            old = existing.get(d.name)
            if old is not None and old.kind not in ("builtin", "rfm"):
                continue  # the store replaced this built-in with its own rule
            _, what = repo.upsert_segment(
                conn, store.id, name=d.name, title=d.title, description=d.description,
                kind=d.kind, definition=_plain(d), now=now,
            )  # fmt: skip
            counts[what] += 1
    return counts


def store_categories(engine: Engine, store_id: int) -> list[str]:
    """Categories for the affinity segments; from product views when nothing else has them."""
    found = source_repo.read_categories(engine, store_id, AFFINITY_CATEGORIES)
    if found:
        return found
    raw = source_repo.read_recent_view_properties(engine, store_id, VIEW_SAMPLE)
    frame = pl.from_arrow(data.events_from_store(raw, {"category"}))
    assert isinstance(frame, pl.DataFrame)
    column = data.prop_column("category")
    if column not in frame.columns:
        return []
    counted = (
        frame.drop_nulls(column)
        .group_by(column)
        .len()
        .sort(["len", column], descending=[True, False])
        .head(AFFINITY_CATEGORIES)
    )
    return [str(v) for v in counted[column].to_list()]


def load_definitions(conn: Connection, store_id: int) -> tuple[list[Definition], dict[str, int]]:
    rows = [r for r in repo.list_segments(conn, store_id) if r.kind != "deleted"]
    return [_definition(r) for r in rows], {r.name: r.id for r in rows}


def read_definition_file(path: Path) -> list[Definition]:
    """A YAML or JSON file holding one definition or a list of them."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file", hint="check the path") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML/JSON ({exc})", hint="fix the syntax") from None
    items = raw if isinstance(raw, list) else [raw]
    if isinstance(raw, dict) and "segments" in raw:
        items = raw["segments"]
    return [parse_definition(item, origin=f"{path.name}[{i}]") for i, item in enumerate(items)]


@dataclass
class CreateResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def create_segments(db: str, store: str, path: Path) -> CreateResult:
    """Create or update the segments in a file (validated together with the store's others)."""
    definitions = read_definition_file(path)
    engine = open_engine(db)
    try:
        with engine.begin() as conn:
            row = stores_repo.get(conn, store)
            existing, _ = load_definitions(conn, row.id)
            incoming = {d.name for d in definitions}
            build_plan([*(d for d in existing if d.name not in incoming), *definitions])
            result = CreateResult()
            now = now_micros()
            for d in definitions:
                _, what = repo.upsert_segment(
                    conn, row.id, name=d.name, title=d.title, description=d.description,
                    kind="rule", definition=_plain(d), now=now,
                )  # fmt: skip
                getattr(result, what).append(d.name)
    finally:
        engine.dispose()
    return result


def delete_segment(db: str, store: str, name: str) -> int:
    engine = open_engine(db)
    try:
        with engine.begin() as conn:
            row = stores_repo.get(conn, store)
            found = _find(conn, row.id, name)
            others = [d for d in load_definitions(conn, row.id)[0] if d.name != name]
            users = sorted(d.name for d in others if name in d.references())
            if users:
                raise ConflictError(
                    f"segment {name!r} is used by {', '.join(users)}",
                    hint="change or delete those segments first",
                )
            return repo.delete_segment(conn, row.id, found, now_micros())
    finally:
        engine.dispose()


def _find(conn: Connection, store_id: int, name: str) -> repo.SegmentRow:
    for r in repo.list_segments(conn, store_id):
        if r.name == name and r.kind != "deleted":
            return r
    raise NotFoundError(
        f"no segment named {name!r}", hint="list them with `boomerang segments list`"
    )


@dataclass
class SegmentInfo:
    name: str
    title: str
    kind: str
    description: str
    rule: str
    members: int


def list_segments(db: str, store: str) -> list[SegmentInfo]:
    engine = open_engine(db)
    try:
        with engine.begin() as conn:
            row = stores_repo.get(conn, store)
        sync_builtins(engine, row, now_micros())
        with engine.connect() as conn:
            counts = repo.member_counts(conn, row.id)
            rows = [r for r in repo.list_segments(conn, row.id) if r.kind != "deleted"]
    finally:
        engine.dispose()
    return [
        SegmentInfo(
            r.name,
            r.title,
            r.kind,
            r.description,
            to_text(_definition(r).rule),
            counts.get(r.id, 0),
        )
        for r in rows
    ]


def show_segment(db: str, store: str, name: str) -> SegmentInfo:
    for info in list_segments(db, store):
        if info.name == name:
            return info
    raise NotFoundError(
        f"no segment named {name!r}", hint="list them with `boomerang segments list`"
    )


# -- loading facts ---------------------------------------------------------------------------


def needs_of(plan: Plan, as_of: int, predictions_model: str | None = None) -> source_repo.Needs:
    windows = plan.event_windows()
    return source_repo.Needs(
        predictions_model=predictions_model,
        consents="consent" in plan.sources(),
        lines=plan.needs_lines(),
        predictions="predictions" in plan.sources(),
        events={t: (None if w is None else as_of - w) for t, w in windows.items()},
        event_properties=bool(plan.event_properties()),
    )


def load_segment_data(
    engine: Engine, store: stores_repo.Store, plan: Plan, as_of: int
) -> data.SegmentData:
    """The store's facts the plan reads, as Arrow (ADBC): no more than the rules use."""
    needs = needs_of(plan, as_of)
    customers = data.customers_from_store(source_repo.read_customers(engine, store.id))
    orders = source_repo.read_orders(engine, store.id)
    events = None
    if needs.events:
        events = data.events_from_store(
            source_repo.read_events(engine, store.id, needs), plan.event_properties()
        )
    model = source_repo.latest_model(engine, store.id) if needs.predictions else None
    return data.SegmentData(
        predictions_model=model,
        currency=store.currency,
        customers=customers,
        orders=orders,
        consents=source_repo.read_consents(engine, store.id) if needs.consents else None,
        lines=source_repo.read_lines(engine, store.id) if needs.lines else None,
        events=events,
        predictions=source_repo.read_predictions(engine, store.id, model) if model else None,
    )


def customer_facts(
    conn: Connection,
    store_id: int,
    customer_id: int,
    plan: Plan,
    as_of: int,
    predictions_model: str | None = None,
) -> data.CustomerFacts | None:
    """One customer's facts; predictions from ``predictions_model`` (the last refresh's)."""
    needs = needs_of(plan, as_of, predictions_model)
    rows = source_repo.customer_rows(conn, store_id, customer_id, needs)
    if rows is None:
        return None
    return data.CustomerFacts(
        customer=data.customer_from_row(rows["customer"]),
        orders=rows["orders"],
        lines=rows["lines"],
        consents=rows["consents"],
        events=data.event_rows(rows["events"], plan.event_properties()),
        prediction=rows["prediction"],
    )


# -- refresh ---------------------------------------------------------------------------------


@dataclass
class RefreshResult:
    store: str
    as_of: int
    segments: int
    customers: int
    entered: int
    exited: int
    members: dict[str, int]
    entered_by_segment: dict[str, int]
    exited_by_segment: dict[str, int]
    seconds: dict[str, float]
    written: bool


def _members_long(flags: pa.Table, ids: dict[str, int]) -> pl.DataFrame:
    frame = pl.from_arrow(flags)
    assert isinstance(frame, pl.DataFrame)
    parts = [
        frame.filter(pl.col(name)).select(
            pl.lit(ids[name], pl.Int64).alias("segment_id"), pl.col("customer_id").cast(pl.Int64)
        )
        for name in ids
    ]
    if not parts:
        return pl.DataFrame(schema={"segment_id": pl.Int64, "customer_id": pl.Int64})
    return pl.concat(parts)


def refresh(
    db: str,
    store: str,
    *,
    as_of: int | None = None,
    builtins: bool = True,
    progress: Progress = _noop,
) -> RefreshResult:
    """Re-evaluate every segment of the store and write the membership difference."""
    started = now_micros()
    at = started if as_of is None else int(as_of)
    engine = open_engine(db)
    seconds: dict[str, float] = {}
    try:
        with engine.connect() as conn:
            row = stores_repo.get(conn, store)
        if builtins:
            sync_builtins(engine, row, started)
        with engine.connect() as conn:
            definitions, ids = load_definitions(conn, row.id)
        plan = build_plan(definitions)
        progress("reading facts")
        t0 = time.perf_counter()
        facts = load_segment_data(engine, row, plan, at)
        seconds["read"] = time.perf_counter() - t0
        progress(f"evaluating {len(definitions)} segments")
        t0 = time.perf_counter()
        analytics = AnalyticsEngine()
        try:
            evaluation = evaluate_all(analytics, facts, plan, at)
        finally:
            analytics.close()
        # Live updates read the same fit's predictions as this refresh did.
        evaluation.reference["predictions_model"] = facts.predictions_model
        seconds["evaluate"] = time.perf_counter() - t0
        members = _members_long(evaluation.flags, ids)
        progress("writing changes")
        t0 = time.perf_counter()
        with bulk_transaction(engine, lock_key=repo.lock_key(row.id)) as session:
            last = repo.latest_as_of(session, row.id)
            if last is not None and at < last:
                raise InputError(
                    f"--as-of is before the last refresh ({from_micros(last).isoformat()})",
                    hint="membership history only moves forward; use `segments rfm --as-of` to look back",
                )
            applied = repo.apply_members(session, row.id, members, list(ids.values()), at)
            stored = repo.latest_reference_text(session, row.id)
            reference_text = json.dumps(evaluation.reference, sort_keys=True)
            written = bool(applied.entered or applied.exited) or stored != reference_text
            if written:
                repo.record_refresh(
                    session, row.id, as_of=at, started_at=started, finished_at=now_micros(),
                    segment_count=len(ids), entered=applied.entered, exited=applied.exited,
                    reference=evaluation.reference,
                )  # fmt: skip
        seconds["write"] = time.perf_counter() - t0
    finally:
        engine.dispose()
    names = {v: k for k, v in ids.items()}
    counts = members.group_by("segment_id").len()
    member_counts = dict.fromkeys(ids, 0)
    for sid, n in zip(counts["segment_id"].to_list(), counts["len"].to_list(), strict=True):
        member_counts[names[sid]] = n
    return RefreshResult(
        store=store,
        as_of=at,
        segments=len(ids),
        customers=evaluation.flags.num_rows,
        entered=applied.entered,
        exited=applied.exited,
        members=member_counts,
        entered_by_segment={names[k]: v for k, v in applied.entered_by_segment.items()},
        exited_by_segment={names[k]: v for k, v in applied.exited_by_segment.items()},
        seconds=seconds,
        written=written,
    )


# -- one customer ----------------------------------------------------------------------------


@dataclass
class LiveResult:
    customer_id: int
    entered: list[str]
    exited: list[str]
    members: list[str]


# Caches keyed by the database too: ids and versions repeat across databases.
_PLANS: dict[tuple[str, int, str], tuple[Plan, dict[str, int]]] = {}
_REFERENCES: dict[tuple[str, int], Reference] = {}
EMPTY_REFERENCE: Reference = {"rfm": None, "top": {}}


def store_plan(
    conn: Connection, store_id: int, version: str | None = None
) -> tuple[Plan, dict[str, int]]:
    """The store's plan, cached until a definition changes."""
    key = (
        str(conn.engine.url), store_id,
        version if version is not None else repo.versions(conn, store_id)[1],
    )  # fmt: skip
    if key not in _PLANS:
        rows = [r for r in repo.list_segments(conn, store_id) if r.kind != "deleted"]
        _PLANS.clear()
        _PLANS[key] = (build_plan([_definition(r) for r in rows]), {r.name: r.id for r in rows})
    return _PLANS[key]


def _reference_for(conn: Connection, store_id: int, refresh_id: int | None = -1) -> Reference:
    """The thresholds of the store's latest refresh (parsed once per refresh)."""
    if refresh_id == -1:
        refresh_id = repo.versions(conn, store_id)[0]
    if refresh_id is None:
        return EMPTY_REFERENCE
    key = (str(conn.engine.url), refresh_id)
    if key not in _REFERENCES:
        last = repo.latest_refresh(conn, store_id)
        assert last is not None
        _REFERENCES.clear()
        _REFERENCES[(key[0], last.id)] = last.reference
    return _REFERENCES[key]


def reevaluate_in(
    conn: Connection, store: stores_repo.Store, customer_id: int, at: int
) -> LiveResult:
    """Re-evaluate one customer inside the caller's transaction (after an order or event)."""
    repo.lock_store(conn, store.id)
    refresh_id, version = repo.versions(conn, store.id)
    plan, ids = store_plan(conn, store.id, version)
    reference = _reference_for(conn, store.id, refresh_id)
    if plan.rfm and reference.get("rfm") is None:
        raise ConflictError(
            "RFM segments need a full refresh first (it computes the score thresholds)",
            hint="run `boomerang segments refresh`",
        )
    facts = customer_facts(
        conn, store.id, customer_id, plan, at, reference.get("predictions_model")
    )
    if facts is None:
        raise NotFoundError(f"no customer with id {customer_id}", hint="check the customer id")
    flags = SingleEvaluator(plan, reference, store.currency, at).evaluate(facts)
    current = repo.open_for_customer(conn, store.id, customer_id)
    wanted = {ids[name] for name, member in flags.items() if member}
    enter = sorted(wanted - set(current))
    leave = {s: stay for s, stay in current.items() if s not in wanted and s in ids.values()}
    repo.apply_customer(conn, store.id, customer_id, enter, leave, at)
    names = {v: k for k, v in ids.items()}
    return LiveResult(
        customer_id=customer_id,
        entered=[names[s] for s in enter],
        exited=[names[s] for s in sorted(leave)],
        members=sorted(names[s] for s in wanted),
    )


def reevaluate_customer(
    engine: Engine, store: str, customer_id: int, *, at: int | None = None
) -> LiveResult:
    """Live update for one customer: its own short transaction on ``engine``."""
    with engine.begin() as conn:
        row = stores_repo.get(conn, store)
        return reevaluate_in(conn, row, customer_id, now_micros() if at is None else int(at))


def reevaluate(db: str, store: str, customer: str, *, at: int | None = None) -> LiveResult:
    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            row = stores_repo.get(conn, store)
            found = _customer(conn, row.id, customer, store)
        return reevaluate_customer(engine, store, found, at=at)
    finally:
        engine.dispose()


def _customer(conn: Connection, store_id: int, ref: str, store: str) -> int:
    found = customers_repo.find(conn, store_id, ref)
    if found is None:
        raise NotFoundError(
            f"no customer {ref!r} in store {store!r}",
            hint="use the external id or email shown by an import, or the numeric id",
        )
    return int(found["id"])


# -- why -------------------------------------------------------------------------------------


@dataclass
class WhyResult:
    customer: str
    segment: str
    as_of: int
    member_now: bool
    stored_member: bool
    explanation: Explanation


def why(db: str, store: str, customer: str, segment: str, *, as_of: int | None = None) -> WhyResult:
    """Each condition of the segment, the customer's value for it, and whether it holds."""
    engine = open_engine(db)
    at = now_micros() if as_of is None else int(as_of)
    try:
        with engine.connect() as conn:
            row = stores_repo.get(conn, store)
            cid = _customer(conn, row.id, customer, store)
            found = _find(conn, row.id, segment)
            plan, _ = store_plan(conn, row.id)
            reference = _reference_for(conn, row.id)
            if plan.rfm and reference.get("rfm") is None:
                raise ConflictError(
                    "RFM conditions need a full refresh first",
                    hint="run `boomerang segments refresh`",
                )
            facts = customer_facts(conn, row.id, cid, plan, at, reference.get("predictions_model"))
            assert facts is not None
            evaluator = SingleEvaluator(plan, reference, row.currency, at)
            explanation = evaluator.explain(facts, segment)
            stored = found.id in repo.open_for_customer(conn, row.id, cid)
    finally:
        engine.dispose()
    return WhyResult(customer, segment, at, explanation.holds, stored, explanation)


# -- export ----------------------------------------------------------------------------------

EXPORT_METRICS = {
    "orders": "orders.count",
    "revenue_minor": "orders.revenue",
    "days_since_last_order": "orders.days_since_last",
    "first_order_at": "orders.first_at",
    "last_order_at": "orders.last_at",
    "rfm_segment": "rfm.segment",
    "rfm_r": "rfm.r",
    "rfm_f": "rfm.f",
    "rfm_m": "rfm.m",
}


def export_segment(
    db: str, store: str, name: str, out: Path, *, fmt: str = "csv"
) -> tuple[Path, int]:
    """The segment's current members with key metrics per member (CSV or Parquet)."""
    if fmt not in ("csv", "parquet"):
        raise InputError(f"unknown format {fmt!r}", hint="use csv or parquet")
    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            row = stores_repo.get(conn, store)
            found = _find(conn, row.id, name)
            stays = repo.members(conn, row.id, found.id)
            last = repo.latest_refresh(conn, row.id)
        at = last.as_of if last else now_micros()
        # A throw-away definition that makes the plan compute the exported metrics.
        plan = build_plan([parse_definition({"name": "export-metrics", "where": "rfm.r >= 0"})])
        facts = load_segment_data(engine, row, plan, at)
        analytics = AnalyticsEngine()
        try:
            evaluation = evaluate_all(
                analytics, facts, plan, at,
                reference=last.reference if last and last.reference.get("rfm") else None,
                extra=EXPORT_METRICS,
            )  # fmt: skip
        finally:
            analytics.close()
        identities = pl.from_arrow(source_repo.read_identities(engine, row.id))
        assert isinstance(identities, pl.DataFrame)
    finally:
        engine.dispose()
    members = pl.DataFrame(
        {"customer_id": [c for c, _ in stays], "entered_at_us": [e for _, e in stays]},
        schema={"customer_id": pl.Int64, "entered_at_us": pl.Int64},
    )
    metrics = pl.from_arrow(evaluation.flags)
    assert isinstance(metrics, pl.DataFrame)
    scale = 10.0 ** -currency_exponent(row.currency)
    table = (
        members.join(identities, on="customer_id", how="left")
        .join(metrics.drop("export-metrics"), on="customer_id", how="left")
        .with_columns(
            pl.from_epoch("entered_at_us", time_unit="us")
            .dt.replace_time_zone("UTC")
            .alias("entered_at"),
            (pl.col("revenue_minor") * scale).round(6).alias("revenue"),
            pl.from_epoch("first_order_at", time_unit="us").dt.replace_time_zone("UTC"),
            pl.from_epoch("last_order_at", time_unit="us").dt.replace_time_zone("UTC"),
            pl.lit(row.currency).alias("currency"),
        )
        .drop("entered_at_us", "revenue_minor")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        table.write_csv(out)
    else:
        table.write_parquet(out)
    return out, table.height


# -- RFM -------------------------------------------------------------------------------------

RFM_COLUMNS = {
    "segment": "rfm.segment",
    "r": "rfm.r",
    "f": "rfm.f",
    "m": "rfm.m",
    "revenue_minor": "orders.revenue",
}
NOT_A_BUYER = "(not a buyer yet)"


def rfm_table(engine: Engine, store: stores_repo.Store, at: int) -> pl.DataFrame:
    """Every buyer's R, F, M scores and named segment as of ``at`` (thresholds from that day)."""
    plan = build_plan([parse_definition({"name": "rfm-scores", "where": "rfm.r >= 0"})])
    facts = load_segment_data(engine, store, plan, at)
    analytics = AnalyticsEngine()
    try:
        evaluation = evaluate_all(analytics, facts, plan, at, extra=RFM_COLUMNS)
    finally:
        analytics.close()
    frame = pl.from_arrow(evaluation.flags)
    assert isinstance(frame, pl.DataFrame)
    return frame.filter(pl.col("rfm-scores")).drop("rfm-scores")


@dataclass
class RfmSummary:
    store: str
    currency: str
    as_of: int
    buyers: int
    segments: list[dict[str, Any]]  # name, customers, share, revenue, revenue_share
    grid: list[dict[str, Any]]  # r, fm, customers, revenue_share
    compare_as_of: int | None = None
    movement: list[dict[str, Any]] = field(default_factory=list)  # from, to, customers


def _summarise(
    frame: pl.DataFrame, scale: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from boomerang.segments.fields import RFM_SEGMENTS

    total_rev = float(frame["revenue_minor"].sum() or 0)
    n = frame.height
    by = {r["segment"]: r for r in frame.group_by("segment").agg(
        pl.len().alias("customers"), pl.col("revenue_minor").sum().alias("rev")
    ).to_dicts()}  # fmt: skip
    segments = []
    for name in RFM_SEGMENTS:
        r = by.get(name, {"customers": 0, "rev": 0})
        segments.append(
            {
                "segment": name,
                "customers": int(r["customers"]),
                "share": round(r["customers"] / n, 6) if n else 0.0,
                "revenue": round(float(r["rev"]) * scale, 2),
                "revenue_share": round(float(r["rev"]) / total_rev, 6) if total_rev else 0.0,
            }
        )
    grid_frame = frame.with_columns(((pl.col("f") + pl.col("m") + 1) // 2).alias("fm"))
    grid = [
        {
            "r": int(g["r"]), "fm": int(g["fm"]), "customers": int(g["customers"]),
            "revenue_share": round(float(g["rev"]) / total_rev, 6) if total_rev else 0.0,
        }
        for g in grid_frame.group_by("r", "fm").agg(
            pl.len().alias("customers"), pl.col("revenue_minor").sum().alias("rev")
        ).sort("r", "fm").to_dicts()
    ]  # fmt: skip
    return segments, grid


def rfm_summary(
    db: str, store: str, *, as_of: int | None = None, compare: int | None = None
) -> RfmSummary:
    """RFM segment sizes and revenue shares, the R x FM grid, and movement since ``compare``."""
    at = now_micros() if as_of is None else int(as_of)
    if compare is not None and compare >= at:
        raise InputError("--compare must be before --as-of", hint="give an earlier date")
    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            row = stores_repo.get(conn, store)
        now_frame = rfm_table(engine, row, at)
        before = rfm_table(engine, row, compare) if compare is not None else None
    finally:
        engine.dispose()
    scale = 10.0 ** -currency_exponent(row.currency)
    segments, grid = _summarise(now_frame, scale)
    summary = RfmSummary(store, row.currency, at, now_frame.height, segments, grid)
    if before is not None:
        moved = (
            now_frame.select("customer_id", pl.col("segment").alias("to"))
            .join(
                before.select("customer_id", pl.col("segment").alias("from")),
                on="customer_id",
                how="left",
            )
            .with_columns(pl.col("from").fill_null(NOT_A_BUYER))
            .group_by("from", "to")
            .len()
            .sort("len", descending=True)
        )
        summary.compare_as_of = compare
        summary.movement = [
            {"from": r["from"], "to": r["to"], "customers": int(r["len"])} for r in moved.to_dicts()
        ]
    return summary


def rfm_movers(
    db: str, store: str, *, as_of: int, compare: int, from_segment: str, to_segment: str
) -> pl.DataFrame:
    """Who moved from one RFM segment to another between two dates (with identities)."""
    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            row = stores_repo.get(conn, store)
        now_frame = rfm_table(engine, row, as_of)
        before = rfm_table(engine, row, compare)
        ids = pl.from_arrow(source_repo.read_identities(engine, row.id))
        assert isinstance(ids, pl.DataFrame)
    finally:
        engine.dispose()
    moved = now_frame.filter(pl.col("segment") == to_segment).join(
        before.filter(pl.col("segment") == from_segment).select("customer_id"), on="customer_id"
    )
    return ids.join(moved.select("customer_id", "r", "f", "m"), on="customer_id").sort(
        "customer_id"
    )


def rfm_section(db: str, store: str, *, as_of: int) -> str:
    """The report's RFM section (HTML fragment) as of ``as_of``; empty without buyers."""
    from boomerang.reports.segments import render_rfm_section
    from boomerang.segments.rfm import GRID

    summary = rfm_summary(db, store, as_of=as_of)
    if summary.buyers == 0:
        return ""
    names = {(r, fm + 1): name for r, row in GRID.items() for fm, name in enumerate(row)}
    return render_rfm_section(
        as_of=from_micros(as_of).strftime("%Y-%m-%d %H:%M UTC"),
        buyers=summary.buyers,
        currency=summary.currency,
        segments=summary.segments,
        grid=summary.grid,
        names=names,
    )


# -- ad-hoc rules (campaign splits and exits) ------------------------------------------------

_RULE_PLANS: dict[tuple[str, int, str, tuple[str, ...]], Plan] = {}


def rule_flags(
    conn: Connection, store: stores_repo.Store, rules: list[str], customer_ids: list[int], at: int
) -> dict[int, dict[str, bool]]:
    """Whether each rule (text syntax) holds for each customer at ``at``, with the same
    evaluator and stored thresholds as live segment updates. Rules may name segments."""
    if not rules or not customer_ids:
        return {}
    texts = tuple(sorted(set(rules)))
    _, version = repo.versions(conn, store.id)
    key = (str(conn.engine.url), store.id, version, texts)
    if key not in _RULE_PLANS:
        stored = [r for r in repo.list_segments(conn, store.id) if r.kind != "deleted"]
        adhoc = [
            Definition(name=f"__rule_{i}", title=text, rule=parse_text(text, "rule"))
            for i, text in enumerate(texts)
        ]
        _RULE_PLANS.clear()
        _RULE_PLANS[key] = build_plan([*(_definition(r) for r in stored), *adhoc])
    plan = _RULE_PLANS[key]
    reference = _reference_for(conn, store.id)
    evaluator = SingleEvaluator(plan, reference, store.currency, at)
    out: dict[int, dict[str, bool]] = {}
    for cid in customer_ids:
        facts = customer_facts(conn, store.id, cid, plan, at, reference.get("predictions_model"))
        if facts is None:
            continue
        flags = evaluator.evaluate(facts)
        out[cid] = {text: bool(flags.get(f"__rule_{i}")) for i, text in enumerate(texts)}
    return out
