"""GET /events/stream over a real socket: live events of the caller's org, resume without gaps."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import httpx

from contracts.catalog import Placement
from contracts.events import InstanceRequested, InstanceServerCreated, InstanceTerminationRequested
from contracts.ids import new_id
from services.runtime.eventstore import JetStreamEventStore
from tests.helpers import wait_until

from .conftest import MODEL_ECHO, TYPE_MOCK, ZONE_LOCAL, add_member

PLACEMENT = Placement(provider_code="mock", region_code="local", zone_code="local", zone_id=ZONE_LOCAL,
                      instance_type_code="mock-local-small", instance_type_id=TYPE_MOCK, gpu_count=1,
                      vram_per_gpu_gb=24, hourly_price_eur=Decimal("0.36"), model_id=MODEL_ECHO,
                      model_name="mock-echo-model")


class SseReader:
    """Collects the SSE messages of one connection in the background."""

    def __init__(self, client: httpx.AsyncClient, path: str, headers: dict[str, str]) -> None:
        self.client, self.path, self.headers = client, path, headers
        self.messages: list[dict] = []
        self.status: int | None = None
        self.ended = False
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        async with self.client.stream("GET", self.path, headers=self.headers, timeout=None) as resp:
            self.status = resp.status_code
            self.content_type = resp.headers.get("content-type", "")
            current: dict = {}
            async for line in resp.aiter_lines():
                if line == "":
                    if current:
                        self.messages.append(current)
                    current = {}
                elif line.startswith(":"):
                    current = current  # a comment (keep-alive)
                else:
                    name, _, value = line.partition(":")
                    current[name] = value[1:] if value.startswith(" ") else value
        self.ended = True

    async def __aenter__(self) -> "SseReader":
        self._task = asyncio.create_task(self._run())
        await wait_until(lambda: self.hello is not None or self._task.done(), timeout_s=10, message="SSE hello")
        if self._task.done():
            self._task.result()
        return self

    async def __aexit__(self, *exc) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await self._task

    @property
    def hello(self) -> dict | None:
        return next((json.loads(m["data"]) for m in self.messages if m.get("event") == "hello"), None)

    @property
    def events(self) -> list[dict]:
        return [m for m in self.messages if "id" in m and m.get("event") != "hello"]

    def data(self) -> list[dict]:
        return [json.loads(m["data"]) for m in self.events]

    async def wait_for(self, count: int) -> list[dict]:
        await wait_until(lambda: len(self.events) >= count, timeout_s=10, message=f"{count} SSE events")
        return self.events


async def caught_up(api) -> None:
    """Wait until the API's live feed has seen everything already in EVENTS (set-up events included),
    so a new connection's position is after them."""
    hub = api.app.state.resources.hub
    last = (await api.js.stream_info("EVENTS")).state.last_seq
    await wait_until(lambda: hub.position >= last, timeout_s=10, message="hub caught up")


def _envelope(org_id: str) -> dict:
    return dict(id=new_id(), org_id=org_id, actor="system:test", correlation_id="c", causation_id="c",
                occurred_at=datetime.now(timezone.utc))


async def _requested(store, org_id, instance_id) -> int:
    event = InstanceRequested(**_envelope(org_id), instance_id=instance_id, placement=PLACEMENT,
                              startup_deadline=datetime.now(timezone.utc) + timedelta(hours=1))
    return await store.append(event, expected_last_seq=None)


async def _server_created(store, org_id, instance_id) -> int:
    event = InstanceServerCreated(**_envelope(org_id), instance_id=instance_id, provider_server_id="srv-1",
                                  upstream_url="http://10.0.0.1:8000")
    return await store.append(event, expected_last_seq=None)


async def _terminating(store, org_id, instance_id) -> int:
    event = InstanceTerminationRequested(**_envelope(org_id), instance_id=instance_id, reason_code="user_request")
    return await store.append(event, expected_last_seq=None)


async def test_live_events_of_my_org_only_then_resume_without_gaps_or_duplicates(live):
    api = live.api
    alice = await add_member(api.js, api.pool, "alice@example.com", slug="alice-org")
    mallory = await add_member(api.js, api.pool, "mallory@example.com", slug="mallory-org")
    key = await api.api_key(alice)
    auth = {"Authorization": f"Bearer {key}"}
    store = JetStreamEventStore(api.js)
    inst = new_id()
    await caught_up(api)

    async with SseReader(api.client, "/events/stream", auth) as first:
        assert first.status == 200 and first.content_type.startswith("text/event-stream")
        s1 = await _requested(store, alice.org_id, inst)
        await _requested(store, mallory.org_id, new_id())  # another org: never shown
        s2 = await _server_created(store, alice.org_id, inst)
        events = await first.wait_for(2)
    assert [int(e["id"]) for e in events] == [s1, s2]
    assert [e["event"] for e in events] == ["instance.requested", "instance.server_created"]
    d1, d2 = first.data()
    assert d1["instance_id"] == inst and d1["status"] == "provisioning" and d1["type"] == "instance.requested"
    assert d1["seq"] == s1 and d1["occurred_at"]
    assert d2["status"] == "booting"
    assert "upstream_url" not in d2 and "10.0.0.1" not in json.dumps(d2)

    # Missed while disconnected.
    s3 = await _terminating(store, alice.org_id, inst)
    await _requested(store, mallory.org_id, new_id())
    resume = dict(auth, **{"Last-Event-ID": str(s1)})
    async with SseReader(api.client, "/events/stream", resume) as second:
        replayed = await second.wait_for(2)
        assert [int(e["id"]) for e in replayed] == [s2, s3]
        s4 = await _server_created(store, alice.org_id, new_id())
        await second.wait_for(3)
        await asyncio.sleep(0)  # nothing else may arrive: no duplicates of the replayed events
        assert [int(e["id"]) for e in second.events] == [s2, s3, s4]
        assert second.hello["resumed_after"] == s1

    # The query parameter works too (for clients that cannot set headers).
    async with SseReader(api.client, f"/events/stream?last_event_id={s3}", auth) as third:
        assert [int(e["id"]) for e in await third.wait_for(1)] == [s4]


async def test_instance_filter_secrets_and_auth(live):
    api = live.api
    bob = await add_member(api.js, api.pool, "bob@example.com", slug="bob-org")
    token = await api.session_token(bob)
    auth = {"Authorization": f"Bearer {token}"}
    store = JetStreamEventStore(api.js)
    watched, other = new_id(), new_id()
    await caught_up(api)
    async with SseReader(api.client, f"/events/stream?instance_id={watched}", auth) as reader:
        await _requested(store, bob.org_id, other)
        seq = await _requested(store, bob.org_id, watched)
        assert [int(e["id"]) for e in await reader.wait_for(1)] == [seq]

    # Key events are announced without their hash.
    async with SseReader(api.client, "/events/stream", auth) as reader:
        created = await api.client.post("/api_keys", json={"name": "k"}, headers=auth)
        assert created.status_code == 201
        (event,) = await reader.wait_for(1)
        assert event["event"] == "api_key.created"
        payload = json.loads(event["data"])
        assert payload["prefix"] == created.json()["prefix"] and "key_hash" not in payload
        assert created.json()["key"] not in event["data"]

    assert (await api.client.get("/events/stream")).status_code == 401
    bad = await api.client.get("/events/stream", headers=dict(auth, **{"Last-Event-ID": "12abc"}))
    assert bad.status_code == 400
    assert (await api.client.get("/events/stream?instance_id=evt.>", headers=auth)).status_code == 422


async def test_stream_closes_when_the_session_is_revoked(live):
    api = live.api
    carol = await add_member(api.js, api.pool, "carol@example.com", slug="carol-org")
    token = await api.session_token(carol)
    auth = {"Authorization": f"Bearer {token}"}
    async with SseReader(api.client, "/events/stream", auth) as reader:
        assert (await api.client.post("/auth/logout", headers=auth)).status_code == 204
        # Keep-alive is 0.5 s in tests: the next one re-checks the credential and ends the stream.
        await wait_until(lambda: reader.ended, timeout_s=10, message="stream closed after logout")


async def test_a_client_that_saw_only_hello_resumes_from_the_hello_id(live):
    api = live.api
    dan = await add_member(api.js, api.pool, "dan@example.com", slug="dan-org")
    auth = {"Authorization": f"Bearer {await api.api_key(dan)}"}
    store = JetStreamEventStore(api.js)
    await caught_up(api)
    async with SseReader(api.client, "/events/stream", auth) as quiet:
        hello_id = next(m["id"] for m in quiet.messages if m.get("event") == "hello")
    missed = await _requested(store, dan.org_id, new_id())
    async with SseReader(api.client, "/events/stream", dict(auth, **{"Last-Event-ID": hello_id})) as back:
        assert [int(e["id"]) for e in await back.wait_for(1)] == [missed]
