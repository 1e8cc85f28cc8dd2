"""Prometheus metrics of the API process (default registry, served on ``/metrics``)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

HTTP_REQUESTS = Counter(
    "inventiv_api_http_requests_total", "HTTP requests answered, by route template and status.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "inventiv_api_http_request_duration_seconds", "Time to answer an HTTP request (streams: until closed).",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SSE_CLIENTS = Gauge("inventiv_api_sse_clients", "Open SSE connections on /events/stream.")
SSE_EVENTS_SENT = Counter("inventiv_api_sse_events_sent_total", "Events written to SSE clients (replay included).")
SSE_DISCONNECTS = Counter(
    "inventiv_api_sse_disconnects_total", "SSE connections closed by the server, by reason.", ["reason"],
)
SSE_HUB_EVENTS = Counter("inventiv_api_sse_hub_events_total", "Events received by this process's live feed.")
SSE_REJECTED = Counter("inventiv_api_sse_rejected_total", "SSE connections refused by a cap.", ["cap"])
COMMANDS_PUBLISHED = Counter(
    "inventiv_api_commands_published_total", "Commands acknowledged by JetStream, by type.", ["type", "duplicate"],
)


def render() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
