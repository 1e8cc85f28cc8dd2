"""Asks an engine (vLLM or the fake) whether it serves a model: ``GET <upstream>/v1/models``.

A keyed engine refuses ``/v1/*`` without its key, so the probe presents the key of the instance it
asks about: derived from ``INVENTIV_ENGINE_KEY_SECRET`` (services/runtime/engine_keys.py), the same
one the installer gave that worker. ``api_key`` is the fleet-wide fallback when no secret is set.
The key goes in a header only: never in the URL, a log line or an error.
"""

from __future__ import annotations

import aiohttp
import structlog

from services.runtime.engine_keys import EngineKeySecret

log = structlog.get_logger(__name__)


class HttpEngineProbe:
    def __init__(self, timeout_s: float = 3.0, api_key: str | None = None,
                 engine_keys: EngineKeySecret | None = None):
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(2.0, timeout_s))
        self._fleet_key = api_key or None
        self._engine_keys = engine_keys
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    def _headers(self, instance_id: str) -> dict[str, str]:
        key = self._engine_keys.key_for(instance_id) if self._engine_keys is not None else self._fleet_key
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def lists_model(self, upstream_url: str, model_name: str, instance_id: str) -> bool:
        url = upstream_url.rstrip("/") + "/v1/models"
        try:
            async with self._client().get(url, headers=self._headers(instance_id), allow_redirects=False) as resp:
                if resp.status != 200:
                    if resp.status in (401, 403):
                        log.warning("orchestrator.engine_probe_refused", url=url, status=resp.status,
                                    instance_id=instance_id)
                    return False
                body = await resp.json(content_type=None)
        except Exception as exc:  # refused, timeout, bad JSON: the engine is not serving yet
            log.debug("orchestrator.engine_probe_failed", url=url, error=str(exc))
            return False
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            return False
        return any(isinstance(item, dict) and item.get("id") == model_name for item in data)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
