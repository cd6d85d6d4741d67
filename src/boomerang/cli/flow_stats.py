"""`boomerang flows stats` and `boomerang flows experiments`: what the flows did (sends,
opens, clicks, unsubscribes, attributed and incremental revenue) and how their A/B/n
variants compare (docs/attribution.md)."""

from __future__ import annotations

import json
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated, Any

import typer
from rich.table import Table

from boomerang.cli.common import DbOption, StoreOption, console, resolve
from boomerang.cli.segments import moment
from boomerang.domain.clock import from_micros

FlowOption = Annotated[str | None, typer.Option("--flow", help="Only this flow (by name).")]
WindowOption = Annotated[
    int | None,
    typer.Option(
        "--window",
        help="Attribution window in days (default: the campaign setting "
        "attribution_window_days, else 5).",
    ),
]
HorizonOption = Annotated[
    int | None,
    typer.Option(
        "--horizon",
        help="Days after entry (or after an A/B step) over which revenue is compared "
        "(default: the flow's span plus the attribution window).",
    ),
]
AsOfOption = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        help="Count what happened up to this date (default: now, or the store's latest "
        "order or message if later).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def _money(minor: float | int | None, exponent: int, *, signed: bool = False) -> str:
    if minor is None:
        return "–"
    value = Decimal(minor) if isinstance(minor, int) else Decimal(repr(float(minor)))
    value = value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN).scaleb(-exponent)
    text = f"{value:,.{exponent}f}"
    return f"+{text}" if signed and value > 0 else text


def _pct(rate: float | None, *, signed: bool = False, digits: int = 1) -> str:
    if rate is None:
        return "–"
    return f"{rate:+.{digits}%}" if signed else f"{rate:.{digits}%}"


def _p(p: float | None) -> str:
    return "–" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


def stats(
    flow: FlowOption = None,
    window: WindowOption = None,
    horizon: HorizonOption = None,
    as_of: AsOfOption = None,
    steps: Annotated[bool, typer.Option("--steps", help="Also show each send step.")] = False,
    as_json: JsonOption = False,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Per flow: entrants, sends, opens, clicks, unsubscribes, conversions, attributed
    revenue, and incremental revenue against the holdout with its 95% interval."""
    from boomerang.services import campaign_stats

    db_url, store_name = resolve(db, store)
    result = campaign_stats.flow_stats(
        db_url, store_name, window_days=window, horizon_days=horizon,
        as_of=moment(as_of), flow=flow,
    )  # fmt: skip
    if as_json:
        console.print_json(json.dumps(result.records()))
        return
    x = result.exponent
    table = Table(
        "flow", "entrants (holdout)", "sent", "opened", "clicked", "unsub", "conversions",
        f"attributed ({result.currency})", f"incremental ({result.currency}, 95%)", "lift",
        title=f"Flows as of {from_micros(result.as_of):%Y-%m-%d %H:%M} UTC · attribution "
        f"window {result.window_days} days",
    )  # fmt: skip
    notes: list[str] = []
    for f in result.flows:
        inc = f.incrementality
        if inc is None:
            incremental, lift = "–", "–"
        else:
            low, high = inc.incremental_low_minor, inc.incremental_high_minor
            interval = "" if low is None else f"\n[{_money(low, x)} to {_money(high, x)}]"
            incremental = _money(inc.incremental_minor, x, signed=True) + interval
            lift = _pct(None if inc.lift_pct is None else inc.lift_pct / 100, signed=True)
        table.add_row(
            f.name, f"{f.entrants:,} ({f.holdout_entrants:,})", f"{f.sends:,}",
            _pct(f.open_rate), _pct(f.click_rate), f"{f.unsubscribes:,}", f"{f.conversions:,}",
            _money(f.attributed_revenue_minor, x), incremental, lift,
        )  # fmt: skip
        notes += [f"{f.name}: {w}" for w in f.warnings]
    console.print(table)
    if steps:
        by_step = Table("flow", "step", "sent", "opened", "clicked", "conversions",
                        f"attributed ({result.currency})", title="Send steps")  # fmt: skip
        for f in result.flows:
            for s in f.steps:
                by_step.add_row(
                    f.name, s.step_id, f"{s.sends:,}",
                    _pct(s.opens / s.sends if s.sends else None),
                    _pct(s.clicks / s.sends if s.sends else None), f"{s.conversions:,}",
                    _money(s.attributed_revenue_minor, x),
                )  # fmt: skip
        console.print(by_step)
    for f in result.flows:
        inc = f.incrementality
        if inc is not None:
            console.print(
                f"{f.name}: {inc.treated:,} treated vs {inc.holdout:,} holdout entrants over "
                f"{f.horizon_days:g} days; converted {_pct(inc.conversion_treated)} vs "
                f"{_pct(inc.conversion_holdout)} (p {_p(inc.conversion_p_value)}); revenue "
                f"p {_p(inc.p_value)}",
                highlight=False,
            )
    for note in notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)


def _experiment_table(e: Any, exponent: int, currency: str) -> Table:
    r = e.result
    versus = {c.variant: c for c in r.comparisons}
    table = Table(
        "variant", "recipients", "conversions", "rate", f"revenue/recipient ({currency})",
        "rate vs control (p)", "revenue/recipient vs control (95%, p)",
        title=f"{e.flow} · {e.step_id}: days {e.start_days:g} to "
        f"{e.start_days + e.length_days:g} after entry",
    )  # fmt: skip
    for v in r.variants:
        c = versus.get(v.name)
        if c is None:
            against, revenue = "control", "control"
        else:
            diff = "–" if c.conversion_diff is None else f"{c.conversion_diff * 100:+.2f} pts"
            against = f"{diff} ({_p(c.conversion_p_value)})"
            low, high = c.revenue_per_recipient_low_minor, c.revenue_per_recipient_high_minor
            interval = (
                "" if low is None else f" [{_money(low, exponent)} to {_money(high, exponent)}]"
            )
            revenue = (
                f"{_money(c.revenue_per_recipient_diff_minor, exponent, signed=True)}{interval}"
                f" ({_p(c.revenue_p_value)})" + (" *" if c.significant else "")
            )
        table.add_row(
            v.name, f"{v.recipients:,}", f"{v.conversions:,}", _pct(v.conversion_rate),
            _money(v.revenue_per_recipient_minor, exponent), against, revenue,
        )  # fmt: skip
    return table


def experiments(
    flow: FlowOption = None,
    window: WindowOption = None,
    horizon: HorizonOption = None,
    as_of: AsOfOption = None,
    as_json: JsonOption = False,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Each A/B/n step's variants against the first (the control): conversion rate
    (two-proportion z-test) and revenue per recipient (Welch t-test), with sample warnings."""
    from boomerang.services import campaign_stats

    db_url, store_name = resolve(db, store)
    result = campaign_stats.experiment_stats(
        db_url, store_name, window_days=window, horizon_days=horizon,
        as_of=moment(as_of), flow=flow,
    )  # fmt: skip
    if as_json:
        console.print_json(json.dumps(result.records()))
        return
    if not result.experiments:
        console.print("No A/B steps in the flows (add an `ab:` step to test variants).")
        return
    for e in result.experiments:
        console.print(_experiment_table(e, result.exponent, result.currency))
        if e.holdout_excluded:
            console.print(f"  {e.holdout_excluded:,} holdout runs excluded (they got nothing)")
        if e.not_measured:
            console.print(f"  {e.not_measured:,} recipients not measured yet (window still open)")
        for w in e.result.warnings:
            console.print(f"  [yellow]warning:[/] {w}", highlight=False)
    console.print("* significant at the 5% level")
