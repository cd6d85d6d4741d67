"""Settings from the environment (``BOOMERANG_*``), built on demand by `load_settings`, never at import."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where the operational store lives and which store is meant when none is named."""

    model_config = SettingsConfigDict(env_prefix="BOOMERANG_", extra="ignore")

    db: str = "boomerang.db"
    store: str = "default"
    currency: str = "USD"


def load_settings(**overrides: object) -> Settings:
    """Environment first, then explicit (non-None) overrides from a face such as ``--db``."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**clean)  # type: ignore[arg-type]


def database_url(db: str) -> str:
    """Accept a SQLAlchemy URL or a plain SQLite file path; return a URL."""
    if "://" in db:
        if db.startswith("postgres://"):
            return "postgresql+psycopg://" + db[len("postgres://") :]
        if db.startswith("postgresql://"):
            return "postgresql+psycopg://" + db[len("postgresql://") :]
        return db
    return f"sqlite:///{Path(db).expanduser().resolve()}"
