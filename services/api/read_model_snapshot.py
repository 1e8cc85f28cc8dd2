"""A consistent snapshot of the read model for in-memory caches that then follow events live.

The rows and the projector's checkpoint are read in one repeatable-read transaction, so the
caller knows exactly which event sequence the rows reflect and resumes the live feed right after it.
"""

from __future__ import annotations

import structlog

log = structlog.get_logger(__name__)

READ_MODEL_CHECKPOINT_SQL = "SELECT coalesce((SELECT last_seq FROM rm.checkpoints WHERE name = 'read_model'), 0)"


async def read_model_snapshot(pool, query: str, *, what: str) -> tuple[int, list]:
    """(checkpoint, rows); (0, []) when there is no read model yet, so the caller replays from the log."""
    if pool is None:
        return 0, []
    try:
        async with pool.acquire() as conn:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                checkpoint = await conn.fetchval(READ_MODEL_CHECKPOINT_SQL)
                rows = await conn.fetch(query)
    except Exception as exc:  # noqa: BLE001 - fresh install or rebuild in progress: replay events instead
        log.info("read_model.snapshot_unavailable", what=what, error=type(exc).__name__)
        return 0, []
    return (int(checkpoint), rows) if checkpoint else (0, [])
