"""What a set of definitions needs: features (one column each), thresholds, data to load.

A *feature* is a leaf without its test (field + window + options): two segments asking
``orders.count[30d]`` share one column. The plan also resolves segment references (unknown
names and cycles are errors) and tells the loader which sources, event types, event
properties and look-back windows to read, so a refresh reads no more than it uses.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from boomerang.errors import InputError
from boomerang.segments.model import Definition, Leaf, SegmentRef, walk

#: Fields the RFM scores are computed from (lifetime, as of the evaluation time).
RFM_INPUTS = ("orders.count", "orders.revenue", "orders.days_since_last")


@dataclass(frozen=True, order=True)
class FeatureKey:
    field: str
    window_us: int | None = None
    event_type: str | None = None
    where: tuple[tuple[str, tuple[str, ...]], ...] = ()
    category: str | None = None

    @staticmethod
    def of(leaf: Leaf) -> FeatureKey:
        return FeatureKey(leaf.field, leaf.window_us, leaf.event_type, leaf.where, leaf.category)

    @property
    def source(self) -> str:
        return self.field.split(".", 1)[0]

    def ident(self) -> str:
        """Stable text form (keys of stored thresholds)."""
        return json.dumps(
            [
                self.field,
                self.window_us,
                self.event_type,
                [list(w) for w in self.where],
                self.category,
            ],
            separators=(",", ":"),
        )


def top_key(key: FeatureKey, pct: float) -> str:
    return f"{key.ident()}|{pct!r}"


@dataclass
class Plan:
    definitions: dict[str, Definition]
    order: list[str]  # dependency order: a segment after those it references
    features: dict[FeatureKey, str] = field(default_factory=dict)  # key -> column name
    tops: dict[str, tuple[FeatureKey, float]] = field(default_factory=dict)
    rfm: bool = False

    def with_features(self, fields: list[str]) -> Plan:
        """A copy that also computes these lifetime, option-less fields (e.g. for an
        export); ``rfm.*`` names switch the RFM scores on."""
        plan = Plan(
            dict(self.definitions), list(self.order), dict(self.features), dict(self.tops),
            self.rfm or any(f.startswith("rfm.") for f in fields),
        )  # fmt: skip
        wanted = [f for f in fields if not f.startswith("rfm.")]
        for name in [*wanted, *(RFM_INPUTS if plan.rfm else ())]:
            plan.features.setdefault(FeatureKey(name), f"f{len(plan.features)}")
        return plan

    def column(self, key: FeatureKey) -> str:
        return self.features[key]

    def sources(self) -> set[str]:
        return {k.source for k in self.features}

    def needs_lines(self) -> bool:
        return any(
            (k.source == "orders" and k.where) or k.source == "affinity" for k in self.features
        )

    def event_windows(self) -> dict[str | None, int | None]:
        """Per event type (None = every type) the longest look-back needed (None = all)."""
        out: dict[str | None, int | None] = {}
        for k in self.features:
            if k.source == "events":
                etype, window = k.event_type, k.window_us
            elif k.source == "affinity":
                etype, window = "product_viewed", k.window_us
            else:
                continue
            if k.field.endswith("days_since_last"):
                window = None
            if etype in out:
                old = out[etype]
                out[etype] = None if old is None or window is None else max(old, window)
            else:
                out[etype] = window
        return out

    def event_properties(self) -> set[str]:
        keys = {key for k in self.features if k.source == "events" for key, _ in k.where}
        if any(k.source == "affinity" for k in self.features):
            keys.add("category")
        return keys


def build_plan(definitions: Iterable[Definition]) -> Plan:
    """Check references and collect features (error on an unknown segment or a cycle)."""
    by_name: dict[str, Definition] = {}
    for d in definitions:
        if d.name in by_name:
            raise InputError(f"segment {d.name!r} is defined twice", hint="rename one of them")
        by_name[d.name] = d
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = " -> ".join([*trail[trail.index(name) :], name])
            raise InputError(
                f"segments refer to each other in a cycle: {cycle}", hint="break the cycle"
            )
        state[name] = 1
        for ref in sorted(by_name[name].references()):
            if ref not in by_name:
                raise InputError(
                    f"segment {name!r} refers to unknown segment {ref!r}",
                    hint="create that segment first or fix the name (`boomerang segments list`)",
                )
            visit(ref, [*trail, name])
        state[name] = 2
        order.append(name)

    for name in sorted(by_name):
        visit(name, [])
    plan = Plan(definitions=by_name, order=order)
    for d in by_name.values():
        for node in walk(d.rule):
            if isinstance(node, SegmentRef) or not isinstance(node, Leaf):
                continue
            key = FeatureKey.of(node)
            if key.source == "rfm":
                plan.rfm = True
                continue
            plan.features.setdefault(key, f"f{len(plan.features)}")
            if node.op == "top_percent":
                plan.tops[top_key(key, node.value)] = (key, node.value)
    if plan.rfm:
        for name in RFM_INPUTS:
            plan.features.setdefault(FeatureKey(name), f"f{len(plan.features)}")
    return plan
