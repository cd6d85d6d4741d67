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


# Contact fields an order export carries for its customer (customers_from_orders' ``extra``).
ORDER_CONTACT_FIELDS = [
    "source_id", "email", "phone", "first_name", "last_name", "city", "region", "country", "zip",
]  # fmt: skip


def line_frame(lines: pl.DataFrame) -> pl.DataFrame:
    """The columns of the normalised lines frame, in order."""
    return lines.select("order_external_id", *LINE_DIGEST_COLUMNS)


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
    # external_id breaks ties so equal timestamps pick the same order on every run
    latest_first = keyed.sort(["placed_at", "external_id"], descending=True, maintain_order=True)
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
        dated.sort(
            ["placed_at", "order_external_id", "line_no"], descending=True, maintain_order=True
        )
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
        # on equal times "withdrawn" sorts last and wins: the cautious reading
        frame.sort(["occurred_at", "status"], maintain_order=True)
        .group_by("customer_key", "channel")
        .agg(pl.all().last()),
    )


def unit_price_from_total(total: pl.Expr, quantity: pl.Expr) -> pl.Expr:
    """Unit price (minor units) of a line known by its total: total / quantity rounded up.

    Why up: the line keeps ``quantity x unit - discount = total`` exactly, and for a positive
    quantity the implied discount is never negative. A zero quantity keeps the total as price.
    """
    return pl.when(quantity != 0).then(-((-total) // quantity)).otherwise(total)


def key_customers(orders: pl.DataFrame) -> pl.DataFrame:
    """Add ``customer_key``: the order's email, else the latest email this file shows for the
    same platform customer id (``source_id``), else that id; null for a guest without either.

    Why: an account's order placed without an email must not split the customer in two.
    """
    known = (
        orders.filter(pl.col("email").is_not_null() & pl.col("source_id").is_not_null())
        .sort(["placed_at", "external_id"], maintain_order=True)
        .group_by("source_id")
        .agg(pl.col("email").last().alias("__known_email"))
    )
    return (
        orders.join(known, on="source_id", how="left", maintain_order="left")
        .with_columns(
            pl.coalesce(pl.col("email"), pl.col("__known_email"), pl.col("source_id")).alias(
                "customer_key"
            )
        )
        .drop("__known_email")
    )
