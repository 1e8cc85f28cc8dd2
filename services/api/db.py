"""Read-model queries that survive the projector's schema swap.

A rebuild builds ``rm_next`` and swaps it in for ``rm``. A statement prepared against the old
tables may then fail once ("cached plan must not change result type", "relation … does not
exist" while the swap commits, "could not open relation with OID …"). Each helper retries once
on a fresh statement after dropping the connection's statement cache; a second failure with a
missing table means the read model really is not there (503, see ``errors``).
"""

from __future__ import annotations

from typing import Any

import asyncpg

from .errors import ReadModelUnavailable

_RETRYABLE = (
    asyncpg.InvalidCachedStatementError,
    asyncpg.UndefinedTableError,
    asyncpg.FeatureNotSupportedError,  # "cached plan must not change result type" on older servers
)
_STALE_OID_MARKERS = ("could not open relation with OID", "cache lookup failed for relation")


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, _RETRYABLE):
        return True
    return isinstance(exc, asyncpg.PostgresError) and any(m in str(exc) for m in _STALE_OID_MARKERS)


async def _run(pool: asyncpg.Pool, method: str, sql: str, args: tuple) -> Any:
    async with pool.acquire() as conn:
        try:
            return await getattr(conn, method)(sql, *args)
        except Exception as exc:  # noqa: BLE001 - filtered just below
            if not _is_retryable(exc) or conn.is_in_transaction():
                raise
            await conn.reload_schema_state()  # drops this connection's prepared-statement cache
            try:
                return await getattr(conn, method)(sql, *args)
            except asyncpg.UndefinedTableError as again:
                raise ReadModelUnavailable(str(again)) from again


async def fetch(pool: asyncpg.Pool, sql: str, *args: Any) -> list[asyncpg.Record]:
    return await _run(pool, "fetch", sql, args)


async def fetchrow(pool: asyncpg.Pool, sql: str, *args: Any) -> asyncpg.Record | None:
    return await _run(pool, "fetchrow", sql, args)


async def fetchval(pool: asyncpg.Pool, sql: str, *args: Any) -> Any:
    return await _run(pool, "fetchval", sql, args)


async def execute(pool: asyncpg.Pool, sql: str, *args: Any) -> str:
    return await _run(pool, "execute", sql, args)
