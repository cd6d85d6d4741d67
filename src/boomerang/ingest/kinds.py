"""The names of the import layouts, without their readers (so the CLI starts fast)."""

from __future__ import annotations

from boomerang.errors import InputError

IMPORT_KINDS = (
    "csv",
    "events",
    "online-retail",
    "shopify-customers",
    "shopify-orders",
    "woocommerce-orders",
)


def check_kind(kind: str) -> None:
    """`InputError` naming the layouts when ``kind`` is none of them (the CLI checks this
    before importing the readers, so a typo fails at once)."""
    if kind not in IMPORT_KINDS:
        raise InputError(
            f"unknown import kind {kind!r}", hint=f"use one of: {', '.join(sorted(IMPORT_KINDS))}"
        )
