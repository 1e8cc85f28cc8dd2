"""Versioned, checksummed SQL migrations applied under an advisory lock.

Files are ``services/db/migrations/NNNN_name.sql``. Each applies in its own transaction and is
recorded with its SHA-256; an applied file that changed afterwards stops the run with an
error instead of silently diverging. Several services may start at once: the advisory lock
makes exactly one of them apply.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import asyncpg
import structlog

log = structlog.get_logger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# Arbitrary but fixed: pg_advisory_lock key shared by every process that migrates.
_LOCK_KEY = 0x1D7E_4C0F


class MigrationError(RuntimeError):
    pass


def discover(directory: Path = MIGRATIONS_DIR) -> list[tuple[int, str, str, str]]:
    """(version, name, sql, sha256) for each file, sorted by version."""
    found = []
    for path in sorted(directory.glob("*.sql")):
        version_text, _, name = path.stem.partition("_")
        if not version_text.isdigit():
            raise MigrationError(f"migration file name must start with a number: {path.name}")
        sql = path.read_text()
        found.append((int(version_text), name, sql, hashlib.sha256(sql.encode()).hexdigest()))
    versions = [v for v, *_ in found]
    if len(versions) != len(set(versions)):
        raise MigrationError("two migration files share a version number")
    return found


async def migrate(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; returns the names applied."""
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   sha256 text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["version"]: r["sha256"] for r in await conn.fetch("SELECT version, sha256 FROM schema_migrations")}
        for version, name, sql, digest in discover(directory):
            if version in done:
                if done[version] != digest:
                    raise MigrationError(f"migration {version}_{name} changed after it was applied")
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, sha256) VALUES ($1, $2, $3)", version, name, digest
                )
            log.info("db.migrated", version=version, name=name)
            applied_now.append(f"{version:04d}_{name}")
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now
