"""The SSE hub and session, without servers: rendering, fan-out by org, overflow, hand-over."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from contracts import codec
from contracts.catalog import Placement
from contracts.events import ApiKeyCreated, InstanceFailed, InstanceReady, InstanceRequested, UserCreated
from contracts.ids import GLOBAL_ORG, new_id
from services.api.sse import EventHub, SseSession, TooManyStreams, render_frame

ORG, OTHER = new_id(), new_id()


def _env(org=ORG):
    return dict(id=new_id(), org_id=org, actor="user:u", correlation_id="c", causation_id="c",
                occurred_at=datetime(2026, 1, 1, tzinfo=timezone.utc))


def _frame(event, seq):
    return render_frame(codec.event_subject_for(event), seq, codec.encode(event), {})


def _parse(frame_bytes: bytes) -> dict:
    out = {}
    for line in frame_bytes.decode().strip().split("\n"):
        name, _, value = line.partition(": ")
        out[name] = value
    return out


def test_frame_has_sequence_id_type_and_status_after():
    inst = new_id()
    frame = _frame(InstanceReady(**_env(), instance_id=inst, upstream_url="http://10.1.2.3:8000", model_name="m"), 42)
    msg = _parse(frame.data)
    assert msg["id"] == "42" and msg["event"] == "instance.ready"
    data = json.loads(msg["data"])
    assert data["seq"] == 42 and data["instance_id"] == inst and data["status"] == "ready"
    assert data["occurred_at"].startswith("2026-01-01") and data["type"] == "instance.ready"
    assert "10.1.2.3" not in msg["data"]
    failed = _frame(InstanceFailed(**_env(), instance_id=inst, status="startup_failed", reason_code="timeout"), 43)
    assert json.loads(_parse(failed.data)["data"])["status"] == "startup_failed"


def test_frame_never_carries_hashes():
    key = _frame(ApiKeyCreated(**_env(), key_id=new_id(), name="n", prefix="sk-inv-12345678", key_hash="f" * 64,
                               user_id=new_id()), 1)
    assert "f" * 64 not in key.data.decode() and b"sk-inv-12345678" in key.data
    user = _frame(UserCreated(**_env(GLOBAL_ORG), user_id=new_id(), email="a@b.c", password_hash="$argon2id$secret"), 2)
    assert b"argon2" not in user.data


def test_unknown_event_types_still_render_from_the_subject():
    frame = render_frame(f"evt.{ORG}.instance.{ORG}.teleported", 7, b'{"type":"instance.teleported"}', {})
    assert frame is not None and frame.type == "instance.teleported"
    assert render_frame("cmd.instance.provision", 1, b"{}", {}) is None


def _hub(**kw) -> EventHub:
    return EventHub(js=None, **kw)  # type: ignore[arg-type]


def _requested(org, inst, seq):
    placement = Placement(provider_code="mock", region_code="r", zone_code="z", zone_id=new_id(),
                          instance_type_code="t", instance_type_id=new_id(), gpu_count=1, vram_per_gpu_gb=1,
                          hourly_price_eur=Decimal("1"), model_id=new_id(), model_name="m")
    return _frame(InstanceRequested(**_env(org), instance_id=inst, placement=placement,
                                    startup_deadline=datetime(2026, 1, 2, tzinfo=timezone.utc)), seq)


async def test_dispatch_goes_to_the_right_org_and_instance_filter():
    hub = _hub()
    a, watched, b = hub.subscribe(ORG), hub.subscribe(ORG, instance_id="i1"), hub.subscribe(OTHER)
    hub.dispatch(_requested(ORG, "i1", 1))
    hub.dispatch(_requested(ORG, "i2", 2))
    hub.dispatch(_requested(OTHER, "i3", 3))
    assert [(await a.get(1)).seq, (await a.get(1)).seq] == [1, 2]
    assert (await watched.get(1)).seq == 1 and watched._queue.empty()
    assert (await b.get(1)).seq == 3


async def test_a_slow_subscriber_is_closed_not_buffered_forever():
    hub = _hub(queue_size=3)
    slow = hub.subscribe(ORG)
    for seq in range(1, 10):
        hub.dispatch(_requested(ORG, "i", seq))
    assert slow.closed_reason == "slow_client" and hub.subscriber_count == 0
    got = [await slow.get(1) for _ in range(4)]
    assert [f.seq for f in got[:3]] == [1, 2, 3] and got[3] is None


def test_caps_per_org_and_total():
    hub = _hub(max_per_org=2, max_total=3)
    hub.subscribe(ORG), hub.subscribe(ORG)
    with pytest.raises(TooManyStreams):
        hub.subscribe(ORG)
    hub.subscribe(OTHER)
    with pytest.raises(TooManyStreams):
        hub.subscribe(new_id())


async def test_replay_hands_over_to_live_without_gaps_or_duplicates():
    hub = _hub()
    hub.position = 5  # the hub had dispatched up to 5 when the client subscribed
    sub = hub.subscribe(ORG)
    # Live frames that raced the replay: 4 and 5 overlap it (as after a hub reset), 6 and 7 are new.
    for seq in (4, 5, 6, 7):
        sub.offer(_requested(ORG, "i", seq))

    async def fake_replay(org_id, after_seq, until_seq):
        assert (org_id, after_seq, until_seq) == (ORG, 2, 5)
        for seq in (3, 4, 5):
            yield _requested(ORG, "i", seq)

    hub.replay = fake_replay  # type: ignore[method-assign]

    async def ok():
        return True

    session = SseSession(hub, sub, last_event_id=2, keepalive_s=0.05, still_authorized=ok)
    seen: list[int] = []

    async def consume():
        async for chunk in session.frames():
            if chunk.startswith(b"id: ") and b"event: hello" not in chunk:
                seen.append(int(chunk.split(b"\n", 1)[0][4:]))
                if len(seen) == 5:
                    session.close("done")

    await asyncio.wait_for(consume(), 5)
    assert seen == [3, 4, 5, 6, 7]


async def test_hello_carries_the_starting_position_as_its_id():
    hub = _hub()
    hub.position = 9
    sub = hub.subscribe(ORG)

    async def ok():
        return True

    fresh = SseSession(hub, sub, last_event_id=None, keepalive_s=10, still_authorized=ok).frames()
    await fresh.__anext__()  # retry + comment
    hello = _parse(await fresh.__anext__())
    assert hello["id"] == "9" and hello["event"] == "hello" and json.loads(hello["data"])["live_from_seq"] == 10
    await fresh.aclose()


async def test_session_ends_when_no_longer_authorized():
    hub = _hub()
    sub = hub.subscribe(ORG)

    async def revoked():
        return False

    session = SseSession(hub, sub, last_event_id=None, keepalive_s=0.01, still_authorized=revoked)
    chunks = [c async for c in session.frames()]
    assert any(b"event: hello" in c for c in chunks) and sub.closed_reason == "unauthorized"


async def test_a_reader_that_stops_reading_is_dropped_after_the_write_timeout():
    from services.api.sse_response import _SseAsgi

    hub = _hub()
    sub = hub.subscribe(ORG)

    async def ok():
        return True

    session = SseSession(hub, sub, last_event_id=None, keepalive_s=10, still_authorized=ok)

    class Inner:
        async def start_response(self, send):
            await send({"type": "http.response.start", "status": 200, "headers": []})

    sent: list[dict] = []
    stuck = asyncio.Event()

    async def send(message):
        sent.append(message)
        if len(sent) >= 3:  # start, retry/comment, hello: then the client's window is full
            stuck.set()
            await asyncio.Event().wait()

    async def receive():
        await asyncio.Event().wait()

    asgi = _SseAsgi(Inner(), session, write_timeout_s=0.2)
    await asyncio.wait_for(asgi({"type": "http"}, receive, send), 5)
    assert stuck.is_set() and sub.closed_reason == "write_timeout" and hub.subscriber_count == 0


async def test_a_client_disconnect_ends_the_stream():
    from services.api.sse_response import _SseAsgi

    hub = _hub()
    sub = hub.subscribe(ORG)

    async def ok():
        return True

    session = SseSession(hub, sub, last_event_id=None, keepalive_s=10, still_authorized=ok)

    class Inner:
        async def start_response(self, send):
            await send({"type": "http.response.start", "status": 200, "headers": []})

    messages = [{"type": "http.request", "body": b"", "more_body": False}, {"type": "http.disconnect"}]

    async def receive():
        return messages.pop(0) if messages else await asyncio.Event().wait()

    async def send(message):
        pass

    await asyncio.wait_for(_SseAsgi(Inner(), session, write_timeout_s=1)({"type": "http"}, receive, send), 5)
    assert sub.closed_reason == "client_closed" and hub.subscriber_count == 0
