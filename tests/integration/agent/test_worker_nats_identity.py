"""A worker's identity is its NATS credentials: a real nats-server runs with the documented users
file (``nats/workers.conf.example``, sample keys swapped for fresh ones), the real agent connects
with its nkey seed file and heartbeats, and a client holding worker A's seed is refused everything
else: B's heartbeat subject, the JetStream API, events, commands, other heartbeats, other inboxes.
"""

from __future__ import annotations

import os
import re
import signal

import aiohttp
import nats
import pytest
import pytest_asyncio

from contracts.codec import decode_heartbeat
from services.runtime import natsio

from .conftest import AgentProcess, get_json, subscribe_heartbeats, wait_for_exit
from tests.helpers import wait_until
from tests.nats_users import Cluster, new_user_seed, public_key, start_cluster

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = start_cluster(tmp_path_factory.mktemp("nats-auth"))
    yield cluster
    cluster.server.stop()


@pytest_asyncio.fixture(scope="module")
async def control(cluster):
    nc = await nats.connect(cluster.server.url, nkeys_seed=str(cluster.seeds["control"]), name="control-plane")
    await natsio.apply_nats_config(nc.jetstream())
    yield nc
    await nc.close()


class WorkerClient:
    """A raw client holding worker A's seed, recording the errors the server sends it."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.nc = None

    async def connect(self, cluster: Cluster) -> WorkerClient:
        async def on_error(exc: Exception) -> None:
            self.errors.append(str(exc))

        self.nc = await nats.connect(cluster.server.url, nkeys_seed=str(cluster.seeds["a"]), error_cb=on_error,
                                     inbox_prefix=f"_INBOX_{cluster.a}", name="worker-a-raw", allow_reconnect=False)
        return self

    async def refused(self, kind: str, subject: str) -> str:
        needle = f'permissions violation for {kind} to "{subject}"'.lower()  # nats-py lowercases server errors
        return await wait_until(lambda: next((e for e in self.errors if needle in e.lower()), None), timeout_s=10,
                                message=f"the server to refuse {kind} on {subject} (errors: {self.errors})")


@pytest_asyncio.fixture
async def worker_a(cluster):
    client = await WorkerClient().connect(cluster)
    yield client
    await client.nc.close()


async def stored_subjects(control) -> dict[str, int]:
    info = await control.jetstream().stream_info("HEARTBEATS", subjects_filter="hb.>")
    return dict(info.state.subjects or {})


async def test_anonymous_and_unknown_clients_are_refused(cluster, tmp_path):
    with pytest.raises(Exception, match="(?i)authorization"):
        await nats.connect(cluster.server.url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=5)
    stranger = tmp_path / "stranger.nk"
    stranger.write_bytes(new_user_seed())
    with pytest.raises(Exception, match="(?i)authorization"):
        await nats.connect(cluster.server.url, nkeys_seed=str(stranger), allow_reconnect=False,
                           max_reconnect_attempts=0, connect_timeout=5)


async def test_the_agent_heartbeats_with_its_seed_file_into_the_stream(cluster, control, tmp_path, http):
    agent = AgentProcess(tmp_path, nats_url=cluster.server.url, org_id=cluster.org, instance_id=cluster.a,
                         extra_args=("--nats-nkey-seed-file", str(cluster.seeds["a"])))
    agent.start()
    try:
        async def stored_ready():
            msg = await natsio.last_message(control.jetstream(), "HEARTBEATS", cluster.subject_a)
            return msg is not None and decode_heartbeat(msg.data).status == "ready"

        await wait_until(stored_ready, timeout_s=20, message="a ready heartbeat from the agent in HEARTBEATS")
        assert "Permissions Violation" not in agent.log()
        async with http.get(agent.url + "/metrics") as resp:
            assert "inventiv_agent_nats_connected 1.0" in await resp.text()
        agent.signal(signal.SIGTERM)
        assert await wait_for_exit(agent.proc) == 0, agent.log()
    finally:
        agent.cleanup()


async def test_a_worker_cannot_publish_another_workers_heartbeat(cluster, control, worker_a):
    nc = worker_a.nc
    await nc.publish(cluster.subject_b, b'{"status":"ready","model":"m","sent_at":"2026-01-01T00:00:00Z"}')
    await worker_a.refused("publish", cluster.subject_b)
    # Its own subject still works on the same connection, and arrives after the refused one would have.
    before = await last_seq(control, cluster.subject_a)
    await nc.publish(cluster.subject_a, b"{}")
    await nc.flush()
    await wait_until(lambda: _stored_after(control, cluster.subject_a, before), timeout_s=10,
                     message="worker A's own heartbeat in the stream")
    assert cluster.subject_b not in await stored_subjects(control)
    assert nc.is_connected  # a violation is refused, not a reason to drop the worker


async def last_seq(control, subject: str) -> int:
    msg = await natsio.last_message(control.jetstream(), "HEARTBEATS", subject)
    return msg.seq if msg is not None else 0


async def _stored_after(control, subject: str, seq: int) -> bool:
    return await last_seq(control, subject) > seq


async def test_a_worker_cannot_use_the_jetstream_api(cluster, worker_a):
    js = worker_a.nc.jetstream(timeout=1)
    with pytest.raises(Exception):
        await js.stream_info("HEARTBEATS")
    await worker_a.refused("publish", "$JS.API.STREAM.INFO.HEARTBEATS")
    with pytest.raises(Exception):
        await js.get_msg("HEARTBEATS", subject=cluster.subject_b, direct=True)
    await worker_a.refused("publish", f"$JS.API.DIRECT.GET.HEARTBEATS.{cluster.subject_b}")
    with pytest.raises(Exception):
        await js.add_consumer("EVENTS", durable_name="sneaky")
    await worker_a.refused("publish", "$JS.API.CONSUMER.DURABLE.CREATE.EVENTS.sneaky")


async def test_a_worker_cannot_subscribe_to_events_commands_heartbeats_or_other_inboxes(cluster, control, worker_a):
    nc = worker_a.nc
    leaked: list[str] = []
    marker = []

    async def leak(msg) -> None:
        leaked.append(msg.subject)

    for subject in ("evt.>", "cmd.>", "hb.>", "_INBOX.>", f"_INBOX_{cluster.b}.>"):
        await nc.subscribe(subject, cb=leak)
        await worker_a.refused("subscription", subject)

    async def on_marker(msg) -> None:
        marker.append(msg.subject)

    await nc.subscribe(f"_INBOX_{cluster.a}.marker", cb=on_marker)
    await nc.flush()
    # The server registered only the allowed subscription for this connection.
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{cluster.server.monitoring_url}/connz?subs=1&cid={nc.client_id}") as resp:
            (conn,) = (await resp.json())["connections"]
    assert conn["subscriptions_list"] == [f"_INBOX_{cluster.a}.marker"]
    for subject in (f"evt.{cluster.org}.instance.{cluster.b}.ready", "cmd.instance.terminate", cluster.subject_b,
                    f"_INBOX.{cluster.b}", f"_INBOX_{cluster.b}.reply"):
        await control.publish(subject, b"secret")
    # Sent after the others on the same connection: once it arrives, they would have too.
    await control.publish(f"_INBOX_{cluster.a}.marker", b"")
    await control.flush()
    await wait_until(lambda: marker, timeout_s=30,
                     message=f"the marker on worker A's own inbox (worker errors {worker_a.errors}, "
                             f"connected {nc.is_connected}, control connected {control.is_connected})")
    assert leaked == []


async def test_a_rotated_seed_is_picked_up_without_restarting_the_agent_and_the_old_one_is_refused(tmp_path, http):
    cluster = start_cluster(tmp_path / "nats")
    control = await nats.connect(cluster.server.url, nkeys_seed=str(cluster.seeds["control"]), name="control-plane")
    old_seed = tmp_path / "old.nk"
    old_seed.write_bytes(cluster.seeds["a"].read_bytes())
    agent = AgentProcess(tmp_path, nats_url=cluster.server.url, org_id=cluster.org, instance_id=cluster.a,
                         extra_args=("--nats-nkey-seed-file", str(cluster.seeds["a"])))
    try:
        await natsio.apply_nats_config(control.jetstream())
        agent.start()
        beats = await subscribe_heartbeats(control, cluster.subject_a)
        await beats.wait_for("ready", timeout_s=20)
        engine_pid = (await get_json(http, agent.url + "/info"))[1]["engine_pid"]
        agent.engine_pids.add(engine_pid)

        # Rotate: the control plane writes a new seed on the worker (atomically), swaps the public
        # key in the users file and reloads the server, which drops the old identity at once.
        new_seed = new_user_seed()
        staged = cluster.seeds["a"].with_suffix(".new")
        staged.write_bytes(new_seed + b"\n")
        os.replace(staged, cluster.seeds["a"])
        users = cluster.server.data_dir / "workers.conf"
        users.write_text(users.read_text().replace(public_key(old_seed.read_bytes().strip()), public_key(new_seed)))
        cluster.server.proc.send_signal(signal.SIGHUP)
        await wait_until(lambda: re.search(r'"event": ?"nats_credentials_refused"', agent.log()), timeout_s=20,
                         message="the agent to be refused with its old key")
        rotated = len(beats.items)
        await beats.wait_for("ready", after=rotated, timeout_s=30)
        assert (await get_json(http, agent.url + "/info"))[1]["engine_pid"] == engine_pid  # nothing restarted
        with pytest.raises(Exception, match="(?i)authorization"):
            await nats.connect(cluster.server.url, nkeys_seed=str(old_seed), allow_reconnect=False,
                               max_reconnect_attempts=0, connect_timeout=5)
        agent.signal(signal.SIGTERM)
        assert await wait_for_exit(agent.proc) == 0, agent.log()
    finally:
        agent.cleanup()
        await control.close()
        cluster.server.stop()
