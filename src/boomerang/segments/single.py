"""One customer's segments in plain Python: live re-evaluation and `segments why`.

A full refresh runs in the analytics engine (`segments.bulk`); re-evaluating one customer
after an order or event must take milliseconds, so the same features are computed here
from the customer's rows. Every formula mirrors the engine's (same floor of days, same
float divisions, same tie-breaks, same thresholds from the last refresh), and a property
test checks that both give the same flags for every customer.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from boomerang.domain.clock import MICROS_PER_DAY, from_micros
from boomerang.domain.money import currency_exponent
from boomerang.segments import rfm
from boomerang.segments.bulk import Reference
from boomerang.segments.data import CustomerFacts
from boomerang.segments.fields import Kind, extension_sources
from boomerang.segments.model import All, AnyOf, Leaf, Node, Not, SegmentRef
from boomerang.segments.plan import FeatureKey, Plan, top_key
from boomerang.segments.text import leaf_text, to_text

DAY = MICROS_PER_DAY


def _days(later: int | None, earlier: int | None) -> int | None:
    if later is None or earlier is None:
        return None
    return math.floor((later - earlier) / DAY)


@dataclass
class Explanation:
    """A condition, the customer's value for it, and whether it holds (with children)."""

    text: str
    holds: bool
    value: Any = None
    children: list[Explanation] = field(default_factory=list)

    def lines(self, depth: int = 0) -> list[tuple[int, Explanation]]:
        out = [(depth, self)]
        for child in self.children:
            out.extend(child.lines(depth + 1))
        return out


class SingleEvaluator:
    """Evaluates a plan's segments for one customer at ``as_of`` with stored thresholds."""

    def __init__(self, plan: Plan, reference: Reference, currency: str, as_of: int) -> None:
        self.plan, self.reference, self.as_of = plan, reference, int(as_of)
        self.currency = currency.upper()
        self.scale = 10 ** currency_exponent(currency)
        # Per leaf (by identity: the plan's trees are fixed) its feature key and literal(s).
        self._keys: dict[int, FeatureKey] = {}
        for definition in plan.definitions.values():
            for leaf in definition.leaves():
                self._keys[id(leaf)] = FeatureKey.of(leaf)
        self._by_source = sorted(
            ((k.source, k) for k in plan.features), key=lambda sk: sk[1].ident()
        )

    # -- features -----------------------------------------------------------------------------

    def features(self, facts: CustomerFacts) -> dict[FeatureKey, Any]:
        out: dict[FeatureKey, Any] = {}
        orders = [
            o
            for o in facts.orders
            if o["status"] != "cancelled"
            and o["placed_at"] < self.as_of
            and (o["currency"] or "").upper() == self.currency
        ]
        purchases = [o for o in orders if o["total_minor"] >= 0]
        purchase_at = {o["id"]: o["placed_at"] for o in purchases}
        lines = [
            {**li, "placed_at": purchase_at[li["order_id"]]}
            for li in facts.lines
            if li["order_id"] in purchase_at
        ]
        events = [e for e in facts.events if e["occurred_at"] < self.as_of]
        for source, key in self._by_source:
            if source == "customer":
                out[key] = self._customer(facts.customer, key)
            elif source == "consent":
                out[key] = self._consent(facts.consents, key)
            elif source == "orders" and key.where:
                out[key] = self._lines(lines, key)
            elif source == "orders":
                out[key] = self._orders(orders, purchases, key)
            elif source == "events":
                out[key] = self._events(events, key)
            elif source == "predictions":
                out[key] = self._prediction(facts.prediction, key)
            elif source == "affinity":
                out[key] = self._affinity(events, lines, key)
            else:
                ext = extension_sources()[source]
                out[key] = facts.extensions.get(source, {}).get(key)
                if source not in facts.extensions:
                    raise KeyError(f"facts for {ext.prefix} were not loaded")
        return out

    def _customer(self, c: dict[str, Any], key: FeatureKey) -> Any:
        attr = key.field.split(".", 1)[1]
        if attr == "days_since_created":
            return _days(self.as_of, c.get("created_at"))
        return c.get(attr)

    def _consent(self, rows: list[dict[str, Any]], key: FeatureKey) -> bool:
        latest: dict[str, tuple[int, int, str]] = {}
        for row in rows:
            if row["occurred_at"] >= self.as_of:
                continue
            rank = (row["occurred_at"], row["id"], row["status"])
            if row["channel"] not in latest or rank[:2] > latest[row["channel"]][:2]:
                latest[row["channel"]] = rank
        channel = key.field.split(".", 1)[1]
        granted = {ch for ch, (_, _, status) in latest.items() if status == "granted"}
        return bool(granted) if channel == "any" else channel in granted

    def _since(self, at: int, window_us: int | None) -> bool:
        return window_us is None or at >= self.as_of - window_us

    def _orders(
        self, orders: list[dict[str, Any]], purchases: list[dict[str, Any]], key: FeatureKey
    ) -> Any:
        attr, w = key.field.split(".", 1)[1], key.window_us
        inside = [o for o in purchases if self._since(o["placed_at"], w)]
        count = len(inside)
        if attr == "count":
            return count
        if attr == "revenue":
            return sum(
                o["total_minor"] - o["refunded_minor"]
                for o in orders
                if self._since(o["placed_at"], w)
            )
        if attr == "aov":
            if count == 0:
                return None
            return (
                sum(
                    o["total_minor"] - o["refunded_minor"]
                    for o in orders
                    if self._since(o["placed_at"], w)
                )
                / count
            )
        times = [o["placed_at"] for o in inside]
        first, last = (min(times), max(times)) if times else (None, None)
        if attr == "first_at":
            return first
        if attr == "last_at":
            return last
        if attr == "days_since_first":
            return _days(self.as_of, first)
        since_last = _days(self.as_of, last)
        if attr == "days_since_last":
            return since_last
        gap = (
            (last - first) / ((count - 1) * DAY)
            if count >= 2 and last is not None and first is not None
            else None
        )
        if attr == "avg_gap_days":
            return gap
        return since_last / gap if gap is not None and gap > 0 and since_last is not None else None

    def _lines(self, lines: list[dict[str, Any]], key: FeatureKey) -> Any:
        attr = key.field.split(".", 1)[1]
        matching = [li for li in lines if all(li.get(col) in values for col, values in key.where)]
        inside = [li for li in matching if self._since(li["placed_at"], key.window_us)]
        if attr == "count":
            return len({li["order_id"] for li in inside})
        if attr == "revenue":
            return sum(
                li["quantity"] * li["unit_price_minor"] - li["discount_minor"] for li in inside
            )
        times = [li["placed_at"] for li in inside]
        if attr == "first_at":
            return min(times) if times else None
        if attr == "last_at":
            return max(times) if times else None
        return _days(self.as_of, max((li["placed_at"] for li in matching), default=None))

    def _events(self, events: list[dict[str, Any]], key: FeatureKey) -> Any:
        matching = [
            e
            for e in events
            if (key.event_type is None or e["type"] == key.event_type)
            and all(e["props"].get(prop) in values for prop, values in key.where)
        ]
        if key.field == "events.count":
            return sum(1 for e in matching if self._since(e["occurred_at"], key.window_us))
        return _days(self.as_of, max((e["occurred_at"] for e in matching), default=None))

    def _prediction(self, p: dict[str, Any] | None, key: FeatureKey) -> Any:
        if p is None:
            return None
        attr = key.field.split(".", 1)[1]
        if attr == "clv":
            return p["clv_minor"]
        if attr == "days_to_next_order":
            return _days(p["next_order_at"], self.as_of)
        return p[attr]

    def _affinity(
        self, events: list[dict[str, Any]], lines: list[dict[str, Any]], key: FeatureKey
    ) -> Any:
        counts: Counter[str] = Counter()
        for e in events:
            cat = e["props"].get("category")
            if (
                e["type"] == "product_viewed"
                and cat is not None
                and self._since(e["occurred_at"], key.window_us)
            ):
                counts[cat] += 1
        for li in lines:
            if li.get("category") is not None and self._since(li["placed_at"], key.window_us):
                counts[li["category"]] += 1
        total = sum(counts.values())
        if total == 0:
            return None
        if key.field == "affinity.top_category":
            return min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        return counts.get(key.category or "", 0) / total

    def rfm_scores(self, values: dict[FeatureKey, Any]) -> dict[str, Any]:
        count = values[FeatureKey("orders.count")]
        if not count:
            return {"r": None, "f": None, "m": None, "segment": None}
        cuts = self.reference["rfm"]
        raw = {
            "r": -values[FeatureKey("orders.days_since_last")],
            "f": count,
            "m": values[FeatureKey("orders.revenue")],
        }
        scores: dict[str, Any] = {dim: rfm.score(raw[dim], cuts[dim]) for dim in rfm.DIMENSIONS}
        scores["segment"] = rfm.segment_name(scores["r"], scores["f"], scores["m"])
        return scores

    # -- rules --------------------------------------------------------------------------------

    def value(self, leaf: Leaf, values: dict[FeatureKey, Any], scores: dict[str, Any]) -> Any:
        key = self._keys.get(id(leaf)) or FeatureKey.of(leaf)
        if key.field.startswith("rfm."):
            return scores[key.field[4:]]
        return values[key]

    def literal(self, leaf: Leaf, v: Any) -> Any:
        return float(Decimal(v) * self.scale) if leaf.spec.kind is Kind.MONEY else v

    def test(self, leaf: Leaf, value: Any) -> bool:
        op, v = leaf.op, leaf.value
        if op == "is_set":
            return value is not None
        if op == "is_not_set":
            return value is None
        if value is None:
            return False
        if op == "top_percent":
            key = self._keys.get(id(leaf)) or FeatureKey.of(leaf)
            cut = self.reference["top"].get(top_key(key, v))
            return cut is not None and value > 0 and value >= cut
        if op == "between":
            return bool(self.literal(leaf, v[0]) <= value <= self.literal(leaf, v[1]))
        if op == "in":
            return value in [self.literal(leaf, x) for x in v]
        if op == "not_in":
            return value not in [self.literal(leaf, x) for x in v]
        if op == "contains":
            return str(v).lower() in value
        lit = self.literal(leaf, v)
        return bool(
            {
                "=": value == lit,
                "!=": value != lit,
                "<": value < lit,
                "<=": value <= lit,
                ">": value > lit,
                ">=": value >= lit,
            }[op]
        )

    def evaluate(self, facts: CustomerFacts) -> dict[str, bool]:
        """Every segment of the plan for this customer."""
        created = facts.customer.get("created_at")
        if created is not None and created >= self.as_of:
            return dict.fromkeys(self.plan.order, False)
        values = self.features(facts)
        scores = self.rfm_scores(values) if self.plan.rfm else {}
        done: dict[str, bool] = {}

        def node(n: Node) -> bool:
            if isinstance(n, Leaf):
                return self.test(n, self.value(n, values, scores))
            if isinstance(n, SegmentRef):
                return segment(n.name)
            if isinstance(n, Not):
                return not node(n.item)
            results = [node(item) for item in n.items]
            return all(results) if isinstance(n, All) else any(results)

        def segment(name: str) -> bool:
            if name not in done:
                done[name] = node(self.plan.definitions[name].rule)
            return done[name]

        return {name: segment(name) for name in self.plan.order}

    def explain(self, facts: CustomerFacts, name: str) -> Explanation:
        """Condition by condition: the customer's value and whether it holds."""
        values = self.features(facts)
        scores = self.rfm_scores(values) if self.plan.rfm else {}
        flags = self.evaluate(facts)

        def node(n: Node) -> Explanation:
            if isinstance(n, Leaf):
                value = self.value(n, values, scores)
                return Explanation(leaf_text(n), self.test(n, value), self.show(n, value))
            if isinstance(n, SegmentRef):
                inner = node(self.plan.definitions[n.name].rule)
                return Explanation(f'segment("{n.name}")', flags[n.name], None, [inner])
            if isinstance(n, Not):
                child = node(n.item)
                return Explanation("not", not child.holds, None, [child])
            children = [node(item) for item in n.items]
            holds = (
                all(c.holds for c in children)
                if isinstance(n, All)
                else any(c.holds for c in children)
            )
            assert isinstance(n, All | AnyOf)
            return Explanation("all of" if isinstance(n, All) else "any of", holds, None, children)

        root = node(self.plan.definitions[name].rule)
        return Explanation(
            f"{name}: {to_text(self.plan.definitions[name].rule)}", flags[name], None, [root]
        )

    def show(self, leaf: Leaf, value: Any) -> Any:
        """The value as a marketer reads it (money in major units, dates as ISO)."""
        if value is None:
            return None
        kind = leaf.spec.kind if not leaf.field.startswith("rfm.") else None
        if kind is Kind.MONEY:
            return round(float(value) / self.scale, 2)
        if kind is Kind.DATE:
            return from_micros(int(value)).isoformat()
        if isinstance(value, float):
            return round(value, 4)
        return value
