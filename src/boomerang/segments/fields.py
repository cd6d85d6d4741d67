"""The catalogue of what a segment rule can test: every field, its type, window and options.

Why one catalogue: the validator, the engine compiler, the single-customer evaluator and
`segments why` all read it, so a field means the same thing everywhere. Definitions of each
field (and of nulls) are in docs/segments.md.

Extension point: a capability that adds customer facts (the loyalty program adds
``loyalty.tier`` and ``loyalty.points``) registers a `FieldSource` with `register_source`;
its fields then validate and compile like the built-in ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    """Value types; the operators a field accepts follow from its kind."""

    INT = "int"  # counts: 0 when nothing happened
    NUMBER = "number"  # floats (P(alive), ratios)
    MONEY = "money"  # written in major units of the store currency, compared in minor units
    DAYS = "days"  # whole days (floor), null when the thing never happened
    DATE = "date"  # written as YYYY-MM-DD (UTC midnight) or an ISO timestamp
    TEXT = "text"
    BOOL = "bool"


NUMERIC = frozenset({Kind.INT, Kind.NUMBER, Kind.MONEY, Kind.DAYS})
COMPARE_OPS = ("=", "!=", "<", "<=", ">", ">=")
OPS_BY_KIND: dict[Kind, tuple[str, ...]] = {
    Kind.INT: (*COMPARE_OPS, "between", "in", "not_in", "top_percent", "is_set", "is_not_set"),
    Kind.NUMBER: (*COMPARE_OPS, "between", "top_percent", "is_set", "is_not_set"),
    Kind.MONEY: (*COMPARE_OPS, "between", "top_percent", "is_set", "is_not_set"),
    Kind.DAYS: (*COMPARE_OPS, "between", "in", "not_in", "is_set", "is_not_set"),
    Kind.DATE: (*COMPARE_OPS, "between", "is_set", "is_not_set"),
    Kind.TEXT: ("=", "!=", "in", "not_in", "is_set", "is_not_set"),
    Kind.BOOL: ("=", "!=", "is_set", "is_not_set"),
}
#: Scores are already ranks: no top_percent on them.
SCORE_OPS = (*COMPARE_OPS, "between", "in", "not_in", "is_set", "is_not_set")
#: Operators that take no value.
UNARY_OPS = frozenset({"is_set", "is_not_set"})


@dataclass(frozen=True)
class FieldSpec:
    """One testable fact about a customer.

    ``window``: the field may be restricted to the last N hours/days/weeks before the
    evaluation time. ``params``: the options it accepts (``type`` of event, ``where``
    property/line filters, ``category``); ``required`` those it needs.
    """

    name: str
    kind: Kind
    doc: str
    window: bool = False
    params: frozenset[str] = frozenset()
    required: frozenset[str] = frozenset()
    choices: tuple[str, ...] = ()  # allowed text values, when the vocabulary is closed
    where_keys: tuple[str, ...] = ()  # allowed ``where`` keys; empty = any key
    only_ops: tuple[str, ...] = ()  # narrower operator list than the kind's, when set

    @property
    def ops(self) -> tuple[str, ...]:
        return self.only_ops or OPS_BY_KIND[self.kind]


RFM_SEGMENTS = (
    "Champions",
    "Loyal",
    "Potential Loyalists",
    "New",
    "Promising",
    "Need Attention",
    "About to Sleep",
    "At Risk",
    "Can't Lose Them",
    "Hibernating",
    "Lost",
)
LINE_KEYS = ("sku", "category")
P = frozenset


def _specs(*specs: FieldSpec) -> dict[str, FieldSpec]:
    return {s.name: s for s in specs}


BUILTIN_FIELDS: dict[str, FieldSpec] = _specs(
    # -- customer attributes and location
    FieldSpec("customer.country", Kind.TEXT, "ISO 3166 alpha-2 country code (upper case)"),
    FieldSpec("customer.region", Kind.TEXT, "region / province / state as imported"),
    FieldSpec("customer.city", Kind.TEXT, "city as imported"),
    FieldSpec("customer.zip", Kind.TEXT, "postal code as imported"),
    FieldSpec("customer.timezone", Kind.TEXT, "IANA timezone, when known"),
    FieldSpec(
        "customer.account_status",
        Kind.TEXT,
        "guest (ordered without an account), registered or disabled",
        choices=("guest", "registered", "disabled"),
    ),
    FieldSpec(
        "customer.tags",
        Kind.TEXT,
        "imported tags; `contains` matches one whole tag (case-insensitive)",
        only_ops=("contains", "is_set", "is_not_set"),
    ),
    FieldSpec("customer.has_email", Kind.BOOL, "an email address is known"),
    FieldSpec("customer.has_phone", Kind.BOOL, "a phone number is known"),
    FieldSpec("customer.created_at", Kind.DATE, "when the customer record was created"),
    FieldSpec("customer.days_since_created", Kind.DAYS, "whole days since created_at"),
    # -- consent per channel: the latest record before the evaluation time is `granted`
    FieldSpec("consent.email", Kind.BOOL, "email marketing consent is granted"),
    FieldSpec("consent.sms", Kind.BOOL, "SMS marketing consent is granted"),
    FieldSpec("consent.push", Kind.BOOL, "push marketing consent is granted"),
    FieldSpec("consent.any", Kind.BOOL, "reachable: consent granted on at least one channel"),
    # -- orders (not cancelled; revenue net of refunds), optionally within a window
    FieldSpec(
        "orders.count",
        Kind.INT,
        "orders placed; with `where`, orders holding a matching line",
        window=True,
        params=P({"where"}),
        where_keys=LINE_KEYS,
    ),
    FieldSpec(
        "orders.revenue",
        Kind.MONEY,
        "order totals net of refunds; with `where`, matching lines' value (price x qty - line discount)",
        window=True,
        params=P({"where"}),
        where_keys=LINE_KEYS,
    ),
    FieldSpec("orders.aov", Kind.MONEY, "revenue / orders (null without orders)", window=True),
    FieldSpec(
        "orders.first_at",
        Kind.DATE,
        "first order time",
        window=True,
        params=P({"where"}),
        where_keys=LINE_KEYS,
    ),
    FieldSpec(
        "orders.last_at",
        Kind.DATE,
        "latest order time",
        window=True,
        params=P({"where"}),
        where_keys=LINE_KEYS,
    ),
    FieldSpec("orders.days_since_first", Kind.DAYS, "whole days since the first order"),
    FieldSpec(
        "orders.days_since_last",
        Kind.DAYS,
        "whole days since the latest order",
        params=P({"where"}),
        where_keys=LINE_KEYS,
    ),
    FieldSpec(
        "orders.avg_gap_days",
        Kind.NUMBER,
        "the customer's own rhythm: (last - first) / (orders - 1) in days; null under 2 orders",
    ),
    FieldSpec(
        "orders.overdue_ratio",
        Kind.NUMBER,
        "days since the latest order / avg_gap_days: above 1 the customer is late",
    ),
    # -- events, optionally of one type, with property filters, within a window
    FieldSpec(
        "events.count",
        Kind.INT,
        "events (of `type`, matching `where` on their properties)",
        window=True,
        params=P({"type", "where"}),
    ),
    FieldSpec(
        "events.days_since_last",
        Kind.DAYS,
        "whole days since the latest such event (null: never)",
        params=P({"type", "where"}),
    ),
    # -- predictions of the store's latest CLV fit (`boomerang clv fit`)
    FieldSpec("predictions.p_alive", Kind.NUMBER, "probability the customer is still active"),
    FieldSpec("predictions.clv", Kind.MONEY, "predicted lifetime value over the fit's horizon"),
    FieldSpec(
        "predictions.expected_purchases", Kind.NUMBER, "expected orders over the fit's horizon"
    ),
    FieldSpec(
        "predictions.days_to_next_order",
        Kind.DAYS,
        "whole days until the expected next order (negative: overdue)",
    ),
    FieldSpec(
        "predictions.risk_band",
        Kind.TEXT,
        "churn risk band of the fit",
        choices=("low", "medium", "high"),
    ),
    # -- RFM (docs/segments.md#rfm): scores 1-5 and the named segment
    FieldSpec("rfm.segment", Kind.TEXT, "named RFM segment", choices=RFM_SEGMENTS),
    FieldSpec("rfm.r", Kind.INT, "recency score 1-5 (5 = most recent)", only_ops=SCORE_OPS),
    FieldSpec("rfm.f", Kind.INT, "frequency score 1-5", only_ops=SCORE_OPS),
    FieldSpec("rfm.m", Kind.INT, "monetary score 1-5", only_ops=SCORE_OPS),
    # -- category affinity from views and purchased lines
    FieldSpec(
        "affinity.top_category",
        Kind.TEXT,
        "category with the most views + purchased lines (ties: first by code point order)",
        window=True,
    ),
    FieldSpec(
        "affinity.share",
        Kind.NUMBER,
        "share of the customer's views + purchased lines in `category`",
        window=True,
        params=P({"category"}),
        required=P({"category"}),
    ),
)


@dataclass
class FieldSource:
    """Fields a capability contributes (the extension point, e.g. loyalty).

    ``bulk(ctx, keys)`` returns an Ibis table of ``customer_id`` plus one column per key
    (named by ``FeatureKey.column``); ``single(ctx, customer_id, keys)`` returns the same
    values for one customer as a dict. Both see the evaluation time in ``ctx``.
    """

    prefix: str
    fields: Mapping[str, FieldSpec]
    bulk: Callable[..., Any]
    single: Callable[..., dict[Any, Any]]
    meta: dict[str, Any] = field(default_factory=dict)


_SOURCES: dict[str, FieldSource] = {}


def register_source(source: FieldSource) -> None:
    """Add (or replace) an extension's fields; names must start with ``prefix.``."""
    for name in source.fields:
        if not name.startswith(source.prefix + "."):
            raise ValueError(f"field {name!r} does not start with {source.prefix!r}.")
    _SOURCES[source.prefix] = source


def extension_sources() -> dict[str, FieldSource]:
    return dict(_SOURCES)


def lookup(name: str) -> FieldSpec | None:
    spec = BUILTIN_FIELDS.get(name)
    if spec is not None:
        return spec
    prefix = name.split(".", 1)[0]
    source = _SOURCES.get(prefix)
    return source.fields.get(name) if source else None


def all_fields() -> dict[str, FieldSpec]:
    merged = dict(BUILTIN_FIELDS)
    for source in _SOURCES.values():
        merged.update(source.fields)
    return merged


#: Prefixes reserved for capabilities that are not installed yet, with what to do.
PENDING_PREFIXES = {
    "loyalty": "loyalty fields need the loyalty program; it registers them when set up",
}
