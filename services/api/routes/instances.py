"""Instances of the caller's organisation: list, detail, terminate, reinstall, archive; and the action log.

Every query carries ``org_id`` from the credential. Another organisation's instance answers
404, exactly like one that does not exist.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, delete, get, post, put
from litestar.params import Parameter
from litestar.status_codes import HTTP_202_ACCEPTED
from nats.js.errors import NotFoundError

from contracts import subjects
from contracts.commands import ArchiveInstance, ReinstallInstance, TerminateInstance
from contracts.ids import derived_id, new_id
from services.runtime.eventstore import EVENTS_STREAM

from .. import db
from ..auth.principal import Principal, require_org_role
from ..auth.roles import OPERATE_ROLES
from ..commands import publish_command
from ..context import correlation_id, idempotency_key, utcnow
from ..errors import Problem
from ..schemas import ActionLogView, CommandAccepted, InstanceDetail, InstanceView, StateChange
from ..state import Resources, resources
from ..validation import path_uuid

_INSTANCE_COLUMNS = """
    i.id, i.org_id, i.status, i.progress_percent, i.provider_code, i.region_code, i.zone_code, i.zone_id,
    i.instance_type_code, i.instance_type_id, i.gpu_count, i.model_id, i.model_name, i.hourly_price_eur,
    i.provider_server_id, i.ip_address, i.upstream_url, i.agent_url, i.install_phase, i.error_code, i.error_message,
    i.deletion_reason, i.is_archived, i.startup_deadline, i.created_at, i.boot_started_at, i.ready_at,
    i.terminated_at, i.failed_at, i.updated_at, i.last_event_seq,
    hb.status AS hb_status, hb.received_at AS hb_received_at"""

_FROM = """FROM rm.instances i
    LEFT JOIN public.worker_heartbeats hb ON hb.instance_id = i.id AND hb.org_id = i.org_id::text"""


def _view_fields(r) -> dict[str, Any]:
    return dict(
        id=str(r["id"]), organization_id=str(r["org_id"]), status=r["status"], progress_percent=r["progress_percent"],
        provider_code=r["provider_code"], region=r["region_code"], zone=r["zone_code"], zone_id=str(r["zone_id"]),
        instance_type=r["instance_type_code"], instance_type_id=str(r["instance_type_id"]), gpu_count=r["gpu_count"],
        model_id=str(r["model_id"]), model_name=r["model_name"], cost_per_hour=r["hourly_price_eur"],
        provider_instance_id=r["provider_server_id"], ip_address=r["ip_address"], upstream_url=r["upstream_url"],
        install_phase=r["install_phase"], error_code=r["error_code"], error_message=r["error_message"],
        deletion_reason=r["deletion_reason"], is_archived=r["is_archived"], startup_deadline=r["startup_deadline"],
        created_at=r["created_at"], boot_started_at=r["boot_started_at"], ready_at=r["ready_at"],
        terminated_at=r["terminated_at"], failed_at=r["failed_at"], updated_at=r["updated_at"],
        last_event_seq=r["last_event_seq"], worker_status=r["hb_status"], last_heartbeat_at=r["hb_received_at"],
    )


@get("/instances", tags=["instances"], summary="Instances of your organization, newest first")
async def list_instances(
    request: Request,
    principal: Principal,
    org_id: str,
    archived: bool = Parameter(default=False, description="true: only archived instances; false: the others"),
    status: str | None = Parameter(default=None, max_length=32, pattern=r"^[a-z_]+$"),
    limit: int = Parameter(default=500, ge=1, le=1000),
) -> list[InstanceView]:
    rows = await db.fetch(
        resources(request).pool,
        f"""SELECT {_INSTANCE_COLUMNS} {_FROM}
            WHERE i.org_id = $1 AND i.is_archived = $2 AND ($3::text IS NULL OR i.status = $3)
            ORDER BY i.created_at DESC, i.id LIMIT $4""",
        org_id, archived, status, limit,
    )
    return [InstanceView(**_view_fields(r)) for r in rows]


@get("/instances/{instance_id:str}", tags=["instances"], summary="One instance, its last heartbeat and history")
async def get_instance(request: Request, instance_id: str, principal: Principal, org_id: str) -> InstanceDetail:
    instance_id = path_uuid("instance_id", instance_id)
    pool = resources(request).pool
    row = await db.fetchrow(
        pool, f"SELECT {_INSTANCE_COLUMNS}, hb.payload AS hb_payload {_FROM} WHERE i.id = $1 AND i.org_id = $2",
        instance_id, org_id,
    )
    if row is None:
        raise Problem(404, "no such instance", type_="not-found")
    history = await db.fetch(
        pool,
        """SELECT seq, from_status, to_status, reason, created_at FROM rm.instance_state_history
           WHERE instance_id = $1 AND org_id = $2 ORDER BY seq""",
        instance_id, org_id,
    )
    return InstanceDetail(
        **_view_fields(row), agent_url=row["agent_url"], last_heartbeat=row["hb_payload"],
        state_history=[StateChange(seq=h["seq"], from_status=h["from_status"], to_status=h["to_status"],
                                   reason=h["reason"], created_at=h["created_at"]) for h in history],
    )


async def _instance_exists(res: Resources, org_id: str, instance_id: str) -> bool:
    if await db.fetchval(res.pool, "SELECT 1 FROM rm.instances WHERE id = $1 AND org_id = $2", instance_id, org_id):
        return True
    # Not projected yet: the event log of that org is the authority.
    try:
        await res.js.get_msg(EVENTS_STREAM, seq=1, subject=subjects.aggregate_filter(org_id, "instance", instance_id),
                             next=True, direct=True)
    except NotFoundError:
        return False
    return True


async def _send_instance_command(
    request: Request, instance_id: str, principal: Principal, org_id: str, kind: type, verb: str, status: str, **fields
) -> Response[CommandAccepted]:
    """Publish ``kind`` for one of the caller's instances; 202 once it is durable.

    With an ``Idempotency-Key`` the command id derives from (verb, org, instance, key): a retried
    request is the same command, stored once.
    """
    require_org_role(principal, *OPERATE_ROLES)  # before the lookup: the answer says nothing about the instance
    instance_id = path_uuid("instance_id", instance_id)
    key = idempotency_key(request)
    res = resources(request)
    if not await _instance_exists(res, org_id, instance_id):
        raise Problem(404, "no such instance", type_="not-found")
    command_id = derived_id(verb, org_id, instance_id, key) if key is not None else new_id()
    request_id = correlation_id(request)
    command = kind(id=command_id, org_id=org_id, actor=principal.actor, correlation_id=request_id,
                   causation_id=request_id, occurred_at=utcnow(), instance_id=instance_id, **fields)
    await publish_command(res.js, command, timeout_s=res.api.publish_timeout_s)
    body = CommandAccepted(instance_id=instance_id, command_id=command_id, status=status, correlation_id=request_id)
    return Response(body, status_code=HTTP_202_ACCEPTED)


@delete("/instances/{instance_id:str}", status_code=HTTP_202_ACCEPTED, tags=["instances"],
        summary="Terminate an instance (202 once the command is durable)")
async def terminate_instance(request: Request, instance_id: str, principal: Principal,
                             org_id: str) -> Response[CommandAccepted]:
    return await _send_instance_command(request, instance_id, principal, org_id, TerminateInstance,
                                        "terminate", "terminating")


@post("/instances/{instance_id:str}/reinstall", status_code=HTTP_202_ACCEPTED, tags=["instances"],
      summary="Install the worker again on the same server (202 once the command is durable)")
async def reinstall_instance(request: Request, instance_id: str, principal: Principal,
                             org_id: str) -> Response[CommandAccepted]:
    # Refused by the orchestrator (command.rejected, visible in the action log) when the
    # instance has no server or the provider starts workers itself.
    return await _send_instance_command(request, instance_id, principal, org_id, ReinstallInstance,
                                        "reinstall", "installing")


@put("/instances/{instance_id:str}/archive", status_code=HTTP_202_ACCEPTED, tags=["instances"],
     summary="Archive a terminated instance: hidden from the default list (202 once the command is durable)")
async def archive_instance(request: Request, instance_id: str, principal: Principal,
                           org_id: str) -> Response[CommandAccepted]:
    return await _send_instance_command(request, instance_id, principal, org_id, ArchiveInstance,
                                        "archive", "archived")


@get("/action_logs", tags=["instances"], summary="The latest action-log rows of your organization")
async def list_action_logs(
    request: Request,
    principal: Principal,
    org_id: str,
    instance_id: str | None = Parameter(default=None, max_length=36),
    component: str | None = Parameter(default=None, max_length=32, pattern=r"^[a-z_]+$"),
    status: str | None = Parameter(default=None, max_length=16, pattern=r"^[a-z_]+$"),
    action_type: str | None = Parameter(default=None, max_length=64, pattern=r"^[A-Z0-9_]+$"),
    limit: int = Parameter(default=200, ge=1, le=1000),
) -> list[ActionLogView]:
    if instance_id is not None:
        instance_id = path_uuid("instance_id", instance_id)
    rows = await db.fetch(
        resources(request).pool,
        """SELECT seq, id, action_type, component, status, error_code, error_message, instance_id, actor,
                  correlation_id, instance_status_before, instance_status_after, metadata, created_at
           FROM rm.action_logs
           WHERE org_id = $1 AND ($2::uuid IS NULL OR instance_id = $2) AND ($3::text IS NULL OR component = $3)
             AND ($4::text IS NULL OR status = $4) AND ($5::text IS NULL OR action_type = $5)
           ORDER BY seq DESC LIMIT $6""",
        org_id, instance_id, component, status, action_type, limit,
    )
    return [
        ActionLogView(id=str(r["id"]), seq=r["seq"], action_type=r["action_type"], component=r["component"],
                      status=r["status"], error_code=r["error_code"], error_message=r["error_message"],
                      instance_id=str(r["instance_id"]) if r["instance_id"] else None, actor=r["actor"],
                      correlation_id=r["correlation_id"], instance_status_before=r["instance_status_before"],
                      instance_status_after=r["instance_status_after"], metadata=r["metadata"] or {},
                      created_at=r["created_at"])
        for r in rows
    ]


route_handlers = [list_instances, get_instance, terminate_instance, reinstall_instance, archive_instance,
                  list_action_logs]
