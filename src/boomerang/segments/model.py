"""Segment definitions: a tree of conditions (AND / OR / NOT to any depth), validated.

A definition comes from a YAML/JSON file, a Python dict, or the compact text syntax
(`segments.text`). Validation happens once, here, with errors that name the place in the
definition (``rule.all[2].any[0]``), the problem and what to write instead; the compiler
and the evaluator then trust the tree.

Values are normalised while parsing: windows become microseconds, dates epoch micros,
money stays a `Decimal` in major units (the store's currency exponent turns it into minor
units when compiling).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeAlias

from boomerang.domain.clock import MICROS_PER_DAY, to_micros
from boomerang.errors import InputError
from boomerang.segments.fields import (
    NUMERIC,
    PENDING_PREFIXES,
    UNARY_OPS,
    FieldSpec,
    Kind,
    all_fields,
    lookup,
)

PROPERTY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
WINDOW_RE = re.compile(r"^\s*(\d+)\s*([a-zA-Z]*)\s*$")
WINDOW_UNITS = {"h": MICROS_PER_DAY // 24, "d": MICROS_PER_DAY, "w": 7 * MICROS_PER_DAY}
LEAF_KEYS = frozenset({"field", "op", "value", "window", "type", "where", "category"})
Scalar: TypeAlias = "str | int | float | bool | Decimal"


@dataclass(frozen=True)
class Leaf:
    """``field op value``, with the field's window and options."""

    field: str
    op: str
    value: Any = None  # normalised: see module docstring; a tuple for between / in
    window_us: int | None = None
    event_type: str | None = None
    where: tuple[tuple[str, tuple[str, ...]], ...] = ()
    category: str | None = None

    @property
    def spec(self) -> FieldSpec:
        spec = lookup(self.field)
        assert spec is not None, self.field
        return spec


@dataclass(frozen=True)
class SegmentRef:
    """Membership of another segment (evaluated in the same refresh)."""

    name: str


@dataclass(frozen=True)
class All:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node: TypeAlias = "Leaf | SegmentRef | All | AnyOf | Not"


@dataclass(frozen=True)
class Definition:
    """A named segment: its rule plus what the marketer reads about it."""

    name: str
    title: str
    rule: Node
    description: str = ""
    kind: str = "rule"  # "rule" (user's), "builtin", "rfm"
    source: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def references(self) -> set[str]:
        return {n.name for n in walk(self.rule) if isinstance(n, SegmentRef)}

    def leaves(self) -> list[Leaf]:
        return [n for n in walk(self.rule) if isinstance(n, Leaf)]


def walk(node: Node) -> Iterator[Node]:
    yield node
    if isinstance(node, All | AnyOf):
        for item in node.items:
            yield from walk(item)
    elif isinstance(node, Not):
        yield from walk(node.item)


# -- parsing ---------------------------------------------------------------------------------


def _fail(path: str, message: str, hint: str) -> InputError:
    return InputError(f"{path}: {message}", hint=hint)


def parse_window(text: Any, path: str) -> int:
    """'30d' -> micros. A bare number is refused: the unit is part of the meaning."""
    if isinstance(text, bool) or not isinstance(text, str | int):
        raise _fail(path, f"window {text!r} is not a duration", "write e.g. 30d, 12h or 4w")
    match = WINDOW_RE.match(str(text))
    if not match:
        raise _fail(path, f"window {text!r} is not a duration", "write e.g. 30d, 12h or 4w")
    amount, unit = int(match.group(1)), match.group(2).lower()
    if not unit:
        raise _fail(
            path,
            f"window {text!r} has no unit",
            f"write {amount}d (days), {amount}h (hours) or {amount}w (weeks)",
        )
    if unit not in WINDOW_UNITS:
        raise _fail(
            path,
            f"window unit {unit!r} is not known",
            "use h (hours), d (days) or w (weeks); months vary in length, so write 30d or 90d",
        )
    if amount <= 0:
        raise _fail(path, f"window {text!r} is empty", "use a positive length such as 30d")
    return amount * WINDOW_UNITS[unit]


def format_window(micros: int) -> str:
    for unit in ("w", "d", "h"):
        size = WINDOW_UNITS[unit]
        if micros % size == 0:
            return f"{micros // size}{unit}"
    return f"{micros}us"


def _date_value(value: Any, path: str) -> int:
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return to_micros(moment)
    if isinstance(value, date):
        return to_micros(datetime(value.year, value.month, value.day, tzinfo=UTC))
    if isinstance(value, str):
        try:
            if len(value.strip()) == 10:
                d = date.fromisoformat(value.strip())
                return to_micros(datetime(d.year, d.month, d.day, tzinfo=UTC))
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            return to_micros(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
        except ValueError:
            pass
    raise _fail(path, f"{value!r} is not a date", "write YYYY-MM-DD or an ISO 8601 timestamp")


def _scalar(spec: FieldSpec, value: Any, path: str) -> Any:
    """One value, checked against the field's kind and normalised."""
    kind = spec.kind
    if kind is Kind.BOOL:
        if isinstance(value, bool):
            return value
        raise _fail(path, f"{spec.name} is true/false, not {value!r}", "write true or false")
    if kind is Kind.TEXT:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise _fail(path, f"{spec.name} is text, not {value!r}", 'quote the value: "..."')
        text = str(value)
        if spec.choices and text not in spec.choices:
            close = difflib.get_close_matches(text, spec.choices, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "one of: " + ", ".join(spec.choices)
            raise _fail(path, f"{text!r} is not a value of {spec.name}", hint)
        return text.upper() if spec.name == "customer.country" else text
    if kind is Kind.DATE:
        return _date_value(value, path)
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise _fail(path, f"{spec.name} is a number, not {value!r}", "write a number such as 3")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise _fail(path, f"{spec.name} is a number, not {value!r}", "write a number") from None
    if not number.is_finite():
        raise _fail(path, f"{value!r} is not a finite number", "write a number")
    if kind in (Kind.INT, Kind.DAYS):
        if number != number.to_integral_value():
            raise _fail(path, f"{spec.name} counts whole units, not {value}", "write an integer")
        return int(number)
    if kind is Kind.MONEY:
        return number
    return float(number)


def _value(spec: FieldSpec, op: str, raw: Any, path: str) -> Any:
    if op in UNARY_OPS:
        if raw is not None:
            raise _fail(path, f"{op} takes no value", "remove `value` or use another operator")
        return None
    if raw is None:
        raise _fail(path, f"{op} needs a value", f"add `value:` for {spec.name}")
    if op == "between":
        if not isinstance(raw, list | tuple) or len(raw) != 2:
            raise _fail(path, "between needs two values", "write value: [low, high]")
        low, high = (_scalar(spec, v, path) for v in raw)
        if low > high:
            raise _fail(path, f"between {raw[0]} and {raw[1]} is empty", "put the low bound first")
        return (low, high)
    if op in ("in", "not_in"):
        if not isinstance(raw, list | tuple) or not raw:
            raise _fail(path, f"{op} needs a list of values", 'write value: ["a", "b"]')
        return tuple(_scalar(spec, v, path) for v in raw)
    if op == "top_percent":
        pct = _scalar(FieldSpec("top_percent", Kind.NUMBER, ""), raw, path)
        if not 0 < pct <= 100:
            raise _fail(path, f"top_percent {raw} is outside (0, 100]", "write e.g. value: 10")
        return float(pct)
    return _scalar(spec, raw, path)


def _where(spec: FieldSpec, raw: Any, path: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if not isinstance(raw, Mapping) or not raw:
        raise _fail(
            path, "`where` must map property names to values", "write where: {category: Shoes}"
        )
    items = []
    for key, value in raw.items():
        if not PROPERTY_RE.match(str(key)):
            raise _fail(path, f"property name {key!r} is not usable", "use letters, digits and _")
        if key == "type" and not spec.where_keys:
            raise _fail(
                path, "`type` is the event type, not a property", "write type: <event type>"
            )
        if spec.where_keys and key not in spec.where_keys:
            raise _fail(
                path,
                f"{spec.name} cannot filter on {key!r}",
                "filter order lines on " + " or ".join(spec.where_keys),
            )
        values = value if isinstance(value, list | tuple) else [value]
        if not values or any(isinstance(v, bool | dict | list) or v is None for v in values):
            raise _fail(path, f"where {key}: {value!r} is not text", "write a value or a list")
        items.append((str(key), tuple(sorted({str(v) for v in values}))))
    return tuple(sorted(items))


def _unknown_field(name: Any, path: str) -> InputError:
    text = str(name)
    prefix = text.split(".", 1)[0]
    if prefix in PENDING_PREFIXES:
        return _fail(path, f"field {text!r} is not available", PENDING_PREFIXES[prefix])
    close = difflib.get_close_matches(text, list(all_fields()), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else "see `boomerang segments fields`"
    return _fail(path, f"unknown field {text!r}", hint)


def parse_leaf(raw: Mapping[str, Any], path: str) -> Leaf:
    extra = set(raw) - LEAF_KEYS
    if extra:
        raise _fail(
            path,
            f"unknown key {sorted(extra)[0]!r}",
            "a condition has: " + ", ".join(sorted(LEAF_KEYS)),
        )
    name = raw.get("field")
    spec = lookup(str(name)) if isinstance(name, str) else None
    if spec is None:
        raise _unknown_field(name, path)
    op = raw.get("op")
    if op is None and spec.kind is not Kind.BOOL:
        raise _fail(
            path, f"{spec.name} needs an operator", "add `op:`, one of: " + ", ".join(spec.ops)
        )
    if op is None and spec.kind is Kind.BOOL:
        op, raw = "=", {**raw, "value": raw.get("value", True)}
    if op == "==":
        op = "="
    if op not in spec.ops:
        raise _fail(
            path,
            f"operator {op!r} does not apply to {spec.name} ({spec.kind.value})",
            "use one of: " + ", ".join(spec.ops),
        )
    options = {k for k in ("type", "where", "category") if raw.get(k) is not None}
    for option in sorted(options - spec.params):
        raise _fail(path, f"{spec.name} takes no `{option}`", _options_hint(spec))
    for option in sorted(spec.required - options):
        raise _fail(path, f"{spec.name} needs `{option}`", _options_hint(spec))
    window = raw.get("window")
    if window is not None and not spec.window:
        raise _fail(path, f"{spec.name} takes no window", "remove `window`")
    event_type = raw.get("type")
    if event_type is not None and not (isinstance(event_type, str) and event_type):
        raise _fail(path, f"event type {event_type!r} is not text", "write type: product_viewed")
    category = raw.get("category")
    if category is not None and (not isinstance(category, str) or not category):
        raise _fail(path, f"category {category!r} is not text", "write category: Shoes")
    return Leaf(
        field=spec.name,
        op=str(op),
        value=_value(spec, str(op), raw.get("value"), path),
        window_us=parse_window(window, path) if window is not None else None,
        event_type=event_type,
        where=_where(spec, raw["where"], path) if raw.get("where") is not None else (),
        category=category,
    )


def _options_hint(spec: FieldSpec) -> str:
    parts = sorted(spec.params) + (["window"] if spec.window else [])
    return f"{spec.name} takes: " + (", ".join(parts) if parts else "no options")


def parse_node(raw: Any, path: str = "rule") -> Node:
    """A rule tree from plain data (YAML/JSON/dict), validated."""
    if isinstance(raw, str):
        from boomerang.segments.text import parse_text

        return parse_text(raw, path)
    if not isinstance(raw, Mapping):
        raise _fail(path, f"expected a condition, got {type(raw).__name__}", _SHAPES)
    groups = [k for k in ("all", "any", "not", "segment") if k in raw]
    if len(groups) > 1 or (groups and len(raw) > 1):
        raise _fail(path, f"mixes {', '.join(sorted(raw))}", "put each group in its own item")
    if not groups:
        if "field" not in raw:
            raise _fail(path, "a condition needs `field`", _SHAPES)
        return parse_leaf(raw, path)
    key = groups[0]
    body = raw[key]
    if key == "segment":
        if not isinstance(body, str) or not NAME_RE.match(body):
            raise _fail(path, f"segment {body!r} is not a segment name", "write segment: lapsed")
        return SegmentRef(body)
    if key == "not":
        return Not(parse_node(body, f"{path}.not"))
    if not isinstance(body, list | tuple) or not body:
        raise _fail(path, f"`{key}` needs a non-empty list", f"write {key}: [condition, ...]")
    items = tuple(parse_node(item, f"{path}.{key}[{i}]") for i, item in enumerate(body))
    if len(items) == 1:  # a group of one is that condition (one tree per meaning)
        return items[0]
    return All(items) if key == "all" else AnyOf(items)


_SHAPES = "write {field: ..., op: ..., value: ...}, {all: [...]}, {any: [...]}, {not: ...} or {segment: name}"


def parse_definition(raw: Any, origin: str = "definition") -> Definition:
    """A whole definition (name, title, description, rule) from plain data."""
    if not isinstance(raw, Mapping):
        raise _fail(origin, "a segment definition is a mapping", "write name:, title:, rule:")
    unknown = set(raw) - {"name", "title", "description", "rule", "where"}
    if unknown:
        raise _fail(
            origin,
            f"unknown key {sorted(unknown)[0]!r}",
            "keys: name, title, description, rule (or where)",
        )
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise _fail(
            origin,
            f"segment name {name!r} is not valid",
            "use lower-case letters, digits, '-' or '_' (e.g. vip-at-risk)",
        )
    if ("rule" in raw) == ("where" in raw):
        raise _fail(origin, "give the rule once", "use `rule:` (a tree) or `where:` (text syntax)")
    rule = parse_node(raw["rule"] if "rule" in raw else str(raw["where"]), f"{name}.rule")
    title = raw.get("title") or name.replace("-", " ").capitalize()
    return Definition(
        name=name,
        title=str(title),
        description=str(raw.get("description") or ""),
        rule=rule,
        source=dict(raw),
    )


def leaf_is_numeric(leaf: Leaf) -> bool:
    return leaf.spec.kind in NUMERIC
