"""Write a simulated store as a shop would export it, so the demo goes through the importers.

Files (names fixed, see docs/simulator.md):

- ``orders_export.csv``: Shopify's orders export, one row per line item; order-level fields
  only on an order's first row; times like ``2025-10-07 09:50:26 +0200`` in the buyer's zone.
- ``customers_export.csv``: Shopify's current customers export (``'`` before ids and zips).
- ``events.jsonl``: one site or email event per line, in time order.
- ``truth.json`` and ``truth_customers.csv``: the true parameters and per-customer truths.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from boomerang.simulate.geo import CITIES, FIRST_NAMES, LAST_NAMES
from boomerang.simulate.store import SimulatedStore
from boomerang.simulate.util import amount_text

ORDERS_FILE = "orders_export.csv"
CUSTOMERS_FILE = "customers_export.csv"
EVENTS_FILE = "events.jsonl"
TRUTH_FILE = "truth.json"
TRUTH_CUSTOMERS_FILE = "truth_customers.csv"

SHOPIFY_TIME = "%Y-%m-%d %H:%M:%S %z"
ISO_TIME = "%Y-%m-%dT%H:%M:%S%:z"
VENDOR = "Boomerang Goods"

ORDER_COLUMNS = (
    "Name",
    "Email",
    "Financial Status",
    "Paid at",
    "Fulfillment Status",
    "Fulfilled at",
    "Accepts Marketing",
    "Currency",
    "Subtotal",
    "Shipping",
    "Taxes",
    "Total",
    "Discount Code",
    "Discount Amount",
    "Shipping Method",
    "Created at",
    "Lineitem quantity",
    "Lineitem name",
    "Lineitem price",
    "Lineitem compare at price",
    "Lineitem sku",
    "Lineitem requires shipping",
    "Lineitem taxable",
    "Lineitem fulfillment status",
    "Billing Name",
    "Billing Street",
    "Billing Address1",
    "Billing Address2",
    "Billing Company",
    "Billing City",
    "Billing Zip",
    "Billing Province",
    "Billing Country",
    "Billing Phone",
    "Shipping Name",
    "Shipping Street",
    "Shipping Address1",
    "Shipping Address2",
    "Shipping Company",
    "Shipping City",
    "Shipping Zip",
    "Shipping Province",
    "Shipping Country",
    "Shipping Phone",
    "Notes",
    "Note Attributes",
    "Cancelled at",
    "Payment Method",
    "Payment Reference",
    "Refunded Amount",
    "Vendor",
    "Outstanding Balance",
    "Employee",
    "Location",
    "Device ID",
    "Id",
    "Tags",
    "Risk Level",
    "Source",
    "Lineitem discount",
    "Tax 1 Name",
    "Tax 1 Value",
    "Phone",
    "Receipt Number",
    "Duties",
    "Billing Province Name",
    "Shipping Province Name",
    "Payment ID",
    "Payment Terms Name",
    "Next Payment Due At",
    "Payment References",
)
# Columns a Shopify export repeats on every row of an order (the rest stand on the first).
ORDER_REPEATED = ("Name", "Email", "Currency", "Created at")
LINE_COLUMNS = (
    "Lineitem quantity",
    "Lineitem name",
    "Lineitem price",
    "Lineitem compare at price",
    "Lineitem sku",
    "Lineitem requires shipping",
    "Lineitem taxable",
    "Lineitem fulfillment status",
    "Vendor",
    "Lineitem discount",
)

CUSTOMER_COLUMNS = (
    "Customer ID",
    "First Name",
    "Last Name",
    "Email",
    "Accepts Email Marketing",
    "Default Address Company",
    "Default Address Address1",
    "Default Address Address2",
    "Default Address City",
    "Default Address Province Code",
    "Default Address Country Code",
    "Default Address Zip",
    "Default Address Phone",
    "Phone",
    "Accepts SMS Marketing",
    "Total Spent",
    "Total Orders",
    "Note",
    "Tax Exempt",
    "Tags",
)

TAX_NAMES = {"US": "State Tax", "CA": "HST", "GB": "VAT", "DE": "MwSt", "FR": "TVA", "AU": "GST"}


def local_times(micros: pl.Series, city: NDArray[np.int64], fmt: str) -> pl.Series:
    """Epoch micros as local wall time of each row's city, with its UTC offset (DST-aware)."""
    zone_of_city = [c.timezone for c in CITIES]
    zones = sorted(set(zone_of_city))
    zone_idx = np.array([zones.index(z) for z in zone_of_city], dtype=np.int64)[city]
    frame = pl.DataFrame({"i": np.arange(len(micros), dtype=np.int64), "t": micros, "z": zone_idx})
    parts = [
        frame.filter(pl.col("z") == k).select(
            "i",
            pl.from_epoch("t", time_unit="us")
            .dt.replace_time_zone("UTC")
            .dt.convert_time_zone(zone)
            .dt.strftime(fmt)
            .alias("s"),
        )
        for k, zone in enumerate(zones)
    ]
    return pl.concat(parts).sort("i")["s"].alias(micros.name)


def _yes_no(flag: pl.Expr) -> pl.Expr:
    return pl.when(flag).then(pl.lit("yes")).otherwise(pl.lit("no"))


def _order_heads(sim: SimulatedStore) -> pl.DataFrame:
    """One row per order with its Shopify order-level fields, as text."""
    orders = sim.book.orders
    customers = sim.customers()
    owner = orders["owner"].to_numpy()
    guest = owner < 0
    safe = np.maximum(owner, 0)
    number = orders["number"].to_numpy()
    # Billing: the customer's own address; guests get a name and the order's city.
    bill_city = np.where(guest, orders["city"].to_numpy(), customers["city_idx"].to_numpy()[safe])
    first = pl.Series(FIRST_NAMES).gather(number % len(FIRST_NAMES))
    last = pl.Series(LAST_NAMES).gather((number // 7) % len(LAST_NAMES))
    person = customers.select(
        pl.col("shown_email", "first_name", "last_name", "phone", "address1").gather(safe)
    )
    cities = CITIES
    fields = pl.DataFrame(
        {
            "bill_city": pl.Series([c.name for c in cities]).gather(bill_city),
            "province": pl.Series([c.province for c in cities]).gather(bill_city),
            "country": pl.Series([c.country for c in cities]).gather(bill_city),
            "zip": pl.Series([c.zip for c in cities]).gather(bill_city),
            "tax_name": pl.Series([TAX_NAMES.get(c.country, "Tax") for c in cities]).gather(
                orders["city"].to_numpy()
            ),
            "guest": guest,
            "guest_first": first,
            "guest_last": last,
        }
    )
    times = {
        col: local_times(orders[col], bill_city, SHOPIFY_TIME)
        for col in ("placed_at", "paid_at", "fulfilled_at", "cancelled_at")
    }
    frame = pl.concat([orders, person, fields], how="horizontal").with_columns(
        **{f"{k}_text": v for k, v in times.items()}
    )
    name = pl.concat_str(
        pl.when(pl.col("guest")).then(pl.col("guest_first")).otherwise(pl.col("first_name")),
        pl.lit(" "),
        pl.when(pl.col("guest")).then(pl.col("guest_last")).otherwise(pl.col("last_name")),
    )
    zip_text = pl.concat_str(pl.lit("'"), pl.col("zip"))
    street = pl.when(pl.col("guest")).then(pl.lit("1 Market St")).otherwise(pl.col("address1"))
    province = pl.when(pl.col("province") != "").then(pl.col("province"))
    phone = pl.when(pl.col("guest")).then(None).otherwise(pl.col("phone"))
    return frame.select(
        "order_idx",
        "number",
        pl.col("name").alias("Name"),
        pl.when(pl.col("guest")).then(None).otherwise(pl.col("shown_email")).alias("Email"),
        pl.col("financial_status").alias("Financial Status"),
        pl.col("paid_at_text").alias("Paid at"),
        pl.when(pl.col("fulfilled_at").is_not_null())
        .then(pl.lit("fulfilled"))
        .otherwise(pl.lit("unfulfilled"))
        .alias("Fulfillment Status"),
        pl.col("fulfilled_at_text").alias("Fulfilled at"),
        _yes_no(pl.col("accepts_marketing")).alias("Accepts Marketing"),
        pl.lit(sim.params.currency).alias("Currency"),
        amount_text(pl.col("subtotal_minor")).alias("Subtotal"),
        amount_text(pl.col("shipping_minor")).alias("Shipping"),
        amount_text(pl.col("tax_minor")).alias("Taxes"),
        amount_text(pl.col("total_minor")).alias("Total"),
        pl.col("discount_code").alias("Discount Code"),
        amount_text(pl.col("discount_minor")).alias("Discount Amount"),
        pl.col("shipping_method").alias("Shipping Method"),
        pl.col("placed_at_text").alias("Created at"),
        name.alias("Billing Name"),
        street.alias("Billing Street"),
        street.alias("Billing Address1"),
        pl.col("bill_city").alias("Billing City"),
        zip_text.alias("Billing Zip"),
        province.alias("Billing Province"),
        pl.col("country").alias("Billing Country"),
        phone.alias("Billing Phone"),
        name.alias("Shipping Name"),
        street.alias("Shipping Street"),
        street.alias("Shipping Address1"),
        pl.col("bill_city").alias("Shipping City"),
        zip_text.alias("Shipping Zip"),
        province.alias("Shipping Province"),
        pl.col("country").alias("Shipping Country"),
        phone.alias("Shipping Phone"),
        pl.col("cancelled_at_text").alias("Cancelled at"),
        pl.when(pl.col("pos"))
        .then(pl.lit("Cash"))
        .otherwise(pl.lit("Shopify Payments"))
        .alias("Payment Method"),
        amount_text(pl.col("refunded_minor")).alias("Refunded Amount"),
        pl.when(pl.col("status") == "pending")
        .then(amount_text(pl.col("total_minor")))
        .otherwise(pl.lit("0.00"))
        .alias("Outstanding Balance"),
        pl.when(pl.col("pos")).then(pl.lit("Sam Rivera")).alias("Employee"),
        pl.when(pl.col("pos")).then(pl.lit("Flagship Store")).alias("Location"),
        pl.col("shopify_id").cast(pl.String).alias("Id"),
        pl.lit("Low").alias("Risk Level"),
        pl.when(pl.col("pos")).then(pl.lit("pos")).otherwise(pl.lit("web")).alias("Source"),
        pl.when(pl.col("tax_minor") > 0).then(pl.col("tax_name")).alias("Tax 1 Name"),
        pl.when(pl.col("tax_minor") > 0)
        .then(amount_text(pl.col("tax_minor")))
        .alias("Tax 1 Value"),
        phone.alias("Phone"),
        pl.col("pos"),
        pl.col("fulfilled_at").is_not_null().alias("fulfilled"),
    )


def orders_export(sim: SimulatedStore) -> pl.DataFrame:
    """The orders file as a frame of text columns, in Shopify's column order."""
    heads = _order_heads(sim)
    lines = sim.book.lines
    products = sim.catalogue.frame
    product = lines["product"].to_numpy()
    rows = heads.select(pl.all().gather(lines["order_idx"].to_numpy())).with_columns(
        lines["line_no"],
        lines["quantity"].cast(pl.String).alias("Lineitem quantity"),
        products["name"].gather(product).alias("Lineitem name"),
        pl.Series("Lineitem price", lines["unit_price_minor"]),
        products["sku"].gather(product).alias("Lineitem sku"),
        pl.Series("Lineitem discount", lines["discount_minor"]),
    )
    first = pl.col("line_no") == 1
    order_level = [c for c in heads.columns if c in ORDER_COLUMNS and c not in ORDER_REPEATED]
    out = rows.sort("number", "line_no").with_columns(
        amount_text(pl.col("Lineitem price")).alias("Lineitem price"),
        amount_text(pl.col("Lineitem discount")).alias("Lineitem discount"),
        pl.when(pl.col("pos"))
        .then(pl.lit("false"))
        .otherwise(pl.lit("true"))
        .alias("Lineitem requires shipping"),
        pl.lit("true").alias("Lineitem taxable"),
        pl.when(pl.col("fulfilled"))
        .then(pl.lit("fulfilled"))
        .otherwise(pl.lit("pending"))
        .alias("Lineitem fulfillment status"),
        pl.lit(VENDOR).alias("Vendor"),
        *(pl.when(first).then(pl.col(c)).alias(c) for c in order_level),
    )
    return out.select(
        (pl.col(c) if c in out.columns else pl.lit(None, pl.String)).cast(pl.String).alias(c)
        for c in ORDER_COLUMNS
    )


def customers_export(sim: SimulatedStore) -> pl.DataFrame:
    """The customers file: every customer, buyers and newsletter subscribers alike."""
    customers = sim.customers()
    buyer = pl.col("segment") != "subscriber"

    def address(expr: pl.Expr) -> pl.Expr:
        return pl.when(buyer).then(expr)

    out = customers.select(
        pl.concat_str(pl.lit("'"), pl.col("shopify_id").cast(pl.String)).alias("Customer ID"),
        pl.col("first_name").alias("First Name"),
        pl.col("last_name").alias("Last Name"),
        pl.col("shown_email").alias("Email"),
        _yes_no(pl.col("email_subscribed")).alias("Accepts Email Marketing"),
        address(pl.col("address1")).alias("Default Address Address1"),
        address(pl.col("city")).alias("Default Address City"),
        address(pl.when(pl.col("province") != "").then(pl.col("province"))).alias(
            "Default Address Province Code"
        ),
        address(pl.col("country")).alias("Default Address Country Code"),
        address(pl.concat_str(pl.lit("'"), pl.col("zip"))).alias("Default Address Zip"),
        pl.col("phone").alias("Default Address Phone"),
        pl.col("phone").alias("Phone"),
        _yes_no(pl.col("sms_opt_in")).alias("Accepts SMS Marketing"),
        amount_text(pl.col("spent_minor")).alias("Total Spent"),
        pl.col("orders").cast(pl.String).alias("Total Orders"),
        pl.lit("no").alias("Tax Exempt"),
        pl.when(pl.col("segment") == "subscriber").then(pl.lit("newsletter")).alias("Tags"),
    )
    return out.select(
        (pl.col(c) if c in out.columns else pl.lit(None, pl.String)).cast(pl.String).alias(c)
        for c in CUSTOMER_COLUMNS
    )


def events_lines(sim: SimulatedStore) -> pl.Series:
    """events.jsonl lines, in time order (ties: generation order)."""
    customers = sim.customers()
    events = sim.events.with_columns(
        sim.event_ids(),
        sim.visitor_ids(),
        pl.Series(
            "email",
            customers["email"].gather(np.maximum(sim.events["person"].to_numpy(), 0)),
        ),
    ).with_columns(
        pl.when(pl.col("person") >= 0).then(pl.col("email")).alias("email"),
        local_times(sim.events["occurred_at"], sim.events["city"].to_numpy(), ISO_TIME).alias("at"),
        pl.int_range(pl.len()).alias("generated"),
    )
    ordered = events.sort("occurred_at", "generated")

    def optional(key: str) -> pl.Expr:
        text = pl.concat_str(pl.lit(f',"{key}":"'), pl.col(key), pl.lit('"'))
        return pl.when(pl.col(key).is_null()).then(pl.lit("")).otherwise(text)

    return ordered.select(
        pl.concat_str(
            pl.lit('{"event_id":"'),
            pl.col("event_id"),
            pl.lit('","type":"'),
            pl.col("type"),
            pl.lit('","occurred_at":"'),
            pl.col("at"),
            pl.lit('"'),
            optional("email"),
            optional("anonymous_id"),
            pl.lit(',"properties":'),
            pl.col("properties"),
            pl.lit("}"),
        ).alias("line")
    )["line"]


def write_truth(sim: SimulatedStore, truth_path: Path, customers_path: Path) -> None:
    """truth.json (parameters, catalogue, counts) and the per-customer truths next to it."""
    truth: dict[str, Any] = sim.truth()
    truth["files"] = {"truth_customers": customers_path.name}
    truth_path.write_text(json.dumps(truth, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    sim.truth_customers().with_columns(
        pl.from_epoch("first_seen_at", time_unit="us")
        .dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        .alias("first_seen_at")
    ).write_csv(customers_path)


def write_exports(sim: SimulatedStore, out_dir: Path) -> list[Path]:
    """Write every file into ``out_dir`` (created if missing); return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / name for name in (ORDERS_FILE, CUSTOMERS_FILE, EVENTS_FILE)]
    orders_export(sim).write_csv(paths[0])
    customers_export(sim).write_csv(paths[1])
    # One text column, never quoted: each value is already a JSON object.
    events_lines(sim).to_frame().write_csv(
        paths[2], include_header=False, quote_style="never", line_terminator="\n"
    )
    truth, truth_customers = out_dir / TRUTH_FILE, out_dir / TRUTH_CUSTOMERS_FILE
    write_truth(sim, truth, truth_customers)
    return [*paths, truth, truth_customers]
