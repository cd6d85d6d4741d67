"""The text syntax: ``parse_text(to_text(tree)) == tree``, and text and YAML giving one tree.

Trees are generated from the field catalogue (every field, every operator its kind allows,
windows, ``where`` filters, event types, categories) as the plain data a YAML file holds;
each is written in the text syntax twice, by ``to_text`` and by an independent writer here,
and both must read back to the tree ``parse_node`` builds from the data.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from boomerang.errors import InputError
from boomerang.segments.builtin import builtin_definitions
from boomerang.segments.fields import BUILTIN_FIELDS, Kind
from boomerang.segments.model import (
    All,
    AnyOf,
    Leaf,
    Node,
    Not,
    SegmentRef,
    parse_definition,
    parse_node,
)
from boomerang.segments.text import parse_text, to_text

DAY = 86_400_000_000


def roundtrip(tree: Node) -> Node:
    return parse_text(to_text(tree))


# -- built-ins and fixed examples ------------------------------------------------------------

ODD_CATEGORIES = [
    "Shoes",
    "Hats & Caps",
    'Men\'s "Best"',
    "Ünïcode ✓",
    "a\\b",
    "x/y: z (1)",
    "tab\there",
    "line\nbreak",
    "nul\x00",
]


def test_every_builtin_definition_round_trips() -> None:
    defs = builtin_definitions(ODD_CATEGORIES)
    assert len(defs) == 12 + 11 + len(ODD_CATEGORIES)
    for d in defs:
        assert roundtrip(d.rule) == d.rule, d.name
        # and the stored source text reads to the same tree
        assert parse_text(d.source["where"]) == d.rule, d.name


def test_builtins_are_written_as_their_source_text() -> None:
    for d in builtin_definitions(ODD_CATEGORIES):
        assert to_text(d.rule) == d.source["where"], d.name


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("orders.count[14d] >= 3", "orders.count[2w] >= 3"),
        ("orders.count[24h] >= 3", "orders.count[1d] >= 3"),
        ("orders.count[36h] >= 3", "orders.count[36h] >= 3"),
        ("consent.sms = true", "consent.sms"),
        ("consent.sms == false", "consent.sms = false"),
        ("customer.country = 'us'", 'customer.country = "US"'),
        ("orders.revenue between 10 and 20.50", "orders.revenue between 10 and 20.50"),
        ("orders.days_since_last not in [3, 1]", "orders.days_since_last not in [3, 1]"),
        ("orders.count TOP 10%", "orders.count top 10%"),
        ("orders.count top 12.50%", "orders.count top 12.5%"),
        ("orders.count top 12.345678%", "orders.count top 12.345678%"),
        ("predictions.p_alive < 0.00001", "predictions.p_alive < 0.00001"),
        ("orders.revenue > 0.00000001", "orders.revenue > 0.00000001"),
        ("orders.count > 10000000000000000", "orders.count > 10000000000000000"),
        ("(consent.sms)", "consent.sms"),
        ('events.count(productId="x") >= 1', 'events.count(productId="x") >= 1'),
        ("customer.created_at >= 2024-01-01", "customer.created_at >= 2024-01-01"),
        (
            "customer.created_at < 2024-01-01T12:30:00+02:00",
            "customer.created_at < 2024-01-01T10:30:00+00:00",
        ),
        ('customer.tags contains "VIP"', 'customer.tags contains "VIP"'),
        (
            'events.count(category=["b", "a", "b"], type="product_viewed")[30d] >= 1',
            'events.count(type="product_viewed", category=["a", "b"])[30d] >= 1',
        ),
        (
            'affinity.share(category="Shoes")[180d] >= 0.4',
            'affinity.share(category="Shoes")[180d] >= 0.4',
        ),
        (
            "NOT consent.sms AND consent.email OR consent.push",
            "(not consent.sms and consent.email) or consent.push",
        ),
        ("not (consent.sms or consent.email)", "not (consent.sms or consent.email)"),
        ('segment("a") and not segment("b")', 'segment("a") and not segment("b")'),
        ("orders.aov is not set", "orders.aov is not set"),
    ],
)
def test_to_text_writes_the_canonical_form(text: str, written: str) -> None:
    tree = parse_text(text)
    assert to_text(tree) == written
    assert parse_text(written) == tree


def test_and_binds_tighter_than_or() -> None:
    tree = parse_text("consent.sms or consent.email and consent.push")
    assert isinstance(tree, AnyOf)
    assert isinstance(tree.items[1], All)
    assert parse_text("(consent.sms or consent.email) and consent.push") == All(
        (AnyOf((tree.items[0], tree.items[1].items[0])), tree.items[1].items[1])
    )


YAML_AND_TEXT = [
    (
        """
        all:
          - field: orders.count
            op: ">="
            value: 3
            window: 365d
          - not: {segment: lapsed}
          - any:
              - field: events.count
                type: product_viewed
                where: {category: Shoes}
                window: 30d
                op: ">="
                value: 3
              - field: consent.sms
        """,
        'orders.count[365d] >= 3 and not segment("lapsed") and '
        '(events.count(type="product_viewed", category="Shoes")[30d] >= 3 or consent.sms)',
    ),
    (
        """
        field: orders.revenue
        where: {category: [Shoes, Hats], sku: a-1}
        op: between
        value: [10, 99.99]
        """,
        'orders.revenue(category=["Hats", "Shoes"], sku="a-1") between 10 and 99.99',
    ),
    (
        """
        any:
          - {field: customer.created_at, op: "<", value: 2024-01-31}
          - {field: customer.account_status, op: in, value: [guest, disabled]}
          - {field: predictions.days_to_next_order, op: "<", value: -3}
          - {field: affinity.share, category: Shoes, window: 4w, op: ">", value: 0.25}
          - {field: customer.tags, op: contains, value: vip}
          - {field: orders.count, op: top_percent, value: 5}
          - {field: customer.zip, op: is_not_set}
        """,
        'customer.created_at < 2024-01-31 or customer.account_status in ["guest", "disabled"] '
        'or predictions.days_to_next_order < -3 or affinity.share(category="Shoes")[4w] > 0.25 '
        'or customer.tags contains "vip" or orders.count top 5% or customer.zip is not set',
    ),
]


@pytest.mark.parametrize(("document", "text"), YAML_AND_TEXT)
def test_yaml_and_text_give_the_same_tree(document: str, text: str) -> None:
    tree = parse_node(yaml.safe_load(document))
    assert parse_text(text) == tree
    assert roundtrip(tree) == tree


def test_a_definition_from_yaml_rule_or_text_where() -> None:
    from_rule = parse_definition(
        yaml.safe_load(
            """
            name: vip-at-risk
            title: VIPs at risk
            rule:
              all: [{field: orders.count, op: ">=", value: 5}, {segment: at-risk}]
            """
        )
    )
    from_where = parse_definition(
        {
            "name": "vip-at-risk",
            "title": "VIPs at risk",
            "where": 'orders.count >= 5 and segment("at-risk")',
        }
    )
    assert from_rule == from_where  # `source` is not compared
    assert from_rule.references() == {"at-risk"}


# -- generated trees -------------------------------------------------------------------------

texts = st.text(max_size=12)
names = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,12}", fullmatch=True)
# event property names, any case; never "type", the event type (a validation error)
properties = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True).filter(
    lambda k: k != "type"
)
windows = st.builds(lambda n, u: f"{n}{u}", st.integers(1, 999), st.sampled_from("hdwHD"))
moments = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
# numbers as a YAML file or the text syntax writes them: plain decimals (any finite number:
# test_any_finite_number_round_trips)
VALUES: dict[Kind, st.SearchStrategy[Any]] = {
    Kind.INT: st.integers(-1000, 10**9),
    Kind.DAYS: st.integers(-400, 40_000),
    Kind.NUMBER: st.decimals(-1000, 1000, places=3).map(float),
    Kind.MONEY: st.one_of(st.integers(-(10**6), 10**9), st.decimals(-(10**6), 10**6, places=2)),
    Kind.DATE: st.one_of(moments, moments.map(lambda m: m.date().isoformat())),
    Kind.BOOL: st.booleans(),
    Kind.TEXT: texts,
}
percents = st.one_of(st.integers(1, 100), st.decimals(Decimal("0.000001"), 100, places=6))


@st.composite
def leaves(draw: st.DrawFn) -> dict[str, Any]:
    """A valid condition as YAML data, for any catalogue field and operator."""
    spec = BUILTIN_FIELDS[draw(st.sampled_from(sorted(BUILTIN_FIELDS)))]
    op = draw(st.sampled_from(spec.ops))
    raw: dict[str, Any] = {"field": spec.name, "op": op}
    value = st.sampled_from(spec.choices) if spec.choices else VALUES[spec.kind]
    if op == "between":
        raw["value"] = [draw(value), draw(value)]
        try:
            parse_node({**raw, "category": "x"} if spec.required else raw)
        except InputError:  # low above high: swap
            raw["value"].reverse()
    elif op in ("in", "not_in"):
        raw["value"] = draw(st.lists(value, min_size=1, max_size=3))
    elif op == "top_percent":
        raw["value"] = draw(percents)
    elif op == "contains":
        raw["value"] = draw(texts)
    elif op not in ("is_set", "is_not_set"):
        raw["value"] = draw(value)
    if spec.window and draw(st.booleans()):
        raw["window"] = draw(windows)
    if "type" in spec.params and draw(st.booleans()):
        raw["type"] = draw(st.text(min_size=1, max_size=12))
    if "category" in spec.params:
        raw["category"] = draw(st.text(min_size=1, max_size=12))
    if "where" in spec.params and draw(st.booleans()):
        keys = spec.where_keys or None
        key_strategy = st.sampled_from(keys) if keys else properties
        raw["where"] = draw(
            st.dictionaries(
                key_strategy, st.lists(texts, min_size=1, max_size=3), min_size=1, max_size=2
            )
        )
    return raw


def _groups(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    # a group of one reads as its item (test_a_group_of_one_is_its_condition)
    items = st.lists(children, min_size=1, max_size=3)
    return st.one_of(
        items.map(lambda xs: {"all": xs}),
        items.map(lambda xs: {"any": xs}),
        children.map(lambda x: {"not": x}),
    )


trees = st.recursive(
    st.one_of(leaves(), names.map(lambda n: {"segment": n})), _groups, max_leaves=8
)


@settings(max_examples=100, deadline=None)
@given(trees)
def test_generated_trees_round_trip(raw: Any) -> None:
    tree = parse_node(raw)
    assert roundtrip(tree) == tree


def _lit(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _write(raw: Any) -> str:
    """The text syntax for YAML data, written independently of `to_text` (every group in
    parentheses, every option spelled out)."""
    if "segment" in raw:
        return f'segment("{raw["segment"]}")'
    if "not" in raw:
        return f"not ({_write(raw['not'])})"
    if "all" in raw or "any" in raw:
        joiner = " and " if "all" in raw else " or "
        return joiner.join(f"({_write(x)})" for x in raw.get("all", raw.get("any")))
    args = []
    if "type" in raw:
        args.append(f"type={json.dumps(raw['type'])}")
    if "category" in raw:
        args.append(f"category={json.dumps(raw['category'])}")
    for key, values in raw.get("where", {}).items():
        args.append(f"{key}=[{', '.join(json.dumps(v) for v in values)}]")
    text = raw["field"] + (f"({', '.join(args)})" if args else "")
    if "window" in raw:
        text += f"[{raw['window']}]"
    op, value = raw["op"], raw.get("value")
    if op == "between":
        test = f"between {_lit(value[0])} and {_lit(value[1])}"
    elif op in ("in", "not_in"):
        test = f"{'in' if op == 'in' else 'not in'} [{', '.join(_lit(v) for v in value)}]"
    elif op == "top_percent":
        test = f"top {value}%"
    elif op in ("is_set", "is_not_set"):
        test = "is set" if op == "is_set" else "is not set"
    else:  # comparisons and contains
        test = f"{op} {_lit(value)}"
    return f"{text} {test}"


@settings(max_examples=100, deadline=None)
@given(trees)
def test_text_and_yaml_forms_give_equal_trees(raw: Any) -> None:
    assert parse_text(_write(raw)) == parse_node(raw)


@settings(max_examples=60)
@given(leaves())
def test_every_generated_leaf_is_valid_and_keeps_its_options(raw: dict[str, Any]) -> None:
    leaf = parse_node(raw)
    assert isinstance(leaf, Leaf)
    assert leaf.field == raw["field"] and leaf.op == raw["op"]
    assert (leaf.window_us is not None) == ("window" in raw)
    assert leaf.event_type == raw.get("type")
    assert leaf.category == raw.get("category")
    assert {k for k, _ in leaf.where} == set(raw.get("where", {}))


def test_generated_nodes_cover_every_kind_of_node() -> None:
    seen: set[type] = set()

    @settings(max_examples=40, deadline=None)
    @given(trees)
    def collect(raw: Any) -> None:
        tree = parse_node(raw)
        stack: list[Node] = [tree]
        while stack:
            node = stack.pop()
            seen.add(type(node))
            if isinstance(node, All | AnyOf):
                stack.extend(node.items)
            elif isinstance(node, Not):
                stack.append(node.item)

    collect()
    assert seen == {Leaf, SegmentRef, All, AnyOf, Not}


# -- numbers, names and shapes that once did not round-trip -----------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        {"field": "predictions.p_alive", "op": "<", "value": 0.00001},
        {"field": "orders.revenue", "op": ">", "value": "0.00000001"},
        {"field": "orders.revenue", "op": ">", "value": Decimal("1E-8")},
        {"field": "orders.revenue", "op": "<", "value": Decimal("1E+20")},
        {"field": "orders.avg_gap_days", "op": ">", "value": 1e16},
        {"field": "orders.count", "op": "top_percent", "value": 1e-7},
    ],
)
def test_tiny_or_huge_numbers_round_trip(raw: dict[str, Any]) -> None:
    tree = parse_node(raw)
    written = to_text(tree)
    assert "e" not in written.split(" ", 1)[1].lower()  # positional: the grammar has no exponent
    assert parse_text(written) == tree


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.floats(allow_nan=False, allow_infinity=False),
        st.decimals(-(10**30), 10**30, allow_nan=False, allow_infinity=False),
    )
)
def test_any_finite_number_round_trips(number: float | Decimal) -> None:
    for field in ("predictions.p_alive", "orders.revenue"):  # a float and a Decimal field
        tree = parse_node({"field": field, "op": "<", "value": number})
        assert roundtrip(tree) == tree


@settings(max_examples=100, deadline=None)
@given(st.floats(min_value=0, max_value=100, exclude_min=True))
def test_any_top_percent_round_trips_exactly(pct: float) -> None:
    tree = parse_node({"field": "orders.count", "op": "top_percent", "value": pct})
    assert roundtrip(tree) == tree
    assert isinstance(tree, Leaf) and tree.value == pct


def test_precise_top_percents_keep_their_own_threshold() -> None:
    from boomerang.segments.plan import build_plan

    plan = build_plan(
        [
            parse_definition({"name": "a", "where": "orders.count top 12.3456781%"}),
            parse_definition({"name": "b", "where": "orders.count top 12.3456789%"}),
        ]
    )
    assert sorted(pct for _, pct in plan.tops.values()) == [12.3456781, 12.3456789]


@pytest.mark.parametrize("key", ["productId", "SKU", "Type", "_x"])
def test_upper_case_property_round_trips(key: str) -> None:
    tree = parse_node({"field": "events.count", "op": ">=", "value": 1, "where": {key: "x"}})
    assert roundtrip(tree) == tree
    assert parse_text(f'events.count({key}="x") >= 1') == tree


@pytest.mark.parametrize("group", ["all", "any"])
def test_a_group_of_one_is_its_condition(group: str) -> None:
    """One tree per meaning: {all: [x]} and {any: [x]} read as x, at any depth."""
    leaf = {"field": "consent.sms"}
    assert parse_node({group: [leaf]}) == parse_node(leaf)
    assert parse_node({"not": {group: [{group: [leaf]}]}}) == Not(parse_node(leaf))
    pair = {group: [{"field": "consent.email"}, {"any": [leaf]}]}
    tree = parse_node(pair)
    assert tree == parse_node({group: [{"field": "consent.email"}, leaf]})
    assert roundtrip(tree) == tree
    assert roundtrip(parse_node({group: [leaf]})) == parse_node(leaf)


def test_window_micro_form_is_never_written_for_parsed_windows() -> None:
    # every parsed window is whole hours, so format_window never needs its `us` fallback
    for text in ("1h", "23h", "25h", "7d", "8d", "52w", "999h"):
        tree = parse_text(f"orders.count[{text}] >= 1")
        assert isinstance(tree, Leaf) and tree.window_us is not None
        assert "us]" not in to_text(tree)
        assert roundtrip(tree) == tree
    assert DAY == 24 * 3_600_000_000
