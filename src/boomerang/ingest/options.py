"""What every reader is told besides the file: the store's defaults and an optional mapping."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ReadOptions:
    currency: str = "USD"
    currency_given: bool = False  # False: the layout's own default may apply (UCI: GBP)
    timezone: str = "UTC"  # for naive timestamps in the file
    mapping: Path | None = None
