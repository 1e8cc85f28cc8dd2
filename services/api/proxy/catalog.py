"""The model catalog (``public.models``), read at start for ``/v1/models`` metadata."""

from __future__ import annotations

from datetime import datetime

import msgspec
import structlog

log = structlog.get_logger(__name__)


class CatalogModel(msgspec.Struct, frozen=True, kw_only=True):
    model_id: str
    name: str
    context_length: int
    created: int
    metadata: dict


async def load_catalog(pool) -> dict[str, CatalogModel]:
    if pool is None:
        return {}
    try:
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT model_id, name, context_length, metadata, created_at FROM public.models WHERE is_active"
            )
    except Exception as exc:
        log.info("catalog.unavailable", error=type(exc).__name__)
        return {}
    out = {}
    for row in rows:
        meta = row["metadata"]
        if isinstance(meta, str):
            try:
                meta = msgspec.json.decode(meta)
            except msgspec.DecodeError:
                meta = {}
        created = row["created_at"]
        out[row["model_id"]] = CatalogModel(
            model_id=row["model_id"],
            name=row["name"],
            context_length=int(row["context_length"]),
            created=int(created.timestamp()) if isinstance(created, datetime) else 0,
            metadata=meta if isinstance(meta, dict) else {},
        )
    return out
