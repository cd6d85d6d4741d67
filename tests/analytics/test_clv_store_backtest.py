"""`boomerang clv backtest` on a simulated store: the model beats the naive baseline."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from boomerang.cli.app import app
from boomerang.services import clv
from boomerang.services.imports import apply_frames
from boomerang.simulate import simulate_store


def test_backtest_model_beats_naive_and_report_section_renders(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    apply_frames(db, "shop", simulate_store(4_000, 730, 7).store_frames(digests=False))
    result = CliRunner().invoke(
        app,
        ["clv", "backtest", "--db", db, "--store", "shop", "--calibration-end", "2026-03-31",
         "--holdout-days", "180", "--format", "json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    errors = out["errors"]
    assert errors["bgnbd"]["mae"] < errors["naive"]["mae"]
    assert errors["bgnbd"]["rmse"] < errors["naive"]["rmse"]
    assert abs(errors["bgnbd"]["aggregate_error"]) < 0.15
    assert out["model_wins"] and out["holdout_days"] == 180
    assert [b["frequency"] for b in out["buckets"]][-1] == "7+"

    html = clv.clv_section(db, "shop")
    assert html.startswith('<section class="clv"') and html.rstrip().endswith("</section>")
    assert "CLV at risk" in html and "Backtest" in html and "naive" in html
    assert "<script src=" not in html  # plotly.js is the page's, included once
