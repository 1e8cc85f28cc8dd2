"""Fixtures for FinOps against real NATS and Postgres."""

from __future__ import annotations

import pytest_asyncio

from services.finops import store
from services.runtime import pg


@pytest_asyncio.fixture
async def pool(database_url):
    p = await pg.create_pool(database_url, min_size=1, max_size=6)
    yield p
    await p.close()


@pytest_asyncio.fixture
async def schema(pool):
    async with pool.acquire() as conn:
        await store.create_schema(conn, store.DEFAULT_SCHEMA)
    return store.DEFAULT_SCHEMA
