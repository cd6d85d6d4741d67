"""Full refresh: every segment of a plan compiled to one analytics-engine query (Ibis).

One row per customer: features first (a grouped aggregate per source, conditional
aggregates for each window and filter, joined on the customer), then one boolean column per
segment. No per-customer Python. The definitions of every feature and of null handling are
in docs/segments.md; `segments.single` computes the same values for one customer and a
property test holds the two together.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa

from boomerang.analytics.engine import Engine
from boomerang.domain.clock import MICROS_PER_DAY
from boomerang.domain.money import currency_exponent
from boomerang.segments import data as d
from boomerang.segments import rfm
from boomerang.segments.fields import Kind, extension_sources
from boomerang.segments.model import All, AnyOf, Leaf, Node, Not, SegmentRef
from boomerang.segments.plan import FeatureKey, Plan, top_key

DAY = MICROS_PER_DAY
Reference = dict[str, Any]


@dataclass
class Evaluation:
    """Per-customer segment flags (``customer_id`` + one bool column per segment)."""

    flags: pa.Table
    reference: Reference
    features: ir.Table


def _days(later: ir.Value, earlier: ir.Value) -> ir.Value:
    return ((later - earlier) / DAY).floor()


class _Builder:
    def __init__(self, engine: Engine, data: d.SegmentData, plan: Plan, as_of: int) -> None:
        self.engine, self.data, self.plan, self.as_of = engine, data, plan, int(as_of)
        self.scale = 10 ** currency_exponent(data.currency)
        self._purchases: ir.Table | None = None
        self._lines: ir.Table | None = None
        features = plan.features
        self._line_uses = len(
            {k.where for k in features if k.source == "orders" and k.where}
        ) + len({k.window_us for k in features if k.source == "affinity"})
        self._events: ir.Table | None = None

    # -- sources ------------------------------------------------------------------------------

    def table(self, arrow: pa.Table | None, columns: dict[str, pa.DataType], name: str) -> ir.Table:
        return self.engine.table(d.conform(arrow, columns), name)

    @property
    def orders(self) -> ir.Table:
        """Orders that count: identified, not cancelled, before as_of, in the store currency."""
        if self._purchases is None:
            o = self.table(self.data.orders, d.ORDER_COLUMNS, "seg_orders")
            o = o.filter(
                o.customer_id.notnull(),
                o.status != "cancelled",
                o.placed_at < self.as_of,
                o.currency.upper() == self.data.currency.upper(),
            )
            self._purchases = o.select(
                "id",
                "customer_id",
                "placed_at",
                net=o.total_minor - o.refunded_minor,
                purchase=o.total_minor >= 0,
            )
        return self._purchases

    @property
    def lines(self) -> ir.Table:
        """Lines of purchases, with their order's customer and time."""
        if self._lines is None:
            li = self.table(self.data.lines, d.LINE_COLUMNS, "seg_lines")
            o = self.orders.filter(self.orders.purchase)
            joined = li.join(o, li.order_id == o.id).select(
                "customer_id",
                "placed_at",
                "sku",
                "category",
                order_id=li.order_id,
                value=li.quantity * li.unit_price_minor - li.discount_minor,
            )
            # Several line filters (and affinity) read it: join the big tables once.
            self._lines = self.engine.cache(joined) if self._line_uses > 1 else joined
        return self._lines

    @property
    def events(self) -> ir.Table:
        if self._events is None:
            e = self.table(self.data.events, d.EVENT_COLUMNS, "seg_events")
            missing = {
                d.prop_column(k): ibis.null("string")
                for k in sorted(self.plan.event_properties())
                if d.prop_column(k) not in e.columns
            }
            if missing:  # no event carries that property: every filter on it is false
                e = e.mutate(**missing)
            e = e.filter(e.customer_id.notnull(), e.occurred_at < self.as_of)
            # Only the types and look-back the rules read (the store's loader does the same).
            windows = self.plan.event_windows()
            if windows and None not in windows:
                wanted: ir.BooleanValue = ibis.literal(False)
                for etype, window in sorted(windows.items(), key=lambda kv: str(kv[0])):
                    wanted = wanted | ((e.type == etype) & self.since(e.occurred_at, window))
                e = e.filter(wanted)
            self._events = e
        return self._events

    def since(self, column: ir.Value, window_us: int | None) -> ir.BooleanValue:
        if window_us is None:
            return ibis.literal(True)
        return column >= self.as_of - window_us

    # -- features per source ------------------------------------------------------------------

    def customers(self) -> ir.Table:
        c = self.table(self.data.customers, d.CUSTOMER_COLUMNS, "seg_customers")
        return c.filter(c.created_at.isnull() | (c.created_at < self.as_of))

    def customer_features(self, base: ir.Table, keys: list[FeatureKey]) -> dict[str, ir.Value]:
        out: dict[str, ir.Value] = {}
        for key in keys:
            attr = key.field.split(".", 1)[1]
            if attr == "days_since_created":
                value: ir.Value = _days(ibis.literal(self.as_of), base.created_at)
            else:
                value = base[attr]
            out[self.plan.column(key)] = value
        return out

    def consent_features(self, keys: list[FeatureKey]) -> ir.Table:
        c = self.table(self.data.consents, d.CONSENT_COLUMNS, "seg_consents")
        c = c.filter(c.occurred_at < self.as_of)
        # The latest record per channel (ties on time: the higher id), as an ordered
        # aggregate: cheaper than a window over every record.
        latest = c.group_by(["customer_id", "channel"]).aggregate(
            status=c.status.first(order_by=[c.occurred_at.desc(), c.id.desc()])
        )
        granted = latest.status == "granted"
        aggs: dict[str, ir.Value] = {}
        for key in keys:
            channel = key.field.split(".", 1)[1]
            hit = granted if channel == "any" else granted & (latest.channel == channel)
            aggs[self.plan.column(key)] = hit.any()
        return latest.group_by("customer_id").aggregate(**aggs)

    def order_features(self, keys: list[FeatureKey]) -> ir.Table:
        o = self.orders
        aggs: dict[str, ir.Value] = {}
        for w in {k.window_us for k in keys} | {None}:
            inside = self.since(o.placed_at, w)
            aggs[f"cnt_{w}"] = o.id.count(where=inside & o.purchase)
            aggs[f"rev_{w}"] = o.net.sum(where=inside)
            aggs[f"first_{w}"] = o.placed_at.min(where=inside & o.purchase)
            aggs[f"last_{w}"] = o.placed_at.max(where=inside & o.purchase)
        return o.group_by("customer_id").aggregate(**aggs)

    def order_derived(self, t: ir.Table, keys: list[FeatureKey]) -> dict[str, ir.Value]:
        out: dict[str, ir.Value] = {}
        now = ibis.literal(self.as_of)
        count0, first0, last0 = t["cnt_None"].fill_null(0), t["first_None"], t["last_None"]
        gap = ibis.cases(
            (count0 >= 2, (last0 - first0) / ((count0 - 1) * DAY)), else_=ibis.null("float64")
        )
        for key in keys:
            attr, w = key.field.split(".", 1)[1], key.window_us
            count = t[f"cnt_{w}"].fill_null(0)
            if attr == "count":
                value: ir.Value = count
            elif attr == "revenue":
                value = t[f"rev_{w}"].fill_null(0)
            elif attr == "aov":
                value = ibis.cases((count > 0, t[f"rev_{w}"] / count), else_=ibis.null("float64"))
            elif attr == "first_at":
                value = t[f"first_{w}"]
            elif attr == "last_at":
                value = t[f"last_{w}"]
            elif attr == "days_since_first":
                value = _days(now, first0)
            elif attr == "days_since_last":
                value = _days(now, last0)
            elif attr == "avg_gap_days":
                value = gap
            else:  # overdue_ratio
                value = ibis.cases((gap > 0, _days(now, last0) / gap), else_=ibis.null("float64"))
            out[self.plan.column(key)] = value
        return out

    def line_features(
        self, where: tuple[tuple[str, tuple[str, ...]], ...], keys: list[FeatureKey]
    ) -> ir.Table:
        li = self.lines
        match = ibis.literal(True)
        for column, values in where:
            match = match & li[column].isin(list(values))
        li = li.filter(match)
        now = ibis.literal(self.as_of)
        aggs: dict[str, ir.Value] = {}
        for key in keys:
            attr = key.field.split(".", 1)[1]
            inside = self.since(li.placed_at, key.window_us)
            name = self.plan.column(key)
            if attr == "count":
                aggs[name] = li.order_id.nunique(where=inside)
            elif attr == "revenue":
                aggs[name] = li.value.sum(where=inside)
            elif attr == "first_at":
                aggs[name] = li.placed_at.min(where=inside)
            elif attr == "last_at":
                aggs[name] = li.placed_at.max(where=inside)
            else:  # days_since_last
                aggs[name] = _days(now, li.placed_at.max())
        return li.group_by("customer_id").aggregate(**aggs)

    def event_features(self, keys: list[FeatureKey]) -> ir.Table:
        e = self.events
        now = ibis.literal(self.as_of)
        aggs: dict[str, ir.Value] = {}
        for key in keys:
            match = ibis.literal(True) if key.event_type is None else e.type == key.event_type
            for prop, values in key.where:
                match = match & e[d.prop_column(prop)].isin(list(values))
            name = self.plan.column(key)
            if key.field == "events.count":
                aggs[name] = e.occurred_at.count(
                    where=match & self.since(e.occurred_at, key.window_us)
                )
            else:
                aggs[name] = _days(now, e.occurred_at.max(where=match))
        return e.group_by("customer_id").aggregate(**aggs)

    def prediction_features(self, keys: list[FeatureKey]) -> ir.Table:
        p = self.table(self.data.predictions, d.PREDICTION_COLUMNS, "seg_predictions")
        cols: dict[str, ir.Value] = {}
        for key in keys:
            attr = key.field.split(".", 1)[1]
            if attr == "clv":
                value: ir.Value = p.clv_minor
            elif attr == "days_to_next_order":
                value = _days(p.next_order_at, ibis.literal(self.as_of))
            else:
                value = p[attr]
            cols[self.plan.column(key)] = value
        return p.select("customer_id", **cols)

    def affinity_features(self, window_us: int | None, keys: list[FeatureKey]) -> ir.Table:
        e = self.events
        cat = d.prop_column("category")
        views = e.filter(
            e.type == "product_viewed", e[cat].notnull(), self.since(e.occurred_at, window_us)
        ).select("customer_id", category=e[cat])
        li = self.lines
        bought = li.filter(li.category.notnull(), self.since(li.placed_at, window_us)).select(
            "customer_id", "category"
        )
        counts = (
            views.union(bought).group_by(["customer_id", "category"]).aggregate(n=ibis._.count())
        )
        aggs: dict[str, ir.Value] = {}
        total = counts.n.sum()
        for key in keys:
            name = self.plan.column(key)
            if key.field == "affinity.top_category":
                # Most activity; ties: the first category name (an ordered aggregate).
                aggs[name] = counts.category.first(
                    order_by=[counts.n.desc(), counts.category.asc()]
                )
            else:
                aggs[name] = (
                    counts.n.sum(where=counts.category == key.category).fill_null(0) / total
                )
        return counts.group_by("customer_id").aggregate(**aggs)

    # -- the features table -------------------------------------------------------------------

    def features(self) -> ir.Table:
        keys_by: dict[str, list[FeatureKey]] = {}
        for key in sorted(self.plan.features, key=FeatureKey.ident):
            keys_by.setdefault(key.source, []).append(key)
        base = self.customers()
        columns: dict[str, ir.Value] = {"customer_id": base.id}
        columns.update(self.customer_features(base, keys_by.get("customer", [])))
        table = base.select(**columns)
        parts: list[tuple[ir.Table, dict[str, Any]]] = []
        if keys_by.get("consent"):
            t = self.consent_features(keys_by["consent"])
            parts.append((t, {self.plan.column(k): False for k in keys_by["consent"]}))
        plain = [k for k in keys_by.get("orders", []) if not k.where]
        for where in sorted({k.where for k in keys_by.get("orders", []) if k.where}):
            group = [k for k in keys_by["orders"] if k.where == where]
            t = self.line_features(where, group)
            parts.append(
                (
                    t,
                    {
                        self.plan.column(k): 0
                        for k in group
                        if k.field.endswith(("count", "revenue"))
                    },
                )
            )
        if keys_by.get("events"):
            t = self.event_features(keys_by["events"])
            parts.append(
                (
                    t,
                    {
                        self.plan.column(k): 0
                        for k in keys_by["events"]
                        if k.field == "events.count"
                    },
                )
            )
        if keys_by.get("predictions"):
            parts.append((self.prediction_features(keys_by["predictions"]), {}))
        for window in sorted({k.window_us or 0 for k in keys_by.get("affinity", [])}):
            group = [k for k in keys_by["affinity"] if (k.window_us or 0) == window]
            parts.append((self.affinity_features(window or None, group), {}))
        for prefix, source in sorted(extension_sources().items()):
            if keys_by.get(prefix):
                parts.append((source.bulk(self, keys_by[prefix]), {}))
        for t, fills in parts:
            table = _left(table, t, fills)
        if plain:
            aggregated = self.order_features(plain).rename(_cid="customer_id")
            joined = table.left_join(aggregated, table.customer_id == aggregated["_cid"])
            derived = self.order_derived(joined, plain)
            table = joined.select(*table.columns, **derived)
        return table


def _left(table: ir.Table, part: ir.Table, fills: dict[str, Any]) -> ir.Table:
    right = part.rename(_cid="customer_id")
    joined = table.left_join(right, table.customer_id == right["_cid"])
    cols = {c: joined[c] for c in table.columns}
    for c in part.columns:
        if c == "customer_id":
            continue
        cols[c] = joined[c].fill_null(fills[c]) if c in fills else joined[c]
    return joined.select(**cols)


# -- thresholds ------------------------------------------------------------------------------


def _value_counts(
    engine: Engine, values: ir.Value, table: ir.Table
) -> tuple[np.ndarray, np.ndarray]:
    counted = table.select(v=values).group_by("v").aggregate(c=ibis._.count()).order_by("v")
    arrow = engine.arrow(counted)
    return arrow["v"].to_numpy(zero_copy_only=False), arrow["c"].to_numpy(zero_copy_only=False)


def compute_reference(engine: Engine, features: ir.Table, plan: Plan) -> Reference:
    """Store-wide thresholds: RFM score cuts and top-x% cuts (see `segments.rfm`)."""
    reference: Reference = {"rfm": None, "top": {}}
    if plan.rfm:
        buyers = features.filter(features[plan.column(FeatureKey("orders.count"))] > 0)
        cuts = {}
        for dim, fname, sign in (
            ("r", "orders.days_since_last", -1),
            ("f", "orders.count", 1),
            ("m", "orders.revenue", 1),
        ):
            values, counts = _value_counts(
                engine, buyers[plan.column(FeatureKey(fname))] * sign, buyers
            )
            cuts[dim] = rfm.thresholds_from_counts(values, counts, ties_up=dim == "r")
        reference["rfm"] = cuts
    for ident, (key, pct) in sorted(plan.tops.items()):
        col = features[plan.column(key)]
        population = features.filter(col.notnull(), col > 0)
        values, counts = _value_counts(engine, population[plan.column(key)], population)
        reference["top"][ident] = rfm.top_threshold(values, counts, pct) if len(values) else None
    return reference


# -- rules -----------------------------------------------------------------------------------


def rfm_columns(t: ir.Table, plan: Plan, reference: Reference) -> dict[str, ir.Value]:
    """rfm_r, rfm_f, rfm_m (null for non-buyers) and rfm_segment, from the thresholds."""
    cuts = reference["rfm"]
    count = t[plan.column(FeatureKey("orders.count"))]
    raw = {
        "r": -t[plan.column(FeatureKey("orders.days_since_last"))],
        "f": count,
        "m": t[plan.column(FeatureKey("orders.revenue"))],
    }
    scores: dict[str, ir.Value] = {}
    for dim in rfm.DIMENSIONS:
        total: ir.Value = ibis.literal(1)
        for cut in cuts[dim]:
            if cut is not None:
                total = total + (raw[dim] >= cut).cast("int64")
        scores[dim] = ibis.cases((count > 0, total), else_=ibis.null("int64"))
    fm = (scores["f"] + scores["m"] + 1) // 2
    branches = [
        ((scores["r"] == r) & (fm == i + 1), name)
        for r, row in rfm.GRID.items()
        for i, name in enumerate(row)
    ]
    scores["segment"] = ibis.cases(*branches, else_=ibis.null("string"))
    return {f"rfm_{k}": v for k, v in scores.items()}


class _Rules:
    def __init__(self, t: ir.Table, plan: Plan, reference: Reference, currency: str) -> None:
        self.t, self.plan, self.reference = t, plan, reference
        self.scale = 10 ** currency_exponent(currency)
        self.done: dict[str, ir.BooleanValue] = {}

    def literal(self, leaf: Leaf, value: Any) -> Any:
        if leaf.spec.kind is Kind.MONEY:
            return float(Decimal(value) * self.scale)
        return value

    def column(self, leaf: Leaf) -> ir.Value:
        if leaf.field.startswith("rfm."):
            return self.t["rfm_" + leaf.field.split(".", 1)[1]]
        return self.t[self.plan.column(FeatureKey.of(leaf))]

    def leaf(self, leaf: Leaf) -> ir.BooleanValue:
        col, op, v = self.column(leaf), leaf.op, leaf.value
        if op == "is_set":
            return col.notnull()
        if op == "is_not_set":
            return col.isnull()
        expr: ir.BooleanValue
        if op == "top_percent":
            cut = self.reference["top"].get(top_key(FeatureKey.of(leaf), v))
            if cut is None:
                return ibis.literal(False)
            expr = (col > 0) & (col >= cut)
        elif op == "between":
            expr = col.between(self.literal(leaf, v[0]), self.literal(leaf, v[1]))
        elif op == "in":
            expr = col.isin([self.literal(leaf, x) for x in v])
        elif op == "not_in":
            expr = col.notnull() & ~col.isin([self.literal(leaf, x) for x in v])
        elif op == "contains":
            expr = col.contains(str(v).lower())
        else:
            lit = self.literal(leaf, v)
            expr = {
                "=": lambda: col == lit,
                "!=": lambda: col != lit,
                "<": lambda: col < lit,
                "<=": lambda: col <= lit,
                ">": lambda: col > lit,
                ">=": lambda: col >= lit,
            }[op]()
        return expr.fill_null(False)

    def node(self, node: Node) -> ir.BooleanValue:
        if isinstance(node, Leaf):
            return self.leaf(node)
        if isinstance(node, SegmentRef):
            return self.segment(node.name)
        if isinstance(node, Not):
            return ~self.node(node.item)
        parts = [self.node(item) for item in node.items]
        out = parts[0]
        for part in parts[1:]:
            out = (out & part) if isinstance(node, All) else (out | part)
        assert isinstance(node, All | AnyOf)
        return out

    def segment(self, name: str) -> ir.BooleanValue:
        if name not in self.done:
            self.done[name] = self.node(self.plan.definitions[name].rule)
        return self.done[name]


def evaluate_all(
    engine: Engine,
    data: d.SegmentData,
    plan: Plan,
    as_of: int,
    reference: Reference | None = None,
    *,
    extra: dict[str, str] | None = None,
) -> Evaluation:
    """Every segment's members as of ``as_of`` (epoch micros).

    ``reference``: thresholds to reuse (a live re-evaluation reuses the last refresh's);
    computed from the data when None. ``extra`` adds feature columns to the result
    (output name -> field), e.g. for an export.
    """
    extra = extra or {}
    plan = plan.with_features(list(extra.values()))
    builder = _Builder(engine, data, plan, as_of)
    features = engine.cache(builder.features())
    if reference is None:
        reference = compute_reference(engine, features, plan)
    if plan.rfm:  # scores once, as columns: every RFM rule then reads them
        features = engine.cache(features.mutate(**rfm_columns(features, plan, reference)))
    rules = _Rules(features, plan, reference, data.currency)
    columns: dict[str, ir.Value] = {"customer_id": features.customer_id}
    for name in plan.order:
        columns[name] = rules.segment(name)
    for out, fname in extra.items():
        if fname.startswith("rfm."):
            columns[out] = features["rfm_" + fname.split(".", 1)[1]]
        else:
            columns[out] = features[plan.column(FeatureKey(fname))]
    flags = engine.arrow(features.select(**columns).order_by("customer_id"))
    return Evaluation(flags=flags, reference=reference, features=features)
