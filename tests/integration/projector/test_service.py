"""The projector service: heartbeat recorder and ``serve`` end to end."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from pathlib import Path

from prometheus_client import REGISTRY

from contracts import codec, ids, subjects
from contracts.heartbeats import EngineLoad, Heartbeat
from services.projector.heartbeats import run_heartbeat_recorder
from services.projector.main import serve
from services.projector.runner import wait_for_seq
from services.runtime import pg
from services.runtime.settings import RuntimeSettings
from tests.helpers import wait_until
from tests.unit.projector.builders import happy_path

from .conftest import append_all


def _hb(status: str = "ready", running: float = 0.0) -> bytes:
    return codec.encode(Heartbeat(status=status, model="Qwen/Qwen2.5-0.5B-Instruct", sent_at=datetime.now(timezone.utc),
                                  engine=EngineLoad(requests_running=running)))  # fmt: skip


def _invalid(reason: str) -> float:
    return REGISTRY.get_sample_value("inventiv_projector_heartbeats_invalid_total", {"reason": reason}) or 0.0


async def test_heartbeats_are_recorded_by_subject_and_bad_ones_counted(nats_client, pool):
    js = nats_client.jetstream()
    org, a, b = ids.new_id(), ids.new_id(), ids.new_id()
    # Published before the recorder starts: picked up as the last message of their subject.
    await js.publish(subjects.heartbeat_subject(org, a), _hb("starting"), stream="HEARTBEATS")
    await js.publish(subjects.heartbeat_subject(org, a), _hb("ready", 1), stream="HEARTBEATS")
    bad_subject, bad_payload = _invalid("subject"), _invalid("payload")
    stop = asyncio.Event()
    task = asyncio.create_task(run_heartbeat_recorder(nats_client, pool, stop=stop))
    try:
        async def row(iid):
            async with pool.acquire() as conn:
                return await conn.fetchrow("SELECT * FROM public.worker_heartbeats WHERE instance_id = $1", iid)

        first = await wait_until(lambda: row(a), message="heartbeat of a")
        assert (first["status"], first["org_id"]) == ("ready", org)
        assert first["payload"]["engine"]["requests_running"] == 1
        # The instance id comes from the subject, whatever the payload says; garbage is counted.
        await js.publish(f"hb.{org}.not-a-uuid", _hb(), stream="HEARTBEATS")
        await js.publish(subjects.heartbeat_subject(org, b), b"{nope", stream="HEARTBEATS")
        await js.publish(subjects.heartbeat_subject(org, a), _hb("draining", 3), stream="HEARTBEATS")
        later = await wait_until(lambda: _status_is(row, a, "draining"), message="newer heartbeat")
        assert later["stream_seq"] > first["stream_seq"] and later["received_at"] >= first["received_at"]
        await wait_until(lambda: _invalid("subject") > bad_subject and _invalid("payload") > bad_payload,
                         message="invalid heartbeats counted")  # fmt: skip
        assert await row(b) is None
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def _status_is(row, iid, status):
    r = await row(iid)
    return r if r is not None and r["status"] == status else None


async def test_serve_creates_the_read_model_and_projects(nats_server, nats_client, store, database_url, tmp_path: Path):
    seqs = await append_all(store, happy_path(ids.new_id(), ids.new_id()))
    settings = RuntimeSettings(nats_url=nats_server.url, database_url=database_url, data_dir=tmp_path)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop))
    pool = await pg.create_pool(database_url, min_size=1, max_size=2)
    try:
        async def rm_exists():
            async with pool.acquire() as conn:
                return await conn.fetchval("SELECT to_regclass('rm.checkpoints') IS NOT NULL")

        await wait_until(rm_exists, message="rm created")
        await wait_for_seq(pool, seqs[-1])
        iid = ids.new_id()
        await nats_client.jetstream().publish(subjects.heartbeat_subject(ids.new_id(), iid), _hb(), stream="HEARTBEATS")

        async def recorded():
            async with pool.acquire() as conn:
                return await conn.fetchval("SELECT count(*) FROM public.worker_heartbeats WHERE instance_id = $1", iid)

        await wait_until(recorded, message="heartbeat recorded by serve")
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        await pool.close()
