"""Shopify exports: orders (one row per line item) and customers (current and older layout).

Order-level fields stand only on an order's first row; rows are grouped by ``Name``.
Timestamps look like ``2025-10-07 09:50:26 +0200``. See docs/importing.md.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from boomerang.ingest import fields as f
from boomerang.ingest.batch import ParsedBatch, conform, reject_whole_groups, validate
from boomerang.ingest.csvfile import ROW, read_text_table
from boomerang.ingest.options import ReadOptions
from boomerang.ingest.orders_common import (
    attach_digest,
    customers_from_orders,
    latest_consents,
    number_lines,
    products_from_lines,
)

ORDER_REQUIRED = ("Name", "Created at", "Lineitem quantity", "Lineitem price")
ORDER_OPTIONAL = (
    "Email",
    "Financial Status",
    "Accepts Marketing",
    "Currency",
    "Subtotal",
    "Shipping",
    "Taxes",
    "Total",
    "Discount Code",
    "Discount Amount",
    "Lineitem name",
    "Lineitem sku",
    "Lineitem discount",
    "Billing Name",
    "Billing City",
    "Billing Province",
    "Billing Country",
    "Billing Zip",
    "Billing Phone",
    "Phone",
    "Cancelled at",
    "Refunded Amount",
    "Source",
    "Id",
)
TIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S %z",
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
)


def _status(financial: pl.Expr, cancelled: pl.Expr) -> pl.Expr:
    fin = financial.str.to_lowercase()
    return (
        pl.when(cancelled.is_not_null() | (fin == "voided"))
        .then(pl.lit("cancelled"))
        .when(fin == "refunded")
        .then(pl.lit("refunded"))
        .when(fin == "partially_refunded")
        .then(pl.lit("partially_refunded"))
        .when(fin == "paid")
        .then(pl.lit("paid"))
        .otherwise(pl.lit("pending"))
    )


def read_orders(path: Path, options: ReadOptions) -> ParsedBatch:
    raw = read_text_table(path, required=ORDER_REQUIRED, optional=ORDER_OPTIONAL)
    src = {c: pl.col(c) for c in (*ORDER_REQUIRED, *ORDER_OPTIONAL)}
    frame = raw.with_columns(
        src["Name"].alias("order_external_id"),
        # line rows carry no currency: they take their order's (first row's)
        src["Currency"]
        .str.to_uppercase()
        .forward_fill()
        .over("Name")
        .fill_null(options.currency.upper())
        .alias("__currency"),
        src["Billing Country"].alias("__country_raw"),
    )
    frame = frame.with_columns(
        f.lookup(frame, pl.col("__country_raw"), f.country_code).alias("country"),
        (pl.col(ROW) == pl.col(ROW).min().over("order_external_id")).alias("__first"),
    )
    exp = f.exponent_of(pl.col("__currency"))
    fmt = f.choose_format(frame, src["Created at"], TIME_FORMATS)
    phone_src = pl.coalesce(src["Phone"], src["Billing Phone"])
    first = pl.col("__first")
    checks = {
        "order_external_id": (
            "Name",
            f.required(src["Name"], f.text(src["Name"], 100), "order name"),
        ),
        "placed_at": (
            "Created at",
            f.required(
                src["Created at"],
                f.timestamp(src["Created at"], fmt, options.timezone),
                "order date",
            ),
        ),
        "cancelled_at": ("Cancelled at", f.timestamp(src["Cancelled at"], fmt, options.timezone)),
        "email": ("Email", f.email(src["Email"])),
        "currency": ("Currency", f.currency(src["Currency"])),
        "phone": ("Phone", f.phone(frame, phone_src, pl.col("country"))),
        "subtotal_minor": ("Subtotal", f.money(src["Subtotal"], exp)),
        "shipping_minor": ("Shipping", f.money(src["Shipping"], exp)),
        "tax_minor": ("Taxes", f.money(src["Taxes"], exp)),
        "total_minor": ("Total", f.money(src["Total"], exp)),
        "discount_minor": ("Discount Amount", f.money(src["Discount Amount"], exp)),
        "refunded_minor": ("Refunded Amount", f.money(src["Refunded Amount"], exp)),
        "quantity": (
            "Lineitem quantity",
            f.required(src["Lineitem quantity"], f.integer(src["Lineitem quantity"]), "quantity"),
        ),
        "unit_price_minor": (
            "Lineitem price",
            f.required(src["Lineitem price"], f.money(src["Lineitem price"], exp), "line price"),
        ),
        "line_discount_minor": ("Lineitem discount", f.money(src["Lineitem discount"], exp)),
    }
    order_level = (
        "placed_at",
        "cancelled_at",
        "email",
        "currency",
        "phone",
        "subtotal_minor",
        "shipping_minor",
        "tax_minor",
        "total_minor",
        "discount_minor",
        "refunded_minor",
    )
    parsed, rejects = validate(frame, checks, when={k: first for k in order_level})
    parsed, rejects = reject_whole_groups(parsed, rejects, "order_external_id", "Name", "order")

    heads = parsed.filter(pl.col("__first"))
    names = src["Billing Name"].str.split_exact(" ", 1)
    orders = heads.with_columns(
        pl.col("email").alias("customer_key"),
        pl.col("currency").fill_null(options.currency.upper()),
        _status(src["Financial Status"], pl.col("cancelled_at")).alias("status"),
        src["Discount Code"].alias("discount_code"),
        pl.when(src["Source"].str.to_lowercase() == "pos")
        .then(pl.lit("offline"))
        .otherwise(pl.lit("online"))
        .alias("channel"),
        pl.lit("shopify").alias("source"),
        *(
            pl.col(c).fill_null(0)
            for c in (
                "subtotal_minor",
                "shipping_minor",
                "tax_minor",
                "discount_minor",
                "refunded_minor",
            )
        ),
        pl.col("total_minor").fill_null(pl.col("subtotal_minor").fill_null(0)),
        names.struct.field("field_0").alias("first_name"),
        names.struct.field("field_1").alias("last_name"),
        src["Billing City"].alias("city"),
        src["Billing Province"].alias("region"),
        src["Billing Zip"].alias("zip"),
        src["Accepts Marketing"].str.to_lowercase().alias("__accepts"),
    ).rename({"order_external_id": "external_id"})
    lines = number_lines(parsed, "order_external_id").select(
        "order_external_id",
        "line_no",
        src["Lineitem sku"].alias("sku"),
        src["Lineitem name"].alias("name"),
        pl.lit(None, pl.String).alias("category"),
        "quantity",
        "unit_price_minor",
        pl.col("line_discount_minor").fill_null(0).alias("discount_minor"),
    )
    orders = attach_digest(orders, lines)
    consents = latest_consents(
        orders.filter(
            pl.col("customer_key").is_not_null()
            & pl.col("__accepts").is_in(["yes", "no", "true", "false"])
        ).select(
            "customer_key",
            pl.lit("email").alias("channel"),
            pl.when(pl.col("__accepts").is_in(["yes", "true"]))
            .then(pl.lit("granted"))
            .otherwise(pl.lit("withdrawn"))
            .alias("status"),
            pl.lit("shopify checkout").alias("source"),
            pl.col("placed_at").alias("occurred_at"),
        )
    )
    customers = customers_from_orders(
        orders, ["email", "phone", "first_name", "last_name", "city", "region", "country", "zip"]
    )
    return ParsedBatch(
        kind="shopify-orders",
        path=path,
        rows_read=raw.height,
        frames={
            "customers": customers,
            "products": products_from_lines(lines, orders),
            "orders": conform("orders", orders),
            "lines": conform("lines", lines),
            "consents": consents,
        },
        rejects=rejects,
        guest_orders=orders.filter(pl.col("customer_key").is_null()).height,
    )
