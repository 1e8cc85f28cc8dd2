"""Catalog observations -> ``provider_offers``: what each provider offers per zone, newest wins.

One row per (provider, zone) holding the whole observation, so a server type that disappears
from the provider's list disappears from the row too. Pure.
"""

from __future__ import annotations

from contracts.events import CatalogOffersObserved

from ..rowops import RowOp, Upsert
from .action_log import EventMeta, utc


def project_catalog_event(event: CatalogOffersObserved, meta: EventMeta) -> list[RowOp]:
    offers = [
        {
            "name": o.name,
            "hourly_price_eur": str(o.hourly_price_eur),
            "gpu_count": o.gpu_count,
            "gpu_memory_gb": o.gpu_memory_gb,
            "ram_gb": o.ram_gb,
            "available": o.available,
            "diskless": o.diskless,
        }
        for o in event.offers
    ]
    row = {
        "provider_code": event.provider_code,
        "zone_code": event.zone_code,
        "offers": offers,
        "observed_at": utc(event.occurred_at),
        "last_event_seq": meta.seq,
    }
    return [Upsert("provider_offers", ("provider_code", "zone_code"), row)]
