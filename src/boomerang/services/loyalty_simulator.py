"""Simulate a proposed loyalty program on a store's past orders (`boomerang loyalty simulate`).

Reads the program file (the same YAML/JSON as `loyalty program set`, plus an optional
``simulation:`` section with the assumptions) and the store's orders (Arrow via ADBC), and
replays them with `loyalty.simulator.simulate`. Nothing is written: the stored program and
the ledger are untouched. docs/loyalty.md#simulating-a-program-before-launch.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from boomerang.domain.clock import to_micros
from boomerang.errors import InputError
from boomerang.loyalty.program import Program, parse_program
from boomerang.loyalty.simulator import Assumptions, SimulationResult, parse_assumptions, simulate
from boomerang.services.context import open_engine
from boomerang.store.repos import loyalty_simulator_source as source
from boomerang.store.repos import stores as stores_repo

__all__ = ["SimulationResult", "read_program_file", "simulate_program"]


def read_program_file(path: Path) -> tuple[Program, Assumptions]:
    """A program file and its optional ``simulation:`` section (redemption_rate,
    point_value_minor); errors name the file and the field."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file", hint="check the path") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML/JSON ({exc})", hint="fix the syntax") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a mapping of sections", hint="see docs/loyalty.md")
    body: dict[str, Any] = dict(raw)
    assumptions = parse_assumptions(body.pop("simulation", None), origin=path.name)
    return parse_program(body, origin=path.name), assumptions


def simulate_program(
    db: str,
    store: str,
    program: Path | Program,
    *,
    redemption_rate: Decimal | float | None = None,
    point_value_minor: Decimal | float | None = None,
    start: date | None = None,
    end: date | None = None,
) -> SimulationResult:
    """Replay ``program`` (a file or a Program) over the store's orders placed from
    ``start`` to ``end`` (whole UTC days, inclusive; default the whole history).

    ``redemption_rate`` and ``point_value_minor`` override the file's ``simulation:``
    section, which overrides the defaults (60%; the point value of the rewards)."""
    if isinstance(program, Program):
        proposed, assumptions = program, Assumptions()
    else:
        proposed, assumptions = read_program_file(Path(program))
    overrides: dict[str, Any] = assumptions.model_dump()
    if redemption_rate is not None:
        overrides["redemption_rate"] = Decimal(str(redemption_rate))
    if point_value_minor is not None:
        overrides["point_value_minor"] = Decimal(str(point_value_minor))
    assumptions = parse_assumptions(overrides, origin="options")
    if start is not None and end is not None and end < start:
        raise InputError(f"--to {end} is before --from {start}", hint="swap them")

    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            row = stores_repo.get(conn, store)
        table = source.read_orders(engine, row.id)
    finally:
        engine.dispose()
    orders = pl.from_arrow(table)
    assert isinstance(orders, pl.DataFrame)
    if orders.height == 0:
        raise InputError(
            f"store {store!r} has no orders to simulate the program on",
            hint="import the store's orders first (`boomerang import ...`)",
        )
    return simulate(
        proposed,
        orders,
        currency=row.currency,
        assumptions=assumptions,
        start=None if start is None else _midnight(start),
        end=None if end is None else _midnight(end + timedelta(days=1)),
    )


def _midnight(day: date) -> int:
    return to_micros(datetime.combine(day, time(0), tzinfo=UTC))
