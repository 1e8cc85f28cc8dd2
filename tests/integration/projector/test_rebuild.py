"""Rebuild: replay into rm_next, compare, swap under a running projector; readers across a swap."""

from __future__ import annotations

from pathlib import Path

import services.projector as projector_package

import asyncio
import io
import os
import sys

import asyncpg
import pytest

from contracts import ids
from services.projector.read_model import ReadModelProjection
from services.projector.readers import read_transaction
from services.projector.rebuild import ProgressBar, rebuild
from services.projector.runner import catch_up, wait_for_seq
from services.projector.schema import create_schema, ddl_sha256, ensure_read_model, schema_exists, stored_ddl_hash
from services.runtime import pg
from tests.unit.projector.builders import happy_path, identity_events

from .conftest import append_all, table_rows


async def _populate(store, n_instances: int) -> int:
    events = []
    for _ in range(n_instances):
        org = ids.new_id()
        events += happy_path(org, ids.new_id()) + identity_events(org, ids.new_id(), ids.new_id())
    return (await append_all(store, events))[-1]


async def test_rebuild_equals_live_and_swaps_while_a_projector_runs(nats_client, store, pool, projector):
    last = await _populate(store, 20)
    projector.start(batch_size=25)
    await wait_for_seq(pool, last)

    # Keep appending while the rebuild runs: the swap must not lose any of these.
    appending = asyncio.Event()

    async def writer():
        nonlocal last
        while not appending.is_set():
            last = (await append_all(store, happy_path(ids.new_id(), ids.new_id())[:4]))[-1]
            await asyncio.sleep(0.005)

    writer_task = asyncio.create_task(writer())
    out = io.StringIO()
    try:
        report = await rebuild(nats_client, pool, swap=True, progress=ProgressBar(out, plain_interval_s=0))
    finally:
        appending.set()
        await writer_task
    assert report.swapped and report.live_existed
    assert report.differences == [], [d.describe() for d in report.differences]
    # Every read-model table but the projector's own bookkeeping (checkpoints, meta) is compared.
    ddl = (Path(projector_package.__file__).parent / "sql" / "read_model.sql").read_text()
    assert report.tables_compared == ddl.count("CREATE TABLE") - 2
    assert report.checkpoint >= report.head_seq
    lines = out.getvalue().splitlines()
    assert lines and "events" in lines[-1] and "100.0%" in lines[-1] and "ev/s" in lines[-1]

    # The live projector carries on against the swapped-in tables.
    async with pool.acquire() as conn:
        assert not await schema_exists(conn, "rm_next") and not await schema_exists(conn, "rm_old")
    last = (await append_all(store, happy_path(ids.new_id(), ids.new_id())))[-1]
    await wait_for_seq(pool, last, timeout_s=15)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM rm.action_logs") == last
        assert await conn.fetchval("SELECT count(DISTINCT seq) FROM rm.action_logs") == last
        live = await table_rows(conn)
    # And what it built equals a fresh replay.
    async with pool.acquire() as conn:
        await create_schema(conn, "rm_check", replace=True)
    await catch_up(nats_client, pool, ReadModelProjection(), schema="rm_check")
    async with pool.acquire() as conn:
        assert await table_rows(conn, "rm_check") == live


async def test_no_swap_reports_differences_and_keeps_the_live_tables(nats_client, store, pool):
    last = await _populate(store, 3)
    await catch_up(nats_client, pool, ReadModelProjection(), schema="rm")
    async with pool.acquire() as conn:
        first = await conn.fetchval("SELECT id FROM rm.instances ORDER BY id LIMIT 1")
        await conn.execute("UPDATE rm.instances SET status = 'ready' WHERE id = $1", first)
        await conn.execute("DELETE FROM rm.action_logs WHERE seq = 2")
    report = await rebuild(nats_client, pool, swap=False)
    assert not report.swapped and report.checkpoint == last
    diffs = {d.table: d for d in report.differences}
    assert set(diffs) == {"instances", "action_logs"}
    assert (diffs["instances"].only_live, diffs["instances"].only_rebuilt) == (1, 1)
    assert (diffs["action_logs"].only_live, diffs["action_logs"].only_rebuilt) == (0, 1)
    assert any("ready" in s for s in diffs["instances"].samples)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM rm.instances WHERE status = 'ready'") == 1
        assert await schema_exists(conn, "rm_next")
    # Swapping repairs the live tables.
    report = await rebuild(nats_client, pool, swap=True)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM rm.instances WHERE status = 'ready'") == 0
        assert await conn.fetchval("SELECT count(*) FROM rm.action_logs") == last


async def test_rebuild_brings_a_lagging_live_schema_level(nats_client, store, pool):
    # No live projector running: the live tables are behind; the swap transaction catches them up to compare.
    first = await _populate(store, 2)
    await catch_up(nats_client, pool, ReadModelProjection(), schema="rm", until_seq=first - 5)
    report = await rebuild(nats_client, pool, swap=False)
    assert report.checkpoint == first and report.differences == []


async def test_readers_on_pooled_connections_survive_a_swap(nats_client, store, pool, database_url):
    await _populate(store, 2)
    await catch_up(nats_client, pool, ReadModelProjection(), schema="rm")
    reader = await pg.create_pool(database_url, min_size=1, max_size=1)
    try:
        query = "SELECT id, status FROM rm.instances ORDER BY id"
        before = await reader.fetch(query)  # prepared and cached on the pooled connection
        async with pool.acquire() as conn:
            await conn.execute("UPDATE rm.instances SET status = 'tampered'")
        await rebuild(nats_client, pool, swap=True)
        # Same shape: the cached statement now reads the new tables, outside and inside a transaction.
        assert await reader.fetch(query) == before

        async def in_tx(conn):
            return await conn.fetch(query)

        assert await read_transaction(reader, in_tx) == before

        # A swap that changes a result's shape (a column added) under a `SELECT *`.
        star = "SELECT * FROM rm.instances ORDER BY id"
        assert len(await reader.fetch(star)) == len(before)
        await _swap_in_wider_instances(pool)
        rows = await reader.fetch(star)  # outside a transaction asyncpg re-prepares by itself
        assert "extra" in rows[0].keys()
        await _swap_in_wider_instances(pool, column="extra2")
        with pytest.raises(asyncpg.exceptions.InvalidCachedStatementError):
            async with reader.acquire() as conn:
                async with conn.transaction():
                    await conn.fetch(star)
        await _swap_in_wider_instances(pool, column="extra3")

        async def star_in_tx(conn):
            return await conn.fetch(star)

        rows = await read_transaction(reader, star_in_tx)  # retried once with a fresh statement
        assert "extra3" in rows[0].keys()
    finally:
        await reader.close()


async def _swap_in_wider_instances(pool, column: str = "extra") -> None:
    async with pool.acquire() as conn:
        async with conn.transaction():
            await conn.execute("DROP SCHEMA IF EXISTS rm_next CASCADE; CREATE SCHEMA rm_next")
            await conn.execute("CREATE TABLE rm_next.instances AS SELECT * FROM rm.instances")
            await conn.execute(f"ALTER TABLE rm_next.instances ADD COLUMN {column} text")
            await conn.execute("ALTER SCHEMA rm RENAME TO rm_old; ALTER SCHEMA rm_next RENAME TO rm; "
                               "DROP SCHEMA rm_old CASCADE")  # fmt: skip


async def test_ensure_read_model_creates_then_rebuilds_on_ddl_change(nats_client, store, database_url):
    pool = await pg.create_pool(database_url, min_size=1, max_size=4)
    try:
        assert await ensure_read_model(nats_client, pool) == "created"
        assert await ensure_read_model(nats_client, pool) == "current"
        last = await _populate(store, 2)
        await catch_up(nats_client, pool, ReadModelProjection(), schema="rm")
        async with pool.acquire() as conn:
            await conn.execute("UPDATE rm.meta SET ddl_sha256 = 'older'")
        assert await ensure_read_model(nats_client, pool) == "rebuilt"
        async with pool.acquire() as conn:
            assert await stored_ddl_hash(conn, "rm") == ddl_sha256()
            assert await conn.fetchval("SELECT last_seq FROM rm.checkpoints WHERE name = 'read_model'") == last
            assert await conn.fetchval("SELECT count(*) FROM rm.action_logs") == last
    finally:
        await pool.close()


async def test_cli_rebuild_shows_progress_and_exits_zero(nats_server, store, pool, database_url):
    await _populate(store, 3)
    env = {**os.environ, "NATS_URL": nats_server.url, "DATABASE_URL": database_url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "projector", "rebuild", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert "rebuild [" in err.decode() and "events" in err.decode()
    assert "identical" in out.decode() or "no live read model" in out.decode()
    assert "swapped" in out.decode()


async def test_cli_rebuild_fails_with_one_clear_line(nats_server):
    env = {**os.environ, "NATS_URL": nats_server.url, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/nothing"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "projector", "rebuild", "--no-swap", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode != 0
    lines = [line for line in err.decode().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("inventiv projector rebuild: cannot reach Postgres"), lines
