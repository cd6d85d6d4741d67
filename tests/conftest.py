"""Shared fixtures: a fresh store database on SQLite and, when configured, on PostgreSQL.

PostgreSQL tests read ``BOOMERANG_TEST_PG_URL``; they skip when it is unset, except under
``CI``, where they use CI's server at its documented address and fail if it is not there.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

DATA = Path(__file__).parent / "data"
PG_ENV = "BOOMERANG_TEST_PG_URL"
CI_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def pg_admin_url() -> str | None:
    url = os.environ.get(PG_ENV)
    if url:
        return url
    if os.environ.get("CI"):
        # CI's PostgreSQL (the brief's address): under CI these tests run, never skip.
        return CI_PG_URL
    return None


@pytest.fixture
def sqlite_db(tmp_path: Path) -> str:
    return str(tmp_path / "store.db")


@pytest.fixture
def pg_db() -> Iterator[str]:
    admin = pg_admin_url()
    if admin is None:
        pytest.skip(f"{PG_ENV} not set")
    name = f"bt_{secrets.token_hex(5)}"
    base = admin.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest) -> str:
    """A fresh, empty store database on each engine we support."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_db"))
    return str(request.getfixturevalue("pg_db"))
