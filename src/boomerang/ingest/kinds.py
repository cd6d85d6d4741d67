"""The names of the import layouts, without their readers (so the CLI starts fast)."""

from __future__ import annotations

IMPORT_KINDS = (
    "csv",
    "events",
    "online-retail",
    "shopify-customers",
    "shopify-orders",
    "woocommerce-orders",
)
