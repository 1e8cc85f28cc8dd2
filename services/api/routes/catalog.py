"""Catalog reads, with the original API's paths and field names.

The catalog (``public`` tables seeded by ``inventiv up``) is reference data shared by every
organisation, so these reads need a credential but no organisation filter.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.params import Parameter

from .. import db
from ..auth.principal import Principal
from ..state import resources
from ..validation import path_uuid

_TYPE_COLUMNS = """t.id, t.provider_id, p.code AS provider_code, t.code, t.name, t.gpu_count, t.vram_per_gpu_gb,
    t.cpu_count, t.ram_gb, t.bandwidth_bps, t.cost_per_hour, t.is_active, t.allocation_params"""


def _rows(records) -> list[dict[str, Any]]:
    return [dict(r) for r in records]


@get("/providers", tags=["catalog"], summary="Cloud providers")
async def list_providers(request: Request, principal: Principal,
                         active: bool | None = Parameter(default=None, description="only active (true) or inactive")
                         ) -> list[dict[str, Any]]:
    return _rows(await db.fetch(
        resources(request).pool,
        """SELECT id, code, name, description, is_active, created_at FROM public.providers
           WHERE ($1::boolean IS NULL OR is_active = $1) ORDER BY code""",
        active,
    ))


@get("/regions", tags=["catalog"], summary="Regions, optionally of one provider")
async def list_regions(request: Request, principal: Principal,
                       provider_code: str | None = Parameter(default=None, max_length=64)) -> list[dict[str, Any]]:
    return _rows(await db.fetch(
        resources(request).pool,
        """SELECT r.id, r.provider_id, p.code AS provider_code, r.code, r.name, r.is_active
           FROM public.regions r JOIN public.providers p ON p.id = r.provider_id
           WHERE ($1::text IS NULL OR p.code = $1) ORDER BY p.code, r.code""",
        provider_code,
    ))


@get("/zones", tags=["catalog"], summary="Zones, optionally of one provider")
async def list_zones(request: Request, principal: Principal,
                     provider_code: str | None = Parameter(default=None, max_length=64)) -> list[dict[str, Any]]:
    return _rows(await db.fetch(
        resources(request).pool,
        """SELECT z.id, z.region_id, r.code AS region_code, z.provider_id, p.code AS provider_code, z.code, z.name,
                  z.is_active
           FROM public.zones z JOIN public.regions r ON r.id = z.region_id
           JOIN public.providers p ON p.id = z.provider_id
           WHERE ($1::text IS NULL OR p.code = $1) ORDER BY p.code, z.code""",
        provider_code,
    ))


@get("/instance_types", tags=["catalog"], summary="Instance types with hourly prices (cost_per_hour, EUR)")
async def list_instance_types(request: Request, principal: Principal,
                              provider_code: str | None = Parameter(default=None, max_length=64)
                              ) -> list[dict[str, Any]]:
    return _rows(await db.fetch(
        resources(request).pool,
        f"""SELECT {_TYPE_COLUMNS} FROM public.instance_types t JOIN public.providers p ON p.id = t.provider_id
            WHERE ($1::text IS NULL OR p.code = $1) ORDER BY p.code, t.code""",
        provider_code,
    ))


@get("/zones/{zone_id:str}/instance_types", tags=["catalog"], summary="Instance types available in a zone")
async def zone_instance_types(request: Request, zone_id: str, principal: Principal,
                              provider_code: str | None = Parameter(default=None, max_length=64)
                              ) -> list[dict[str, Any]]:
    zone_id = path_uuid("zone_id", zone_id)
    return _rows(await db.fetch(
        resources(request).pool,
        f"""SELECT {_TYPE_COLUMNS}, itz.is_available
            FROM public.instance_type_zones itz
            JOIN public.instance_types t ON t.id = itz.instance_type_id
            JOIN public.providers p ON p.id = t.provider_id
            WHERE itz.zone_id = $1 AND itz.is_available AND t.is_active AND ($2::text IS NULL OR p.code = $2)
            ORDER BY t.cost_per_hour, t.code""",
        zone_id, provider_code,
    ))


@get("/models", tags=["catalog"], summary="Models of the catalog (model_id is the served name)")
async def list_models(request: Request, principal: Principal,
                      active: bool | None = Parameter(default=None)) -> list[dict[str, Any]]:
    return _rows(await db.fetch(
        resources(request).pool,
        """SELECT id, name, model_id, required_vram_gb, context_length, data_volume_gb, is_active, metadata,
                  created_at, updated_at
           FROM public.models WHERE ($1::boolean IS NULL OR is_active = $1) ORDER BY name""",
        active,
    ))


@get("/action_types", tags=["catalog"], summary="Badges (label, icon, colour) of action-log types")
async def list_action_types(request: Request, principal: Principal) -> list[dict[str, Any]]:
    return _rows(await db.fetch(
        resources(request).pool,
        """SELECT code, label, icon, color_class, category, is_active FROM public.action_types
           WHERE is_active ORDER BY code""",
    ))


@get("/catalog/offers", tags=["catalog"],
     summary="What each provider offers per zone now (types, prices, stock), from the last catalog sync")
async def list_offers(request: Request, principal: Principal,
                      provider: str | None = Parameter(default=None, max_length=64, pattern=r"^[a-z0-9_-]+$")
                      ) -> list[dict[str, Any]]:
    return _rows(await db.fetch(
        resources(request).pool,
        """SELECT provider_code, zone_code, offers, observed_at FROM rm.provider_offers
           WHERE ($1::text IS NULL OR provider_code = $1) ORDER BY provider_code, zone_code""",
        provider,
    ))


route_handlers = [list_offers, list_providers, list_regions, list_zones, list_instance_types, zone_instance_types, list_models,
                  list_action_types]
