"""The compact text syntax for rules, e.g.

    orders.count[365d] >= 3 and not segment("lapsed")
    and (events.count(type="product_viewed", category="Shoes")[30d] >= 3 or consent.sms)

The text is parsed (Lark, LALR) into the same plain data a YAML file holds and validated by
`model.parse_node`, so both forms give one tree and the same errors. ``to_text`` writes a
tree back in this syntax (used by ``segments show`` and ``why``).
"""

from __future__ import annotations

import json
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Any

from lark import Lark, Token, Transformer, UnexpectedInput, v_args
from lark.exceptions import VisitError

from boomerang.errors import InputError
from boomerang.segments.fields import lookup

if TYPE_CHECKING:
    from boomerang.segments.model import Leaf, Node

GRAMMAR = r"""
?start: or_expr
?or_expr: and_expr (_OR and_expr)*       -> any_
?and_expr: not_expr (_AND not_expr)*     -> all_
?not_expr: _NOT not_expr                 -> not_
         | atom
?atom: "(" or_expr ")"
     | "segment" "(" STRING ")"          -> segref
     | condition
condition: fieldref [test]
fieldref: DOTTED [args] [window]
args: "(" arg ("," arg)* ")"
arg: NAME "=" (value | list)
window: "[" WINDOW "]"
test: CMP value                          -> cmp
    | "between"i value _AND value        -> between
    | "in"i list                         -> in_
    | _NOT "in"i list                    -> not_in
    | "contains"i value                  -> contains
    | "is"i "set"i                       -> is_set
    | "is"i _NOT "set"i                  -> is_not_set
    | "top"i NUMBER "%"                  -> top
list: "[" value ("," value)* "]"
?value: STRING                           -> string
      | NUMBER                           -> number
      | DATE                             -> date
      | "true"i                          -> true
      | "false"i                         -> false
_AND: "and"i
_OR: "or"i
_NOT: "not"i
CMP: "<=" | ">=" | "!=" | "==" | "=" | "<" | ">"
DOTTED.2: /[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)+/
NAME: /[A-Za-z_][A-Za-z0-9_]*/
WINDOW: /[0-9]+[a-zA-Z]*/
DATE.3: /\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?/
NUMBER: /-?\d+(\.\d+)?/
STRING: /"(\\.|[^"\\])*"/ | /'(\\.|[^'\\])*'/
%import common.WS
%ignore WS
"""


@cache
def _parser() -> Lark:
    return Lark(GRAMMAR, parser="lalr", maybe_placeholders=True)


@v_args(inline=True)
class _ToData(Transformer[Token, Any]):
    """Parse tree -> the plain data a YAML definition would hold."""

    def any_(self, *items: Any) -> Any:
        return items[0] if len(items) == 1 else {"any": list(items)}

    def all_(self, *items: Any) -> Any:
        return items[0] if len(items) == 1 else {"all": list(items)}

    def not_(self, item: Any) -> Any:
        return {"not": item}

    def segref(self, name: Token) -> Any:
        return {"segment": _unquote(name)}

    def condition(self, ref: dict[str, Any], test: dict[str, Any] | None) -> Any:
        return {**ref, **(test or {})}

    def fieldref(self, name: Token, args: list[tuple[str, Any]] | None, window: Any) -> Any:
        out: dict[str, Any] = {"field": str(name)}
        where: dict[str, Any] = {}
        for key, value in args or []:
            spec = lookup(str(name))
            if key == "type" or (key == "category" and spec is not None and key in spec.params):
                out[key] = value
            else:
                where[key] = value
        if where:
            out["where"] = where
        if window is not None:
            out["window"] = window
        return out

    def args(self, *items: tuple[str, Any]) -> list[tuple[str, Any]]:
        return list(items)

    def arg(self, name: Token, value: Any) -> tuple[str, Any]:
        return (str(name), value)

    def window(self, token: Token) -> str:
        return str(token)

    def cmp(self, op: Token, value: Any) -> Any:
        return {"op": str(op), "value": value}

    def between(self, low: Any, high: Any) -> Any:
        return {"op": "between", "value": [low, high]}

    def in_(self, values: list[Any]) -> Any:
        return {"op": "in", "value": values}

    def not_in(self, values: list[Any]) -> Any:
        return {"op": "not_in", "value": values}

    def contains(self, value: Any) -> Any:
        return {"op": "contains", "value": value}

    def is_set(self) -> Any:
        return {"op": "is_set"}

    def is_not_set(self) -> Any:
        return {"op": "is_not_set"}

    def top(self, number: Token) -> Any:
        return {"op": "top_percent", "value": Decimal(str(number))}

    def list(self, *values: Any) -> list[Any]:
        return list(values)

    def string(self, token: Token) -> str:
        return _unquote(token)

    def number(self, token: Token) -> Decimal:
        return Decimal(str(token))

    def date(self, token: Token) -> str:
        return str(token)

    def true(self) -> bool:
        return True

    def false(self) -> bool:
        return False


def _unquote(token: Token | str) -> str:
    text = str(token)
    if text.startswith("'"):
        text = '"' + text[1:-1].replace('\\"', '"').replace('"', '\\"') + '"'
    return str(json.loads(text))


def text_to_data(text: str, path: str = "rule") -> Any:
    """The text syntax as plain data (not yet validated)."""
    if not text.strip():
        raise InputError(
            f"{path}: the rule is empty", hint="write a condition such as orders.count >= 1"
        )
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as exc:
        pointer = text.splitlines()[exc.line - 1] if exc.line > 0 else text
        raise InputError(
            f"{path}: cannot read the rule at line {exc.line}, column {exc.column}: "
            f"{pointer.strip()!r}",
            hint="write conditions like orders.count[30d] >= 2 joined by and / or / not, "
            'text in "quotes"',
        ) from None
    try:
        return _ToData().transform(tree)
    except VisitError as exc:
        raise InputError(
            f"{path}: cannot read a value in the rule ({exc.orig_exc})",
            hint='write text in "double quotes" with JSON escapes (\\" \\\\ \\t)',
        ) from None


def parse_text(text: str, path: str = "rule") -> Node:
    """The text syntax as a validated rule tree."""
    from boomerang.segments.model import parse_node

    return parse_node(text_to_data(text, path), path)


# -- writing ---------------------------------------------------------------------------------


def to_text(node: Any) -> str:
    """A tree in the text syntax (round-trips through `parse_text`)."""
    from boomerang.segments.model import All, AnyOf, Leaf, Not, SegmentRef

    if isinstance(node, SegmentRef):
        return f"segment({json.dumps(node.name)})"
    if isinstance(node, Not):
        inner = to_text(node.item)
        return f"not ({inner})" if isinstance(node.item, All | AnyOf) else f"not {inner}"
    if isinstance(node, All | AnyOf):
        joiner = " and " if isinstance(node, All) else " or "
        parts = [
            f"({to_text(i)})" if isinstance(i, All | AnyOf) else to_text(i) for i in node.items
        ]
        return joiner.join(parts)
    assert isinstance(node, Leaf)
    return leaf_text(node)


def leaf_text(leaf: Leaf) -> str:
    args = []
    if leaf.event_type:
        args.append(f"type={json.dumps(leaf.event_type)}")
    if leaf.category:
        args.append(f"category={json.dumps(leaf.category)}")
    for key, values in leaf.where:
        shown = (
            json.dumps(values[0])
            if len(values) == 1
            else "[" + ", ".join(json.dumps(v) for v in values) + "]"
        )
        args.append(f"{key}={shown}")
    text = leaf.field + (f"({', '.join(args)})" if args else "")
    if leaf.window_us is not None:
        from boomerang.segments.model import format_window

        text += f"[{format_window(leaf.window_us)}]"
    return text + _test_text(leaf)


def _literal(leaf: Any, value: Any) -> str:
    from boomerang.segments.fields import Kind

    if leaf.spec.kind is Kind.DATE:
        from boomerang.domain.clock import from_micros

        moment = from_micros(int(value))
        return (
            moment.date().isoformat() if moment.time() == moment.min.time() else moment.isoformat()
        )
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return _number(value)


def _number(value: Any) -> str:
    """Plain positional notation (the grammar has no exponents): 0.00001, not 1e-05."""
    if isinstance(value, int):
        return str(value)
    text = format(Decimal(repr(value)) if isinstance(value, float) else Decimal(value), "f")
    return text


def _test_text(leaf: Any) -> str:
    op, value = leaf.op, leaf.value
    if op == "is_set":
        return " is set"
    if op == "is_not_set":
        return " is not set"
    if op == "between":
        return f" between {_literal(leaf, value[0])} and {_literal(leaf, value[1])}"
    if op in ("in", "not_in"):
        listed = "[" + ", ".join(_literal(leaf, v) for v in value) + "]"
        return f" {'in' if op == 'in' else 'not in'} {listed}"
    if op == "top_percent":
        whole = float(value).is_integer()
        return f" top {int(value) if whole else _number(value)}%"
    if op == "contains":
        return f" contains {_literal(leaf, value)}"
    if op == "=" and value is True:
        return ""
    return f" {op} {_literal(leaf, value)}"
