"""The UCI "Online Retail" and "Online Retail II" data sets (a UK gift wholesaler), as CSV.

One row per invoice line; an invoice is an order. Invoices whose number starts with "C"
are returns: each becomes its own order with negative quantities and totals and status
``refunded``, so summing order totals gives net revenue. Rows without a customer id are
guest orders. Postage, fees and manual adjustments (StockCode POST, M, BANK CHARGES...)
stay as lines but are not products. See docs/importing.md, section online-retail.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from boomerang.domain.money import currency_exponent
from boomerang.errors import InputError
from boomerang.ingest import fields as f
from boomerang.ingest.batch import ParsedBatch, conform, reject_whole_groups, validate
from boomerang.ingest.csvfile import read_text_table
from boomerang.ingest.options import ReadOptions
from boomerang.ingest.orders_common import (
    attach_digest,
    customers_from_orders,
    number_lines,
    products_from_lines,
)

DEFAULT_CURRENCY = "GBP"  # the data set's currency; an explicit --currency overrides it
LAYOUTS = {
    "Online Retail": {"invoice": "InvoiceNo", "price": "UnitPrice", "customer": "CustomerID"},
    "Online Retail II": {"invoice": "Invoice", "price": "Price", "customer": "Customer ID"},
}
COMMON = ("StockCode", "Description", "Quantity", "InvoiceDate", "Country")
TIME_FORMATS = (
    "%m/%d/%Y %H:%M",  # the UCI file saved as CSV by a spreadsheet: 12/1/2010 8:26
    "%Y-%m-%d %H:%M:%S",  # pandas/Kaggle re-exports: 2010-12-01 08:26:00
    "%Y-%m-%d %H:%M",
    "%d/%m/%Y %H:%M",
)
# Stock codes that are charges, fees or adjustments, not goods (upper-cased for matching).
NON_PRODUCT_CODES = frozenset(
    {
        "POST",
        "DOT",
        "C2",
        "M",
        "D",
        "S",
        "B",
        "CRUK",
        "PADS",
        "BANK CHARGES",
        "AMAZONFEE",
        "ADJUST",
        "ADJUST2",
        "TEST001",
        "TEST002",
    }
)


def _layout(path: Path, columns: list[str]) -> dict[str, str]:
    if path.suffix.lower() in (".xlsx", ".xls"):
        raise InputError(
            f"{path}: spreadsheet files are not read directly",
            hint="open it and save the sheet as 'CSV UTF-8', then import the .csv",
        )
    for name, layout in LAYOUTS.items():
        if layout["invoice"] in columns:
            missing = [c for c in (*layout.values(), *COMMON) if c not in columns]
            if missing:
                raise InputError(
                    f"{path}: missing column(s) {', '.join(missing)} for the {name} layout",
                    hint="keep the data set's original column names",
                )
            return layout
    raise InputError(
        f"{path}: not an Online Retail file (no InvoiceNo or Invoice column)",
        hint="expected InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, "
        "CustomerID, Country (or the Online Retail II names)",
    )


def currency_for(options: ReadOptions) -> str:
    """GBP (the data set's currency) unless ``--currency`` names another."""
    return options.currency.upper() if options.currency_given else DEFAULT_CURRENCY


def read_orders(path: Path, options: ReadOptions) -> ParsedBatch:
    """Invoices as orders (returns as negative ``refunded`` orders), lines, customers, products."""
    raw = read_text_table(path)
    layout = _layout(path, raw.columns)
    inv, price, cust = layout["invoice"], layout["price"], layout["customer"]
    col = pl.col
    currency = currency_for(options)
    frame = raw.with_columns(
        col(inv).alias("order_external_id"),
        # Spreadsheet round trips turn 17850 into 17850.0
        col(cust).str.replace(r"^(\d+)\.0+$", "${1}").alias("__customer"),
    )
    frame = frame.with_columns(
        f.lookup(frame, col("Country"), f.country_code).alias("country"),
    )
    fmt = f.choose_format(frame, col("InvoiceDate"), TIME_FORMATS)
    checks: dict[str, tuple[str, f.Parsed]] = {
        "order_external_id": (
            inv,
            f.required(col(inv), f.text(col(inv), 100), "invoice number"),
        ),
        "placed_at": (
            "InvoiceDate",
            f.required(
                col("InvoiceDate"),
                f.timestamp(col("InvoiceDate"), fmt, options.timezone),
                "invoice date",
            ),
        ),
        "quantity": (
            "Quantity",
            f.required(
                col("Quantity"), f.integer(col("Quantity"), -f.INT32_MAX, f.INT32_MAX), "quantity"
            ),
        ),
        "unit_price_minor": (
            price,
            f.required(col(price), f.money(col(price), currency_exponent(currency)), "price"),
        ),
        "customer_key": (cust, f.text(col("__customer"), 100)),
        "sku": ("StockCode", f.text(col("StockCode"), 200)),
        "name": ("Description", f.text(col("Description"), 500)),
    }
    parsed, rejects = validate(frame, checks)
    parsed, rejects = reject_whole_groups(parsed, rejects, "order_external_id", inv, "invoice")

    lines = number_lines(parsed, "order_external_id").with_columns(
        pl.lit(None, pl.String).alias("category"),
        pl.lit(0, pl.Int64).alias("discount_minor"),
        (col("quantity") * col("unit_price_minor")).alias("__amount"),
    )
    orders = (
        lines.group_by("order_external_id")
        .agg(
            col("placed_at").min(),
            col("customer_key").first(),
            col("country").first(),
            col("__amount").sum().alias("subtotal_minor"),
        )
        .rename({"order_external_id": "external_id"})
        .with_columns(
            col("customer_key").alias("source_id"),
            col("subtotal_minor").alias("total_minor"),
            pl.lit(currency).alias("currency"),
            *(
                pl.lit(0, pl.Int64).alias(c)
                for c in ("discount_minor", "shipping_minor", "tax_minor", "refunded_minor")
            ),
            pl.when(col("external_id").str.starts_with("C"))
            .then(pl.lit("refunded"))
            .otherwise(pl.lit("paid"))
            .alias("status"),
            pl.lit("online").alias("channel"),
            pl.lit("online-retail").alias("source"),
        )
        .sort("external_id")
    )
    lines = lines.select(
        "order_external_id",
        "line_no",
        "sku",
        "name",
        "category",
        "quantity",
        "unit_price_minor",
        "discount_minor",
    ).sort("order_external_id", "line_no")
    orders = attach_digest(orders, lines)
    customers = customers_from_orders(orders, ["source_id", "country"]).with_columns(
        pl.lit("registered").alias("account_status")
    )
    goods = lines.filter(
        col("sku").is_not_null()
        & ~col("sku").str.to_uppercase().is_in(list(NON_PRODUCT_CODES))
        & ~col("order_external_id").str.starts_with("C")
        & (col("unit_price_minor") > 0)
        & (col("quantity") > 0)
    )
    return ParsedBatch(
        kind="online-retail",
        path=path,
        rows_read=raw.height,
        frames={
            "customers": customers.sort("external_id"),
            "products": products_from_lines(goods, orders).sort("sku"),
            "orders": conform("orders", orders),
            "lines": conform("lines", lines),
        },
        rejects=rejects,
        guest_orders=orders.filter(col("customer_key").is_null()).height,
        notes=_country_notes(parsed),
    )


def _country_notes(parsed: pl.DataFrame) -> list[str]:
    """Country names with no ISO code ("Unspecified", "European Community") are left empty."""
    unknown = (
        parsed.filter(pl.col("Country").is_not_null() & pl.col("country").is_null())
        .group_by("Country")
        .agg(pl.len().alias("rows"))
        .sort("Country")
    )
    if not unknown.height:
        return []
    listed = ", ".join(f"{c} ({n})" for c, n in unknown.iter_rows())
    return [f"{unknown['rows'].sum()} row(s) name a country with no ISO code, left empty: {listed}"]
