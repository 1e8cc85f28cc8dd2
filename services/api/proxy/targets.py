"""Where a worker's endpoint is: from the ``upstream_url`` of its ``instance.ready`` event, only.

Nothing from the client (URL, host, path, headers, body fields) takes part: the target is the
event's base URL plus the endpoint's fixed path. Parsed once per (worker, endpoint) and cached.
"""

from __future__ import annotations

import structlog
from yarl import URL

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


class TargetCache:
    __slots__ = ("_targets", "_api_key")

    def __init__(self, api_key: str | None) -> None:
        self._targets: dict[tuple[str, str], Target | None] = {}
        self._api_key = api_key

    def get(self, upstream_url: str, upstream_path: str) -> Target | None:
        """The target, or None when the URL is unusable (logged once)."""
        key = (upstream_url, upstream_path)
        target = self._targets.get(key, False)
        if target is False:
            base = upstream_base(upstream_url)
            target = None
            if base:
                try:
                    target = Target(base, upstream_path, api_key=self._api_key)
                except ValueError:
                    target = None
            if target is None:
                log.error("proxy.bad_upstream_url", upstream=upstream_url)
            if len(self._targets) > 100_000:
                self._targets.clear()
            self._targets[key] = target
        return target
