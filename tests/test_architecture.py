"""Fail the build when an import crosses the layering of ARCHITECTURE.md.

domain <- store <- capabilities <- services <- faces; arrows point down only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "boomerang"

LAYER = {
    "domain": 0,
    "errors": 0,
    "config": 0,
    "store": 1,
    "ingest": 2,
    "simulate": 2,
    "analytics": 2,
    "segments": 2,
    "loyalty": 2,
    "campaigns": 2,
    "recommend": 2,
    "reports": 2,
    "services": 3,
    "cli": 4,
    "api": 4,
    "web": 4,
    "__main__": 5,
}
# Capabilities may not import each other except through these allowed edges.
CAPABILITY_EDGES = {
    ("simulate", "ingest"),
    ("segments", "analytics"),
    ("campaigns", "segments"),
    ("campaigns", "loyalty"),
    ("campaigns", "recommend"),
    ("reports", "analytics"),
    ("campaigns", "analytics"),
    ("loyalty", "analytics"),
}


def _top(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "boomerang" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every imported dotted name: ``import a.b`` gives a.b, ``from a import b`` gives a.b."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def _violations() -> list[str]:
    bad = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        own = rel.parts[0].removesuffix(".py")
        if own == "__init__":
            continue
        own_layer = LAYER.get(own)
        if own_layer is None:
            bad.append(f"{rel}: package {own!r} has no layer in test_architecture.LAYER")
            continue
        for line, module in _imports(path):
            other = _top(module)
            if other is None or other == own or other == "__init__" or other not in LAYER:
                continue
            if LAYER[other] > own_layer:
                bad.append(
                    f"{rel}:{line} imports {module} (layer {LAYER[other]} above {LAYER[own]})"
                )
            elif LAYER[other] == own_layer == 2 and (own, other) not in CAPABILITY_EDGES:
                bad.append(f"{rel}:{line} capability {own} imports capability {other}")
            elif LAYER[other] == own_layer == 4:
                bad.append(f"{rel}:{line} face {own} imports face {other}")
    return bad


def test_imports_point_down_only() -> None:
    assert _violations() == []


def test_store_sql_lives_in_store(tmp_path: Path) -> None:
    """Operational SQL (sqlalchemy) is only imported by store/ and the migrations."""
    offenders = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        if rel.parts[0] in ("store",):
            continue
        for line, module in _imports(path):
            type_only = module in ("sqlalchemy.Engine", "sqlalchemy.Connection")
            if module.split(".")[0] == "sqlalchemy" and not type_only:
                offenders.append(f"{rel}:{line} {module}")
    assert offenders == []


def test_checker_catches_a_violation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker itself must be able to fail."""
    fake = tmp_path / "boomerang"
    (fake / "domain").mkdir(parents=True)
    (fake / "domain" / "x.py").write_text("from boomerang.services import admin\n")
    monkeypatch.setattr(__import__(__name__), "SRC", fake)
    assert any("layer" in v for v in _violations())
