"""Usage records: one per proxied request, published to ``usage.<org>``."""

from __future__ import annotations

from datetime import datetime

import msgspec


class UsageRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    org_id: str
    occurred_at: datetime
    endpoint: str
    model: str
    api_key_id: str | None = None
    user_id: str | None = None
    instance_id: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    status_code: int = 200
    stream: bool = False
    duration_ms: float = 0.0
    ttft_ms: float | None = None
    routing_reason: str = ""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens
