"""Prometheus metrics of the proxy, per model and worker (instance id).

Defined once at import (one registry per process). Labelled children are cached per
(model, instance) so the hot path does a dict lookup, not a label resolution.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LAT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

REQUESTS = Counter("inventiv_proxy_requests", "Proxied requests by outcome", ["model", "instance", "endpoint", "status"])
ERRORS = Counter("inventiv_proxy_errors", "Proxy errors by kind", ["model", "instance", "kind"])
TOKENS = Counter("inventiv_proxy_tokens", "Tokens reported by the engines", ["model", "instance", "kind"])
TTFT = Histogram("inventiv_proxy_ttft_seconds", "Request received to first streamed byte sent",
                 ["model", "instance"], buckets=_TTFT_BUCKETS)
ADDED = Histogram("inventiv_proxy_added_latency_seconds",
                  "Time spent in the proxy itself (before the upstream call + relaying the first answer bytes)",
                  ["model", "instance"], buckets=_LAT_BUCKETS)
UPSTREAM = Histogram("inventiv_proxy_upstream_seconds", "Upstream request duration (send to last byte)",
                     ["model", "instance"], buckets=_TTFT_BUCKETS)
RETRIES = Counter("inventiv_proxy_retries", "Requests retried on another worker", ["model", "instance", "reason"])
OUTSTANDING = Gauge("inventiv_proxy_outstanding", "Requests in flight from this process", ["instance"])
USAGE_DROPPED = Counter("inventiv_proxy_usage_dropped", "Usage records dropped because the queue was full")
USAGE_PUBLISHED = Counter("inventiv_proxy_usage_published", "Usage records acknowledged by JetStream")
USAGE_QUEUE = Gauge("inventiv_proxy_usage_queue", "Usage records waiting to be published")
LIMIT_PEERS = Gauge("inventiv_proxy_limit_peers",
                    "Other proxy processes whose per-key limit reports arrived within the silence window")
LIMIT_REPORTS = Counter("inventiv_proxy_limit_reports",
                        "Per-key limit reports: published, merged (from a peer), bad (ignored), publish_failed",
                        ["outcome"])


class WorkerMetrics:
    """The labelled children of one (model, instance)."""

    __slots__ = ("ttft", "added", "upstream", "prompt_tokens", "completion_tokens", "_requests", "model", "instance")

    def __init__(self, model: str, instance: str) -> None:
        self.model = model
        self.instance = instance
        self.ttft = TTFT.labels(model, instance)
        self.added = ADDED.labels(model, instance)
        self.upstream = UPSTREAM.labels(model, instance)
        self.prompt_tokens = TOKENS.labels(model, instance, "prompt")
        self.completion_tokens = TOKENS.labels(model, instance, "completion")
        self._requests: dict[tuple[str, int], object] = {}

    def request(self, endpoint: str, status: int) -> None:
        child = self._requests.get((endpoint, status))
        if child is None:
            child = self._requests[(endpoint, status)] = REQUESTS.labels(self.model, self.instance, endpoint, str(status))
        child.inc()

    def error(self, kind: str) -> None:
        ERRORS.labels(self.model, self.instance, kind).inc()


_cache: dict[tuple[str, str], WorkerMetrics] = {}


def for_worker(model: str, instance: str) -> WorkerMetrics:
    m = _cache.get((model, instance))
    if m is None:
        if len(_cache) > 10_000:  # bounded: unknown model names from clients must not grow this forever
            _cache.clear()
        m = _cache[(model, instance)] = WorkerMetrics(model, instance)
    return m
