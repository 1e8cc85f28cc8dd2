"""The read-model schema: created from ``sql/read_model.sql`` under any name, versioned by hash.

``{schema}.meta`` stores the SHA-256 of the DDL file it was built from and the projection
code's version (``PROJECTION_VERSION``). At start the projector calls ``ensure_read_model``:
no ``rm`` -> create it (the runner then replays from sequence 1); ``rm`` stamped otherwise ->
rebuild into ``rm_next`` and swap (logged). Every process doing this holds one advisory lock,
so replicas starting together do it once. The projection checks the stamp before each batch
(``check_stamp``), so an older replica still running after a swap waits instead of writing.
"""

from __future__ import annotations

import hashlib
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

import asyncpg
import structlog

from .rowops import ident

log = structlog.get_logger(__name__)

DDL_PATH = Path(__file__).with_name("sql") / "read_model.sql"
LIVE = "rm"
SHADOW = "rm_next"
OLD = "rm_old"
# pg_advisory_lock key shared by every process that creates, rebuilds or swaps the read model.
LOCK_KEY = 0x1D7E_4C10
# Bump when the projection code changes what the rows of existing events contain (a new action
# type, a column filled differently): like a DDL change, it makes the projector rebuild on start.
PROJECTION_VERSION = 1


def ddl_template() -> str:
    return DDL_PATH.read_text()


def ddl_sha256() -> str:
    return hashlib.sha256(ddl_template().encode()).hexdigest()


def build_stamp() -> tuple[str, int]:
    """(DDL hash, projection version) this code builds and writes."""
    return ddl_sha256(), PROJECTION_VERSION


def render_ddl(schema: str) -> str:
    # str.replace, not str.format: the SQL has literal braces ('{}'::jsonb).
    return ddl_template().replace("{schema}", ident(schema))


async def schema_exists(conn: asyncpg.Connection, schema: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema))


async def stored_stamp(conn: asyncpg.Connection, schema: str) -> tuple[str, int] | None:
    """(DDL hash, projection version) ``schema`` was built with, or None if it has no stamp."""
    try:
        row = await conn.fetchrow(f"SELECT ddl_sha256, projection_version FROM {ident(schema)}.meta LIMIT 1")
    except (asyncpg.exceptions.UndefinedTableError, asyncpg.exceptions.UndefinedColumnError,
            asyncpg.exceptions.InvalidSchemaNameError):  # fmt: skip
        return None
    return (row["ddl_sha256"], row["projection_version"]) if row else None


async def stored_ddl_hash(conn: asyncpg.Connection, schema: str) -> str | None:
    stamp = await stored_stamp(conn, schema)
    return stamp[0] if stamp else None


class SchemaMismatch(RuntimeError):
    """The target schema was built from another DDL or projection version: do not write into it."""


async def check_stamp(conn: asyncpg.Connection, schema: str) -> None:
    stamp = await stored_stamp(conn, schema)
    if stamp != build_stamp():
        raise SchemaMismatch(
            f"{schema} was built by {stamp}, this projector builds {build_stamp()}: not writing into it "
            "(a newer projector owns it, or it needs `inventiv projector rebuild`)"
        )


async def create_schema(conn: asyncpg.Connection, schema: str, *, replace: bool = False) -> None:
    """Create ``schema`` with every read-model table and an empty checkpoint; one transaction."""
    s = ident(schema)
    async with conn.transaction():
        if replace:
            await conn.execute(f"DROP SCHEMA IF EXISTS {s} CASCADE")
        await conn.execute(render_ddl(s))
        await conn.execute(f"INSERT INTO {s}.meta (ddl_sha256, projection_version) VALUES ($1, $2)", *build_stamp())


async def drop_schema(conn: asyncpg.Connection, schema: str) -> None:
    await conn.execute(f"DROP SCHEMA IF EXISTS {ident(schema)} CASCADE")


class LockBusy(RuntimeError):
    pass


@asynccontextmanager
async def read_model_lock(pool: asyncpg.Pool, *, wait: bool = True) -> AsyncIterator[asyncpg.Connection]:
    """Hold the read-model advisory lock on a dedicated connection for the ``with`` block."""
    async with pool.acquire() as conn:
        if wait:
            await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        elif not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
            raise LockBusy("another process is creating or rebuilding the read model")
        try:
            yield conn
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)


async def ensure_read_model(nc, pool: asyncpg.Pool, projection=None, *, progress=None) -> str:
    """Make ``rm`` exist and match the DDL file. Returns ``"created"``, ``"current"`` or ``"rebuilt"``."""
    from .read_model import ReadModelProjection
    from .rebuild import rebuild_locked

    projection = projection or ReadModelProjection()
    async with read_model_lock(pool) as conn:
        if not await schema_exists(conn, LIVE):
            await create_schema(conn, LIVE)
            log.info("read_model.created", schema=LIVE)
            return "created"
        stored = await stored_stamp(conn, LIVE)
        if stored == build_stamp():
            return "current"
        log.warning("read_model.changed", schema=LIVE, stored=stored, wanted=build_stamp(),
                    action="rebuilding from the event log")  # fmt: skip
        report = await rebuild_locked(conn, nc, pool, projection, swap=True, progress=progress)
        log.warning("read_model.rebuilt", **report.summary())
        return "rebuilt"
