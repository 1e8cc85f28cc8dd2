"""Settings shared by every service, parsed from the environment once, in main."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec


class RuntimeSettings(msgspec.Struct, frozen=True, kw_only=True):
    nats_url: str
    """NATS server URL(s), comma separated."""
    database_url: str
    """asyncpg DSN of the Postgres that holds the read models."""
    data_dir: Path
    """Where the embedded stack keeps its servers' data and logs."""
    log_format: str = "console"
    """``json`` in production, ``console`` for people."""
    log_level: str = "info"


def data_dir_from_env() -> Path:
    return Path(os.environ.get("INVENTIV_DATA_DIR", "./.inventiv")).resolve()


def runtime_settings_from_env() -> RuntimeSettings:
    missing = [name for name in ("NATS_URL", "DATABASE_URL") if not os.environ.get(name)]
    if missing:
        raise SystemExit(f"inventiv: set {' and '.join(missing)} (or run `inventiv up` to start an embedded stack)")
    return RuntimeSettings(
        nats_url=os.environ["NATS_URL"],
        database_url=os.environ["DATABASE_URL"],
        data_dir=data_dir_from_env(),
        log_format=os.environ.get("INVENTIV_LOG_FORMAT", "console"),
        log_level=os.environ.get("INVENTIV_LOG_LEVEL", "info"),
    )


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"inventiv: {name} must be an integer, got {raw!r}") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(f"inventiv: {name} must be a number, got {raw!r}") from None
