"""``GET /v1/models`` and ``GET /v1/models/{id}``: models with at least one routable worker the
caller may use, with their catalog metadata."""

from __future__ import annotations

import time
from typing import Any

import msgspec

from . import errors
from .catalog import CatalogModel
from .policy import is_routable
from .routing_table import RoutingSnapshot
from .responses import send_simple

_encoder = msgspec.json.Encoder()


def model_entry(model: str, catalog: dict[str, CatalogModel]) -> dict:
    entry: dict[str, Any] = {"id": model, "object": "model", "created": 0, "owned_by": "inventiv"}
    cat = catalog.get(model)
    if cat is not None:
        entry["created"] = cat.created
        entry["name"] = cat.name
        entry["max_model_len"] = cat.context_length
        entry["context_length"] = cat.context_length
        entry["metadata"] = cat.metadata
    return entry


def list_models(snap: RoutingSnapshot, catalog: dict[str, CatalogModel], allowed, one: str | None,
                now: float) -> bytes:
    data = []
    for model, workers in snap.workers.items():
        if one is not None and model != one:
            continue
        if any(is_routable(w, now, snap.stale_s) and (allowed is None or w.org_id in allowed) for w in workers):
            data.append(model_entry(model, catalog))
    data.sort(key=lambda m: m["id"])
    if one is not None:
        if not data:
            raise errors.model_not_found(one)
        return _encoder.encode(data[0])
    return _encoder.encode({"object": "list", "data": data})


async def answer_models(send, snap: RoutingSnapshot, catalog, allowed, one: str | None) -> None:
    await send_simple(send, 200, list_models(snap, catalog, allowed, one, time.time()))
