"""The error tree every layer raises; faces turn it into one line (CLI) or one JSON shape (API).

Each error carries a stable ``code`` (part of our public contract: scripts match on it),
a message saying what went wrong and where, and a ``hint`` saying what to do.

    BoomerangError            code "error"
    ├── ConfigError           "config"      bad setting, unreachable database URL
    ├── NotFoundError         "not_found"   a store, customer, ... that does not exist
    ├── InputError            "input"       a file or request that cannot be read at all
    ├── ImportRejectedError   "rejected"    rows were rejected beyond --allow-rejects; nothing applied
    ├── ConflictError         "conflict"    idempotency key reused with another body, lost race
    │   └── InsufficientError "insufficient" not enough points/uses left (nothing was changed)
    └── SchemaError           "schema"      database not migrated / newer than this code
"""

from __future__ import annotations


class BoomerangError(Exception):
    """Base of every error we raise on purpose; anything else is a bug."""

    code = "error"

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """What, where and what to do, in one line for a terminal."""
        return f"{self.message} — {self.hint}" if self.hint else self.message


class ConfigError(BoomerangError):
    code = "config"


class NotFoundError(BoomerangError):
    code = "not_found"


class InputError(BoomerangError):
    code = "input"


class ImportRejectedError(BoomerangError):
    code = "rejected"


class ConflictError(BoomerangError):
    code = "conflict"


class InsufficientError(ConflictError):
    """A balance or a coupon does not cover the request; nothing was changed."""

    code = "insufficient"


class SchemaError(BoomerangError):
    code = "schema"
