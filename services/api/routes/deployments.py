"""``POST /deployments``: validate against the catalog, publish ``ProvisionInstance``, answer 202.

Nothing is published unless every check passes. The answer comes only after JetStream's
acknowledgement, so a 202 means the command is durable. With an ``Idempotency-Key`` header the
instance id and the command id are derived from (organisation, key): a retry inside the
COMMANDS duplicate window (10 min) is stored once and answers the same ids; reusing a key for a
different deployment is refused (422). The message id is the derived command id rather than
the raw key, so two organisations using the same key can never collide.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from litestar import Request, Response, post
from litestar.status_codes import HTTP_202_ACCEPTED

from contracts.catalog import Placement
from contracts.commands import ProvisionInstance
from contracts.ids import derived_id, new_id

from .. import db
from ..auth.principal import Principal, require_org_role
from ..auth.roles import OPERATE_ROLES
from ..catalog_rules import incompatibility
from ..commands import publish_command, stored_command
from ..context import correlation_id, idempotency_key, utcnow
from ..errors import Problem
from ..schemas import CommandAccepted, DeploymentRequest
from ..state import resources
from ..validation import maybe_uuid


class _Errors:
    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, field: str, message: str) -> None:
        self.items.append({"field": field, "message": message})

    def raise_if_any(self) -> None:
        if self.items:
            detail = "; ".join(f"{e['field']}: {e['message']}" for e in self.items)
            raise Problem(422, detail, type_="validation", errors=self.items)


async def _provider(pool: asyncpg.Pool, data: DeploymentRequest, errors: _Errors) -> dict[str, Any] | None:
    if data.provider_id is None and data.provider_code is None:
        return None
    field, ref = ("provider_id", data.provider_id) if data.provider_id is not None else ("provider_code",
                                                                                         data.provider_code)
    row = await db.fetchrow(
        pool, "SELECT id, code, is_active FROM public.providers WHERE ($1::uuid IS NOT NULL AND id = $1) OR code = $2",
        maybe_uuid(ref), ref,
    )
    if row is None:
        errors.add(field, f"unknown provider '{ref}'")
    elif not row["is_active"]:
        errors.add(field, f"provider '{row['code']}' is not active")
    else:
        return dict(row)
    return None


async def resolve_placement(pool: asyncpg.Pool, data: DeploymentRequest) -> Placement:
    """The catalog facts of a deployment request, or 422 naming every field that is wrong."""
    errors = _Errors()
    if data.model is not None and data.model_id is not None and data.model != data.model_id:
        errors.add("model", "give either model or model_id, not both")
    model_field = "model" if data.model is not None else "model_id"
    model_ref = data.model if data.model is not None else data.model_id
    model = None
    if model_ref is None:
        errors.add("model", "required (a model id or served name)")
    else:
        model = await db.fetchrow(
            pool,
            """SELECT id, model_id, name, required_vram_gb, is_active, metadata FROM public.models
               WHERE ($1::uuid IS NOT NULL AND id = $1) OR model_id = $2
               ORDER BY (model_id = $2) DESC LIMIT 1""",
            maybe_uuid(model_ref), model_ref,
        )
        if model is None:
            errors.add(model_field, f"unknown model '{model_ref}'")
        elif not model["is_active"]:
            errors.add(model_field, f"model '{model['model_id']}' is not active")
            model = None

    provider = await _provider(pool, data, errors)
    provider_filter = provider["id"] if provider else None
    if (data.provider_id or data.provider_code) and provider is None:
        errors.raise_if_any()

    zones = await db.fetch(
        pool,
        """SELECT z.id, z.code, z.is_active, z.provider_id, r.code AS region_code, r.is_active AS region_active,
                  p.code AS provider_code, p.is_active AS provider_active
           FROM public.zones z JOIN public.regions r ON r.id = z.region_id
           JOIN public.providers p ON p.id = z.provider_id
           WHERE (($1::uuid IS NOT NULL AND z.id = $1) OR z.code = $2) AND ($3::uuid IS NULL OR z.provider_id = $3)""",
        maybe_uuid(data.zone), data.zone, provider_filter,
    )
    zone = None
    if not zones:
        errors.add("zone", f"unknown zone '{data.zone}'")
    elif len(zones) > 1:
        errors.add("zone", f"zone code '{data.zone}' exists at several providers; give provider_code")
    elif not (zones[0]["is_active"] and zones[0]["region_active"] and zones[0]["provider_active"]):
        errors.add("zone", f"zone '{zones[0]['code']}' is not active")
    else:
        zone = zones[0]

    itype = None
    if zone is not None:
        itype = await db.fetchrow(
            pool,
            """SELECT t.id, t.code, t.gpu_count, t.vram_per_gpu_gb, t.cost_per_hour, t.is_active,
                      itz.is_available
               FROM public.instance_types t
               LEFT JOIN public.instance_type_zones itz ON itz.instance_type_id = t.id AND itz.zone_id = $3
               WHERE t.provider_id = $4 AND (($1::uuid IS NOT NULL AND t.id = $1) OR t.code = $2)""",
            maybe_uuid(data.instance_type), data.instance_type, zone["id"], zone["provider_id"],
        )
        if itype is None:
            errors.add("instance_type", f"unknown instance type '{data.instance_type}' at provider "
                                        f"'{zone['provider_code']}'")
        elif not itype["is_active"]:
            errors.add("instance_type", f"instance type '{itype['code']}' is not active")
            itype = None
        elif not itype["is_available"]:
            errors.add("instance_type", f"instance type '{itype['code']}' is not available in zone '{zone['code']}'")
            itype = None
    if model is not None and itype is not None and zone is not None:
        why = incompatibility(provider_code=zone["provider_code"], instance_type_code=itype["code"],
                              gpu_count=itype["gpu_count"], vram_per_gpu_gb=itype["vram_per_gpu_gb"],
                              required_vram_gb=model["required_vram_gb"], metadata=model["metadata"])
        if why:
            errors.add(model_field, f"model '{model['model_id']}' is not compatible with '{itype['code']}': {why}")
    errors.raise_if_any()
    assert model is not None and zone is not None and itype is not None
    return Placement(
        provider_code=zone["provider_code"], region_code=zone["region_code"], zone_code=zone["code"],
        zone_id=str(zone["id"]), instance_type_code=itype["code"], instance_type_id=str(itype["id"]),
        gpu_count=itype["gpu_count"], vram_per_gpu_gb=itype["vram_per_gpu_gb"], hourly_price_eur=itype["cost_per_hour"],
        model_id=str(model["id"]), model_name=model["model_id"],
    )


def _same_request(a: ProvisionInstance, b: ProvisionInstance) -> bool:
    pa, pb = a.placement, b.placement
    return (a.instance_id, pa.model_id, pa.zone_id, pa.instance_type_id, a.startup_timeout_s) == (
        b.instance_id, pb.model_id, pb.zone_id, pb.instance_type_id, b.startup_timeout_s)


@post("/deployments", status_code=HTTP_202_ACCEPTED, tags=["instances"],
      summary="Deploy a model on a new instance (202 once the command is durable)")
async def create_deployment(request: Request, data: DeploymentRequest, principal: Principal,
                            org_id: str) -> Response[CommandAccepted]:
    require_org_role(principal, *OPERATE_ROLES)  # GPUs cost money: owners and admins deploy
    key = idempotency_key(request)  # validated before anything else happens
    res = resources(request)
    placement = await resolve_placement(res.pool, data)
    if key is not None:
        instance_id = derived_id("deployment", org_id, key, "instance")
        command_id = derived_id("deployment", org_id, key, "command")
    else:
        instance_id, command_id = new_id(), new_id()
    request_id = correlation_id(request)
    extra: dict[str, Any] = {} if data.startup_timeout_s is None else {"startup_timeout_s": data.startup_timeout_s}
    command = ProvisionInstance(
        id=command_id, org_id=org_id, actor=principal.actor, correlation_id=request_id, causation_id=request_id,
        occurred_at=utcnow(), instance_id=instance_id, placement=placement, **extra,
    )
    ack = await publish_command(res.js, command, timeout_s=res.api.publish_timeout_s)
    if ack.duplicate:
        original = await stored_command(res.js, ack.seq)
        if isinstance(original, ProvisionInstance):
            if not _same_request(original, command):
                raise Problem(422, "Idempotency-Key: already used for a different deployment",
                              type_="idempotency-key-reused",
                              errors=[{"field": "Idempotency-Key", "message": "already used for a different request"}])
            request_id = original.correlation_id
    body = CommandAccepted(instance_id=instance_id, command_id=command_id, status="provisioning",
                           correlation_id=request_id)
    return Response(body, status_code=HTTP_202_ACCEPTED, headers={"Location": f"/instances/{instance_id}"})


route_handlers = [create_deployment]
