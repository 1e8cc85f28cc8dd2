"""A revocation published while an API process is cut off from NATS is applied once it is back."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from contracts import ids
from contracts.events import ApiKeyCreated, ApiKeyRevoked
from services.api.keycache import KeyCache
from services.api.keys import generate_api_key, hash_api_key, visible_prefix
from services.runtime import natsio
from services.runtime.eventstore import JetStreamEventStore
from tests.helpers import wait_until


class Cuttable:
    """A TCP forwarder to NATS whose connections can be cut and refused, like a network partition."""

    def __init__(self, port: int) -> None:
        self.target_port = port
        self.blocked = False
        self.pipes: list[asyncio.StreamWriter] = []
        self.server = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader, writer):
        if self.blocked:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.pipes += [writer, up_writer]

        async def pipe(src, dst):
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        self.blocked = True
        for w in self.pipes:
            w.close()
        self.pipes.clear()

    async def stop(self) -> None:
        self.cut()
        self.server.close()


def _env(org: str) -> dict:
    return dict(id=ids.new_id(), org_id=org, actor="system:test", correlation_id="c", causation_id="c",
                occurred_at=datetime.now(timezone.utc))


async def test_revocation_during_a_partition_is_applied_after_reconnect(nats_server, nats_client):
    store = JetStreamEventStore(nats_client.jetstream())
    org, key_id, raw = ids.new_id(), ids.new_id(), generate_api_key()
    forwarder = Cuttable(nats_server.port)
    port = await forwarder.start()
    nc = await natsio.connect(f"nats://127.0.0.1:{port}", name="api-replica")
    cache = KeyCache()
    try:
        await cache.start(nc, None)
        await store.append(ApiKeyCreated(**_env(org), key_id=key_id, name="k", prefix=visible_prefix(raw),
                                         key_hash=hash_api_key(raw), user_id=ids.new_id()), expected_last_seq=None)
        await wait_until(lambda: cache.authenticate(raw) is not None, message="key created")

        forwarder.cut()  # the replica loses NATS...
        await wait_until(lambda: not nc.is_connected, message="replica disconnected")
        await store.append(ApiKeyRevoked(**_env(org), key_id=key_id), expected_last_seq=None)  # ...and misses this
        assert cache.authenticate(raw) is not None

        forwarder.blocked = False  # the partition heals
        await wait_until(lambda: cache.authenticate(raw) is None, timeout_s=15,
                         message="revocation applied after reconnect")
    finally:
        await cache.stop()
        await nc.close()
        await forwarder.stop()


async def test_catching_up_does_not_wait_for_events_its_filter_skips(nats_client):
    """Started behind the head with only non-matching events after it: caught up at once, not at the timeout."""
    from contracts.events import OrganizationCreated
    from services.api.proxy.jsfollow import EventFollower

    store = JetStreamEventStore(nats_client.jetstream())
    now = datetime.now(timezone.utc)
    key_id = ids.new_id()
    await store.append(ApiKeyCreated(id=ids.new_id(), org_id="org-a", actor="system:test", correlation_id="c",
                                     causation_id="c", occurred_at=now, key_id=key_id, name="k", prefix="sk-inv-x",
                                     key_hash="0" * 64, user_id=ids.new_id()), expected_last_seq=0)
    for n in range(5):  # then events the key follower's filter does not match
        org = ids.new_id()
        await store.append(OrganizationCreated(id=ids.new_id(), org_id=org, actor="system:test", correlation_id="c",
                                               causation_id="c", occurred_at=now, organization_id=org,
                                               name=f"org {n}", slug=f"org-{n}"), expected_last_seq=0)
    seen = []
    follower = EventFollower(nats_client, name="keys", filter_subjects=["evt.*.api_key.>"],
                             handler=lambda seq, event: seen.append(seq))
    # The follower's own timeout is 30 s; being caught up must not depend on it.
    await asyncio.wait_for(follower.start(1, catch_up_timeout_s=30.0), timeout=10.0)
    await follower.stop()
    assert seen == [1]
