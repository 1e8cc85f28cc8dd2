"""The control plane's services authenticate to a nats-server that requires it.

The server runs the documented users file (``nats/workers.conf.example``, fresh keys); its first
user is the control plane. ``NATS_NKEY`` (the nats CLI's variable) is all a service needs.
"""

from __future__ import annotations

import aiohttp
import pytest

from services.runtime import natsio
from tests.integration.proxy.processes import start_proxy
from tests.nats_users import start_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = start_cluster(tmp_path_factory.mktemp("nats-service-auth"))
    yield cluster
    cluster.server.stop()


async def test_a_service_connection_uses_the_nkey_from_the_environment(cluster, monkeypatch):
    monkeypatch.setenv("NATS_NKEY", str(cluster.seeds["control"]))
    nc = await natsio.connect(cluster.server.url, name="service-auth-test")
    try:
        await natsio.apply_nats_config(nc.jetstream())  # the JetStream API: the control plane may use it
        assert (await nc.jetstream().stream_info("EVENTS")).config.name == "EVENTS"
    finally:
        await nc.close()


async def test_a_proxy_process_with_the_nkey_serves_and_one_without_credentials_does_not(cluster, tmp_path):
    keyed = start_proxy(cluster.server.url, tmp_path / "keyed.log", NATS_NKEY=str(cluster.seeds["control"]))
    anonymous = start_proxy(cluster.server.url, tmp_path / "anonymous.log")
    try:
        await keyed.wait_listening()
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{keyed.url}/v1/models") as response:
                assert response.status == 401  # up and answering: it loaded its key cache over NATS
                assert (await response.json())["error"]["code"] == "invalid_api_key"
        # Refused by the server, the other one must not come up as if all were well.
        with pytest.raises(AssertionError, match="exited|not listening"):
            await anonymous.wait_listening(timeout_s=10)
        assert "authorization" in anonymous.log().lower()
    finally:
        keyed.stop()
        anonymous.stop()
