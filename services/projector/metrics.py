"""Prometheus metrics of the projection runner (any projection) and the heartbeat recorder.

Labels: ``projection`` (checkpoint name) and ``schema`` (``rm`` live, ``rm_next`` during a rebuild).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_APPLIED = Counter(
    "inventiv_projection_events_applied_total", "Events applied to a read model", ["projection", "schema"]
)
BATCH_SIZE = Histogram(
    "inventiv_projection_batch_size", "Messages per applied batch", ["projection", "schema"],
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000),
)  # fmt: skip
APPLY_SECONDS = Histogram(
    "inventiv_projection_apply_seconds", "Time to apply one batch and commit its checkpoint", ["projection", "schema"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)  # fmt: skip
LAG = Gauge(
    "inventiv_projection_lag_events", "Messages in the stream (matching the filter) not yet applied",
    ["projection", "schema"],
)  # fmt: skip
CHECKPOINT = Gauge("inventiv_projection_checkpoint_seq", "Last applied stream sequence", ["projection", "schema"])
ERRORS = Counter(
    "inventiv_projection_errors_total", "Errors that made the runner retry from its checkpoint",
    ["projection", "schema", "kind"],
)  # fmt: skip
POISONED = Counter(
    "inventiv_projection_refused_events_total", "Events Postgres refused on their own (logged as failed, skipped)",
    ["projection"],
)  # fmt: skip

HEARTBEATS_RECORDED = Counter("inventiv_projector_heartbeats_recorded_total", "Heartbeats written to worker_heartbeats")
HEARTBEATS_INVALID = Counter(
    "inventiv_projector_heartbeats_invalid_total", "Heartbeats ignored (bad subject or payload)", ["reason"]
)
HEARTBEAT_ERRORS = Counter("inventiv_projector_heartbeat_errors_total", "Errors that made the recorder restart")
