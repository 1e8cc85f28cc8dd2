"""Event builders for projector tests (pure; also used by the integration tests)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from contracts import codec, ids
from contracts.catalog import Placement
from contracts.events import (
    ApiKeyCreated,
    ApiKeyRevoked,
    CommandRejected,
    InstanceArchived,
    InstanceBillingStarted,
    InstanceBillingStopped,
    InstanceFailed,
    InstanceInstallPhaseReached,
    InstanceReady,
    InstanceDraining,
    InstanceRecovered,
    InstanceReinstallRequested,
    InstanceRequested,
    InstanceServerCreated,
    InstanceServerDeleted,
    InstanceTerminated,
    InstanceTerminationRequested,
    InstanceUnavailable,
    InstanceWorkerStarting,
    MemberAdded,
    OrganizationCreated,
    UserCreated,
)
from services.projector.projections import EventMeta
from services.projector.rowops import MemoryTables

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)

TABLE_KEYS = {
    "instances": ("id",),
    "instance_state_history": ("seq",),
    "action_logs": ("seq",),
    "organizations": ("id",),
    "users": ("id",),
    "memberships": ("organization_id", "user_id"),
    "api_keys": ("id",),
}

PLACEMENT = Placement(
    provider_code="mock", region_code="local", zone_code="local-1", zone_id=ids.derived_id("zone", "1"),
    instance_type_code="MOCK-GPU", instance_type_id=ids.derived_id("type", "1"), gpu_count=1,
    vram_per_gpu_gb=24, hourly_price_eur=Decimal("1.2500"), model_id=ids.derived_id("model", "1"),
    model_name="Qwen/Qwen2.5-0.5B-Instruct",
)  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> datetime:
        self.n += 1
        return T0 + timedelta(seconds=self.n)


_clock = Clock()


def env(org: str, *, actor: str = "system:orchestrator", at: datetime | None = None) -> dict:
    return dict(id=ids.new_id(), org_id=org, actor=actor, correlation_id="corr-1", causation_id="cause-1",
                occurred_at=at or _clock())  # fmt: skip


def instance_event(tag: str, org: str, iid: str, *, failure_status: str | None = None, phase: str = "ssh_ready",
                   at: datetime | None = None):  # fmt: skip
    by_user = tag in ("instance.requested", "instance.termination_requested")
    e = env(org, at=at, actor="user:" + ids.derived_id("u") if by_user else "system:orchestrator")
    e["instance_id"] = iid
    match tag:
        case "instance.requested":
            return InstanceRequested(**e, placement=PLACEMENT, startup_deadline=T0 + timedelta(hours=1))
        case "instance.server_created":
            return InstanceServerCreated(**e, provider_server_id="srv-" + iid[:8], ip_address="10.0.0.7",
                                         upstream_url="http://10.0.0.7:8000",
                                         agent_url="http://10.0.0.7:8080")  # fmt: skip
        case "instance.billing_started":
            return InstanceBillingStarted(**e, hourly_price_eur=Decimal("1.25"), provider_code="mock",
                                          instance_type_code="MOCK-GPU", model_name=PLACEMENT.model_name)  # fmt: skip
        case "instance.billing_stopped":
            return InstanceBillingStopped(**e)
        case "instance.install_phase_reached":
            return InstanceInstallPhaseReached(**e, phase=phase)
        case "instance.worker_starting":
            return InstanceWorkerStarting(**e)
        case "instance.ready":
            return InstanceReady(**e, upstream_url="http://10.0.0.7:8000", model_name=PLACEMENT.model_name)
        case "instance.unavailable":
            return InstanceUnavailable(**e, reason_code="HEARTBEAT_LOST")
        case "instance.recovered":
            return InstanceRecovered(**e)
        case "instance.draining":
            return InstanceDraining(**e, reason_code="WORKER_DRAINING")
        case "instance.reinstall_requested":
            return InstanceReinstallRequested(**e, generation=1, reason_code="USER_REQUEST",
                                              startup_deadline=T0 + timedelta(hours=2))
        case "instance.termination_requested":
            return InstanceTerminationRequested(**e, reason_code="USER_REQUEST")
        case "instance.server_deleted":
            return InstanceServerDeleted(**e, provider_server_id="srv-" + iid[:8])
        case "instance.terminated":
            return InstanceTerminated(**e, reason_code="USER_REQUEST")
        case "instance.failed":
            return InstanceFailed(**e, status=failure_status or "failed", reason_code="STARTUP_TIMEOUT",
                                  message="no heartbeat before the deadline")  # fmt: skip
        case "instance.archived":
            return InstanceArchived(**e)
        case "command.rejected":
            return CommandRejected(**{k: v for k, v in e.items() if k != "instance_id"}, command_id=ids.new_id(),
                                   command_type="instance.terminate", reason_code="UNKNOWN_INSTANCE",
                                   message="no such instance", instance_id=iid)  # fmt: skip
    raise ValueError(tag)


HAPPY_PATH = [
    "instance.requested", "instance.server_created", "instance.billing_started", "instance.install_phase_reached",
    "instance.worker_starting", "instance.ready", "instance.termination_requested", "instance.server_deleted",
    "instance.billing_stopped", "instance.terminated", "instance.archived",
]  # fmt: skip


def happy_path(org: str, iid: str) -> list:
    return [instance_event(tag, org, iid) for tag in HAPPY_PATH]


def identity_events(org: str, user: str, key: str) -> list:
    return [
        UserCreated(**env("global", actor="system:api"), user_id=user, email=f"{user[:8]}@example.com",
                    password_hash="$argon2id$v=19$secret"),
        OrganizationCreated(**env(org, actor="user:" + user), organization_id=org, name="Acme", slug="acme-" + org[:8],
                            created_by_user_id=user),
        MemberAdded(**env(org, actor="user:" + user), organization_id=org, user_id=user, role="owner"),
        ApiKeyCreated(**env(org, actor="user:" + user), key_id=key, name="ci", prefix="sk-inv-1a2b3c",
                      key_hash=hashlib.sha256(key.encode()).hexdigest(), user_id=user),
        ApiKeyRevoked(**env(org, actor="user:" + user), key_id=key),
    ]  # fmt: skip


def meta_for(event, seq: int) -> EventMeta:
    return EventMeta(seq, codec.event_subject_for(event), T0)


def new_tables() -> MemoryTables:
    return MemoryTables(keys=TABLE_KEYS)


def project_in_memory(tables: MemoryTables, numbered: list[tuple[int, object]]) -> None:
    """Project one batch the way ReadModelProjection.apply does, with MemoryTables as the database."""
    from services.projector.projections import project_batch

    instances = {key[0]: dict(row) for key, row in tables.table("instances").items()}
    items = [(event, meta_for(event, seq), {}, None) for seq, event in numbered]
    tables.apply(project_batch(items, instances))


def snapshot(tables: MemoryTables) -> dict:
    return {name: {k: dict(v) for k, v in rows.items()} for name, rows in tables.tables.items()}
