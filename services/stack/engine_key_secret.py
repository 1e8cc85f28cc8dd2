"""The engine key secret of a local stack: ``INVENTIV_ENGINE_KEY_SECRET``, or one generated once per data dir.

``inventiv up`` hands it to the orchestrator (which gives every mock worker its derived engine key)
and to the API (whose proxy presents that key), so the default stack's engines are keyed too. It
lives in ``<data dir>/engine-key-secret`` (0600, beside ``stack.env``), created atomically, so a
restart keeps the keys of the workers already running. The value is never printed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import structlog

from services.runtime.engine_keys import SECRET_ENV, SECRET_FILE, InvalidEngineKeySecret, decode_secret, generate_secret

log = structlog.get_logger("inventiv.up")


def ensure_engine_key_secret(data_dir: Path, environ: Mapping[str, str] | None = None) -> str:
    """The secret the stack's services get: the environment's (validated), else the data dir's (made once)."""
    env = os.environ if environ is None else environ
    given = env.get(SECRET_ENV, "").strip()
    if given:
        _check(given, SECRET_ENV)
        return given
    path = Path(data_dir) / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(path)
    try:
        os.write(fd, (generate_secret() + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    log.info("stack.engine_key_secret_created", path=str(path))
    return _read(path)


def _read(path: Path) -> str:
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)  # a secret readable by others: close it first, then use it
        log.warning("stack.engine_key_secret_mode_fixed", path=str(path))
    value = path.read_text(encoding="ascii", errors="replace").strip()
    _check(value, str(path))
    return value


def _check(value: str, where: str) -> None:
    try:
        decode_secret(value)
    except InvalidEngineKeySecret as exc:
        raise SystemExit(f"inventiv: {where}: {exc}") from None
