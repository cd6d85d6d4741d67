"""Simulate a store (placeholder until the simulator lands)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from boomerang.errors import BoomerangError


@dataclass
class SimulationResult:
    def describe(self) -> list[str]:
        return []


def run(
    *, customers: int, days: int, seed: int, out_dir: Path | None, db: str, store: str
) -> SimulationResult:
    raise BoomerangError("the simulator is not built yet")
