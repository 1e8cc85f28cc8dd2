"""HTTP probes of the local engine: /v1/models, /metrics and a one-token warm-up completion.

Every call has a timeout and a body-size cap, and raises ``ProbeError`` for anything that is
not a usable answer, so callers deal with one failure type.
"""

from __future__ import annotations

import aiohttp
import msgspec

MAX_BODY = 8 * 1024 * 1024
PROBE_TIMEOUT_S = 5.0
# A first request can be slow on a real GPU (lazy kernels, cache allocation); do not give up early.
WARMUP_TIMEOUT_S = 120.0


class ProbeError(Exception):
    pass


class EngineClient:
    def __init__(self, base_url: str, api_key: str | None = None, timeout_s: float = PROBE_TIMEOUT_S) -> None:
        self.base_url = base_url
        self.timeout_s = timeout_s
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            # No connection pooling surprises: the engine is local and restarts; a fresh
            # connection per probe is cheap and never reuses a socket to a dead process.
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _get(self, path: str) -> bytes:
        try:
            async with self._http().get(self.base_url + path, headers=self._headers,
                                        timeout=aiohttp.ClientTimeout(total=self.timeout_s)) as resp:
                body = await resp.content.read(MAX_BODY + 1)
                if resp.status != 200:
                    raise ProbeError(f"GET {path}: HTTP {resp.status}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ProbeError(f"GET {path}: {type(exc).__name__}: {exc}") from None
        if len(body) > MAX_BODY:
            raise ProbeError(f"GET {path}: body over {MAX_BODY} bytes")
        return body

    async def list_models(self) -> tuple[str, ...]:
        body = await self._get("/v1/models")
        try:
            doc = msgspec.json.decode(body)
            return tuple(str(m["id"]) for m in doc["data"] if isinstance(m, dict) and "id" in m)
        except (msgspec.DecodeError, KeyError, TypeError) as exc:
            raise ProbeError(f"GET /v1/models: unexpected body: {exc}") from None

    async def metrics_text(self) -> str:
        return (await self._get("/metrics")).decode("utf-8", "replace")

    async def warm_up(self, model: str) -> None:
        """One short completion; succeeds only if the engine produced at least one token."""
        payload = {"model": model, "prompt": "Hello", "max_tokens": 1, "temperature": 0}
        try:
            async with self._http().post(self.base_url + "/v1/completions", json=payload, headers=self._headers,
                                         timeout=aiohttp.ClientTimeout(total=WARMUP_TIMEOUT_S)) as resp:
                body = await resp.content.read(MAX_BODY)
                if resp.status != 200:
                    raise ProbeError(f"warm-up: HTTP {resp.status}: {body[:200]!r}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ProbeError(f"warm-up: {type(exc).__name__}: {exc}") from None
        try:
            doc = msgspec.json.decode(body)
            usage = doc.get("usage") or {}
            produced = usage.get("completion_tokens")
            if produced is None:
                produced = 1 if doc["choices"][0].get("text") else 0
        except (msgspec.DecodeError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise ProbeError(f"warm-up: unexpected body: {exc}") from None
        if not isinstance(produced, int) or produced < 1:
            raise ProbeError("warm-up: the engine answered without producing a token")
