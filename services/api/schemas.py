"""HTTP request and response shapes (separate from ``contracts/``: these are the public REST API).

Request bodies forbid unknown fields, so a client cannot slip in ``org_id``, ``scopes`` or an
upstream URL. Field names follow the original system where its clients read them.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import msgspec
from msgspec import Meta

# Catalog references: an id (UUID) or a code / served model name. No whitespace or control chars.
CatalogRef = Annotated[str, Meta(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@+\-]*$")]
PrintableText = Annotated[str, Meta(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")]


class Request(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


# --- auth -----------------------------------------------------------------------------------


class LoginRequest(Request, kw_only=True):
    email: Annotated[str, Meta(min_length=1, max_length=320, pattern=r"^[^\x00-\x1f\x7f]+$")]
    password: Annotated[str, Meta(min_length=1, max_length=1024)]


class UserView(msgspec.Struct, kw_only=True):
    id: str
    email: str
    username: str
    role: str
    """Global role: ``admin`` or ``user``."""
    is_admin: bool
    organization_id: str | None = None
    organization_name: str | None = None
    organization_slug: str | None = None
    organization_role: str | None = None
    auth_method: str = "session"
    api_key_id: str | None = None


# --- API keys -------------------------------------------------------------------------------


class ApiKeyCreated(msgspec.Struct, kw_only=True):
    id: str
    name: str
    key: str
    """The secret: shown in this response only."""
    prefix: str
    created_at: datetime
    scopes: list[str]
    organization_id: str


# --- deployments / instances ----------------------------------------------------------------


class DeploymentRequest(Request, kw_only=True):
    """What to run where. Each reference is an id (UUID) or a code.

    - ``model``: a models.id or the served name (``mock-echo-model``); ``model_id`` is the
      original API's name for the same field (give one of the two).
    - ``instance_type``, ``zone``: an id or a code; codes are resolved within the provider,
      which is the zone's unless ``provider_code`` / ``provider_id`` narrows it.
    """

    model: CatalogRef | None = None
    model_id: CatalogRef | None = None
    instance_type: CatalogRef
    zone: CatalogRef
    provider_code: CatalogRef | None = None
    provider_id: CatalogRef | None = None
    startup_timeout_s: Annotated[int, Meta(ge=60, le=86_400)] | None = None


class CommandAccepted(msgspec.Struct, kw_only=True):
    instance_id: str
    command_id: str
    status: str
    correlation_id: str


class StateChange(msgspec.Struct, kw_only=True):
    seq: int
    from_status: str | None
    to_status: str
    reason: str | None
    created_at: datetime


class InstanceView(msgspec.Struct, kw_only=True):
    id: str
    organization_id: str
    status: str
    progress_percent: int
    provider_code: str
    region: str
    zone: str
    zone_id: str
    instance_type: str
    instance_type_id: str
    gpu_count: int
    model_id: str
    model_name: str
    cost_per_hour: Decimal
    provider_instance_id: str | None
    ip_address: str | None
    upstream_url: str | None
    install_phase: str | None
    error_code: str | None
    error_message: str | None
    deletion_reason: str | None
    is_archived: bool
    startup_deadline: datetime
    created_at: datetime
    boot_started_at: datetime | None
    ready_at: datetime | None
    terminated_at: datetime | None
    failed_at: datetime | None
    updated_at: datetime
    last_event_seq: int
    # Worker telemetry (public.worker_heartbeats), not part of the rebuildable read model.
    worker_status: str | None = None
    last_heartbeat_at: datetime | None = None


class InstanceDetail(InstanceView, kw_only=True):
    agent_url: str | None = None
    last_heartbeat: dict[str, Any] | None = None
    state_history: list[StateChange] = []


class ActionLogView(msgspec.Struct, kw_only=True):
    id: str
    seq: int
    action_type: str
    component: str
    status: str
    error_code: str | None
    error_message: str | None
    instance_id: str | None
    actor: str
    correlation_id: str
    instance_status_before: str | None
    instance_status_after: str | None
    metadata: dict[str, Any]
    created_at: datetime
