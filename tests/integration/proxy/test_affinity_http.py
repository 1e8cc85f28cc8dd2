"""X-Inventiv-Session over real HTTP: a conversation stays on its worker, falls back while that
worker is draining or gone, and comes back to it."""

from __future__ import annotations

import httpx

from tests.helpers import wait_until

MSG = [{"role": "user", "content": "hi"}]


async def test_a_session_follows_its_worker_falls_back_and_returns(harness):
    await harness.start_proxy()
    engines = [await harness.engine("m1") for _ in range(3)]
    ids = [await harness.ready(e.url, "m1") for e in engines]
    by_id = dict(zip(ids, engines))
    raw, _ = await harness.api_key()
    await harness.wait_routable("m1", 3)

    async with httpx.AsyncClient(base_url=harness.base_url, headers={"Authorization": f"Bearer {raw}",
                                                                      "X-Inventiv-Session": "conv-7"}) as http:

        async def ask(n: int) -> None:
            for _ in range(n):
                assert (await http.post("/chat/completions", json={"model": "m1", "messages": MSG})).status_code == 200

        await ask(4)
        home = next(iid for iid, e in by_id.items() if e.calls == 4)
        await harness.heartbeat(home, "m1", status="draining")
        await wait_until(lambda: all(w.hb_status == "draining" for w in harness.proxy.table.snapshot.workers["m1"]
                                     if w.instance_id == home), message="home draining")
        await ask(4)
        fallback = next(iid for iid, e in by_id.items() if e.calls == 4 and iid != home)  # one worker took them all
        await harness.heartbeat(home, "m1")
        await harness.wait_routable("m1", 3)
        await ask(2)
        assert by_id[home].calls == 6
        await harness.terminated(home)
        await wait_until(lambda: all(w.instance_id != home for w in harness.proxy.table.snapshot.workers["m1"]),
                         message="home gone")
        await ask(2)
        assert by_id[fallback].calls == 6  # the next worker by hash is the same one as during the drain

    records = await harness.usage_records(expect=12)
    reasons = [r.routing_reason for r in sorted(records, key=lambda r: r.occurred_at)]
    assert reasons == ["session_affinity"] * 4 + ["session_fallback"] * 4 + ["session_affinity"] * 4
