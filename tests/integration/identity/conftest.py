"""Identity through HTTP against the real parts: nats-server, Postgres, the projector running.

``idp`` starts the API (mail into an outbox directory under ``tmp_path``), the read-model
projector (so every read after a write goes through the real event -> projection path), and
the bootstrap administrator with the default organisation. ``idp.person(...)`` gives each
caller its own cookie jar.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest_asyncio
import uvicorn
from argon2 import PasswordHasher

from contracts.events import InstanceRequested, MemberAdded, UserCreated
from contracts.ids import derived_id, new_id
from services.api.app import asgi_entry, create_app
from services.api.bootstrap_admin import admin_user_id, default_org_id, ensure_admin
from services.api.mail import MailMessage
from services.api.mail.outbox import read_outbox
from services.api.settings import ApiSettings
from services.projector.read_model import ReadModelProjection
from services.projector.runner import run_projection, wait_for_seq
from services.projector.schema import create_schema
from services.runtime.embedded import free_port
from services.runtime.eventstore import JetStreamEventStore
from services.runtime.pg import create_pool
from services.runtime.settings import RuntimeSettings
from tests.helpers import wait_until
from tests.unit.projector.builders import instance_event

ADMIN_EMAIL = "admin@inventiv.local"
ADMIN_PASSWORD = "admin password that is long enough"
PASSWORD = "a perfectly fine passphrase"


@dataclass
class Person:
    email: str
    password: str
    client: httpx.AsyncClient
    user_id: str = ""

    async def login(self) -> httpx.Response:
        resp = await self.client.post("/auth/login", json={"email": self.email, "password": self.password})
        assert resp.status_code == 200, resp.text
        self.user_id = resp.json()["id"]
        return resp

    @property
    def token(self) -> str:
        return self.client.cookies.get("inventiv_session")


@dataclass
class Idp:
    app: object
    url: str
    js: object
    nc: object
    pool: object
    outbox: Path
    admin: Person | None = None
    default_org: str = ""
    clients: list[httpx.AsyncClient] = field(default_factory=list)
    # Every response any client received (the secrets scan reads them all).
    responses: list[httpx.Response] = field(default_factory=list)

    def client(self, **kwargs) -> httpx.AsyncClient:
        async def keep(response: httpx.Response) -> None:
            if "text/event-stream" not in response.headers.get("content-type", ""):
                await response.aread()
                self.responses.append(response)

        client = httpx.AsyncClient(base_url=self.url, timeout=30, event_hooks={"response": [keep]}, **kwargs)
        self.clients.append(client)
        return client

    async def person(self, email: str, password: str = PASSWORD, *, login: bool = True) -> Person:
        who = Person(email.lower(), password, self.client())
        if login:
            await who.login()
        return who

    async def user(self, email: str, password: str = PASSWORD, **fields) -> Person:
        """A new account created by the administrator, signed in."""
        resp = await self.admin.client.post("/users", json={"email": email, "password": password, **fields})
        assert resp.status_code == 201, resp.text
        return await self.person(email, password)

    async def org(self, owner: Person, slug: str) -> str:
        resp = await owner.client.post("/organizations", json={"name": slug.title(), "slug": slug})
        assert resp.status_code == 201, resp.text
        return resp.json()["id"]

    async def join(self, owner: Person, member: Person, role: str = "user") -> None:
        """``member`` joins ``owner``'s current organisation with ``role`` through an invitation."""
        invite = await owner.client.post("/organizations/current/invitations",
                                         json={"email": member.email, "role": "user"})
        assert invite.status_code == 201, invite.text
        accepted = await member.client.post("/organizations/invitations/accept", json={"token": invite.json()["token"]})
        assert accepted.status_code == 200, accepted.text
        if role != "user":
            changed = await owner.client.put(f"/organizations/current/members/{member.user_id}", json={"role": role})
            assert changed.status_code == 200, changed.text

    async def quiet_member(self, org_id: str, email: str, role: str) -> str:
        """An account and its membership written as events (setup only: cheaper than the invitation
        flow, for targets that never sign in). Returns the user id."""
        user_id = derived_id("user-email", email)
        store = JetStreamEventStore(self.js)
        await store.append(UserCreated(**_setup_envelope("global"), user_id=user_id, email=email,
                                       password_hash=_CHEAP_HASH), expected_last_seq=0)
        seq = await store.append(MemberAdded(**_setup_envelope(org_id), organization_id=org_id, user_id=user_id,
                                             role=role), expected_last_seq=None)
        await wait_for_seq(self.pool, seq, timeout_s=20)
        return user_id

    async def instance(self, org_id: str) -> str:
        """An instance of ``org_id``, as its first lifecycle event, projected."""
        iid = new_id()
        event = instance_event("instance.requested", org_id, iid)
        assert isinstance(event, InstanceRequested)
        seq = await JetStreamEventStore(self.js).append(event, expected_last_seq=0)
        await wait_for_seq(self.pool, seq, timeout_s=20)
        return iid

    def mails(self, kind: str | None = None, to: str | None = None) -> list[MailMessage]:
        return [m for m in read_outbox(self.outbox) if (kind is None or m.kind == kind) and (to is None or m.to == to)]

    async def mail(self, kind: str, to: str) -> MailMessage:
        found = await wait_until(lambda: self.mails(kind, to), timeout_s=20, message=f"{kind} mail to {to}")
        return found[-1]

    async def settled(self) -> None:
        """Wait until the projector has applied everything in EVENTS."""
        last = (await self.js.stream_info("EVENTS")).state.last_seq
        await wait_for_seq(self.pool, last, timeout_s=20)


_CHEAP_HASH = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash("never used to sign in")


def _setup_envelope(org: str) -> dict:
    return dict(id=new_id(), org_id=org, actor="system:test-setup", correlation_id="setup", causation_id="setup",
                occurred_at=datetime.now(timezone.utc))


@contextlib.asynccontextmanager
async def idp_stack(nats_server, nats_client, database_url, tmp_path, *, mount_proxy: bool = False):
    pool = await create_pool(database_url, min_size=1, max_size=8)
    async with pool.acquire() as conn:
        await create_schema(conn, "rm")
    stop = asyncio.Event()
    projector = asyncio.create_task(run_projection(nats_client, pool, ReadModelProjection(), schema="rm", stop=stop))
    settings = RuntimeSettings(nats_url=nats_server.url, database_url=database_url, data_dir=tmp_path)
    app = create_app(settings, ApiSettings(mount_proxy=mount_proxy, sse_keepalive_s=0.5, max_body_bytes=64 * 1024))
    js = nats_client.jetstream()
    await ensure_admin(js, email=ADMIN_EMAIL, password=ADMIN_PASSWORD)
    # The key cache starts from the read model's checkpoint; start the API once the bootstrap is
    # projected (a follower started behind non-matching events waits out its catch-up timeout).
    await wait_for_seq(pool, (await js.stream_info("EVENTS")).state.last_seq, timeout_s=30)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(asgi_entry(app), host="127.0.0.1", port=port, lifespan="on", log_config=None,
                                           access_log=False, timeout_graceful_shutdown=2))
    serving = asyncio.create_task(server.serve())
    try:
        await wait_until(lambda: server.started or serving.done(), timeout_s=30, message="uvicorn started")
        assert not serving.done(), serving.exception()
        env = Idp(app=app, url=f"http://127.0.0.1:{port}", js=js, nc=nats_client, pool=pool,
                  outbox=tmp_path / "outbox", default_org=default_org_id())
        await env.settled()
        env.admin = await env.person(ADMIN_EMAIL, ADMIN_PASSWORD)
        assert env.admin.user_id == admin_user_id(ADMIN_EMAIL)
        yield env
        for client in env.clients:
            await client.aclose()
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(serving, 15)
        stop.set()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(projector, 10)
        await pool.close()


@pytest_asyncio.fixture
async def idp(nats_server, nats_client, database_url, tmp_path):
    async with idp_stack(nats_server, nats_client, database_url, tmp_path) as env:
        yield env


@pytest_asyncio.fixture
async def idp_with_proxy(nats_server, nats_client, database_url, tmp_path):
    """The same API with the OpenAI proxy mounted under /v1, as ``inventiv api`` serves it."""
    async with idp_stack(nats_server, nats_client, database_url, tmp_path, mount_proxy=True) as env:
        yield env
