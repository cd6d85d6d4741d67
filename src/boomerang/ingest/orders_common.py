"""Shared shaping of order exports that carry one row per line item (Shopify, WooCommerce, UCI)."""

from __future__ import annotations

import polars as pl

from boomerang.ingest.batch import conform, digest_lines
from boomerang.ingest.csvfile import ROW

LINE_DIGEST_COLUMNS = [
    "line_no",
    "sku",
    "name",
    "category",
    "quantity",
    "unit_price_minor",
    "discount_minor",
]


def number_lines(frame: pl.DataFrame, key: str) -> pl.DataFrame:
    """line_no = position of the row within its order, in file order (1-based)."""
    return frame.sort(ROW).with_columns(
        (pl.col(ROW).rank("ordinal").over(key)).cast(pl.Int64).alias("line_no")
    )


def attach_digest(orders: pl.DataFrame, lines: pl.DataFrame) -> pl.DataFrame:
    digests = digest_lines(lines, "order_external_id", LINE_DIGEST_COLUMNS)
    return orders.join(
        digests.rename({"order_external_id": "external_id"}), on="external_id", how="left"
    ).with_columns(pl.col("lines_digest").fill_null(""))


def customers_from_orders(orders: pl.DataFrame, extra: list[str]) -> pl.DataFrame:
    """One customer per key: contact details from the latest order, created at the first."""
    keyed = orders.filter(pl.col("customer_key").is_not_null())
    latest_first = keyed.sort("placed_at", descending=True)
    agg = [pl.col(c).drop_nulls().first().alias(c) for c in extra]
    frame = latest_first.group_by("customer_key").agg(
        *agg, pl.col("placed_at").min().alias("created_at")
    )
    return conform(
        "customers",
        frame.rename({"customer_key": "external_id"}).with_columns(
            pl.lit("guest").alias("account_status")
        ),
    )


def products_from_lines(lines: pl.DataFrame, orders: pl.DataFrame) -> pl.DataFrame:
    """Products seen in order lines: name and price from the most recent order."""
    dated = lines.filter(pl.col("sku").is_not_null()).join(
        orders.select(pl.col("external_id").alias("order_external_id"), "placed_at", "currency"),
        on="order_external_id",
    )
    latest = (
        dated.sort("placed_at", descending=True)
        .group_by("sku")
        .agg(
            pl.col("name").drop_nulls().first(),
            pl.col("category").drop_nulls().first(),
            pl.col("unit_price_minor").first().alias("price_minor"),
            pl.col("currency").first(),
        )
    )
    return conform("products", latest)


def latest_consents(frame: pl.DataFrame) -> pl.DataFrame:
    """Keep one observation per customer and channel: the latest (history grows only on change)."""
    if not frame.height:
        return conform("consents", frame)
    return conform(
        "consents",
        frame.sort("occurred_at").group_by("customer_key", "channel").agg(pl.all().last()),
    )
