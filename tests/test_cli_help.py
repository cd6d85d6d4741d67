"""Every CLI command documents itself; errors print one line without a traceback."""

from __future__ import annotations

import subprocess
import sys

import typer
from typer.main import get_command

from boomerang.cli.app import app


def _commands(group: object, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object]]:
    found = []
    for name, cmd in getattr(group, "commands", {}).items():
        path = (*prefix, name)
        found.append((path, cmd))
        found += _commands(cmd, path)
    return found


def test_every_command_and_option_has_help() -> None:
    root = get_command(app)
    commands = _commands(root)
    assert len(commands) >= 6
    missing = []
    for path, cmd in commands:
        if not (getattr(cmd, "help", None) or getattr(cmd, "short_help", None)):
            missing.append(" ".join(path))
        for param in getattr(cmd, "params", []):
            if getattr(param, "param_type_name", "") == "option" and not getattr(
                param, "help", None
            ):
                missing.append(f"{' '.join(path)} {param.opts[0]}")
    assert missing == []


def test_known_error_is_one_line_without_traceback(tmp_path: object) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "boomerang", "import", "no-such-kind", "x.csv", "--db", ":memory:"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [lines[0]] and "(input) unknown import kind 'no-such-kind'" in lines[0]


def test_typer_is_the_cli_framework() -> None:
    assert isinstance(app, typer.Typer)
