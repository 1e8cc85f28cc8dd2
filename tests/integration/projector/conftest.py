"""Fixtures: a pool on the test database with ``rm`` created, an event store, a running projector."""

from __future__ import annotations

import asyncio
import contextlib

import pytest_asyncio

from services.projector.read_model import ReadModelProjection
from services.projector.runner import run_projection
from services.projector.schema import create_schema
from services.runtime import pg
from services.runtime.eventstore import JetStreamEventStore

APP = "projector-under-test"


@pytest_asyncio.fixture
async def pool(database_url):
    pool = await pg.create_pool(database_url, min_size=1, max_size=6, server_settings={"application_name": APP})
    async with pool.acquire() as conn:
        await create_schema(conn, "rm")
    yield pool
    await pool.close()


@pytest_asyncio.fixture
async def store(nats_client):
    return JetStreamEventStore(nats_client.jetstream())


class Running:
    """Projector tasks started by a test; stopped (and checked for crashes) at teardown."""

    def __init__(self, nc, pool):
        self.nc, self.pool = nc, pool
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task] = []

    def start(self, schema: str = "rm", projection=None, **kwargs) -> asyncio.Task:
        task = asyncio.create_task(
            run_projection(self.nc, self.pool, projection or ReadModelProjection(), schema=schema, stop=self.stop,
                           **kwargs)
        )  # fmt: skip
        self.tasks.append(task)
        return task

    async def close(self) -> None:
        self.stop.set()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self.tasks, return_exceptions=True), 10)
        for task in self.tasks:
            assert task.done(), "projector did not stop"
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()


@pytest_asyncio.fixture
async def projector(nats_client, pool):
    running = Running(nats_client, pool)
    yield running
    await running.close()


async def append_all(store, events) -> list[int]:
    return [await store.append(e, expected_last_seq=None) for e in events]


async def table_rows(conn, schema: str = "rm") -> dict[str, list]:
    """Every projected table's rows, sorted, for equality checks."""
    out = {}
    for table, order in (("instances", "id"), ("instance_state_history", "seq"), ("action_logs", "seq"),
                         ("organizations", "id"), ("users", "id"), ("memberships", "organization_id, user_id"),
                         ("api_keys", "id")):  # fmt: skip
        out[table] = [dict(r) for r in await conn.fetch(f"SELECT * FROM {schema}.{table} ORDER BY {order}")]
    return out
