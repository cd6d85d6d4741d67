"""Hand-built segment facts, evaluated both ways (the engine compiler and the one-customer path).

A test describes a tiny store as plain rows (`Store`), with times relative to a fixed
``AS_OF``; `evaluate` turns it into a `SegmentData` (Arrow, for `bulk.evaluate_all`) and into
one `CustomerFacts` per customer (for `single.SingleEvaluator`), evaluates the definitions
both ways and asserts that the two agree on every flag and on every feature value before
returning ``{segment: {customer ids}}``. Imported as ``tests.segments.segment_facts``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from boomerang.analytics.engine import Engine
from boomerang.domain.clock import MICROS_PER_DAY, to_micros
from boomerang.segments import data as d
from boomerang.segments.bulk import evaluate_all
from boomerang.segments.model import Definition, Leaf, parse_definition
from boomerang.segments.plan import FeatureKey, Plan, build_plan
from boomerang.segments.single import SingleEvaluator
from boomerang.segments.text import parse_text

DAY = MICROS_PER_DAY
HOUR = DAY // 24
WEEK = 7 * DAY
#: The evaluation time every hand-built store is seen from (a Monday, midnight UTC).
AS_OF = to_micros(datetime(2024, 7, 1, tzinfo=UTC))


def ago(days: float = 0, hours: float = 0, us: int = 0) -> int:
    """``AS_OF`` minus a duration (negative values lie after ``AS_OF``)."""
    return AS_OF - round(days * DAY) - round(hours * HOUR) - us


@dataclass
class Store:
    """A store's facts as rows; the helpers fill the columns a test does not care about."""

    currency: str = "USD"
    customers: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    lines: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    consents: list[dict[str, Any]] = field(default_factory=list)
    predictions: list[dict[str, Any]] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1000), repr=False)

    def customer(self, cid: int, **columns: Any) -> int:
        """A customer (every unspecified column null; ``created_at`` a year before AS_OF)."""
        row: dict[str, Any] = dict.fromkeys(d.CUSTOMER_COLUMNS)
        row.update(id=cid, created_at=ago(365), account_status="registered")
        unknown = set(columns) - set(d.CUSTOMER_COLUMNS)
        assert not unknown, unknown
        row.update(columns)
        self.customers.append(row)
        return cid

    def order(
        self,
        customer_id: int | None,
        placed_at: int,
        total_minor: int,
        *,
        lines: Sequence[Mapping[str, Any]] = (),
        status: str = "paid",
        currency: str | None = None,
        refunded_minor: int = 0,
        oid: int | None = None,
    ) -> int:
        """An order (default: paid, in the store currency) with optional lines."""
        oid = next(self._ids) if oid is None else oid
        self.orders.append(
            {
                "id": oid,
                "customer_id": customer_id,
                "placed_at": placed_at,
                "currency": currency or self.currency,
                "total_minor": total_minor,
                "refunded_minor": refunded_minor,
                "status": status,
            }
        )
        for line in lines:
            row = {
                "order_id": oid,
                "sku": None,
                "category": None,
                "quantity": 1,
                "unit_price_minor": 0,
                "discount_minor": 0,
            }
            row.update(line)
            self.lines.append(row)
        return oid

    def event(self, customer_id: int, type_: str, occurred_at: int, **props: str) -> None:
        self.events.append(
            {"customer_id": customer_id, "type": type_, "occurred_at": occurred_at, "props": props}
        )

    def consent(
        self, customer_id: int, channel: str, status: str, occurred_at: int, cid: int | None = None
    ) -> None:
        self.consents.append(
            {
                "id": next(self._ids) if cid is None else cid,
                "customer_id": customer_id,
                "channel": channel,
                "status": status,
                "occurred_at": occurred_at,
            }
        )

    def prediction(self, customer_id: int, **columns: Any) -> None:
        row: dict[str, Any] = dict.fromkeys(d.PREDICTION_COLUMNS)
        row.update(customer_id=customer_id, **columns)
        self.predictions.append(row)


# -- the two shapes --------------------------------------------------------------------------


def _table(rows: list[dict[str, Any]], columns: dict[str, pa.DataType]) -> pa.Table:
    return pa.table({c: pa.array([r.get(c) for r in rows], t) for c, t in columns.items()})


def segment_data(store: Store, properties: Iterable[str] = ()) -> d.SegmentData:
    """The store as Arrow; event properties as ``prop_<key>_<length>`` text columns
    (`data.prop_column`; every key present in the events plus ``properties``, as the loader
    provides the keys a plan filters on)."""
    keys = sorted({k for e in store.events for k in e["props"]} | set(properties))
    events = _table(store.events, d.EVENT_COLUMNS)
    for key in keys:
        values = [e["props"].get(key) for e in store.events]
        events = events.append_column(
            d.prop_column(key),
            pa.array([None if v is None else str(v) for v in values], pa.string()),
        )
    return d.SegmentData(
        currency=store.currency,
        customers=_table(store.customers, d.CUSTOMER_COLUMNS),
        orders=_table(store.orders, d.ORDER_COLUMNS),
        consents=_table(store.consents, d.CONSENT_COLUMNS),
        lines=_table(store.lines, d.LINE_COLUMNS),
        events=events,
        # no fit yet -> None, as the store reader returns
        predictions=_table(store.predictions, d.PREDICTION_COLUMNS) if store.predictions else None,
    )


def customer_facts(store: Store) -> dict[int, d.CustomerFacts]:
    """Each customer's rows, as the one-customer reader returns them."""
    facts = {int(c["id"]): d.CustomerFacts(customer=dict(c)) for c in store.customers}
    owner: dict[int, int] = {}
    for o in store.orders:
        if o["customer_id"] in facts:
            facts[o["customer_id"]].orders.append(dict(o))
            owner[o["id"]] = o["customer_id"]
    for li in store.lines:
        if li["order_id"] in owner:
            facts[owner[li["order_id"]]].lines.append(dict(li))
    for e in store.events:
        if e["customer_id"] in facts:
            props = {k: str(v) for k, v in e["props"].items() if v is not None}
            facts[e["customer_id"]].events.append({**e, "props": props})
    for c in store.consents:
        if c["customer_id"] in facts:
            facts[c["customer_id"]].consents.append(dict(c))
    for p in store.predictions:
        if p["customer_id"] in facts:
            facts[p["customer_id"]].prediction = dict(p)
    return facts


# -- definitions -----------------------------------------------------------------------------

Rules = Mapping[str, Any] | Sequence[Definition]


def definitions(rules: Rules) -> list[Definition]:
    """``{name: text rule or rule tree}`` (or ready definitions) as validated definitions."""
    if isinstance(rules, Mapping):
        return [
            parse_definition(
                {"name": n, "where": r} if isinstance(r, str) else {"name": n, "rule": r}
            )
            for n, r in rules.items()
        ]
    return list(rules)


def key(text: str) -> FeatureKey:
    """The feature of a field reference in the text syntax, e.g. ``orders.aov[30d]``."""
    leaf = parse_text(f"{text} is set")
    assert isinstance(leaf, Leaf)
    return FeatureKey.of(leaf)


# -- evaluation both ways --------------------------------------------------------------------


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, str | bool) or isinstance(b, str | bool):
        return type(a) is type(b) and a == b
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)


@dataclass
class Result:
    """Members per segment, per-customer feature values and the stored thresholds."""

    members: dict[str, set[int]]
    features: dict[int, dict[FeatureKey, Any]]  # only customers present at AS_OF
    extra: dict[int, dict[str, Any]]
    reference: dict[str, Any]
    plan: Plan

    def __getitem__(self, segment: str) -> set[int]:
        return self.members[segment]

    def value(self, customer: int, ref: str) -> Any:
        """One feature of one customer, e.g. ``value(1, 'orders.count[30d]')``."""
        return self.features[customer][key(ref)]


def evaluate(
    engine: Engine,
    store: Store,
    rules: Rules,
    as_of: int = AS_OF,
    *,
    extra: Sequence[str] = (),
) -> Result:
    """Evaluate both ways; fail unless flags, feature values and ``extra`` columns agree."""
    defs = definitions(rules)
    plan = build_plan(defs)
    data = segment_data(store, plan.event_properties())
    ev = evaluate_all(engine, data, plan, as_of, extra={f"x:{f}": f for f in extra})
    rows = ev.flags.to_pylist()
    bulk = {name: {int(r["customer_id"]) for r in rows if r[name]} for name in plan.order}
    assert all(r[name] is not None for r in rows for name in plan.order), "a null flag"
    bulk_features = {
        int(r["customer_id"]): {k: r[col] for k, col in plan.features.items()}
        for r in engine.arrow(ev.features).to_pylist()
    }
    bulk_extra = {int(r["customer_id"]): {f: r[f"x:{f}"] for f in extra} for r in rows}

    # the one-customer side computes the ``extra`` fields too, even those no rule uses
    full = plan.with_features(list(extra))
    single = SingleEvaluator(full, ev.reference, store.currency, as_of)
    facts = customer_facts(store)
    one: dict[str, set[int]] = {name: set() for name in plan.order}
    one_features: dict[int, dict[FeatureKey, Any]] = {}
    one_extra: dict[int, dict[str, Any]] = {}
    for cid, f in facts.items():
        flags = single.evaluate(f)
        assert set(flags) == set(plan.order)
        for name, hit in flags.items():
            if hit:
                one[name].add(cid)
        created = f.customer.get("created_at")
        if created is not None and created >= as_of:
            continue  # not a customer yet: no row in the full refresh either
        values = single.features(f)
        scores = single.rfm_scores(values) if full.rfm else {}
        one_features[cid] = values
        one_extra[cid] = {
            x: scores[x.split(".", 1)[1]] if x.startswith("rfm.") else values[FeatureKey(x)]
            for x in extra
        }

    assert bulk == one, f"bulk and single disagree:\n bulk   {bulk}\n single {one}"
    assert set(bulk_features) == set(one_features), (set(bulk_features), set(one_features))
    for cid, values in bulk_features.items():
        for k, v in values.items():
            assert _same(v, one_features[cid][k]), (cid, k, v, one_features[cid][k])
        for x, v in bulk_extra[cid].items():
            assert _same(v, one_extra[cid][x]), (cid, x, v, one_extra[cid][x])
    return Result(bulk, bulk_features, bulk_extra, ev.reference, plan)


def members(engine: Engine, store: Store, rules: Rules, as_of: int = AS_OF) -> dict[str, set[int]]:
    """``{segment: {customer ids}}``, the same both ways (asserted)."""
    return evaluate(engine, store, rules, as_of).members
