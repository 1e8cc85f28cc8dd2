"""Where a worker's endpoint is: from the ``upstream_url`` of its ``instance.ready`` event, only.

Nothing from the client (URL, host, path, headers, body fields) takes part: the target is the
event's base URL plus the endpoint's fixed path. Parsed once per (worker, endpoint) and cached.

Which key the target presents to the engine (``upstream_key``), most specific first:

1. ``INVENTIV_ENGINE_KEY_SECRET`` set: the worker's own derived key (services/runtime/engine_keys.py),
   the one the installer gave that worker's engine; computed once per target, on a cache miss;
2. else ``INVENTIV_PROXY_UPSTREAM_API_KEY``: one fleet-wide key (weaker: every worker knows it);
3. else none.
"""

from __future__ import annotations

import structlog
from yarl import URL

from services.runtime.engine_keys import EngineKeySecret

from .upstream import Target

log = structlog.get_logger(__name__)


def upstream_base(upstream_url: str) -> str | None:
    """``http://host:port`` (optionally with a trailing ``/v1``) -> normalised base, or None if unusable."""
    try:
        url = URL(upstream_url)
    except (ValueError, TypeError):
        return None
    if url.scheme not in ("http", "https") or not url.host or url.user or url.password or url.query_string:
        return None
    path = url.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[:-3]
    return str(url.with_path(path or "/").with_fragment(None)).rstrip("/")


def upstream_key(instance_id: str, secret: EngineKeySecret | None, fleet_key: str | None) -> str | None:
    """The bearer key for this worker's engine: its derived key, else the fleet-wide one, else none."""
    if secret is not None:
        return secret.key_for(instance_id)
    return fleet_key or None


class TargetCache:
    __slots__ = ("_targets", "_secret", "_fleet_key")

    def __init__(self, secret: EngineKeySecret | None = None, fleet_key: str | None = None) -> None:
        self._targets: dict[tuple[str, str, str], Target | None] = {}
        self._secret = secret
        self._fleet_key = fleet_key

    def get(self, instance_id: str, upstream_url: str, upstream_path: str) -> Target | None:
        """The target, or None when the URL is unusable (logged once).

        Keyed by instance too: the key is the instance's, and a recycled address may serve another one.
        """
        key = (instance_id, upstream_url, upstream_path)
        target = self._targets.get(key, False)
        if target is False:
            base = upstream_base(upstream_url)
            target = None
            if base:
                try:
                    target = Target(base, upstream_path,
                                    api_key=upstream_key(instance_id, self._secret, self._fleet_key))
                except ValueError:
                    target = None
            if target is None:
                log.error("proxy.bad_upstream_url", upstream=upstream_url, instance=instance_id)
            if len(self._targets) > 100_000:
                self._targets.clear()
            self._targets[key] = target
        return target
