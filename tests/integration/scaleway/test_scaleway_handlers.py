"""The real orchestrator handler with ScalewayCompute against the fake API, events in a real
JetStream: provision creates a booting server, terminate leaves no server, volume or IP."""

from __future__ import annotations

from datetime import datetime, timezone

from contracts import commands as cmd
from contracts.events import InstanceServerCreated, event_tag
from contracts.ids import new_id
from services.orchestrator.bootstrap import build_ports
from services.orchestrator.domain.evolve import fold
from services.orchestrator.handlers import Done, HandlerConfig, handle
from tests.helpers import wait_until

from .conftest import gpu_placement

ORG = "org-scw"


def _envelope() -> dict:
    command_id = new_id()
    return dict(id=command_id, org_id=ORG, actor="user:u1", correlation_id=command_id, causation_id=command_id,
                occurred_at=datetime.now(timezone.utc))


async def _events(ports, instance_id):
    return [item.event for item in await ports.store.load(f"evt.{ORG}.instance.{instance_id}.*")]


async def test_provision_then_terminate_through_the_handler(nats_client, scaleway_api, scaleway_compute):
    ports = build_ports(nats_client, scaleway_compute, config=HandlerConfig(provider_timeout_s=30.0))
    instance_id = new_id()

    outcome = await handle(cmd.ProvisionInstance(instance_id=instance_id, placement=gpu_placement(),
                                                 startup_timeout_s=900, **_envelope()), ports)
    assert isinstance(outcome, Done)
    events = await _events(ports, instance_id)
    assert [event_tag(e) for e in events][:3] == ["instance.requested", "instance.server_created",
                                                   "instance.billing_started"]
    created = next(e for e in events if isinstance(e, InstanceServerCreated))
    assert fold(events).status == "booting"
    server = scaleway_api.fake.servers[created.provider_server_id]
    assert server.name == f"inv-{instance_id}"
    assert {"inv", f"inv:instance={instance_id}", f"inv:org={ORG}"} <= set(server.tags)
    ip = scaleway_api.fake.attached_ips(server.id)[0]
    assert created.upstream_url == f"http://{ip.address}:8000" and created.agent_url == f"http://{ip.address}:8080"
    assert scaleway_api.count("create_server") == 1

    terminate = cmd.TerminateInstance(instance_id=instance_id, **_envelope())

    async def terminated() -> bool:
        # A Retry (the server still going away) is what the consumer would nak: handle it again.
        await handle(terminate, ports)
        return fold(await _events(ports, instance_id)).status == "terminated"

    await wait_until(terminated, timeout_s=30, interval_s=0.05, message="terminated")
    tags = [event_tag(e) for e in await _events(ports, instance_id)]
    assert tags[-3:] == ["instance.server_deleted", "instance.billing_stopped", "instance.terminated"]
    assert scaleway_api.fake.inventory() == {"servers": [], "volumes": [], "ips": []}
