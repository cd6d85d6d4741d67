"""The retention report opens in headless Chromium offline, without JavaScript errors,
with every section and its charts drawn."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from boomerang.services.analytics import build_report
from boomerang.services.imports import apply_frames
from boomerang.simulate.store import simulate_store

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
]  # fmt: skip
SECTIONS = ("kpis", "trends", "cohorts", "churn", "returning", "second", "growth", "lifecycle",
            "definitions")  # fmt: skip


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    db = str(folder / "store.db")
    apply_frames(db, "shop", simulate_store(800, 450, 3).store_frames())
    result = build_report(db, "shop", folder / "report.html")
    assert result.headline["Customers"] != "n/a"
    assert result.stage in ("startup", "traction", "consistent", "established", "stable")
    return result.path


def test_report_is_self_contained(report: Path) -> None:
    html = report.read_text(encoding="utf-8")
    assert html.count("<script src=") == 0  # no CDN or external script
    assert html.count("plotly.js v") >= 1  # the library itself is embedded (once)
    assert '<link rel="icon" href="data:,">' in html
    for section in SECTIONS:
        assert f'id="{section}"' in html


def test_report_renders_in_headless_chromium(report: Path) -> None:
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have Debian's chromium: apt-get install -y chromium")
        pytest.skip("chromium is not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    errors: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on(
            "request",
            lambda r: requests.append(r.url) if not r.url.startswith(("file:", "data:")) else None,
        )
        page.goto(report.as_uri())
        page.wait_for_function(
            "document.querySelectorAll('.js-plotly-plot .main-svg').length >= 12"
        )
        for section in SECTIONS:
            assert page.locator(f"section#{section}").is_visible(), section
        drawn = page.evaluate("document.querySelectorAll('.js-plotly-plot').length")
        stage = page.locator(".stage.current").inner_text()
        browser.close()
    assert errors == []
    assert requests == []
    assert drawn >= 12
    assert stage.lower() in ("startup", "traction", "consistent", "established", "stable")
