"""Reading ``rm.<table>`` from another service (the API) across a rebuild swap.

What a swap (``ALTER SCHEMA rm RENAME TO rm_old; ALTER SCHEMA rm_next RENAME TO rm; DROP
SCHEMA rm_old CASCADE`` in one transaction) does to a reader on a pooled asyncpg connection,
as tested in ``tests/integration/projector/test_rebuild.py``:

1. **Same table shapes (the usual case): nothing to do.** asyncpg keeps prepared statements
   per connection, but Postgres re-validates a cached plan before running it: the drop of the
   old tables invalidates it, and re-analysis resolves ``rm.instances`` by name again, now the
   new table. The next call returns the new rows, inside or outside a transaction. A query
   running during the swap either finishes on the old tables first or waits (ms) and reads
   the new ones; it never sees a missing table.
2. **A swap that changes a result's shape** (the DDL gained a column and the query says
   ``SELECT *``): Postgres refuses the stale statement with ``InvalidCachedStatementError``.
   Outside an explicit transaction asyncpg re-prepares and retries once by itself. Inside a
   transaction it cannot (the transaction is aborted), so retry the whole transaction:
   ``read_transaction`` below does it. Naming columns instead of ``*`` avoids the case.

So: plain ``pool.fetch("SELECT … FROM rm.x …")`` needs nothing; use ``read_transaction`` for
multi-statement consistent reads.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

T = TypeVar("T")


async def read_transaction(
    pool: asyncpg.Pool,
    read: Callable[[asyncpg.Connection], Awaitable[T]],
    *,
    attempts: int = 3,
    isolation: str = "repeatable_read",
) -> T:
    """Run ``read(conn)`` in a read-only transaction on a pooled connection; retried when a
    read-model swap changed the shape of a cached statement."""
    for attempt in range(1, attempts + 1):
        async with pool.acquire() as conn:
            try:
                async with conn.transaction(isolation=isolation, readonly=True):
                    return await read(conn)
            except asyncpg.exceptions.InvalidCachedStatementError:
                if attempt == attempts:
                    raise
                # asyncpg has already dropped the stale statement from its cache: try again.
    raise AssertionError("unreachable")
