"""Fixtures for the API against real NATS and Postgres.

The read model belongs to the projector (another service): here the ``rm`` schema is created
from its DDL and the rows the API reads are written by a tiny test-only fold of the identity
events (users, organisations, memberships, API keys), or inserted directly for instances.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
import pytest_asyncio
import uvicorn
from litestar.testing import AsyncTestClient

from contracts import codec
from contracts.events import ApiKeyCreated, ApiKeyRevoked, MemberAdded, OrganizationCreated, UserCreated
from contracts.ids import GLOBAL_ORG, derived_id, new_id
from services.api.app import create_app
from argon2 import PasswordHasher
from services.api.settings import ApiSettings
from services.runtime import natsio
from services.runtime.embedded import free_port
from services.runtime.eventstore import JetStreamEventStore
from services.runtime.pg import create_pool
from services.runtime.settings import RuntimeSettings
from tests.helpers import wait_until

READ_MODEL_SQL = Path(__file__).resolve().parents[3] / "services" / "projector" / "sql" / "read_model.sql"

PASSWORD = "correct horse battery staple"
# One cheap argon2id hash for every test user (verification reads its cost from the hash itself).
_HASH = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)

# --- a tiny catalog ---------------------------------------------------------------------------

MOCK = derived_id("t-provider", "mock")
SCW = derived_id("t-provider", "scaleway")
OLD = derived_id("t-provider", "oldcloud")
ZONE_LOCAL = derived_id("t-zone", "local")
ZONE_PAR2 = derived_id("t-zone", "fr-par-2")
ZONE_PAR3 = derived_id("t-zone", "fr-par-3")
ZONE_OLD = derived_id("t-zone", "old-1")
TYPE_MOCK = derived_id("t-type", "mock-local-small")
TYPE_L4 = derived_id("t-type", "L4-1-24G")
TYPE_H100 = derived_id("t-type", "H100-1-80G")
MODEL_ECHO = derived_id("t-model", "mock-echo-model")
MODEL_QWEN = derived_id("t-model", "Qwen/Qwen2.5-7B-Instruct")
MODEL_LLAMA70 = derived_id("t-model", "meta-llama/Llama-3.1-70B-Instruct")
MODEL_RETIRED = derived_id("t-model", "retired/model")


async def seed_catalog(conn: asyncpg.Connection) -> None:
    await conn.executemany(
        "INSERT INTO providers (id, code, name, is_active) VALUES ($1, $2, $3, $4)",
        [(MOCK, "mock", "Mock", True), (SCW, "scaleway", "Scaleway", True), (OLD, "oldcloud", "Old", False)],
    )
    regions = [(derived_id("t-region", "local"), MOCK, "local"), (derived_id("t-region", "fr-par"), SCW, "fr-par"),
               (derived_id("t-region", "old"), OLD, "old")]
    await conn.executemany("INSERT INTO regions (id, provider_id, code, name) VALUES ($1, $2, $3, $3)", regions)
    await conn.executemany(
        "INSERT INTO zones (id, region_id, provider_id, code, name) VALUES ($1, $2, $3, $4, $4)",
        [(ZONE_LOCAL, regions[0][0], MOCK, "local"), (ZONE_PAR2, regions[1][0], SCW, "fr-par-2"),
         (ZONE_PAR3, regions[1][0], SCW, "fr-par-3"), (ZONE_OLD, regions[2][0], OLD, "old-1")],
    )
    await conn.executemany(
        """INSERT INTO instance_types (id, provider_id, code, name, gpu_count, vram_per_gpu_gb, cost_per_hour,
               is_active) VALUES ($1, $2, $3, $3, $4, $5, $6, $7)""",
        [(TYPE_MOCK, MOCK, "mock-local-small", 1, 24, Decimal("0.3600"), True),
         (TYPE_L4, SCW, "L4-1-24G", 1, 24, Decimal("0.7500"), True),
         (TYPE_H100, SCW, "H100-1-80G", 1, 80, Decimal("2.7300"), False)],
    )
    await conn.executemany(
        "INSERT INTO instance_type_zones (instance_type_id, zone_id) VALUES ($1, $2)",
        [(TYPE_MOCK, ZONE_LOCAL), (TYPE_L4, ZONE_PAR2), (TYPE_H100, ZONE_PAR2)],
    )
    await conn.executemany(
        """INSERT INTO models (id, name, model_id, required_vram_gb, is_active, metadata)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        [(MODEL_ECHO, "Mock Echo", "mock-echo-model", 0, True, {"provider_restriction": "mock"}),
         (MODEL_QWEN, "Qwen 7B", "Qwen/Qwen2.5-7B-Instruct", 16, True, {}),
         (MODEL_LLAMA70, "Llama 70B", "meta-llama/Llama-3.1-70B-Instruct", 160, True, {}),
         (MODEL_RETIRED, "Retired", "retired/model", 0, False, {})],
    )


# --- the read model, folded from identity events ---------------------------------------------


async def project_identity(pool: asyncpg.Pool, js) -> None:
    """Fold every identity/key event of the EVENTS stream into ``rm`` (idempotent)."""
    for stored in await natsio.read_subject(js, "EVENTS", "evt.>"):
        event = codec.decode_event(stored.data)
        at, seq = event.occurred_at, stored.seq
        if isinstance(event, UserCreated):
            await pool.execute(
                """INSERT INTO rm.users (id, email, password_hash, is_admin, created_at, last_event_seq)
                   VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING""",
                event.user_id, event.email, event.password_hash, event.is_admin, at, seq)
        elif isinstance(event, OrganizationCreated):
            await pool.execute(
                """INSERT INTO rm.organizations (id, name, slug, created_by_user_id, created_at, last_event_seq)
                   VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING""",
                event.organization_id, event.name, event.slug, event.created_by_user_id, at, seq)
        elif isinstance(event, MemberAdded):
            await pool.execute(
                """INSERT INTO rm.memberships (organization_id, user_id, role, created_at, last_event_seq)
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING""",
                event.organization_id, event.user_id, event.role, at, seq)
        elif isinstance(event, ApiKeyCreated):
            await pool.execute(
                """INSERT INTO rm.api_keys (id, org_id, user_id, name, prefix, key_hash, scopes, expires_at, created_at,
                       last_event_seq)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING""",
                event.key_id, event.org_id, event.user_id, event.name, event.prefix, event.key_hash,
                list(event.scopes), event.expires_at, at, seq)
        elif isinstance(event, ApiKeyRevoked):
            await pool.execute(
                "UPDATE rm.api_keys SET revoked_at = $2, last_event_seq = $3 WHERE id = $1 AND revoked_at IS NULL",
                event.key_id, at, seq)


def _env(org_id: str, **fields):
    return dict(id=new_id(), org_id=org_id, actor="system:test", correlation_id="test", causation_id="test",
                occurred_at=datetime.now(timezone.utc), **fields)


@dataclass
class Member:
    user_id: str
    org_id: str
    email: str
    password: str = PASSWORD


async def add_member(js, pool, email: str, *, slug: str | None = None, org_id: str | None = None,
                     role: str = "owner") -> Member:
    """A user in an organisation (created when ``slug`` is given), as events, folded into ``rm``."""
    store = JetStreamEventStore(js)
    user_id = derived_id("user-email", email.lower())
    await store.append(UserCreated(**_env(GLOBAL_ORG, user_id=user_id, email=email.lower(), password_hash=_HASH)),
                       expected_last_seq=0)
    if org_id is None:
        org_id = derived_id("org-slug", slug or email)
        await store.append(OrganizationCreated(**_env(org_id, organization_id=org_id, name=slug or email,
                                                      slug=slug or new_id())), expected_last_seq=0)
    await store.append(MemberAdded(**_env(org_id, organization_id=org_id, user_id=user_id, role=role)),
                       expected_last_seq=0)
    await project_identity(pool, js)
    return Member(user_id, org_id, email.lower())


async def insert_instance(pool, org_id: str, *, instance_id: str | None = None, status: str = "ready",
                          archived: bool = False, seq: int = 1) -> str:
    instance_id = instance_id or new_id()
    now = datetime.now(timezone.utc)
    await pool.execute(
        """INSERT INTO rm.instances (id, org_id, status, progress_percent, provider_code, region_code, zone_code,
               zone_id, instance_type_code, instance_type_id, gpu_count, model_id, model_name, hourly_price_eur,
               upstream_url, is_archived, startup_deadline, created_at, updated_at, last_event_seq)
           VALUES ($1, $2, $3, 100, 'mock', 'local', 'local', $4, 'mock-local-small', $5, 1, $6, 'mock-echo-model',
                   0.36, 'http://127.0.0.1:9/', $7, $8, $9, $9, $10)""",
        instance_id, org_id, status, ZONE_LOCAL, TYPE_MOCK, MODEL_ECHO, archived, now + timedelta(hours=1), now, seq,
    )
    return instance_id


# --- the app ----------------------------------------------------------------------------------


@dataclass
class Api:
    client: httpx.AsyncClient
    js: object
    pool: asyncpg.Pool
    app: object

    async def login(self, member: Member) -> httpx.Response:
        resp = await self.client.post("/auth/login", json={"email": member.email, "password": member.password})
        assert resp.status_code == 200, resp.text
        return resp

    async def api_key(self, member: Member) -> str:
        """A fresh API key of ``member`` (via a login on a separate cookie jar)."""
        token = await self.session_token(member)
        resp = await self.client.post("/api_keys", json={"name": "test"}, headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 201, resp.text
        return resp.json()["key"]

    async def session_token(self, member: Member) -> str:
        resp = await self.client.post("/auth/login", json={"email": member.email, "password": member.password})
        assert resp.status_code == 200, resp.text
        token = resp.cookies.get("inventiv_session")
        self.client.cookies.clear()
        return token

    async def commands_count(self) -> int:
        return (await self.js.stream_info("COMMANDS")).state.messages


@pytest_asyncio.fixture
async def api_db(database_url):
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(READ_MODEL_SQL.read_text().replace("{schema}", "rm"))
        await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
        await seed_catalog(conn)
    finally:
        await conn.close()
    return database_url


@pytest_asyncio.fixture
async def pool(api_db):
    p = await create_pool(api_db, min_size=1, max_size=4)
    yield p
    await p.close()


def api_settings(**overrides) -> ApiSettings:
    base = dict(mount_proxy=False, sse_keepalive_s=0.5, max_body_bytes=64 * 1024)
    base.update(overrides)
    return ApiSettings(**base)


def make_app(nats_server, api_db, tmp_path, **overrides):
    settings = RuntimeSettings(nats_url=nats_server.url, database_url=api_db, data_dir=tmp_path)
    return create_app(settings, api_settings(**overrides))


@pytest_asyncio.fixture
async def api(nats_server, nats_client, api_db, pool, tmp_path):
    app = make_app(nats_server, api_db, tmp_path)
    async with AsyncTestClient(app, base_url="http://testserver.local") as client:
        yield Api(client, nats_client.jetstream(), pool, app)


@dataclass
class LiveServer:
    url: str
    api: Api


@pytest_asyncio.fixture
async def live(nats_server, nats_client, api_db, pool, tmp_path):
    """The app on a real uvicorn socket (for streaming responses)."""
    app = make_app(nats_server, api_db, tmp_path)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_config=None, access_log=False,
                            timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started or task.done(), timeout_s=20, message="uvicorn started")
    assert not task.done(), task.exception()
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield LiveServer(url, Api(client, nats_client.jetstream(), pool, app))
    server.should_exit = True
    await asyncio.wait_for(task, 15)
