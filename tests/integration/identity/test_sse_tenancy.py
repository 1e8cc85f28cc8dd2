"""The live stream carries only the caller's organisation, even when asked for another's instance."""

from __future__ import annotations

import asyncio
import contextlib

from tests.helpers import wait_until

from .tenancy import leaks, make_tenant


async def _follow(client, path: str, sink: list[bytes], ready: asyncio.Event) -> None:
    async with client.stream("GET", path) as resp:
        sink.append(b"status %d\n" % resp.status_code)
        ready.set()
        async for chunk in resp.aiter_bytes():
            sink.append(chunk)


async def test_sse_never_carries_another_tenant(idp):
    alice = await idp.user("sse-alice@example.com")
    await idp.org(alice, "sse-alpha")
    bravo = await make_tenant(idp, "sse-bravo", "Sse Bravo")
    streams: dict[str, list[bytes]] = {"all": [], "foreign-instance": []}
    tasks = []
    for name, path in (("all", "/events/stream"), ("foreign-instance", f"/events/stream?instance_id={bravo.instance_id}")):
        ready = asyncio.Event()
        tasks.append(asyncio.create_task(_follow(alice.client, path, streams[name], ready)))
        await asyncio.wait_for(ready.wait(), 20)
    # B is busy: keys, members, an instance event.
    await bravo.owner.client.post("/api_keys", json={"name": "busy"})
    await bravo.owner.client.put(f"/organizations/current/members/{bravo.member.user_id}", json={"role": "manager"})
    await idp.instance(bravo.org_id)
    # Then A does something: once it shows on A's stream, B's events (earlier) had every chance to.
    await alice.client.post("/api_keys", json={"name": "marker"})
    await wait_until(lambda: b"api_key.created" in b"".join(streams["all"]), timeout_s=20, message="A's own event")
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    for name, chunks in streams.items():
        text = b"".join(chunks).decode(errors="replace")
        assert not leaks(text, bravo.secrets, sent=bravo.instance_id if name == "foreign-instance" else ""), name
    assert b"api_key.created" not in b"".join(streams["foreign-instance"])
