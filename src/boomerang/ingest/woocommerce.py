"""WooCommerce orders as written by the Customer/Order/Coupon Export extension (CSV).

Two layouts, told apart by the header and always mapped by column NAME:

- "Default" (one row per order): the order's items packed in ``line_items`` as
  ``id:1|name:Mug|product_id:12|sku:MUG-1|quantity:2|subtotal:20.00|...;id:2|...``;
- "Default - One Row per Item": order columns repeated on every row, one item per row in
  ``item_name``, ``item_sku``, ``item_quantity``, ``item_subtotal``, ``item_total``...

Timestamps are the site's local time without offset (``2025-03-14 09:26:53``): they are
read in ``--timezone``. See docs/importing.md, section woocommerce-orders.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from boomerang.errors import InputError
from boomerang.ingest import fields as f
from boomerang.ingest.batch import ParsedBatch, conform, reject_whole_groups, validate
from boomerang.ingest.csvfile import read_text_table
from boomerang.ingest.options import ReadOptions
from boomerang.ingest.orders_common import (
    ORDER_CONTACT_FIELDS,
    attach_digest,
    customers_from_orders,
    key_customers,
    line_frame,
    number_lines,
    products_from_lines,
    unit_price_from_total,
)

ORDER_COLUMNS = (
    "order_id",
    "order_number",
    "order_date",
    "status",
    "shipping_total",
    "shipping_tax_total",
    "fee_total",
    "tax_total",
    "cart_discount",
    "discount_total",
    "order_total",
    "refunded_total",
    "order_currency",
    "customer_id",
    "customer_email",
    "billing_email",
    "billing_first_name",
    "billing_last_name",
    "billing_phone",
    "billing_city",
    "billing_state",
    "billing_state_code",
    "billing_postcode",
    "billing_country",
    "coupon_items",
    "coupons",
)
ITEM_COLUMNS = (
    "item_product_id",
    "product_id",
    "item_name",
    "item_sku",
    "item_quantity",
    "item_subtotal",
    "item_total",
)
TIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
)
STATUS = {
    "completed": "paid",
    "processing": "paid",
    "refunded": "refunded",
    "cancelled": "cancelled",
    "canceled": "cancelled",
    "failed": "cancelled",
    "pending": "pending",
    "on-hold": "pending",
    "checkout-draft": "pending",
}
ORDER_KEY = "order_key"
ITEM_TEXT = "__item_text"  # reported as column "line_items"


def _layout(path: Path, columns: list[str]) -> str:
    missing = [c for c in ("order_date",) if c not in columns]
    if "order_id" not in columns and "order_number" not in columns:
        missing.insert(0, "order_id (or order_number)")
    if "item_quantity" in columns:
        layout = "item"
    elif "line_items" in columns:
        layout = "order"
    else:
        layout = ""
        missing.append("line_items (or item_quantity)")
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)} for a WooCommerce orders export",
            hint="export with the Customer/Order/Coupon Export 'Default' or 'Default - One Row "
            "per Item' format, keeping the column names",
        )
    return layout


def _field(item: pl.Expr, key: str) -> pl.Expr:
    """One ``key:value`` member of a packed item (members are separated by ``|``)."""
    value = item.str.extract(rf"(?:^|\|){key}:([^|]*)", 1).str.strip_chars()
    return pl.when(value == "").then(None).otherwise(value)


def _explode_items(frame: pl.DataFrame) -> pl.DataFrame:
    """One row per packed item of ``line_items``, numbered from 1 within its order."""
    lead = frame.select(pl.col("line_items").drop_nulls().first().str.extract(r"^([a-z_]+):", 1))
    key = lead.item() or "id"
    items = (
        frame.with_columns(
            pl.col("line_items")
            .str.replace_all(f";{key}:", f"\x1e{key}:", literal=True)
            .str.split("\x1e")
            .alias(ITEM_TEXT)
        )
        .explode(ITEM_TEXT)
        .with_columns(pl.col(ITEM_TEXT).str.strip_chars())
        .with_columns(pl.when(pl.col(ITEM_TEXT) == "").then(None).otherwise(pl.col(ITEM_TEXT)))
    )
    item = pl.col(ITEM_TEXT)
    return items.with_columns(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over(ORDER_KEY).alias("line_no"),
        _field(item, "name").alias("item_name"),
        _field(item, "sku").alias("item_sku"),
        _field(item, "product_id").alias("item_product_id"),
        _field(item, "quantity").alias("item_quantity"),
        _field(item, "subtotal").alias("item_subtotal"),
        _field(item, "total").alias("item_total"),
    )


def _status(raw: pl.Expr) -> f.Parsed:
    low = raw.str.to_lowercase().str.strip_prefix("wc-")
    value = low.replace_strict(STATUS, default=None, return_dtype=pl.String)
    return f.Parsed(
        value,
        raw.is_not_null() & value.is_null(),
        "unknown WooCommerce status (known: " + ", ".join(STATUS) + ")",
    )


def _coupons() -> pl.Expr:
    """Coupon codes joined by commas, from ``coupon_items`` (code:X|amount:Y;...) or ``coupons``."""
    packed = pl.col("coupon_items").str.extract_all(r"(?:^|[;|])code:([^|;]*)")
    codes = packed.list.eval(pl.element().str.replace(r"^[;|]?code:", "").str.strip_chars())
    joined = pl.when(codes.list.len() > 0).then(codes.list.join(","))
    return pl.coalesce(joined, pl.col("coupon_items"), pl.col("coupons")).str.slice(0, 200)


def read_orders(path: Path, options: ReadOptions) -> ParsedBatch:
    """Orders, lines, customers and products from either export layout."""
    raw = read_text_table(path)
    present = set(raw.columns)
    layout = _layout(path, raw.columns)
    raw = raw.with_columns(
        pl.lit(None, pl.String).alias(c)
        for c in (*ORDER_COLUMNS, *ITEM_COLUMNS, "line_items")
        if c not in raw.columns
    )
    col = pl.col
    key_column = "order_id" if "order_id" in present else "order_number"
    frame = raw.with_columns(col(key_column).alias(ORDER_KEY))
    frame = frame.with_columns(
        f.lookup(frame, col("billing_country"), f.country_code).alias("country"),
        col("order_currency").fill_null(options.currency.upper()).alias("__currency"),
    )
    if layout == "order":
        frame = _explode_items(frame)
        item_src = ITEM_TEXT
    else:
        frame = number_lines(frame, ORDER_KEY)
        item_src = ""
    product_id = pl.coalesce(col("item_product_id"), col("product_id"))
    frame = frame.with_columns(
        (col("line_no") == 1).alias("__first"),
        pl.coalesce(col("item_sku"), pl.lit("wc:") + product_id).alias("__sku"),
    )
    exp = f.exponent_of(col("__currency").str.to_uppercase())
    fmt = f.choose_format(frame, col("order_date"), TIME_FORMATS)
    first = col("__first")

    def item(name: str) -> str:
        return item_src or name

    checks: dict[str, tuple[str, f.Parsed]] = {
        ORDER_KEY: (
            key_column,
            f.required(col(ORDER_KEY), f.text(col(ORDER_KEY), 100), "order id"),
        ),
        "placed_at": (
            "order_date",
            f.required(
                col("order_date"),
                f.timestamp(col("order_date"), fmt, options.timezone),
                "order date",
            ),
        ),
        "currency": ("order_currency", f.currency(col("__currency"))),
        "status": ("status", _status(col("status"))),
        "__customer_email": ("customer_email", f.email(col("customer_email"))),
        "__billing_email": ("billing_email", f.email(col("billing_email"))),
        "customer_id": ("customer_id", f.text(col("customer_id"), 100)),
        "phone": ("billing_phone", f.phone(frame, col("billing_phone"), col("country"))),
        "first_name": ("billing_first_name", f.text(col("billing_first_name"), 200)),
        "last_name": ("billing_last_name", f.text(col("billing_last_name"), 200)),
        "city": ("billing_city", f.text(col("billing_city"), 200)),
        "zip": ("billing_postcode", f.text(col("billing_postcode"), 32)),
        "shipping_minor": ("shipping_total", f.money(col("shipping_total"), exp)),
        "shipping_tax_minor": ("shipping_tax_total", f.money(col("shipping_tax_total"), exp)),
        "fee_minor": ("fee_total", f.money(col("fee_total"), exp)),
        "tax_minor": ("tax_total", f.money(col("tax_total"), exp)),
        "cart_discount_minor": ("cart_discount", f.money(col("cart_discount"), exp)),
        "discount_minor": ("discount_total", f.money(col("discount_total"), exp)),
        "total_minor": ("order_total", f.money(col("order_total"), exp)),
        "refunded_minor": ("refunded_total", f.money(col("refunded_total"), exp)),
        "quantity": (
            item("item_quantity"),
            f.required(
                col("item_quantity"), f.integer(col("item_quantity"), 1, f.INT32_MAX), "quantity"
            ),
        ),
        "item_subtotal_minor": (item("item_subtotal"), f.money(col("item_subtotal"), exp)),
        "item_total_minor": (
            item("item_total"),
            f.required(col("item_total"), f.money(col("item_total"), exp), "item total"),
        ),
        "sku": (item("item_sku"), f.text(col("__sku"), 200)),
        "name": (item("item_name"), f.text(col("item_name"), 500)),
    }
    if layout == "order":
        # an order whose line_items cell is empty has no lines: refuse it rather than guess
        checks["__items"] = (
            "line_items",
            f.Parsed(col(ITEM_TEXT), col(ITEM_TEXT).is_null(), "line_items is required"),
        )
    line_level = {"quantity", "item_subtotal_minor", "item_total_minor", "sku", "name", "__items"}
    when = {k: first for k in checks if k not in line_level and k != ORDER_KEY}
    if layout == "order":  # an empty line_items is reported once, not per missing field
        when.update({k: col(ITEM_TEXT).is_not_null() for k in line_level if k != "__items"})
    parsed, rejects = validate(frame, checks, when=when)
    rejects = rejects.with_columns(
        pl.col("column").replace(ITEM_TEXT, "line_items"),
        pl.when(pl.col("column") == ITEM_TEXT)
        .then(pl.lit("an item of line_items: ") + pl.col("reason"))
        .otherwise(pl.col("reason"))
        .alias("reason"),
    )
    parsed, rejects = reject_whole_groups(parsed, rejects, ORDER_KEY, key_column, "order")
    if layout == "order":
        # one cell held every item: report the order's row once per column and reason
        rejects = rejects.unique(maintain_order=True)

    lines = parsed.with_columns(
        unit_price_from_total(
            pl.coalesce(col("item_subtotal_minor"), col("item_total_minor")), col("quantity")
        ).alias("unit_price_minor"),
    ).with_columns(
        (col("quantity") * col("unit_price_minor") - col("item_total_minor")).alias(
            "discount_minor"
        ),
        col(ORDER_KEY).alias("order_external_id"),
        col("item_name").alias("name"),
        pl.lit(None, pl.String).alias("category"),
    )
    subtotals = lines.group_by(ORDER_KEY).agg(col("item_total_minor").sum().alias("subtotal_minor"))
    heads = parsed.filter(first).join(subtotals, on=ORDER_KEY, how="left")
    customer_id = pl.when(col("customer_id") != "0").then(col("customer_id"))
    status = col("status").fill_null("paid")
    orders = (
        key_customers(
            heads.with_columns(
                pl.coalesce(col("__customer_email"), col("__billing_email")).alias("email"),
                col(ORDER_KEY).alias("external_id"),
                customer_id.alias("source_id"),
            )
        )
        .with_columns(
            col("discount_minor").fill_null(col("cart_discount_minor")).fill_null(0),
            col("shipping_minor").fill_null(0),
            (col("tax_minor").fill_null(0) + col("shipping_tax_minor").fill_null(0)).alias(
                "tax_minor"
            ),
            col("total_minor").fill_null(
                col("subtotal_minor")
                + col("shipping_minor").fill_null(0)
                + col("shipping_tax_minor").fill_null(0)
                + col("tax_minor").fill_null(0)
                + col("fee_minor").fill_null(0)
            ),
            _coupons().alias("discount_code"),
            pl.lit("online").alias("channel"),
            pl.lit("woocommerce").alias("source"),
            col("billing_state_code")
            .fill_null(col("billing_state"))
            .str.slice(0, 200)
            .alias("region"),
        )
        .with_columns(
            pl.when(status == "refunded")
            .then(col("refunded_minor").fill_null(col("total_minor")))
            .otherwise(col("refunded_minor").fill_null(0))
            .alias("refunded_minor"),
        )
        .with_columns(
            pl.when(
                (status == "paid")
                & (col("refunded_minor") > 0)
                & (col("refunded_minor") < col("total_minor"))
            )
            .then(pl.lit("partially_refunded"))
            .when(
                (status == "paid")
                & (col("refunded_minor") >= col("total_minor"))
                & (col("refunded_minor") > 0)
            )
            .then(pl.lit("refunded"))
            .otherwise(status)
            .alias("status"),
        )
    )
    lines = line_frame(lines)
    orders = attach_digest(orders, lines)
    customers = customers_from_orders(orders, ORDER_CONTACT_FIELDS).with_columns(
        pl.when(col("source_id").is_not_null())
        .then(pl.lit("registered"))
        .otherwise(pl.lit("guest"))
        .alias("account_status")
    )
    return ParsedBatch(
        kind="woocommerce-orders",
        path=path,
        rows_read=raw.height,
        frames={
            "customers": customers.sort("external_id"),
            "products": products_from_lines(lines, orders).sort("sku"),
            "orders": conform("orders", orders).sort("external_id"),
            "lines": conform("lines", lines).sort("order_external_id", "line_no"),
        },
        rejects=rejects,
        guest_orders=orders.filter(col("customer_key").is_null()).height,
    )
