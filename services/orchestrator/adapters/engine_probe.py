"""Asks an engine (vLLM or the fake) whether it serves a model: ``GET <upstream>/v1/models``."""

from __future__ import annotations

import aiohttp
import structlog

log = structlog.get_logger(__name__)


class HttpEngineProbe:
    def __init__(self, timeout_s: float = 3.0, api_key: str | None = None):
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(2.0, timeout_s))
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        return self._session

    async def lists_model(self, upstream_url: str, model_name: str) -> bool:
        url = upstream_url.rstrip("/") + "/v1/models"
        try:
            async with self._client().get(url, allow_redirects=False) as resp:
                if resp.status != 200:
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
