"""Shared fixtures: a fresh store database on SQLite and, when configured, on PostgreSQL.

PostgreSQL tests read ``BOOMERANG_TEST_PG_URL``; they skip when it is unset, except under
``CI``, where they use CI's server at its documented address and fail if it is not there.
"""

from __future__ import annotations

import compileall
import os
import secrets
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

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


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session", autouse=True)
def package_bytecode() -> None:
    """Compile the package's bytecode once when the environment says not to write it
    (``PYTHONDONTWRITEBYTECODE``): the CLI tests start well over a hundred ``boomerang``
    processes, and each would otherwise compile every module it imports from source
    (about 0.1-0.2 s a process). The files go where Python puts them (``__pycache__``,
    git-ignored); with them up to date this is a stat per module."""
    if sys.dont_write_bytecode:
        import boomerang

        compileall.compile_dir(Path(boomerang.__file__).parent, quiet=2)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file at the newest schema, migrated once; tests start from a copy of it
    (running every migration per test cost about a second)."""
    from boomerang.services.context import open_engine

    path = tmp_path_factory.mktemp("template") / "store.db"
    open_engine(str(path)).dispose()
    return path


@pytest.fixture
def empty_sqlite_db(tmp_path: Path) -> str:
    """A path with no database yet (the migrations test starts from nothing)."""
    return str(tmp_path / "store.db")


@pytest.fixture
def sqlite_db(tmp_path: Path, sqlite_template: Path) -> str:
    path = tmp_path / "store.db"
    shutil.copyfile(sqlite_template, path)
    return str(path)


def _admin_engine() -> Engine:
    admin = pg_admin_url()
    assert admin is not None
    base = admin.replace("postgresql://", "postgresql+psycopg://", 1)
    return create_engine(base, isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str | None]:
    """A PostgreSQL database at the newest schema, per xdist worker (two workers may not
    copy one template at once); each test's database is created from it."""
    admin = pg_admin_url()
    if admin is None:
        yield None
        return
    from boomerang.services.context import open_engine

    name = f"bt_tmpl_{_worker()}_{secrets.token_hex(3)}"
    engine = _admin_engine()
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    open_engine(admin.rsplit("/", 1)[0] + "/" + name).dispose()
    try:
        yield name
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def _pg_database(template: str | None) -> Iterator[str]:
    admin = pg_admin_url()
    if admin is None:
        pytest.skip(f"{PG_ENV} not set")
    name = f"bt_{secrets.token_hex(5)}"
    engine = _admin_engine()
    with engine.connect() as conn:
        suffix = f' TEMPLATE "{template}"' if template else ""
        conn.execute(text(f'CREATE DATABASE "{name}"{suffix}'))
    url = admin.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture
def pg_db(pg_template: str | None) -> Iterator[str]:
    """A fresh PostgreSQL database at the newest schema (a copy of the template)."""
    yield from _pg_database(pg_template)


@pytest.fixture
def empty_pg_db() -> Iterator[str]:
    yield from _pg_database(None)


@pytest.fixture(params=["sqlite", "postgres"])
def empty_db(request: pytest.FixtureRequest) -> str:
    """A database with no schema at all, on each engine (for the migrations test)."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("empty_sqlite_db"))
    return str(request.getfixturevalue("empty_pg_db"))


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest) -> str:
    """A fresh, empty store database on each engine we support."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_db"))
    return str(request.getfixturevalue("pg_db"))
