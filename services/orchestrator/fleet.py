"""Fleet commands: reconcile with the provider, clean up leaked volumes and IPs, sync the catalog.

Each runs per zone, best effort: a provider error in one zone is logged and counted and the
other zones go on; the next tick tries again. Every action is idempotent (deleting what is
already gone is a NotFound, a provider-deleted instance is terminated by a command whose id
derives from the instance and the server), so a tick handled twice changes nothing more.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Protocol

import structlog

from contracts import commands as cmd
from contracts.events import CatalogOffersObserved, ProviderOffer
from contracts.ids import SYSTEM_ORG, derived_id

from . import metrics
from .domain.decision import ORCHESTRATOR_ACTOR
from .domain.reconcile import KnownInstance, OrphanAction, count_by_status, plan_cleanup, plan_reconcile
from .handlers import Done, Outcome, Ports
from .perform import provider_call
from .ports import ComputeError, NotFound

log = structlog.get_logger(__name__)


class FleetView(Protocol):
    async def known_instances(self) -> dict[str, KnownInstance]: ...


@dataclass(frozen=True, slots=True)
class FleetConfig:
    provider_code: str = "mock"
    zones: tuple[str, ...] = ()  # always looked at, even with no instance there
    orphan_action: OrphanAction = "terminate"
    tags_prefix: str = "inv"


async def handle_fleet(command: cmd.FleetCommand, ports: Ports, view: FleetView, config: FleetConfig) -> Outcome:
    known = await view.known_instances()
    for status, count in count_by_status(known).items():
        metrics.INSTANCES.labels(status).set(count)
    zones = command.zones or tuple(sorted(set(config.zones) | {k.zone for k in known.values() if k.zone}))
    for zone in zones:
        try:
            if isinstance(command, cmd.ReconcileFleet):
                await _reconcile_zone(command, zone, known, ports, config)
            elif isinstance(command, cmd.CleanUpFleet):
                await _clean_up_zone(zone, known, ports, config)
            elif isinstance(command, cmd.SyncCatalog):
                await _sync_catalog_zone(command, zone, ports, config)
        except ComputeError as exc:
            metrics.FLEET_ACTIONS.labels("zone_skipped", exc.kind).inc()
            log.warning("orchestrator.fleet_zone_failed", zone=zone, error=str(exc), kind=exc.kind)
    return Done()


async def _reconcile_zone(
    command: cmd.FleetCommand, zone: str, known: dict[str, KnownInstance], ports: Ports, config: FleetConfig
) -> None:
    servers = await provider_call(ports, "list_servers", ports.compute.list_servers, zone)
    plan = plan_reconcile(zone, servers, known, orphan_action=config.orphan_action, prefix=config.tags_prefix)
    for orphan in plan.delete:
        with contextlib.suppress(NotFound):
            await provider_call(ports, "delete_server", ports.compute.delete_server, orphan.resource_id, zone)
        metrics.FLEET_ACTIONS.labels("server_deleted", orphan.why).inc()
        log.warning("orchestrator.orphan_server_deleted", zone=zone, server_id=orphan.resource_id,
                    instance_id=orphan.instance_id, why=orphan.why)
    for orphan in plan.report:
        metrics.FLEET_ACTIONS.labels("server_reported", orphan.why).inc()
        log.warning("orchestrator.orphan_server_reported", zone=zone, server_id=orphan.resource_id,
                    instance_id=orphan.instance_id, why=orphan.why)
    for suspect in plan.suspects:
        assert suspect.server_id is not None
        try:
            await provider_call(ports, "get_server", ports.compute.get_server, suspect.server_id, zone)
            continue  # the listing was partial: the server is there
        except NotFound:
            pass
        except ComputeError:
            continue  # a timeout, 401 or 5xx proves nothing
        await ports.commands.publish(_terminate_provider_deleted(command, suspect))
        metrics.FLEET_ACTIONS.labels("provider_deleted", "not_found").inc()
        log.warning("orchestrator.provider_deleted", instance_id=suspect.instance_id, server_id=suspect.server_id)


def _terminate_provider_deleted(command: cmd.FleetCommand, suspect: KnownInstance) -> cmd.TerminateInstance:
    command_id = derived_id(suspect.instance_id, "provider_deleted", suspect.server_id or "")
    return cmd.TerminateInstance(
        id=command_id,
        org_id=suspect.org_id,
        actor=ORCHESTRATOR_ACTOR,
        correlation_id=command.correlation_id,
        causation_id=command.id,
        occurred_at=command.occurred_at,
        instance_id=suspect.instance_id,
        reason="provider_deleted",
    )


async def _clean_up_zone(zone: str, known: dict[str, KnownInstance], ports: Ports, config: FleetConfig) -> None:
    volumes = await provider_call(ports, "list_volumes", ports.compute.list_volumes, zone)
    ips = await provider_call(ports, "list_ips", ports.compute.list_ips, zone)
    plan = plan_cleanup(volumes, ips, known, prefix=config.tags_prefix)
    for leak in plan.volumes:
        await _delete_leak(ports, "delete_volume", ports.compute.delete_volume, leak.resource_id, zone, leak.why)
    for leak in plan.ips:
        await _delete_leak(ports, "delete_ip", ports.compute.delete_ip, leak.resource_id, zone, leak.why)


async def _delete_leak(ports: Ports, operation: str, fn, resource_id: str, zone: str, why: str) -> None:
    try:
        await provider_call(ports, operation, fn, resource_id, zone)
    except NotFound:
        return  # gone already
    except ComputeError as exc:  # e.g. Conflict: still detaching; the next tick tries again
        log.info("orchestrator.leak_not_deleted", operation=operation, resource_id=resource_id, error=str(exc))
        return
    metrics.FLEET_ACTIONS.labels(operation.removeprefix("delete_") + "_deleted", why).inc()
    log.warning("orchestrator.leak_deleted", operation=operation, resource_id=resource_id, zone=zone, why=why)


async def _sync_catalog_zone(command: cmd.FleetCommand, zone: str, ports: Ports, config: FleetConfig) -> None:
    offers = await provider_call(ports, "list_server_types", ports.compute.list_server_types, zone)
    observed = tuple(
        ProviderOffer(
            name=o.name, hourly_price_eur=o.hourly_price_eur, gpu_count=o.gpu_count, gpu_memory_gb=o.gpu_memory_gb,
            ram_gb=o.ram_gb, available=o.available, diskless=o.diskless,
        )
        for o in sorted(offers, key=lambda o: o.name)
    )
    event = CatalogOffersObserved(
        id=derived_id(command.id, config.provider_code, zone),
        org_id=SYSTEM_ORG,
        actor=ORCHESTRATOR_ACTOR,
        correlation_id=command.correlation_id,
        causation_id=command.id,
        occurred_at=command.occurred_at,
        provider_code=config.provider_code,
        zone_code=zone,
        offers=observed,
    )
    # Order does not matter between observations (the newest wins in the projection): no OCC.
    await ports.store.append(event, expected_last_seq=None)
    metrics.FLEET_ACTIONS.labels("catalog_synced", "ok").inc()
    log.info("orchestrator.catalog_synced", zone=zone, offers=len(observed))
