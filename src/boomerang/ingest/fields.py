"""Vectorised field parsers: each returns the parsed expression and an "invalid" mask.

Why masks: a reader validates a million rows in a few polars passes and turns every mask
into rows of the rejects report (row, column, value, reason) instead of raising on the first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import phonenumbers
import polars as pl
import pycountry

from boomerang.domain.money import currency_exponent
from boomerang.ingest.csvfile import clean as clean  # re-exported: readers use fields.clean

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
AMOUNT_PATTERN = r"^[+-]?(\d+\.?\d*|\.\d+)$"
CURRENCY_PATTERN = r"^[A-Z]{3}$"
INT32_MAX = 2**31 - 1  # order_lines.quantity is INTEGER on PostgreSQL


@dataclass(frozen=True)
class Parsed:
    value: pl.Expr
    invalid: pl.Expr
    reason: str | pl.Expr  # an expression when the reason depends on the row


def required(src: pl.Expr, parsed: Parsed, what: str) -> Parsed:
    """Make a parsed field mandatory: empty is invalid too."""
    reason = (
        pl.when(src.is_null())
        .then(pl.lit(f"{what} is required"))
        .otherwise(pl.lit(parsed.reason) if isinstance(parsed.reason, str) else parsed.reason)
    )
    return Parsed(parsed.value, src.is_null() | parsed.invalid, reason)


def text(src: pl.Expr, max_len: int = 500) -> Parsed:
    return Parsed(src, src.str.len_chars() > max_len, f"longer than {max_len} characters")


def integer(src: pl.Expr, lo: int | None = None, hi: int | None = None) -> Parsed:
    """Whole numbers ("3", "3.0"); optional bounds so a value fits its database column."""
    as_float = src.cast(pl.Float64, strict=False)
    whole = as_float.is_not_null() & (as_float == as_float.round(0)) & (as_float.abs() < 2**53)
    value = pl.when(whole).then(as_float.cast(pl.Int64, strict=False)).otherwise(None)
    if lo is None and hi is None:
        return Parsed(value, src.is_not_null() & ~whole, "not a whole number")
    in_range = pl.lit(True)
    if lo is not None:
        in_range = in_range & (as_float >= lo)
    if hi is not None:
        in_range = in_range & (as_float <= hi)
    reason = (
        pl.when(whole)
        .then(
            pl.lit(f"out of range {lo if lo is not None else ''}..{hi if hi is not None else ''}")
        )
        .otherwise(pl.lit("not a whole number"))
    )
    ok = whole & in_range
    return Parsed(
        pl.when(ok).then(value).otherwise(None), src.is_not_null() & ~ok.fill_null(False), reason
    )


def exponent_of(currency: pl.Expr) -> pl.Expr:
    """Minor-unit exponent per row from its currency code (2 when unknown)."""
    known = {c: currency_exponent(c) for c in _EXPONENT_CODES}
    return currency.replace_strict(known, default=2, return_dtype=pl.Int64)


# Every code whose exponent is not 2 (domain.money is the source; kept in step by a test).
_EXPONENT_CODES = (
    "BIF",
    "CLP",
    "DJF",
    "GNF",
    "ISK",
    "JPY",
    "KMF",
    "KRW",
    "PYG",
    "RWF",
    "UGX",
    "UYI",
    "VND",
    "VUV",
    "XAF",
    "XOF",
    "XPF",
    "BHD",
    "IQD",
    "JOD",
    "KWD",
    "LYD",
    "OMR",
    "TND",
)


def currency(src: pl.Expr) -> Parsed:
    """An ISO 4217-shaped code, upper-cased ("eur" -> "EUR"); the column holds 3 characters."""
    value = src.str.to_uppercase()
    return Parsed(
        value,
        src.is_not_null() & ~value.str.contains(CURRENCY_PATTERN),
        "not a currency code like EUR",
    )


def _minor_units(src: pl.Expr, exponent: int) -> pl.Expr:
    # Polars decimals round half-even when the scale shrinks, exactly (no float involved).
    scaled: pl.Expr = src.cast(pl.Decimal(38, exponent), strict=False) * 10**exponent
    return scaled.cast(pl.Int64, strict=False)


def money(src: pl.Expr, exponent: pl.Expr | int) -> Parsed:
    """Decimal text -> integer minor units, exact, rounded half-even to the currency.

    ``exponent`` is the currency's minor-unit exponent: a constant, or a per-row expression
    such as `exponent_of` (then each ISO exponent in use gets its own exact branch).
    """
    ok = src.str.contains(AMOUNT_PATTERN)
    if isinstance(exponent, int):
        minor = _minor_units(src, exponent)
    else:
        minor = (
            pl.when(exponent == 0)
            .then(_minor_units(src, 0))
            .when(exponent == 3)
            .then(_minor_units(src, 3))
            .otherwise(_minor_units(src, 2))
        )
    value = pl.when(ok).then(minor).otherwise(None)
    invalid = src.is_not_null() & (~ok.fill_null(False) | minor.is_null())
    return Parsed(value, invalid, "not an amount like 1234.50")


def choose_format(frame: pl.DataFrame, src: pl.Expr, formats: Sequence[str]) -> str:
    """The stated format that parses most values of this file's column (chosen per file)."""
    best, best_count = formats[0], -1
    sample = frame.select(src.alias("v")).drop_nulls().head(10_000)
    for fmt in formats:
        count = sample.select(_to_datetime(pl.col("v"), fmt, "UTC").is_not_null().sum()).item()
        if count > best_count:
            best, best_count = fmt, count
    return best


def _to_datetime(src: pl.Expr, fmt: str, tz: str) -> pl.Expr:
    if "%z" in fmt:
        return src.str.to_datetime(fmt, strict=False, time_zone="UTC", time_unit="us")
    naive = src.str.to_datetime(fmt, strict=False, time_unit="us")
    return naive.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")


def timestamp(src: pl.Expr, fmt: str, tz: str = "UTC") -> Parsed:
    """Text in ``fmt`` -> epoch microseconds UTC; naive formats are read in ``tz``."""
    value = _to_datetime(src, fmt, tz).dt.epoch("us")
    return Parsed(value, src.is_not_null() & value.is_null(), f"not a date/time in format {fmt}")


def email(src: pl.Expr) -> Parsed:
    value = src.str.to_lowercase()
    return Parsed(
        value,
        src.is_not_null() & (~value.str.contains(EMAIL_PATTERN) | (value.str.len_chars() > 320)),
        "not an email address",
    )


_TRUE = ("yes", "true", "1", "y")
_FALSE = ("no", "false", "0", "n")


def flag(src: pl.Expr) -> Parsed:
    """yes/no, true/false, 1/0 (any case) -> Boolean; anything else is invalid."""
    low = src.str.to_lowercase()
    value = pl.when(low.is_in(_TRUE)).then(True).when(low.is_in(_FALSE)).then(False)
    return Parsed(value, src.is_not_null() & value.is_null(), "not yes or no")


def json_value(src: pl.Expr) -> pl.Expr:
    """Any value (string, number, list) as JSON text, escaped by polars' own encoder."""
    encoded = pl.struct(src.alias("v")).struct.json_encode()
    return encoded.str.strip_prefix('{"v":').str.strip_suffix("}")


def json_object(items: dict[str, pl.Expr]) -> pl.Expr:
    """A compact JSON object of the non-null items, keys in the given order; null if all are null.

    Why not a struct: a struct encodes null members too, and we keep stored JSON minimal.
    """
    pieces = [
        pl.when(expr.is_not_null()).then(pl.lit(f'"{key}":') + json_value(expr))
        for key, expr in items.items()
    ]
    body = pl.concat_str(pieces, separator=",", ignore_nulls=True)
    return pl.when(body == "").then(None).otherwise(pl.lit("{") + body + pl.lit("}"))


def json_list(src: pl.Expr, separator: str = ",") -> pl.Expr:
    """Split delimited text into a JSON list of trimmed, non-empty items ("a, b" -> ["a","b"])."""
    items = src.str.split(separator).list.eval(
        pl.element().str.strip_chars().filter(pl.element().str.strip_chars() != "")
    )
    return pl.when(items.list.len() > 0).then(json_value(items)).otherwise(None)


def lookup(frame: pl.DataFrame, src: pl.Expr, fn: Callable[[str], str | None]) -> pl.Expr:
    """Map each distinct value once with a Python function (phones, countries)."""
    distinct = frame.select(src.alias("k")).drop_nulls().unique()["k"].to_list()
    table = {k: fn(k) for k in distinct}
    return src.replace_strict(table, default=None, return_dtype=pl.String)


_COUNTRY_ALIASES = {"EIRE": "IE", "RSA": "ZA", "USA": "US", "UK": "GB", "UAE": "AE"}


def country_code(name: str) -> str | None:
    """ISO 3166 alpha-2 for a code or an English country name; None when unrecognised."""
    key = name.strip()
    if key.upper() in _COUNTRY_ALIASES:
        return _COUNTRY_ALIASES[key.upper()]
    if len(key) == 2 and pycountry.countries.get(alpha_2=key.upper()):
        return key.upper()
    try:
        return str(pycountry.countries.lookup(key).alpha_2)
    except LookupError:
        return None


def e164(raw: str, region: str | None) -> str | None:
    """A phone number in E.164, using the customer's country for national numbers."""
    try:
        number = phonenumbers.parse(raw, region or None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def phone(frame: pl.DataFrame, src: pl.Expr, region: pl.Expr) -> Parsed:
    """Phones to E.164. Numbers already written internationally (``+`` and 8-15 digits once
    spaces, dots, dashes and brackets go) are taken as they are, vectorised; national numbers
    go through libphonenumber with the row's country, each distinct (number, country) once.
    """
    compact = src.str.replace_all(r"[\s\-\.\(\)]", "")
    international = compact.str.contains(r"^\+[1-9]\d{7,14}$").fill_null(False)
    national = frame.select(src.alias("p"), region.alias("r"), international.alias("i"))
    pairs = national.filter(~pl.col("i")).drop_nulls("p").unique(["p", "r"])
    flat = {
        f"{p}\x1f{r or ''}": e164(p, r)
        for p, r in zip(pairs["p"].to_list(), pairs["r"].to_list(), strict=True)
    }
    key = pl.concat_str([src, region.fill_null("")], separator="\x1f")
    parsed = key.replace_strict(flat, default=None, return_dtype=pl.String)
    value = pl.when(international).then(compact).otherwise(parsed)
    return Parsed(
        value, src.is_not_null() & value.is_null(), "not a phone number (E.164 or national)"
    )
