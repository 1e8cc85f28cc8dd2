"""One instance as the orchestrator sees it: the fold of its events. A frozen value."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Mapping

from contracts.catalog import Placement

from . import lifecycle


@dataclass(frozen=True, slots=True)
class InstanceState:
    # None until ``instance.requested``: the instance does not exist (rejections may still be recorded).
    status: str | None = None
    instance_id: str | None = None
    org_id: str | None = None
    placement: Placement | None = None
    requested_at: datetime | None = None
    startup_deadline: datetime | None = None
    # The command that created the instance: its redelivery resumes provisioning instead of being refused.
    requested_by: str | None = None
    # Provider facts, from ``instance.server_created``; never from a worker.
    server_id: str | None = None
    server_deleted: bool = False
    ip_address: str | None = None
    upstream_url: str | None = None
    agent_url: str | None = None
    billing: bool = False
    billing_stopped: bool = False
    install_phase: str | None = None
    # 0 for the first install, +1 per reinstall; phases of other generations are ignored.
    install_generation: int = 0
    # When the instance last became unavailable / failed (None while it is not).
    unavailable_since: datetime | None = None
    unavailable_reason: str | None = None
    failed_at: datetime | None = None
    termination_reason: str | None = None
    replaced_by: str | None = None
    failure_reason: str | None = None
    # Ids of commands that caused at least one event; rejected command id -> reason code (never mutated).
    handled: frozenset[str] = field(default_factory=frozenset)
    rejected: Mapping[str, str] = field(default_factory=dict)
    # Number of events folded (rejections included).
    version: int = 0

    @property
    def exists(self) -> bool:
        return self.status is not None

    @property
    def has_live_server(self) -> bool:
        """The log knows a provider server that has not been confirmed deleted."""
        return self.server_id is not None and not self.server_deleted

    @property
    def bringing_up(self) -> bool:
        return self.status in lifecycle.BRINGING_UP

    @property
    def zone(self) -> str:
        return self.placement.zone_code if self.placement else ""


EMPTY = InstanceState()
