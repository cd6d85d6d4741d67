"""Validation errors: each names the place, the problem and what to write instead.

Every error is a `boomerang.errors.InputError` (code ``input``); the checks below look for the
key words of its message and hint, not the exact sentences.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from boomerang.errors import InputError
from boomerang.segments.model import Definition, parse_definition, parse_node
from boomerang.segments.plan import build_plan
from boomerang.segments.text import parse_text


def _error(call: Callable[[], Any]) -> InputError:
    with pytest.raises(InputError) as info:
        call()
    err = info.value
    assert err.code == "input"
    assert err.message and err.hint
    assert err.one_line() == f"{err.message} — {err.hint}"
    return err


def _leaf(**raw: Any) -> InputError:
    return _error(lambda: parse_node(raw))


def _check(err: InputError, message: list[str], hint: list[str]) -> None:
    for word in message:
        assert word in err.message, (word, err.message)
    for word in hint:
        assert word in err.hint, (word, err.hint)


def _defn(name: str, where: str) -> Definition:
    return parse_definition({"name": name, "where": where})


# -- fields ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("orders.cout", "did you mean 'orders.count'?"),
        ("customer.contry", "did you mean 'customer.country'?"),
        ("events.days_since", "did you mean 'events.days_since_last'?"),
        ("wishlist.size", "boomerang segments fields"),
    ],
)
def test_unknown_field_with_a_hint(name: str, hint: str) -> None:
    _check(_leaf(field=name, op=">=", value=1), [f"unknown field {name!r}"], [hint])
    # the same in the text syntax
    _check(_error(lambda: parse_text(f"{name} >= 1")), [f"unknown field {name!r}"], [hint])


def test_loyalty_fields_wait_for_the_extension() -> None:
    err = _leaf(field="loyalty.tier", op="=", value="gold")
    _check(err, ["'loyalty.tier'", "not available"], ["loyalty program"])
    _check(_error(lambda: parse_text("loyalty.points >= 100")), ["not available"], ["loyalty"])


@pytest.mark.parametrize(
    ("raw", "message", "hint"),
    [
        (
            {"field": "orders.count", "op": ">=", "value": "many"},
            ["orders.count", "number", "'many'"],
            ["number"],
        ),
        ({"field": "orders.count", "op": ">=", "value": 1.5}, ["whole units"], ["integer"]),
        ({"field": "orders.count", "op": ">=", "value": True}, ["number", "True"], ["number"]),
        (
            {"field": "orders.revenue", "op": ">", "value": "NaN"},
            ["not a finite number"],
            ["number"],
        ),
        (
            {"field": "consent.email", "op": "=", "value": "yes"},
            ["true/false", "'yes'"],
            ["true or false"],
        ),
        ({"field": "customer.country", "op": "=", "value": 3.5}, ["text", "3.5"], ["quote"]),
        (
            {"field": "customer.created_at", "op": "<", "value": "yesterday"},
            ["'yesterday'", "not a date"],
            ["YYYY-MM-DD"],
        ),
        (
            {"field": "customer.account_status", "op": "=", "value": "gust"},
            ["'gust'", "customer.account_status"],
            ["did you mean 'guest'?"],
        ),
        (
            {"field": "rfm.segment", "op": "=", "value": "Champion"},
            ["'Champion'"],
            ["did you mean 'Champions'?"],
        ),
        (
            {"field": "predictions.risk_band", "op": "in", "value": ["low", "severe"]},
            ["'severe'"],
            ["low, medium, high"],
        ),
        (
            {"field": "orders.count", "op": "top_percent", "value": 0},
            ["outside (0, 100]"],
            ["value: 10"],
        ),
        ({"field": "orders.count", "op": "top_percent", "value": 150}, ["outside (0, 100]"], []),
    ],
)
def test_wrong_value_type(raw: dict[str, Any], message: list[str], hint: list[str]) -> None:
    _check(_error(lambda: parse_node(raw)), message, hint)


# -- windows ---------------------------------------------------------------------------------


@pytest.mark.parametrize("window", ["30", 30, " 30 "])
def test_window_without_a_unit(window: Any) -> None:
    err = _leaf(field="orders.count", op=">=", value=1, window=window)
    _check(err, ["has no unit"], ["30d", "30h", "30w"])


def test_window_without_a_unit_in_text() -> None:
    err = _error(lambda: parse_text("orders.count[30] >= 1"))
    _check(err, ["'30' has no unit"], ["30d (days)"])


@pytest.mark.parametrize("window", ["30m", "3mo", "2y", "10s"])
def test_unknown_window_unit(window: str) -> None:
    err = _error(lambda: parse_text(f"orders.count[{window}] >= 1"))
    _check(err, ["window unit", "not known"], ["h (hours)", "d (days)", "w (weeks)", "30d"])


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ("0d", "is empty"),
        ("soon", "not a duration"),
        ("-3d", "not a duration"),
        (True, "not a duration"),
    ],
)
def test_bad_window(window: Any, message: str) -> None:
    err = _leaf(field="orders.count", op=">=", value=1, window=window)
    _check(err, [message], ["30d"])


def test_window_on_a_field_without_one() -> None:
    err = _leaf(field="customer.country", op="=", value="US", window="30d")
    _check(err, ["customer.country takes no window"], ["remove `window`"])
    _check(_error(lambda: parse_text("orders.days_since_last[30d] > 3")), ["takes no window"], [])


# -- operators and values --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "op", "value", "kind", "allowed"),
    [
        ("customer.has_email", ">", True, "bool", "=, !=, is_set, is_not_set"),
        ("customer.country", "contains", "US", "text", "=, !=, in, not_in, is_set, is_not_set"),
        ("customer.country", "<", "US", "text", "in, not_in"),
        ("orders.days_since_last", "top_percent", 10, "days", "between, in, not_in, is_set"),
        ("customer.created_at", "in", ["2024-01-01"], "date", "between, is_set"),
        ("orders.revenue", "in", [10], "money", "between, top_percent"),
        ("customer.tags", "=", "vip", "text", "contains, is_set, is_not_set"),
        ("orders.count", "~", 1, "int", "top_percent"),
        # scores are ranks already: every int operator but top_percent
        ("rfm.r", "top_percent", 10, "int", "between, in, not_in, is_set, is_not_set"),
        ("rfm.f", "top_percent", 50, "int", "between, in, not_in, is_set, is_not_set"),
        ("rfm.m", "top_percent", 100, "int", "between, in, not_in, is_set, is_not_set"),
    ],
)
def test_operator_the_kind_does_not_take(
    field: str, op: Any, value: Any, kind: str, allowed: str
) -> None:
    err = _leaf(field=field, op=op, value=value)
    _check(err, ["operator", f"{field} ({kind})"], ["use one of:", allowed])


@pytest.mark.parametrize("score", ["rfm.r", "rfm.f", "rfm.m"])
def test_no_top_percent_on_rfm_scores(score: str) -> None:
    err = _error(lambda: _defn("top-score", f"{score} top 50%"))
    _check(err, ["top-score.rule:", f"operator 'top_percent' does not apply to {score}"], [])
    assert "top_percent" not in err.hint
    assert "top_percent" in _leaf(field="orders.count", op="~", value=1).hint  # others keep it


@pytest.mark.parametrize(
    ("field", "allowed"),
    [
        ("orders.count", "=, !=, <, <=, >, >=, between, in, not_in, top_percent"),
        ("customer.country", "=, !=, in, not_in, is_set, is_not_set"),
        ("rfm.segment", "=, !=, in, not_in"),
    ],
)
def test_missing_operator(field: str, allowed: str) -> None:
    err = _leaf(field=field, value=1)
    _check(err, [f"{field} needs an operator"], ["add `op:`", allowed])


def test_bool_fields_default_to_true() -> None:
    assert parse_node({"field": "consent.sms"}) == parse_node(
        {"field": "consent.sms", "op": "=", "value": True}
    )


def test_missing_value() -> None:
    _check(
        _leaf(field="orders.count", op=">="), [">= needs a value"], ["add `value:`", "orders.count"]
    )
    _check(_leaf(field="orders.count", op="in"), ["in needs a value"], ["value:"])


def test_value_given_to_is_set() -> None:
    for op in ("is_set", "is_not_set"):
        err = _leaf(field="orders.days_since_last", op=op, value=3)
        _check(err, [f"{op} takes no value"], ["remove `value`"])


@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [
        ("orders.count", [5, 1], "between 5 and 1 is empty"),
        ("orders.revenue", ["10.5", "10.4"], "between 10.5 and 10.4 is empty"),
        ("customer.created_at", ["2024-02-01", "2024-01-31T23:00:00Z"], "is empty"),
    ],
)
def test_between_low_above_high(field: str, value: list[Any], shown: str) -> None:
    _check(_leaf(field=field, op="between", value=value), [shown], ["low bound first"])


@pytest.mark.parametrize("value", [[5], [1, 2, 3], 5, "1,2"])
def test_between_needs_two_values(value: Any) -> None:
    _check(_leaf(field="orders.count", op="between", value=value), ["two values"], ["[low, high]"])


def test_between_equal_bounds_is_fine() -> None:
    parse_node({"field": "orders.count", "op": "between", "value": [3, 3]})


@pytest.mark.parametrize(
    ("op", "value"), [("in", []), ("not_in", []), ("in", "US"), ("not_in", ())]
)
def test_empty_or_missing_in_list(op: str, value: Any) -> None:
    err = _leaf(field="customer.country", op=op, value=value)
    _check(err, [f"{op} needs a list of values"], ['["a", "b"]'])


# -- options: where, type, category ----------------------------------------------------------


@pytest.mark.parametrize("field", ["orders.count", "orders.revenue", "orders.days_since_last"])
def test_unknown_where_key_on_orders(field: str) -> None:
    err = _leaf(field=field, op=">=", value=1, where={"color": "red"})
    _check(err, [f"{field} cannot filter on 'color'"], ["sku or category"])
    err = _error(lambda: parse_text(f'{field}(color="red") >= 1'))
    _check(err, ["cannot filter on 'color'"], ["sku or category"])


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ({}, "`where` must map"),
        ("Shoes", "`where` must map"),
        ({"category": [True]}, "is not text"),
        ({"category": []}, "is not text"),
        ({"category": None}, "is not text"),
        ({"category": {"a": 1}}, "is not text"),
        ({"utm-source": "mail"}, "property name 'utm-source' is not usable"),
        ({"1st": "x"}, "not usable"),
    ],
)
def test_bad_where(where: Any, message: str) -> None:
    err = _leaf(field="events.count", op=">=", value=1, where=where)
    _check(err, [message], [])


@pytest.mark.parametrize(
    ("raw", "message", "hint"),
    [
        (
            {"field": "orders.aov", "op": ">", "value": 5, "where": {"sku": "a"}},
            "orders.aov takes no `where`",
            "orders.aov takes: window",
        ),
        (
            {"field": "orders.count", "op": ">", "value": 5, "type": "visit"},
            "orders.count takes no `type`",
            "orders.count takes: where, window",
        ),
        (
            {"field": "events.count", "op": ">", "value": 5, "category": "Shoes"},
            "events.count takes no `category`",
            "type, where, window",
        ),
        (
            {"field": "customer.country", "op": "=", "value": "US", "where": {"a": "b"}},
            "takes no `where`",
            "customer.country takes: no options",
        ),
        (
            {"field": "orders.days_since_first", "op": ">", "value": 5, "where": {"sku": "a"}},
            "takes no `where`",
            "no options",
        ),
        (
            {"field": "affinity.top_category", "op": "=", "value": "Shoes", "category": "Shoes"},
            "takes no `category`",
            "affinity.top_category takes: window",
        ),
    ],
)
def test_option_the_field_does_not_take(raw: dict[str, Any], message: str, hint: str) -> None:
    _check(_error(lambda: parse_node(raw)), [message], [hint])


@pytest.mark.parametrize("field", ["events.count", "events.days_since_last"])
def test_an_event_property_named_type_is_refused(field: str) -> None:
    """`type` is the event type: where: {type: x} is refused (in the text syntax, type=...
    is always the event type)."""
    err = _leaf(field=field, op=">=", value=1, where={"type": "x"})
    _check(err, ["`type` is the event type, not a property"], ["type: <event type>"])
    err = _leaf(field=field, op=">=", value=1, where={"category": "x", "type": ["a", "b"]})
    _check(err, ["`type` is the event type"], [])
    tree = parse_text(f'{field}(type="x") >= 1')
    assert tree == parse_node({"field": field, "op": ">=", "value": 1, "type": "x"})


def test_orders_filter_on_sku_and_category_only() -> None:
    for key in ("type", "Category", "SKU"):
        err = _leaf(field="orders.count", op=">=", value=1, where={key: "x"})
        _check(err, [f"orders.count cannot filter on {key!r}"], ["sku or category"])
    assert parse_node({"field": "orders.count", "op": ">=", "value": 1, "where": {"sku": "a"}})


def test_option_the_field_does_not_take_in_text() -> None:
    # in the text syntax, an unknown argument is a `where` filter
    _check(_error(lambda: parse_text('orders.aov(sku="a") > 5')), ["takes no `where`"], [])
    _check(_error(lambda: parse_text('orders.count(type="visit") > 5')), ["takes no `type`"], [])


def test_missing_required_option() -> None:
    err = _leaf(field="affinity.share", op=">=", value=0.5)
    _check(err, ["affinity.share needs `category`"], ["affinity.share takes: category, window"])
    _check(_error(lambda: parse_text("affinity.share[30d] >= 0.5")), ["needs `category`"], [])


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"field": "events.count", "op": ">", "value": 1, "type": 5}, "event type 5 is not text"),
        ({"field": "events.count", "op": ">", "value": 1, "type": ""}, "event type '' is not text"),
        (
            {"field": "affinity.share", "op": ">", "value": 0.1, "category": 5},
            "category 5 is not text",
        ),
        (
            {"field": "affinity.share", "op": ">", "value": 0.1, "category": ""},
            "category '' is not text",
        ),
    ],
)
def test_option_values_must_be_text(raw: dict[str, Any], message: str) -> None:
    _check(_error(lambda: parse_node(raw)), [message], [])


def test_empty_category_in_text() -> None:
    err = _error(lambda: parse_text('affinity.share(category="") > 0.1'))
    _check(err, ["category '' is not text"], ["category: Shoes"])


# -- tree shapes and definitions -------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message", "hint"),
    [
        (
            {"field": "orders.count", "op": ">", "value": 1, "values": 2},
            "unknown key 'values'",
            "field, op, type, value, where, window",
        ),
        ({"op": "=", "value": 1}, "needs `field`", "{all: [...]}"),
        (
            {"all": [{"field": "consent.sms"}], "field": "consent.sms"},
            "mixes all, field",
            "own item",
        ),
        (
            {"all": [{"field": "consent.sms"}], "any": [{"field": "consent.sms"}]},
            "mixes all, any",
            "own item",
        ),
        ({"all": []}, "`all` needs a non-empty list", "all: [condition, ...]"),
        (
            {"any": {"field": "consent.sms"}},
            "`any` needs a non-empty list",
            "any: [condition, ...]",
        ),
        ({"segment": "Big Spenders"}, "'Big Spenders' is not a segment name", "segment: lapsed"),
        ({"segment": 3}, "is not a segment name", "segment:"),
        (5, "expected a condition, got int", "{segment: name}"),
        ([{"field": "consent.sms"}], "expected a condition, got list", "{all: [...]}"),
    ],
)
def test_bad_tree_shapes(raw: Any, message: str, hint: str) -> None:
    _check(_error(lambda: parse_node(raw)), [message], [hint])


def test_errors_name_the_place_in_the_definition() -> None:
    raw = {
        "name": "vip",
        "rule": {
            "all": [
                {"field": "consent.sms"},
                {
                    "not": {
                        "any": [
                            {"field": "consent.sms"},
                            {"field": "orders.cnt", "op": ">", "value": 1},
                        ]
                    }
                },
            ]
        },
    }
    err = _error(lambda: parse_definition(raw))
    assert err.message.startswith("vip.rule.all[1].not.any[1]: unknown field 'orders.cnt'")
    err = _error(lambda: _defn("vip", "consent.sms and orders.cnt > 1"))
    assert err.message.startswith("vip.rule.all[1]: unknown field")


@pytest.mark.parametrize(
    "name", ["VIP Customers", "Vip", "-vip", "_vip", "", "vip customers", "a" * 101, 5, None]
)
def test_bad_segment_name(name: Any) -> None:
    err = _error(lambda: parse_definition({"name": name, "where": "consent.sms"}))
    _check(err, ["segment name", "is not valid"], ["lower-case", "vip-at-risk"])


@pytest.mark.parametrize("name", ["vip", "vip-at-risk", "a_b", "2024-buyers", "a" * 100])
def test_good_segment_names(name: str) -> None:
    assert _defn(name, "consent.sms").name == name


@pytest.mark.parametrize(
    ("raw", "message", "hint"),
    [
        (["vip"], "is a mapping", "name:, title:, rule:"),
        ({"name": "vip", "rules": "consent.sms"}, "unknown key 'rules'", "rule (or where)"),
        ({"name": "vip"}, "give the rule once", "`rule:`"),
        (
            {"name": "vip", "rule": {"field": "consent.sms"}, "where": "consent.sms"},
            "give the rule once",
            "`where:`",
        ),
    ],
)
def test_bad_definitions(raw: Any, message: str, hint: str) -> None:
    _check(_error(lambda: parse_definition(raw)), [message], [hint])


def test_title_defaults_from_the_name() -> None:
    d = _defn("vip-at-risk", "consent.sms")
    assert (d.title, d.description, d.kind) == ("Vip at risk", "", "rule")


# -- the set of definitions (plan) -----------------------------------------------------------


def test_unknown_segment_reference() -> None:
    err = _error(lambda: build_plan([_defn("a", 'segment("ghost") and consent.sms')]))
    _check(err, ["'a' refers to unknown segment 'ghost'"], ["create that segment first"])


@pytest.mark.parametrize(
    ("defs", "cycle"),
    [
        ({"a": 'segment("a")'}, "a -> a"),
        ({"a": 'segment("b")', "b": 'not segment("a")'}, "a -> b -> a"),
        (
            {
                "a": 'segment("b") or consent.sms',
                "b": 'segment("c")',
                "c": 'consent.sms and segment("b")',
            },
            "b -> c -> b",
        ),
    ],
)
def test_reference_cycle(defs: dict[str, str], cycle: str) -> None:
    err = _error(lambda: build_plan([_defn(n, w) for n, w in defs.items()]))
    _check(err, ["cycle", cycle], ["break the cycle"])


def test_duplicate_names() -> None:
    defs = [
        _defn("vip", "consent.sms"),
        _defn("other", "consent.email"),
        _defn("vip", "consent.push"),
    ]
    _check(_error(lambda: build_plan(defs)), ["'vip' is defined twice"], ["rename"])


def test_plan_orders_references_first() -> None:
    plan = build_plan(
        [
            _defn("c", 'segment("b") and segment("a")'),
            _defn("b", 'segment("a")'),
            _defn("a", "consent.sms"),
        ]
    )
    assert plan.order == ["a", "b", "c"]


# -- text syntax errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("orders.count >= 1 and and", 1, 23),
        ("orders.count >== 1", 1, 16),
        ("orders.count >= 1 and customer.country = US", 1, 42),  # text needs quotes
        ("orders.count >= 1\nand (consent.email", 2, 6),  # unclosed: at the end of line 2
        ("orders.count >=", 1, 14),
        ("(orders.count >= 1", 1, 18),
        ("orders.count >= 1 )", 1, 19),
        ("orders.count[30 d] >= 1", 1, 17),
        ("Orders.count >= 1", 1, 1),
    ],
)
def test_malformed_text_names_line_and_column(text: str, line: int, column: int) -> None:
    err = _error(lambda: parse_text(text))
    _check(
        err,
        ["cannot read the rule", f"line {line}, column {column}"],
        ["orders.count[30d] >= 2", "and / or / not", '"quotes"'],
    )
    # the offending line is quoted
    assert repr(text.splitlines()[line - 1].strip()) in err.message


def test_malformed_text_in_a_definition_names_the_segment() -> None:
    err = _error(lambda: _defn("vip", "consent.sms or or"))
    assert err.message.startswith("vip.rule: cannot read the rule at line 1, column 16")


@pytest.mark.parametrize("text", ["", "   ", "\n\t \n"])
def test_empty_text_is_an_input_error(text: str) -> None:
    _check(_error(lambda: parse_text(text)), ["rule: the rule is empty"], ["orders.count >= 1"])
    err = _error(lambda: _defn("vip", text))
    assert err.message == "vip.rule: the rule is empty"


@pytest.mark.parametrize("literal", ['"a\\x"', '"a\tb"', '"a\nb"', '"\\u12"', "'a\\q'"])
def test_bad_string_literal_is_an_input_error(literal: str) -> None:
    err = _error(lambda: parse_text(f"customer.city = {literal}"))
    _check(err, ["rule: cannot read a value in the rule"], ['"double quotes"', "escapes"])
    err = _error(lambda: _defn("vip", f"consent.sms and customer.city = {literal}"))
    assert err.message.startswith("vip.rule: cannot read a value in the rule")


def test_good_string_escapes_are_read() -> None:
    tree = parse_text('customer.city = "a\\tb \\"q\\" \\u00e9 \\\\"')
    assert tree == parse_node({"field": "customer.city", "op": "=", "value": 'a\tb "q" é \\'})
