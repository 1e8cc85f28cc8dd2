"""Operator commands on the whole fleet: reconcile with the provider, sync the catalog.

Platform administrators only. Each publishes a fleet command (the same the orchestrators'
periodic ticks publish) and answers 202 once it is durable; the orchestrator's log and
metrics say what it did. An ``Idempotency-Key`` makes a retried request the same command.
"""

from __future__ import annotations

import msgspec
from litestar import Request, Response, post
from litestar.status_codes import HTTP_202_ACCEPTED

from contracts.commands import FleetCommand, ReconcileFleet, SyncCatalog
from contracts.ids import SYSTEM_ORG, derived_id, new_id

from ..auth.principal import Principal, require_admin
from ..commands import publish_command
from ..context import correlation_id, idempotency_key, utcnow
from ..state import resources


class FleetCommandAccepted(msgspec.Struct, kw_only=True):
    command_id: str
    command_type: str
    correlation_id: str


async def _send(request: Request, principal: Principal, kind: type[FleetCommand], verb: str):
    require_admin(principal)
    key = idempotency_key(request)
    command_id = derived_id(verb, key) if key is not None else new_id()
    request_id = correlation_id(request)
    command = kind(id=command_id, org_id=SYSTEM_ORG, actor=principal.actor, correlation_id=request_id,
                   causation_id=request_id, occurred_at=utcnow())
    res = resources(request)
    await publish_command(res.js, command, timeout_s=res.api.publish_timeout_s)
    body = FleetCommandAccepted(command_id=command_id, command_type=kind.__struct_config__.tag,
                                correlation_id=request_id)
    return Response(body, status_code=HTTP_202_ACCEPTED)


@post("/reconcile", status_code=HTTP_202_ACCEPTED, tags=["fleet"],
      summary="Reconcile the provider's servers with the log now (admin; 202 once durable)")
async def reconcile(request: Request, principal: Principal) -> Response[FleetCommandAccepted]:
    return await _send(request, principal, ReconcileFleet, "reconcile")


@post("/catalog/sync", status_code=HTTP_202_ACCEPTED, tags=["fleet"],
      summary="Read server types, prices and stock from the provider now (admin; 202 once durable)")
async def sync_catalog(request: Request, principal: Principal) -> Response[FleetCommandAccepted]:
    return await _send(request, principal, SyncCatalog, "catalog_sync")


route_handlers = [reconcile, sync_catalog]
