"""Builders for orchestrator tests: placements, commands, a Ports bundle over in-memory adapters."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from contracts import commands as cmd
from contracts.catalog import Placement
from contracts.ids import new_id
from services.orchestrator.adapters.memory import (
    FakeCompute,
    InMemoryEventStore,
    ManualClock,
    RecordingPublisher,
    StaticHeartbeats,
    StaticProbe,
    inline,
)
from services.orchestrator.handlers import HandlerConfig, Ports

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
ORG = "org1"
MODEL = "Qwen/Qwen2.5-0.5B-Instruct"


def placement(model: str = MODEL) -> Placement:
    return Placement(
        provider_code="mock", region_code="local", zone_code="local-1", zone_id="z1",
        instance_type_code="MOCK-GPU-1", instance_type_id="t1", gpu_count=1, vram_per_gpu_gb=24,
        hourly_price_eur=Decimal("1.25"), model_id="m1", model_name=model,
    )


def _envelope(org: str = ORG, actor: str = "user:u1", command_id: str | None = None) -> dict:
    command_id = command_id or new_id()
    return dict(id=command_id, org_id=org, actor=actor, correlation_id=command_id, causation_id=command_id,
                occurred_at=T0)


def provision(instance_id: str, *, timeout_s: int = 600, model: str = MODEL, **kw) -> cmd.ProvisionInstance:
    return cmd.ProvisionInstance(instance_id=instance_id, placement=placement(model), startup_timeout_s=timeout_s,
                                 **_envelope(**kw))


def terminate(instance_id: str, **kw) -> cmd.TerminateInstance:
    return cmd.TerminateInstance(instance_id=instance_id, **_envelope(**kw))


def check(instance_id: str, **kw) -> cmd.CheckInstance:
    return cmd.CheckInstance(instance_id=instance_id, **_envelope(**kw))


def archive(instance_id: str, **kw) -> cmd.ArchiveInstance:
    return cmd.ArchiveInstance(instance_id=instance_id, **_envelope(**kw))


def reinstall(instance_id: str, **kw) -> cmd.ReinstallInstance:
    return cmd.ReinstallInstance(instance_id=instance_id, **_envelope(**kw))


def memory_ports(**overrides) -> Ports:
    parts = dict(
        store=InMemoryEventStore(),
        compute=FakeCompute(upstream_url_for=lambda instance_id: f"http://engine-{instance_id}"),
        heartbeats=StaticHeartbeats(),
        probe=StaticProbe(listed=True),
        commands=RecordingPublisher(),
        clock=ManualClock(T0),
        offload=inline,
        config=HandlerConfig(),
    )
    parts.update(overrides)
    return Ports(**parts)
