"""Shopify customers export, current and older layout (detected from the header).

One row is one customer. The export carries no dates, so consent observations are dated
with the file's modification time (UTC): re-importing the same file records nothing new.
See docs/importing.md, section shopify-customers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from boomerang.errors import InputError
from boomerang.ingest import fields as f
from boomerang.ingest.batch import ParsedBatch, conform, file_mtime_micros, validate
from boomerang.ingest.csvfile import ROW, read_text_table
from boomerang.ingest.options import ReadOptions
from boomerang.ingest.orders_common import latest_consents

CONSENT_SOURCE = "shopify customers export"


@dataclass(frozen=True)
class Layout:
    """Which file column holds each field (None: the layout has no such column)."""

    name: str
    customer_id: str
    accepts_email: str
    company: str
    city: str
    region: tuple[str, ...]  # first non-empty wins (code before name)
    country: tuple[str, ...]
    zip: str
    address_phone: str | None
    accepts_sms: str | None


CURRENT = Layout(
    name="current",
    customer_id="Customer ID",
    accepts_email="Accepts Email Marketing",
    company="Default Address Company",
    city="Default Address City",
    region=("Default Address Province Code",),
    country=("Default Address Country Code",),
    zip="Default Address Zip",
    address_phone="Default Address Phone",
    accepts_sms="Accepts SMS Marketing",
)
OLDER = Layout(
    name="older",
    customer_id="Customer ID",  # read when present (some older exports have it)
    accepts_email="Accepts Marketing",
    company="Company",
    city="City",
    region=("Province Code", "Province"),
    country=("Country Code", "Country"),
    zip="Zip",
    address_phone=None,
    accepts_sms=None,
)
COMMON = (
    "First Name",
    "Last Name",
    "Email",
    "Phone",
    "Total Spent",
    "Total Orders",
    "Note",
    "Tax Exempt",
    "Tags",
)


def _layout(path: Path, columns: list[str]) -> Layout:
    if "Accepts Email Marketing" in columns:
        layout = CURRENT
        required = ["Customer ID", "Email", layout.accepts_email]
    elif "Accepts Marketing" in columns:
        layout = OLDER
        required = ["Email", layout.accepts_email]
    else:
        raise InputError(
            f"{path}: not a Shopify customers export "
            "(no Accepts Email Marketing or Accepts Marketing column)",
            hint="export customers from Shopify admin > Customers > Export, as plain CSV",
        )
    missing = [c for c in required if c not in columns]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)} for the {layout.name} Shopify "
            "customers layout",
            hint="re-export the customers without removing columns",
        )
    return layout


def _columns(layout: Layout) -> tuple[str, ...]:
    names = [
        layout.customer_id,
        layout.accepts_email,
        layout.company,
        layout.city,
        *layout.region,
        *layout.country,
        layout.zip,
        layout.address_phone,
        layout.accepts_sms,
        *COMMON,
    ]
    return tuple(n for n in names if n)


def read_customers(path: Path, options: ReadOptions) -> ParsedBatch:
    """Customers, their tags and attributes, and email/SMS consent as of the export."""
    raw = read_text_table(path)
    layout = _layout(path, raw.columns)
    raw = raw.with_columns(
        pl.lit(None, pl.String).alias(c) for c in _columns(layout) if c not in raw.columns
    )
    col = pl.col
    id_col = layout.customer_id
    frame = raw.with_columns(
        pl.coalesce(*(col(c) for c in layout.country)).alias("__country_raw"),
        pl.coalesce(*(col(c) for c in layout.region)).alias("__region"),
    )
    frame = frame.with_columns(
        f.lookup(frame, col("__country_raw"), f.country_code).alias("country")
    )
    exp = f.exponent_of(pl.lit(options.currency.upper()))
    address_phone = col(layout.address_phone) if layout.address_phone else pl.lit(None, pl.String)
    addr = f.phone(frame, address_phone, col("country"))
    frame = frame.with_columns(addr.value.alias("__address_phone"))
    no_identity = col("Email").is_null() & col(id_col).is_null()
    checks: dict[str, tuple[str, f.Parsed]] = {
        "source_id": (id_col, f.text(col(id_col), 100)),
        "email": ("Email", f.email(col("Email"))),
        "__identity": (
            "Email",
            f.Parsed(col("Email"), no_identity, "no email and no customer id: cannot identify"),
        ),
        "phone": ("Phone", f.phone(frame, col("Phone"), col("country"))),
        "first_name": ("First Name", f.text(col("First Name"), 200)),
        "last_name": ("Last Name", f.text(col("Last Name"), 200)),
        "city": (layout.city, f.text(col(layout.city), 200)),
        "region": (layout.region[0], f.text(col("__region"), 200)),
        "zip": (layout.zip, f.text(col(layout.zip), 32)),
        "accepts_email": (layout.accepts_email, f.flag(col(layout.accepts_email))),
        "total_spent_minor": ("Total Spent", f.money(col("Total Spent"), exp)),
        "total_orders": ("Total Orders", f.integer(col("Total Orders"), 0)),
        "tax_exempt": ("Tax Exempt", f.flag(col("Tax Exempt"))),
    }
    if layout.accepts_sms:
        checks["accepts_sms"] = (layout.accepts_sms, f.flag(col(layout.accepts_sms)))
    parsed, rejects = validate(frame, checks)
    bad_rows = rejects["row"].unique().implode()
    kept = parsed.filter(~col(ROW).is_in(bad_rows))

    customers = kept.with_columns(
        pl.coalesce(col("email"), col("source_id")).alias("external_id"),
        pl.coalesce(col("phone"), col("__address_phone")).alias("phone"),
        col("__region").alias("region"),
        col(layout.city).alias("city"),
        col(layout.zip).alias("zip"),
        col("First Name").alias("first_name"),
        col("Last Name").alias("last_name"),
        f.json_list(col("Tags")).alias("tags"),
        f.json_object(
            {
                "company": col(layout.company),
                "note": col("Note"),
                "tax_exempt": col("tax_exempt"),
                "total_orders": col("total_orders"),
                "total_spent_minor": col("total_spent_minor"),
                "total_spent_currency": pl.when(col("total_spent_minor").is_not_null()).then(
                    pl.lit(options.currency.upper())
                ),
            }
        ).alias("attributes"),
        pl.lit("registered").alias("account_status"),
    )
    # A customer listed twice (same email) keeps the later row, as a re-export would.
    deduped = customers.sort(ROW).unique("external_id", keep="last", maintain_order=True)
    notes = []
    if deduped.height < customers.height:
        notes.append(
            f"{customers.height - deduped.height} row(s) repeat a customer already listed; "
            "the later row was used"
        )
    unknown = kept.filter(col("__country_raw").is_not_null() & col("country").is_null())
    if unknown.height:
        notes.append(f"{unknown.height} customer(s) with an unrecognised country code (left empty)")
    dropped = kept.filter(address_phone.is_not_null() & col("__address_phone").is_null())
    if dropped.height:
        notes.append(
            f"{dropped.height} default-address phone(s) that are not phone numbers were ignored"
        )
    occurred = file_mtime_micros(path)
    consents = _consents(deduped, occurred, sms=layout.accepts_sms is not None)
    return ParsedBatch(
        kind="shopify-customers",
        path=path,
        rows_read=raw.height,
        frames={"customers": conform("customers", deduped), "consents": consents},
        rejects=rejects.sort("row", "column"),
        notes=notes,
    )


def _consents(customers: pl.DataFrame, occurred_at: int, *, sms: bool) -> pl.DataFrame:
    """Email consent for customers with an email, SMS consent for those with a phone."""
    pieces = [("email", "accepts_email", "email")]
    if sms:
        pieces.append(("sms", "accepts_sms", "phone"))
    frames = [
        customers.filter(pl.col(flag).is_not_null() & pl.col(needs).is_not_null()).select(
            pl.col("external_id").alias("customer_key"),
            pl.lit(channel).alias("channel"),
            pl.when(pl.col(flag))
            .then(pl.lit("granted"))
            .otherwise(pl.lit("withdrawn"))
            .alias("status"),
            pl.lit(CONSENT_SOURCE).alias("source"),
            pl.lit(occurred_at, pl.Int64).alias("occurred_at"),
        )
        for channel, flag, needs in pieces
    ]
    return latest_consents(pl.concat(frames))
