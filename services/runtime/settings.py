"""Settings shared by every service, parsed from the environment once, in main."""

from __future__ import annotations

import os
from collections.abc import Mapping
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


def data_dir_from_env(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("INVENTIV_DATA_DIR") or "./.inventiv").resolve()


STACK_ENV_FILE = "stack.env"


def stack_env(data_dir: Path | None = None) -> dict[str, str]:
    """Server addresses a running `inventiv up` recorded under its data dir, if any."""
    path = (data_dir or data_dir_from_env()) / STACK_ENV_FILE
    if not path.exists():
        return {}
    pairs = (line.partition("=") for line in path.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, _, value in pairs}


def write_stack_env(data_dir: Path, values: dict[str, str]) -> Path:
    path = data_dir / STACK_ENV_FILE
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(0o600)
    return path


def server_url(name: str) -> str | None:
    """``NATS_URL`` / ``DATABASE_URL`` from the environment, else from a running `inventiv up`."""
    return os.environ.get(name) or stack_env().get(name)


def runtime_settings_from_env() -> RuntimeSettings:
    missing = [name for name in ("NATS_URL", "DATABASE_URL") if not server_url(name)]
    if missing:
        raise SystemExit(f"inventiv: set {' and '.join(missing)} (or run `inventiv up` to start an embedded stack)")
    return RuntimeSettings(
        nats_url=server_url("NATS_URL"),
        database_url=server_url("DATABASE_URL"),
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
