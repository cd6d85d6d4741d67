"""Which reader handles which `boomerang import KIND`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from boomerang.ingest import (
    events,
    generic,
    online_retail,
    shopify,
    shopify_customers,
    woocommerce,
)
from boomerang.ingest.batch import ParsedBatch
from boomerang.ingest.kinds import IMPORT_KINDS, check_kind
from boomerang.ingest.options import ReadOptions

Reader = Callable[[Path, ReadOptions], ParsedBatch]

READERS: dict[str, Reader] = {
    "shopify-orders": shopify.read_orders,
    "shopify-customers": shopify_customers.read_customers,
    "woocommerce-orders": woocommerce.read_orders,
    "online-retail": online_retail.read_orders,
    "csv": generic.read_orders,
    "events": events.read_events,
}
assert set(READERS) == set(IMPORT_KINDS), "ingest/kinds.py must name every reader"


def reader_for(kind: str) -> Reader:
    check_kind(kind)
    return READERS[kind]
