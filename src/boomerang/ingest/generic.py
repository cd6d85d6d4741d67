"""Any order CSV (one row per line item), described by a mapping file (TOML or YAML).

The mapping says which column holds which field, the date format (stated, never guessed)
and how the file's status values read. It is validated before the data is read: an unknown
field, a missing required field or a column the file does not have stops the import with
an `InputError` that names it. See docs/importing.md, section csv, for the format.
"""

from __future__ import annotations

import tomllib
import zoneinfo
from pathlib import Path
from typing import Any, Literal

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from boomerang.domain.enums import OrderStatus
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
    latest_consents,
    line_frame,
    number_lines,
    products_from_lines,
    unit_price_from_total,
)

DOCS = "see docs/importing.md, section csv, for the mapping format"
_YEAR_DIRECTIVES = ("%Y", "%y", "%G", "%F", "%s")


class Columns(BaseModel):
    """File column for each field; only order_id, order_date and quantity are required."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    order_id: str
    order_date: str
    quantity: str
    unit_price: str | None = None
    line_total: str | None = None
    line_discount: str | None = None
    sku: str | None = None
    product_name: str | None = None
    category: str | None = None
    currency: str | None = None
    order_total: str | None = None
    shipping: str | None = None
    tax: str | None = None
    discount: str | None = None
    refunded: str | None = None
    discount_code: str | None = None
    status: str | None = None
    email: str | None = None
    customer_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    country: str | None = None
    city: str | None = None
    region: str | None = None
    zip: str | None = None
    accepts_marketing: str | None = None

    @model_validator(mode="after")
    def _has_price(self) -> Columns:
        if self.unit_price is None and self.line_total is None:
            raise ValueError("map unit_price or line_total (or both)")
        return self


class Mapping(BaseModel):
    """The whole mapping file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    date_format: str
    timezone: str | None = None
    currency: str | None = None
    decimal_comma: bool = False
    channel: Literal["online", "offline"] = "online"
    source: str = "csv"
    default_status: OrderStatus = OrderStatus.PAID
    columns: Columns
    status_values: dict[str, OrderStatus] = {}

    @field_validator("date_format")
    @classmethod
    def _dated(cls, v: str) -> str:
        if not any(d in v for d in _YEAR_DIRECTIVES):
            raise ValueError("must be a strftime format with the year, like %d/%m/%Y %H:%M")
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                zoneinfo.ZoneInfo(v)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f"unknown time zone {v!r} (use an IANA name like Europe/Paris)"
                ) from None
        return v

    @field_validator("currency")
    @classmethod
    def _currency(cls, v: str | None) -> str | None:
        if v is not None and not (len(v) == 3 and v.isalpha()):
            raise ValueError("must be a 3-letter currency code like EUR")
        return v.upper() if v else v

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        if not 0 < len(v) <= 32:
            raise ValueError("must be 1 to 32 characters")
        return v


def load_mapping(path: Path | None) -> Mapping:
    """Read and validate a mapping file; every problem becomes one `InputError`."""
    if path is None:
        raise InputError("the csv kind needs a mapping file", hint=f"pass --mapping FILE; {DOCS}")
    if not path.exists():
        raise InputError(f"{path}: no such mapping file", hint="check the --mapping path")
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8-sig")
        if suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            raise InputError(f"{path}: a mapping file must end in .toml, .yaml or .yml", hint=DOCS)
    except (tomllib.TOMLDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: the mapping cannot be parsed ({first})", hint=DOCS) from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: the mapping must be a table of settings", hint=DOCS)
    try:
        return Mapping.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(e) for e in exc.errors())
        raise InputError(f"{path}: invalid mapping: {problems}", hint=DOCS) from exc


def _describe(error: Any) -> str:
    where = ".".join(str(p) for p in error["loc"]) or "mapping"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{where}: unknown field"
    if kind == "missing":
        return f"{where}: required field is missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}"


def _check_columns(path: Path, mapping: Mapping, present: list[str]) -> None:
    mapped = mapping.columns.model_dump(exclude_none=True)
    absent = [f"columns.{k} = {v!r}" for k, v in mapped.items() if v not in present]
    if absent:
        raise InputError(
            f"{path}: the mapping names column(s) not in the file: {', '.join(absent)}",
            hint=f"the file's columns are: {', '.join(present[:30])}",
        )


def _amount(expr: pl.Expr, decimal_comma: bool) -> pl.Expr:
    """With ``decimal_comma``, "1.234,50" reads as 1234.50 (dots and spaces group thousands)."""
    if not decimal_comma:
        return expr
    return expr.str.replace_all(r"[.\s\u00a0]", "").str.replace(",", ".", literal=True)


def _status(raw: pl.Expr, mapping: Mapping) -> f.Parsed:
    table = {s.value: s.value for s in OrderStatus}
    table.update({k.strip().lower(): v.value for k, v in mapping.status_values.items()})
    value = raw.str.to_lowercase().replace_strict(table, default=None, return_dtype=pl.String)
    return f.Parsed(
        value,
        raw.is_not_null() & value.is_null(),
        "unknown status value: add it to [status_values] in the mapping",
    )


def read_orders(path: Path, options: ReadOptions) -> ParsedBatch:
    """Orders, lines, customers, products (and email consent when mapped) from a mapped CSV."""
    mapping = load_mapping(options.mapping)
    raw = read_text_table(path)
    _check_columns(path, mapping, raw.columns)
    m = mapping.columns
    tz = mapping.timezone or options.timezone
    fixed_currency = mapping.currency or options.currency.upper()
    col = pl.col

    def src(name: str | None) -> pl.Expr:
        return col(name) if name else pl.lit(None, pl.String)

    def label(name: str | None, field: str) -> str:
        return name or field

    def money_src(name: str | None) -> pl.Expr:
        return _amount(src(name), mapping.decimal_comma)

    frame = raw.with_columns(
        src(m.order_id).alias("order_external_id"),
        src(m.currency).fill_null(pl.lit(fixed_currency)).alias("__currency"),
    )
    frame = number_lines(frame, "order_external_id").with_columns(
        (col("line_no") == 1).alias("__first"),
        f.lookup(frame, src(m.country), f.country_code).alias("country"),
    )
    exp = f.exponent_of(col("__currency").str.to_uppercase())
    checks: dict[str, tuple[str, f.Parsed]] = {
        "order_external_id": (
            m.order_id,
            f.required(src(m.order_id), f.text(src(m.order_id), 100), "order id"),
        ),
        "placed_at": (
            m.order_date,
            f.required(
                src(m.order_date),
                f.timestamp(src(m.order_date), mapping.date_format, tz),
                "order date",
            ),
        ),
        "currency": (label(m.currency, "currency"), f.currency(col("__currency"))),
        "quantity": (
            m.quantity,
            f.required(
                src(m.quantity),
                f.integer(src(m.quantity), -f.INT32_MAX, f.INT32_MAX),
                "quantity",
            ),
        ),
        "__unit": (label(m.unit_price, "unit_price"), f.money(money_src(m.unit_price), exp)),
        "__line_total": (
            label(m.line_total, "line_total"),
            f.money(money_src(m.line_total), exp),
        ),
        "__line_discount": (
            label(m.line_discount, "line_discount"),
            f.money(money_src(m.line_discount), exp),
        ),
        "sku": (label(m.sku, "sku"), f.text(src(m.sku), 200)),
        "name": (label(m.product_name, "product_name"), f.text(src(m.product_name), 500)),
        "category": (label(m.category, "category"), f.text(src(m.category), 200)),
        "total_minor": (
            label(m.order_total, "order_total"),
            f.money(money_src(m.order_total), exp),
        ),
        "shipping_minor": (label(m.shipping, "shipping"), f.money(money_src(m.shipping), exp)),
        "tax_minor": (label(m.tax, "tax"), f.money(money_src(m.tax), exp)),
        "discount_minor": (label(m.discount, "discount"), f.money(money_src(m.discount), exp)),
        "refunded_minor": (label(m.refunded, "refunded"), f.money(money_src(m.refunded), exp)),
        "status": (label(m.status, "status"), _status(src(m.status), mapping)),
        "email": (label(m.email, "email"), f.email(src(m.email))),
        "source_id": (label(m.customer_id, "customer_id"), f.text(src(m.customer_id), 100)),
        "first_name": (label(m.first_name, "first_name"), f.text(src(m.first_name), 200)),
        "last_name": (label(m.last_name, "last_name"), f.text(src(m.last_name), 200)),
        "phone": (label(m.phone, "phone"), f.phone(frame, src(m.phone), col("country"))),
        "city": (label(m.city, "city"), f.text(src(m.city), 200)),
        "region": (label(m.region, "region"), f.text(src(m.region), 200)),
        "zip": (label(m.zip, "zip"), f.text(src(m.zip), 32)),
        "__accepts": (
            label(m.accepts_marketing, "accepts_marketing"),
            f.flag(src(m.accepts_marketing)),
        ),
    }
    if m.unit_price:  # a mapped unit price must be there on every line
        checks["__unit"] = (
            m.unit_price,
            f.required(src(m.unit_price), f.money(money_src(m.unit_price), exp), "unit price"),
        )
    else:
        assert m.line_total is not None  # the mapping validator guarantees one of them
        checks["__line_total"] = (
            m.line_total,
            f.required(src(m.line_total), f.money(money_src(m.line_total), exp), "line total"),
        )
    line_level = {
        "order_external_id",
        "quantity",
        "__unit",
        "__line_total",
        "__line_discount",
        "sku",
        "name",
        "category",
    }
    first = col("__first")
    parsed, rejects = validate(
        frame, checks, when={k: first for k in checks if k not in line_level}
    )
    parsed, rejects = reject_whole_groups(parsed, rejects, "order_external_id", m.order_id, "order")

    unit = pl.coalesce(col("__unit"), unit_price_from_total(col("__line_total"), col("quantity")))
    lines = parsed.with_columns(unit.alias("unit_price_minor")).with_columns(
        pl.when(col("__line_total").is_not_null())
        .then(col("quantity") * col("unit_price_minor") - col("__line_total"))
        .otherwise(col("__line_discount").fill_null(0))
        .alias("discount_minor")
    )
    lines = lines.with_columns(
        (col("quantity") * col("unit_price_minor") - col("discount_minor")).alias("__net")
    )
    subtotals = lines.group_by("order_external_id").agg(col("__net").sum().alias("subtotal_minor"))
    heads = parsed.filter(first).join(subtotals, on="order_external_id", how="left")
    status = col("status").fill_null(pl.lit(mapping.default_status.value))
    orders = (
        key_customers(
            heads.rename({"order_external_id": "external_id"}).with_columns(
                col("__currency").str.to_uppercase().alias("currency")
            )
        )
        .with_columns(
            *(col(c).fill_null(0) for c in ("shipping_minor", "tax_minor", "discount_minor")),
            src(m.discount_code).str.slice(0, 200).alias("discount_code"),
            pl.lit(mapping.channel).alias("channel"),
            pl.lit(mapping.source).alias("source"),
        )
        .with_columns(
            col("total_minor").fill_null(
                col("subtotal_minor")
                - col("discount_minor")
                + col("shipping_minor")
                + col("tax_minor")
            ),
        )
        .with_columns(
            status.alias("status"),
            pl.when(status == "refunded")
            .then(col("refunded_minor").fill_null(col("total_minor")))
            .otherwise(col("refunded_minor").fill_null(0))
            .alias("refunded_minor"),
        )
    )
    lines = line_frame(lines)
    orders = attach_digest(orders, lines)
    customers = customers_from_orders(orders, ORDER_CONTACT_FIELDS)
    # an order without an email still speaks for its customer when the file knows their email
    emails = customers.select(col("external_id").alias("customer_key"), col("email").alias("__to"))
    consents = latest_consents(
        orders.join(emails, on="customer_key", how="inner")
        .filter(col("__to").is_not_null() & col("__accepts").is_not_null())
        .select(
            col("customer_key"),
            pl.lit("email").alias("channel"),
            pl.when(col("__accepts"))
            .then(pl.lit("granted"))
            .otherwise(pl.lit("withdrawn"))
            .alias("status"),
            pl.lit(f"{mapping.source} import").alias("source"),
            col("placed_at").alias("occurred_at"),
        )
    )
    return ParsedBatch(
        kind="csv",
        path=path,
        rows_read=raw.height,
        frames={
            "customers": customers.sort("external_id"),
            "products": products_from_lines(lines, orders).sort("sku"),
            "orders": conform("orders", orders).sort("external_id"),
            "lines": conform("lines", lines).sort("order_external_id", "line_no"),
            "consents": consents.sort("customer_key", "channel"),
        },
        rejects=rejects,
        guest_orders=orders.filter(col("customer_key").is_null()).height,
    )
