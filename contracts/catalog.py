"""The catalog facts a deployment is made of, frozen at request time.

Commands and events carry this snapshot (including the hourly price) so that a replay of
the log costs the same as it did live, whatever the catalog says later.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec


class Placement(msgspec.Struct, frozen=True, kw_only=True):
    provider_code: str
    region_code: str
    zone_code: str
    zone_id: str
    instance_type_code: str
    instance_type_id: str
    gpu_count: int
    vram_per_gpu_gb: int
    hourly_price_eur: Decimal
    model_id: str
    # The name the engine serves and clients address (HF id, e.g. "Qwen/Qwen2.5-0.5B-Instruct").
    model_name: str
