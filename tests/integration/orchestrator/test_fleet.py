"""Serving instances and the fleet against a real nats-server: heartbeat watch, reconcile, clean-up, ticks."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest_asyncio

from contracts import commands as cmd
from contracts.events import InstanceTerminated, InstanceUnavailable
from contracts.ids import SYSTEM_ORG, new_id
from services.orchestrator.adapters.memory import FakeCompute
from services.orchestrator.adapters.ticker import Ticker, TickSchedule
from services.orchestrator.domain import reasons
from services.orchestrator.domain.backoff import Backoff
from services.orchestrator.domain.decision import Policy
from services.orchestrator.domain.effects import ServerInfo
from services.orchestrator.domain.resources import IpInfo, VolumeInfo
from services.orchestrator.handlers import HandlerConfig
from tests.helpers import wait_until
from tests.unit.orchestrator.factories import MODEL, provision, terminate

from .conftest import running_orchestrator
from .test_orchestrator_nats import ORG, _all_acked, _find, _has, heartbeat

ZONE = "local-1"  # the zone of the factories' placement


@pytest_asyncio.fixture
async def fleet(nats_client, engine):
    compute = FakeCompute(upstream_url_for=lambda instance_id: engine.url)
    config = HandlerConfig(
        provider_timeout_s=10.0,
        check_backoff=Backoff(base_s=0.1, cap_s=0.5),
        policy=Policy(watch_interval_s=0.2, unavailable_action="none"),
    )
    async with running_orchestrator(nats_client, compute, config=config) as running:
        yield running


async def ready_instance(running, nats_client, engine) -> str:
    instance = new_id()
    await running.publish(provision(instance, org=ORG))
    await wait_until(lambda: _has(running, instance, "instance.billing_started"), timeout_s=15, message="server")
    engine.models = [MODEL]
    await heartbeat(nats_client, instance, "ready", [MODEL])  # announces a 0.5 s interval
    await wait_until(lambda: _has(running, instance, "instance.ready"), timeout_s=15, message="ready")
    return instance


def fleet_command(kind, *zones: str):
    command_id = new_id()
    return kind(id=command_id, org_id=SYSTEM_ORG, actor="user:operator", correlation_id=command_id,
                causation_id=command_id, occurred_at=datetime.now(timezone.utc), zones=zones)


async def test_stale_heartbeats_make_an_instance_unavailable_and_fresh_ones_recover_it(fleet, nats_client, engine):
    instance = await ready_instance(fleet, nats_client, engine)
    last_heartbeat = time.monotonic()
    # No more heartbeats: 3 × 0.5 s announced interval + one 0.2 s watch period, plus handling.
    unavailable = await wait_until(lambda: _find(fleet, instance, InstanceUnavailable), timeout_s=15,
                                   message="unavailable")
    assert time.monotonic() - last_heartbeat < 1.5 + 0.2 + 5  # the bound: 3 intervals + 5 s
    assert unavailable.reason_code == reasons.WORKER_HEARTBEAT_TIMEOUT

    await heartbeat(nats_client, instance, "ready", [MODEL])
    await wait_until(lambda: _has(fleet, instance, "instance.recovered"), timeout_s=15, message="recovered")

    await heartbeat(nats_client, instance, "unhealthy", [MODEL])  # e.g. the agent saw the engine stall
    await wait_until(lambda: _count(fleet, instance, "instance.unavailable", 2), timeout_s=15,
                     message="unavailable again")
    events = await fleet.events(ORG, instance)
    assert [e.reason_code for e in events if isinstance(e, InstanceUnavailable)][-1] == reasons.WORKER_UNHEALTHY
    await fleet.publish(terminate(instance, org=ORG))
    await wait_until(lambda: _has(fleet, instance, "instance.terminated"), timeout_s=15, message="terminated")


async def _count(running, instance, tag, n):
    return (await running.tags(ORG, instance)).count(tag) >= n


async def test_reconcile_terminates_instances_the_provider_deleted_and_deletes_orphans(fleet, nats_client, engine):
    instance = await ready_instance(fleet, nats_client, engine)
    [server] = fleet.compute.live_servers(instance)
    fleet.compute.delete_server(server.server_id, ZONE)  # deleted behind our back (console, provider)

    gone = new_id()  # a terminated instance whose server somehow survived
    await fleet.publish(provision(gone, org=ORG))
    await wait_until(lambda: _has(fleet, gone, "instance.billing_started"), timeout_s=15)
    await fleet.publish(terminate(gone, org=ORG))
    await wait_until(lambda: _has(fleet, gone, "instance.terminated"), timeout_s=15)
    orphan = fleet.compute.create_server(gone, ORG, provision(gone).placement, None,
                                         ("inv", f"inv:instance={gone}", f"inv:org={ORG}"))
    stranger = fleet.compute.create_server("never-heard-of", ORG, provision(gone).placement, None,
                                           ("inv", "inv:instance=never-heard-of"))
    untagged = fleet.compute.create_server("not-ours", ORG, provision(gone).placement, None, ("someone-else",))

    await fleet.publish(fleet_command(cmd.ReconcileFleet))
    ended = await wait_until(lambda: _find(fleet, instance, InstanceTerminated), timeout_s=15, message="terminated")
    assert ended.reason_code == reasons.PROVIDER_DELETED
    await wait_until(lambda: _deleted(fleet.compute, orphan, stranger), timeout_s=15, message="orphans deleted")
    assert not fleet.compute.servers[untagged.server_id].deleted  # not ours: never touched


async def _deleted(compute, *servers: ServerInfo) -> bool:
    return all(compute.servers[s.server_id].deleted for s in servers)


async def test_reconcile_never_terminates_on_a_provider_error(fleet, nats_client, engine):
    from services.orchestrator.ports import Transient

    instance = await ready_instance(fleet, nats_client, engine)
    [server] = fleet.compute.live_servers(instance)
    fleet.compute.servers[server.server_id].deleted = True  # missing from the listing...
    fleet.compute.fail_next("get_server", Transient("503 from the provider"))  # ...and the lookup fails
    calls = fleet.compute.calls["get_server"]
    await fleet.publish(fleet_command(cmd.ReconcileFleet, ZONE))
    await wait_until(lambda: _more_calls(fleet.compute, "get_server", calls), timeout_s=15)
    assert not await _has(fleet, instance, "instance.termination_requested")
    fleet.compute.servers[server.server_id].deleted = False
    await fleet.publish(terminate(instance, org=ORG))
    await wait_until(lambda: _has(fleet, instance, "instance.terminated"), timeout_s=15)


async def _more_calls(compute, op, before):
    return compute.calls[op] > before and compute.calls["list_servers"] > 0


async def test_cleanup_deletes_leaked_volumes_and_ips_only(fleet, nats_client, engine):
    live = await ready_instance(fleet, nats_client, engine)
    over = new_id()
    compute = fleet.compute
    compute.volumes = {
        "v-leak": VolumeInfo("v-leak", ZONE, f"inv-{over}-root", "available", ("inv", f"inv:instance={over}")),
        "v-live": VolumeInfo("v-live", ZONE, f"inv-{live}-root", "available", ("inv", f"inv:instance={live}")),
        "v-attached": VolumeInfo("v-attached", ZONE, "x", "in_use", ("inv", f"inv:instance={over}"), "srv-9"),
        "v-theirs": VolumeInfo("v-theirs", ZONE, "theirs", "available", ("other",)),
    }
    compute.ips = {"ip-leak": IpInfo("ip-leak", ZONE, "203.0.113.7", ("inv", f"inv:instance={over}"))}
    await fleet.publish(fleet_command(cmd.CleanUpFleet, ZONE))
    await wait_until(lambda: _volumes_are(compute, {"v-live", "v-attached", "v-theirs"}), timeout_s=15)
    assert compute.ips == {}
    await fleet.publish(terminate(live, org=ORG))
    await wait_until(lambda: _has(fleet, live, "instance.terminated"), timeout_s=15)


async def _volumes_are(compute, ids):
    return set(compute.volumes) == ids


async def test_replicas_publish_one_tick_per_window(nats_client):
    from services.orchestrator.adapters.nats_ports import JetStreamCommandPublisher

    js = nats_client.jetstream()
    before = (await js.stream_info("COMMANDS")).state.messages
    frozen = 1_800_000_000.0  # every replica sees the same window
    replicas = [Ticker(JetStreamCommandPublisher(js), TickSchedule(60, 900, 0), clock=lambda: frozen)
                for _ in range(3)]
    for replica in replicas:
        await replica.publish_due()
        await replica.publish_due()
    assert (await js.stream_info("COMMANDS")).state.messages == before + 2  # reconcile + cleanup, once each
    later = Ticker(JetStreamCommandPublisher(js), TickSchedule(60, 900, 0), clock=lambda: frozen + 60)
    await later.publish_due()
    assert (await js.stream_info("COMMANDS")).state.messages == before + 3  # a new reconcile window


async def test_catalog_sync_records_what_the_provider_offers(fleet):
    from decimal import Decimal

    from contracts.events import CatalogOffersObserved
    from services.orchestrator.domain.resources import ServerTypeOffer

    fleet.compute.server_types = {ZONE: [
        ServerTypeOffer("L4-1-24G", ZONE, Decimal("0.8500"), 1, 24, 48, True, True),
        ServerTypeOffer("H100-1-80G", ZONE, Decimal("2.7300"), 1, 80, 240, False, True),
    ]}
    command = fleet_command(cmd.SyncCatalog, ZONE)
    await fleet.publish(command)

    async def observed():
        found = [item.event for item in await fleet.store.load("evt.system.catalog.*.offers_observed")]
        return found[-1] if found else None

    event = await wait_until(observed, timeout_s=15, message="offers observed")
    assert isinstance(event, CatalogOffersObserved) and event.zone_code == ZONE
    assert [(o.name, o.hourly_price_eur, o.available) for o in event.offers] == [
        ("H100-1-80G", Decimal("2.7300"), False), ("L4-1-24G", Decimal("0.8500"), True)]
    await fleet.publish(command, msg_id=new_id())  # the same command stored twice: its event is stored once
    await wait_until(lambda: _called(fleet.compute, "list_server_types", 2), timeout_s=15)
    await _all_acked(fleet.orchestrator.nc)  # the second handling finished, its append included
    assert len(await fleet.store.load("evt.system.catalog.*.offers_observed")) == 1


async def _called(compute, op, times):
    return compute.calls[op] >= times
