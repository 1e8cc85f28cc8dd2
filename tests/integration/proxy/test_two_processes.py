"""Two API (proxy) processes on one NATS: a revoked key is refused by both within 1 s."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

import httpx

from contracts import ids
from contracts.events import ApiKeyRevoked
from services.api.auth.identity_store import aggregate_scope, append_in_scope, load_scope
from tests.helpers import wait_until

from .processes import start_proxy

DEADLINE_S = 1.0


async def test_a_revocation_is_seen_by_two_api_processes_within_one_second(harness, tmp_path):
    procs = [start_proxy(harness.nats_url, tmp_path / f"proxy{i}.log") for i in range(2)]
    try:
        await asyncio.gather(*(p.wait_listening() for p in procs))
        raw, key_id = await harness.api_key()
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {raw}"}, timeout=5) as http:

            async def status(p) -> int:
                return (await http.get(f"{p.url}/v1/models")).status_code

            for p in procs:
                await wait_until(lambda p=p: _is(status(p), 200), timeout_s=30, message=f"key known to {p.url}")

            # Revoke as services/api/routes/api_keys.py does: an ApiKeyRevoked appended to the key's aggregate.
            scope = await load_scope(harness.js, aggregate_scope(harness.org, "api_key", key_id))
            event = ApiKeyRevoked(id=ids.new_id(), org_id=harness.org, actor="user:test", correlation_id=ids.new_id(),
                                  causation_id=ids.new_id(), occurred_at=datetime.now(timezone.utc), key_id=key_id)
            await append_in_scope(harness.js, event, scope)
            t0 = time.monotonic()

            async def refused_after(p) -> float:
                while await status(p) != 401:
                    assert time.monotonic() - t0 < 10, f"{p.url} still accepts the revoked key"
                    await asyncio.sleep(0.01)
                return time.monotonic() - t0

            seen = await asyncio.gather(*(refused_after(p) for p in procs))
        print(f"revocation seen by the two processes after {seen} s")
        assert max(seen) < DEADLINE_S, f"revocation seen after {seen} s"
    finally:
        for p in procs:
            p.stop()


async def _is(coro, expected) -> bool:
    try:
        return await coro == expected
    except httpx.HTTPError:
        return False
