"""Per-key limits held across proxy processes (limit_sync.py) over real NATS and real HTTP.

Two proxies, each with its own NATS connection, share one key: requests alternate between them
and, once each report has been merged by the other, they behave as one limiter. A peer that
is SIGKILLed (its own OS process) stops reporting; its in-flight slots are given back after
the silence window.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx

from services.api.keys import hash_api_key
from services.api.proxy.limit_sync import SILENT_INTERVALS
from tests.helpers import wait_until

from .conftest import Harness
from .processes import start_proxy

MSG = [{"role": "user", "content": "hi"}]
SYNC_S = 0.1


async def _second_proxy(harness: Harness, raw_key: str, **settings) -> Harness:
    other = Harness(harness.nc, harness.nats_url)
    other.org = harness.org
    await other.start_proxy(**settings)
    await wait_until(lambda: hash_api_key(raw_key) in other.stack.key_cache._by_hash, message="key loaded by the peer")
    return other


def _gossip(h: Harness):
    return h.proxy.limit_gossip


async def _know_each_other(a: Harness, b: Harness) -> None:
    await wait_until(lambda: _gossip(a).sync.peer_seq(_gossip(b).process_id) > 0
                     and _gossip(b).sync.peer_seq(_gossip(a).process_id) > 0, message="each proxy heard the other")


async def _heard(receiver: Harness, sender: Harness) -> None:
    """Until ``receiver`` merged a report of ``sender`` sent after everything ``sender`` did so far."""
    needed = _gossip(sender).sync.seq + 1
    await wait_until(lambda: _gossip(receiver).sync.peer_seq(_gossip(sender).process_id) >= needed,
                     message="the peer's next report merged")


def _assert_openai_429(r: httpx.Response, code: str) -> int:
    assert r.status_code == 429
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code
    return int(r.headers["retry-after"])


async def test_two_processes_share_one_requests_per_minute(harness):
    rpm = 4  # one every 15 s
    await harness.start_proxy(key_rpm=rpm, key_concurrency=0, limit_sync_s=SYNC_S)
    engine = await harness.engine("m1")
    await harness.ready(engine.url, "m1")
    raw, key_id = await harness.api_key()
    other = await _second_proxy(harness, raw, key_rpm=rpm, key_concurrency=0, limit_sync_s=SYNC_S)
    try:
        await harness.wait_routable("m1")
        await other.wait_routable("m1")
        await _know_each_other(harness, other)
        procs = (harness, other)
        statuses = []
        t0 = time.monotonic()
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {raw}"}, timeout=10) as http:
            for i in range(10):
                here, there = procs[i % 2], procs[(i + 1) % 2]
                r = await http.post(f"{here.base_url}/chat/completions", json={"model": "m1", "messages": MSG})
                statuses.append(r.status_code)
                if r.status_code != 200:
                    assert 1 <= _assert_openai_429(r, "rate_limit_exceeded") <= 60 // rpm
                await _heard(there, here)
        elapsed = time.monotonic() - t0
        # Each admission was known to the other process before the next request: one bucket for both.
        allowed = rpm + int(elapsed // (60 / rpm))
        assert rpm <= statuses.count(200) <= allowed, statuses  # without syncing: 2 x rpm
        assert statuses[:rpm] == [200] * rpm and engine.calls == statuses.count(200)
        assert harness.proxy.admission.remote_in_flight == {}  # no concurrency limit: nothing in flight shared
    finally:
        await other.stop()


async def test_two_processes_share_one_concurrency_limit(harness):
    settings = dict(key_rpm=0, key_concurrency=2, limit_sync_s=SYNC_S)
    await harness.start_proxy(**settings)
    engine = await harness.engine("slow", tokens=2000, delay_s=0.01)  # a stream lasts ~20 s unless cut
    await harness.ready(engine.url, "slow")
    raw, key_id = await harness.api_key()
    other = await _second_proxy(harness, raw, **settings)
    try:
        await harness.wait_routable("slow")
        await other.wait_routable("slow")
        await _know_each_other(harness, other)
        a, b = harness.proxy.admission, other.proxy.admission
        body = {"model": "slow", "messages": MSG, "stream": True}
        async with contextlib.AsyncExitStack() as stack:
            http = await stack.enter_async_context(
                httpx.AsyncClient(headers={"Authorization": f"Bearer {raw}"}, timeout=10))
            on_a = await stack.enter_async_context(http.stream("POST", f"{harness.base_url}/chat/completions",
                                                               json=body))
            assert on_a.status_code == 200
            async with http.stream("POST", f"{other.base_url}/chat/completions", json=body) as on_b:
                assert on_b.status_code == 200
                await wait_until(lambda: a.remote_in_flight.get(key_id) == 1 and b.remote_in_flight.get(key_id) == 1,
                                 message="each proxy sees the other's request in flight")
                # One in flight on each: the key's two slots are taken, on both processes.
                for h in (harness, other):
                    r = await http.post(f"{h.base_url}/chat/completions", json={"model": "slow", "messages": MSG})
                    assert _assert_openai_429(r, "concurrency_limit_exceeded") == 1
                async for line in on_b.aiter_lines():
                    if "t1 " in line:
                        break  # the client goes away from B mid-stream
            await wait_until(lambda: b.concurrency.in_flight(key_id) == 0, message="B gave its slot back")
            await wait_until(lambda: a.remote_in_flight.get(key_id, 0) == 0, message="A heard it")
            r = await http.post(f"{harness.base_url}/chat/completions", json={"model": "slow", "messages": MSG})
            assert r.status_code == 200
    finally:
        await other.stop()
    assert engine.calls == 3  # the two refused never reached the engine


async def test_a_killed_peers_slots_are_given_back_after_its_silence_window(harness, tmp_path):
    await harness.start_proxy(key_rpm=0, key_concurrency=1, limit_sync_s=SYNC_S)
    engine = await harness.engine("slow", tokens=5000, delay_s=0.01)
    await harness.ready(engine.url, "slow")
    raw, key_id = await harness.api_key()
    peer = start_proxy(harness.nats_url, tmp_path / "peer.log", INVENTIV_PROXY_KEY_RPM="0",
                       INVENTIV_PROXY_KEY_CONCURRENCY="1", INVENTIV_PROXY_LIMIT_SYNC_S=str(SYNC_S))
    admission, gossip = harness.proxy.admission, harness.proxy.limit_gossip
    try:
        await peer.wait_listening()
        await harness.wait_routable("slow")
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {raw}"}, timeout=10) as http:

            async def open_stream_on_peer():
                # Until the peer knows the key and the worker (it loads both from the streams).
                while True:
                    request = http.build_request("POST", f"{peer.url}/v1/chat/completions",
                                                 json={"model": "slow", "messages": MSG, "stream": True})
                    response = await http.send(request, stream=True)
                    if response.status_code == 200:
                        return response
                    await response.aclose()
                    await asyncio.sleep(0.05)

            held = await asyncio.wait_for(open_stream_on_peer(), 30)
            try:
                await wait_until(lambda: admission.remote_in_flight.get(key_id) == 1,
                                 message="the peer's request in flight seen here")
                assert gossip.sync.live_peers == 1
                r = await http.post(f"{harness.base_url}/chat/completions", json={"model": "slow", "messages": MSG})
                assert _assert_openai_429(r, "concurrency_limit_exceeded") == 1
                peer.kill()  # no last report: its slot is only given back when its silence is noticed
                last_seen_ns = {}

                def given_back() -> bool:
                    last_seen_ns.update(gossip.sync.peers_last_seen_ns())
                    return admission.remote_in_flight.get(key_id, 0) == 0

                await wait_until(given_back, timeout_s=10, message="the killed peer's slot given back")
                silent_ns = time.monotonic_ns() - max(last_seen_ns.values())
            finally:
                with contextlib.suppress(httpx.HTTPError):
                    await held.aclose()
            assert gossip.sync.live_peers == 0
            assert silent_ns > SILENT_INTERVALS * SYNC_S * 1e9  # not before its silence window
            r = await http.post(f"{harness.base_url}/chat/completions", json={"model": "slow", "messages": MSG})
            assert r.status_code == 200
    finally:
        peer.stop()
