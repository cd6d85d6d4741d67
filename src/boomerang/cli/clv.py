"""`boomerang clv fit|backtest|export`: predictive CLV from the store or a transactions file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from boomerang.cli.common import DbOption, StoreOption, console, err_console, resolve
from boomerang.errors import InputError

if TYPE_CHECKING:
    pass

app = typer.Typer(
    help="Predictive CLV: fit BG/NBD-family models, backtest them, export predictions.",
    no_args_is_help=True,
)

ModelOption = Annotated[
    str,
    typer.Option(
        "--model",
        help="bgnbd, mbgnbd or paretonbd (purchases; spend is always Gamma-Gamma); "
        "with --from-csv also gammagamma.",
    ),
]


def _progress(text: str) -> None:
    err_console.print(f"[dim]{text}[/]", highlight=False)


def fit(
    db: DbOption = None,
    store: StoreOption = None,
    model: ModelOption = "bgnbd",
    calibration_end: Annotated[
        str | None,
        typer.Option(
            "--calibration-end",
            help="Last day (YYYY-MM-DD) of the data used; default: the last order day.",
        ),
    ] = None,
    horizon_days: Annotated[
        int, typer.Option("--horizon-days", help="Horizon of expected purchases, in days.")
    ] = 90,
    months: Annotated[int, typer.Option("--months", help="CLV horizon in months.")] = 12,
    margin: Annotated[
        float, typer.Option("--margin", help="Share of order value kept as profit (0-1].")
    ] = 1.0,
    discount: Annotated[
        float, typer.Option("--discount", help="Monthly discount rate of future cash flows.")
    ] = 0.01,
    draws: Annotated[
        int,
        typer.Option("--draws", help="Parameter draws for the intervals (0: no intervals)."),
    ] = 200,
    from_csv: Annotated[
        Path | None,
        typer.Option("--from-csv", help="Fit straight from a transactions CSV (no store)."),
    ] = None,
    customer: Annotated[
        str | None, typer.Option("--customer", help="With --from-csv: customer id column.")
    ] = None,
    date: Annotated[
        str | None, typer.Option("--date", help="With --from-csv: transaction date column.")
    ] = None,
    value: Annotated[
        str | None, typer.Option("--value", help="With --from-csv: transaction value column.")
    ] = None,
    unit: Annotated[
        str, typer.Option("--unit", help="With --from-csv: time unit, weeks or days.")
    ] = "weeks",
    fmt: Annotated[
        str, typer.Option("--format", help="Output: table (terminal) or json.")
    ] = "table",
) -> None:
    """Fit the models and store per-customer predictions (or fit a CSV with --from-csv)."""
    from boomerang.services import clv as clv_service

    if fmt not in ("table", "json"):
        raise InputError(f"unknown format {fmt!r}", hint="use table or json")
    if from_csv is not None:
        if customer is None or date is None or calibration_end is None:
            raise InputError(
                "--from-csv needs --customer, --date and --calibration-end",
                hint="e.g. --customer id --date day --calibration-end 1997-09-30",
            )
        if unit not in ("weeks", "days"):
            raise InputError(f"unknown unit {unit!r}", hint="use weeks or days")
        out = clv_service.fit_from_csv(
            from_csv,
            customer=customer,
            date_column=date,
            value=value,
            calibration_end=calibration_end,
            unit="weeks" if unit == "weeks" else "days",
            model=model,
        )
        if fmt == "json":
            print(json.dumps(out, indent=2))
            return
        table = Table("parameter", "estimate", "95% interval", title=f"{model} ({unit})")
        for name, v in out["params"].items():
            lo, hi = out["intervals_95"][name]
            table.add_row(name, f"{v:.4g}", f"{lo:.4g} – {hi:.4g}")
        console.print(table)
        console.print(
            f"log-likelihood {out['log_likelihood']:.2f} · customers {out['n_customers']:,}"
        )
        return
    path, store_name = resolve(db, store)
    _progress("reading orders and fitting…")
    r = clv_service.fit_store(
        path,
        store_name,
        model=model,
        calibration_end=calibration_end,
        horizon_days=horizon_days,
        months=months,
        margin=margin,
        monthly_discount=discount,
        n_draws=draws,
    )
    if fmt == "json":
        payload = {
            "store": r.store, "model": r.model, "calibration_end": r.calibration_end.isoformat(),
            "n_customers": r.n_customers, "params": r.params, "spend_params": r.spend_params,
            "log_likelihood": r.log_likelihood, "rows_written": r.rows_written,
            "clv_total": r.clv_total, "risk_bands": r.risk_bands, "notes": r.notes,
        }  # fmt: skip
        print(json.dumps(payload, indent=2))
        return
    table = Table("parameter", "estimate", "95% interval", title=f"{r.model} on '{r.store}'")
    for name, v in r.params.items():
        lo, hi = r.intervals[name]
        table.add_row(name, f"{v:.4g}", f"{lo:.4g} – {hi:.4g}")
    for name, v in r.spend_params.items():
        table.add_row(f"{name} (Gamma-Gamma)", f"{v:.4g}", "")
    console.print(table)
    bands = " · ".join(f"{k} {v:,}" for k, v in sorted(r.risk_bands.items()))
    console.print(
        f"{r.n_customers:,} customers through {r.calibration_end} · log-likelihood "
        f"{r.log_likelihood:,.1f} · predicted CLV ({r.months} months) "
        f"{r.clv_total:,.0f} {r.currency} · expected purchases next {r.horizon_days} d "
        f"{r.expected_purchases_total:,.0f} · churn risk: {bands}"
    )
    console.print(f"wrote {r.rows_written:,} rows to customer_predictions (model {r.model})")
    for note in r.notes:
        console.print(f"note: {note}")


def backtest(
    calibration_end: Annotated[
        str, typer.Option("--calibration-end", help="Last day (YYYY-MM-DD) of calibration.")
    ],
    holdout_days: Annotated[
        int | None,
        typer.Option(
            "--holdout-days", help="Holdout length in days (default: up to the last order)."
        ),
    ] = None,
    db: DbOption = None,
    store: StoreOption = None,
    model: ModelOption = "bgnbd",
    fmt: Annotated[
        str, typer.Option("--format", help="Output: table (terminal) or json.")
    ] = "table",
) -> None:
    """Compare predicted and actual repeat purchases in a holdout, against a naive baseline."""
    from boomerang.services import clv as clv_service

    path, store_name = resolve(db, store)
    _progress("reading orders and fitting the calibration period…")
    r = clv_service.backtest_store(
        path, store_name, calibration_end=calibration_end, holdout_days=holdout_days, model=model
    )
    bt = r.backtest
    if fmt == "json":
        payload = {
            "model": bt.model_name, "calibration_end": str(bt.calibration_end),
            "holdout_days": bt.holdout_days, "n_customers": bt.n_customers, "params": bt.params,
            "errors": {
                name: {"mae": e.mae, "rmse": e.rmse, "aggregate_error": e.aggregate_error,
                       "predicted": e.predicted_total, "actual": e.actual_total}
                for name, e in ((bt.model_name, bt.model), ("naive", bt.naive))
            },
            "buckets": bt.buckets.to_dicts(), "model_wins": bt.model_wins,
        }  # fmt: skip
        print(json.dumps(payload, indent=2))
        return
    title = (
        f"backtest on '{r.store}': calibration to {bt.calibration_end}, "
        f"{bt.holdout_days}-day holdout, {bt.n_customers:,} customers"
    )
    table = Table("predictor", "MAE", "RMSE", "predicted", "actual", "aggregate error", title=title)
    for name, e in ((bt.model_name, bt.model), ("naive (past rate)", bt.naive)):
        table.add_row(
            name, f"{e.mae:.4f}", f"{e.rmse:.4f}", f"{e.predicted_total:,.0f}",
            f"{e.actual_total:,.0f}", f"{e.aggregate_error:+.1%}",
        )  # fmt: skip
    console.print(table)
    buckets = Table("frequency", "customers", "actual", bt.model_name, "naive",
                    title="mean holdout purchases by calibration frequency")  # fmt: skip
    for row in bt.buckets.iter_rows(named=True):
        buckets.add_row(
            str(row["frequency"]), f"{row['customers']:,}", f"{row['actual']:.3f}",
            f"{row['model']:.3f}", f"{row['naive']:.3f}",
        )  # fmt: skip
    console.print(buckets)
    verdict = "[green]model wins[/]" if bt.model_wins else "[red]naive baseline wins[/]"
    console.print(f"{verdict}: MAE {bt.model.mae:.4f} vs {bt.naive.mae:.4f}")
    for note in r.notes:
        console.print(f"note: {note}")


def export(
    out: Annotated[Path, typer.Option("--out", help="File to write.")],
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
    db: DbOption = None,
    store: StoreOption = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Only this model's rows (default: all).")
    ] = None,
) -> None:
    """Export the stored per-customer predictions to CSV or Parquet."""
    from boomerang.services import clv as clv_service

    path, store_name = resolve(db, store)
    n = clv_service.export_predictions(path, store_name, out=out, fmt=fmt, model=model)
    console.print(f"wrote {n:,} predictions to {out}")


app.command("fit")(fit)
app.command("backtest")(backtest)
app.command("export")(export)
