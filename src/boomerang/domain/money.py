"""Exact money: `Decimal` amounts with a currency in Python, integer minor units in storage.

Why integers in storage: the Arrow loaders type SQLite columns from their first values, and
sums of integers are exact on every engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

# ISO 4217 minor-unit exponents that differ from the usual 2.
_EXPONENTS: dict[str, int] = {
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "ISK": 0,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "PYG": 0,
    "RWF": 0,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
    "IRR": 2,
    "IQD": 3,
    "BHD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
}


def currency_exponent(currency: str) -> int:
    """Digits after the decimal point for a currency (2 unless ISO 4217 says otherwise)."""
    code = currency.upper()
    if len(code) != 3 or not code.isalpha():
        raise ValueError(f"not an ISO 4217 currency code: {currency!r}")
    return _EXPONENTS.get(code, 2)


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount in one currency."""

    amount: Decimal
    currency: str

    @classmethod
    def parse(cls, text: str, currency: str) -> Money:
        try:
            return cls(Decimal(text.strip()), currency.upper())
        except InvalidOperation as exc:
            raise ValueError(f"not an amount: {text!r}") from exc

    @classmethod
    def from_minor(cls, minor: int, currency: str) -> Money:
        exp = currency_exponent(currency)
        return cls(Decimal(minor).scaleb(-exp), currency.upper())

    def to_minor(self) -> int:
        """Integer minor units, rounding half-even to the currency's precision."""
        exp = currency_exponent(self.currency)
        return int(self.amount.scaleb(exp).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))

    def __add__(self, other: Money) -> Money:
        if other.currency != self.currency:
            raise ValueError(f"cannot add {self.currency} and {other.currency}")
        return Money(self.amount + other.amount, self.currency)

    def __str__(self) -> str:
        exp = currency_exponent(self.currency)
        return f"{self.amount.quantize(Decimal(1).scaleb(-exp))} {self.currency}"
