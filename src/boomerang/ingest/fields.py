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

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
AMOUNT_PATTERN = r"^[+-]?(\d+\.?\d*|\.\d+)$"
AMOUNT_SCALE = 6  # amounts are read to 6 decimal places, then rounded half-even


def clean(column: str) -> pl.Expr:
    """Trim, drop a spreadsheet's leading apostrophe ('75008), and turn "" into null."""
    text = pl.col(column).str.strip_chars().str.strip_prefix("'").str.strip_chars()
    return pl.when(text == "").then(None).otherwise(text)


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


def integer(src: pl.Expr) -> Parsed:
    as_float = src.cast(pl.Float64, strict=False)
    whole = as_float.is_not_null() & (as_float == as_float.round(0)) & (as_float.abs() < 2**53)
    value = pl.when(whole).then(as_float.cast(pl.Int64, strict=False)).otherwise(None)
    return Parsed(value, src.is_not_null() & ~whole, "not a whole number")


def exponent_of(currency: pl.Expr) -> pl.Expr:
    """Minor-unit exponent per row from its currency code (2 when unknown)."""
    known = {c: currency_exponent(c) for c in _EXPONENT_CODES}
    return currency.replace_strict(known, default=2, return_dtype=pl.Int64)


_EXPONENT_CODES = (
    "JPY",
    "KRW",
    "VND",
    "CLP",
    "ISK",
    "BHD",
    "KWD",
    "OMR",
    "JOD",
    "TND",
    "IQD",
    "LYD",
)


def money(src: pl.Expr, exponent: pl.Expr) -> Parsed:
    """Decimal text -> integer minor units, exactly (no float), rounding half-even."""
    ok = src.str.contains(AMOUNT_PATTERN)
    negative = src.str.starts_with("-")
    body = src.str.strip_chars_start("+-")
    parts = body.str.split_exact(".", 1)
    whole = parts.struct.field("field_0")
    whole = pl.when(whole == "").then(pl.lit("0")).otherwise(whole)
    frac = (parts.struct.field("field_1").fill_null("") + "0" * AMOUNT_SCALE).str.slice(
        0, AMOUNT_SCALE
    )
    scaled = whole.cast(pl.Int64, strict=False) * 10**AMOUNT_SCALE + frac.cast(
        pl.Int64, strict=False
    )
    divisor = pl.lit(10, dtype=pl.Int64).pow(AMOUNT_SCALE - exponent).cast(pl.Int64)
    quotient = scaled // divisor
    remainder = scaled % divisor
    twice = remainder * 2
    round_up = (twice > divisor) | ((twice == divisor) & (quotient % 2 == 1))
    minor = quotient + round_up.cast(pl.Int64)
    value = pl.when(ok).then(pl.when(negative).then(-minor).otherwise(minor)).otherwise(None)
    invalid = src.is_not_null() & (~ok.fill_null(False) | value.is_null())
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
        value, src.is_not_null() & ~value.str.contains(EMAIL_PATTERN), "not an email address"
    )


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
    """Phones per (number, country) pair, each distinct pair parsed once."""
    pairs = frame.select(src.alias("p"), region.alias("r")).drop_nulls("p").unique()
    table = {
        (p, r): e164(p, r) for p, r in zip(pairs["p"].to_list(), pairs["r"].to_list(), strict=True)
    }
    key = pl.concat_str([src, region.fill_null("")], separator="\x1f")
    flat = {f"{p}\x1f{r or ''}": v for (p, r), v in table.items()}
    value = key.replace_strict(flat, default=None, return_dtype=pl.String)
    return Parsed(
        value, src.is_not_null() & value.is_null(), "not a phone number (E.164 or national)"
    )
