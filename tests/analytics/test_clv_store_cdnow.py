"""`clv fit --from-csv` on the CDNOW sample reproduces the BG/NBD paper's estimates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from boomerang.cli.app import app

CDNOW = Path(__file__).parents[1] / "data" / "cdnow" / "CDNOW_sample.txt"


def _csv(tmp_path: Path) -> Path:
    out = tmp_path / "cdnow.csv"
    lines = ["customer,day,amount"]
    for raw in CDNOW.read_text().splitlines():
        cust, _, day, _, amount = raw.split()
        lines.append(f"{cust},{day[:4]}-{day[4:6]}-{day[6:]},{amount}")
    out.write_text("\n".join(lines) + "\n")
    return out


def _fit(path: Path, model: str) -> dict[str, object]:
    result = CliRunner().invoke(
        app,
        ["clv", "fit", "--from-csv", str(path), "--customer", "customer", "--date", "day",
         "--value", "amount", "--calibration-end", "1997-09-30", "--unit", "weeks",
         "--model", model, "--format", "json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out: dict[str, object] = json.loads(result.stdout)
    return out


def test_cdnow_from_csv_reproduces_bgnbd_paper(tmp_path: Path) -> None:
    out = _fit(_csv(tmp_path), "bgnbd")
    params = out["params"]
    assert isinstance(params, dict)
    for name, value in {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}.items():
        assert params[name] == pytest.approx(value, rel=5e-3), name
    assert out["log_likelihood"] == pytest.approx(-9582.4, abs=0.5)
    assert out["n_customers"] == 2357


def test_cdnow_from_csv_gammagamma_names_paper_parameters(tmp_path: Path) -> None:
    out = _fit(_csv(tmp_path), "gammagamma")
    params = out["params"]
    assert isinstance(params, dict) and set(params) == {"p", "q", "gamma"}
    assert out["n_customers"] == 946  # repeat buyers with positive spend
