"""Prometheus metrics of the orchestrator (default registry, served by services.runtime.service)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

COMMANDS = Counter(
    "inventiv_orchestrator_commands_total",
    "Commands handled, by command type and outcome (done, rejected, retry, gave_up, malformed, error).",
    ["type", "outcome"],
)
COMMAND_SECONDS = Histogram(
    "inventiv_orchestrator_command_duration_seconds",
    "Time to handle one delivery of a command, provider effects included.",
    ["type"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
REDELIVERIES = Counter(
    "inventiv_orchestrator_redeliveries_total",
    "Deliveries of a command after its first (nak delays, ack timeouts, crashes).",
    ["type"],
)
CONFLICTS = Counter(
    "inventiv_orchestrator_concurrency_conflicts_total",
    "Appends refused by optimistic concurrency (someone else wrote the aggregate first).",
    ["type"],
)
EVENTS_APPENDED = Counter(
    "inventiv_orchestrator_events_appended_total",
    "Events appended to the EVENTS stream, by event type.",
    ["event"],
)
PROVIDER_CALLS = Counter(
    "inventiv_orchestrator_provider_calls_total",
    "Provider (Compute) calls by operation and result (ok or the error class).",
    ["operation", "result"],
)
PROVIDER_SECONDS = Histogram(
    "inventiv_orchestrator_provider_call_duration_seconds",
    "Provider (Compute) call latency by operation.",
    ["operation"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
COMPENSATIONS = Counter(
    "inventiv_orchestrator_orphan_servers_deleted_total",
    "Servers deleted because the log moved on without recording them (create raced a terminate or failure).",
)
IN_FLIGHT = Gauge("inventiv_orchestrator_commands_in_flight", "Commands being handled right now.")
CHECKS_PUBLISHED = Counter(
    "inventiv_orchestrator_checks_published_total",
    "CheckInstance commands published, by cause (provisioned, heartbeat_<status>, continue).",
    ["cause"],
)
INSTANCES = Gauge(
    "inventiv_orchestrator_instances",
    "Instances by lifecycle status, as of the last fleet reconciliation (every replica that ran one).",
    ["status"],
)
FLEET_ACTIONS = Counter(
    "inventiv_orchestrator_fleet_actions_total",
    "What fleet upkeep did: servers/volumes/ips deleted or reported, instances found provider-deleted.",
    ["action", "why"],
)
TICKS_PUBLISHED = Counter(
    "inventiv_orchestrator_ticks_published_total",
    "Fleet ticks this replica published (the stream keeps one per window across replicas).",
    ["tick"],
)
