"""Idempotent catalog seeding: deterministic ids and upserts, so every `inventiv up` may run it."""

from __future__ import annotations

from decimal import Decimal

import asyncpg

from contracts.ids import derived_id

from . import catalog_data as data


def provider_id(code: str) -> str:
    return derived_id("provider", code)


def region_id(provider: str, code: str) -> str:
    return derived_id("region", provider, code)


def zone_id(provider: str, code: str) -> str:
    return derived_id("zone", provider, code)


def instance_type_id(provider: str, code: str) -> str:
    return derived_id("instance-type", provider, code)


def model_uuid(served_id: str) -> str:
    return derived_id("model", served_id)


async def seed_catalog(conn: asyncpg.Connection) -> dict[str, int]:
    async with conn.transaction():
        for code, name, description in data.PROVIDERS:
            await conn.execute(
                """INSERT INTO providers (id, code, name, description) VALUES ($1, $2, $3, $4)
                   ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, description = EXCLUDED.description""",
                provider_id(code), code, name, description,
            )
        for provider, regions in data.REGIONS.items():
            for rcode, rname, active, zones in regions:
                await conn.execute(
                    """INSERT INTO regions (id, provider_id, code, name, is_active) VALUES ($1, $2, $3, $4, $5)
                       ON CONFLICT (provider_id, code) DO UPDATE SET name = EXCLUDED.name,
                       is_active = EXCLUDED.is_active""",
                    region_id(provider, rcode), provider_id(provider), rcode, rname, active,
                )
                for zcode, zname in zones:
                    await conn.execute(
                        """INSERT INTO zones (id, region_id, provider_id, code, name) VALUES ($1, $2, $3, $4, $5)
                           ON CONFLICT (provider_id, code) DO UPDATE SET name = EXCLUDED.name""",
                        zone_id(provider, zcode), region_id(provider, rcode), provider_id(provider), zcode, zname,
                    )
        for provider, code, gpus, vram, cpus, ram, bw, price, zones in data.INSTANCE_TYPES:
            type_id = instance_type_id(provider, code)
            await conn.execute(
                """INSERT INTO instance_types (id, provider_id, code, name, gpu_count, vram_per_gpu_gb, cpu_count,
                       ram_gb, bandwidth_bps, cost_per_hour)
                   VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8, $9)
                   ON CONFLICT (provider_id, code) DO UPDATE SET gpu_count = EXCLUDED.gpu_count,
                       vram_per_gpu_gb = EXCLUDED.vram_per_gpu_gb, cpu_count = EXCLUDED.cpu_count,
                       ram_gb = EXCLUDED.ram_gb, bandwidth_bps = EXCLUDED.bandwidth_bps,
                       cost_per_hour = EXCLUDED.cost_per_hour""",
                type_id, provider_id(provider), code, gpus, vram, cpus, ram, bw, Decimal(price),
            )
            for zcode in zones:
                await conn.execute(
                    """INSERT INTO instance_type_zones (instance_type_id, zone_id) VALUES ($1, $2)
                       ON CONFLICT DO NOTHING""",
                    type_id, zone_id(provider, zcode),
                )
        for name, served, vram, ctx, volume, metadata in data.MODELS:
            await conn.execute(
                """INSERT INTO models (id, name, model_id, required_vram_gb, context_length, data_volume_gb, metadata)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)
                   ON CONFLICT (model_id) DO UPDATE SET name = EXCLUDED.name,
                       required_vram_gb = EXCLUDED.required_vram_gb, context_length = EXCLUDED.context_length,
                       data_volume_gb = EXCLUDED.data_volume_gb, metadata = EXCLUDED.metadata""",
                model_uuid(served), name, served, vram, ctx, volume, metadata,
            )
        for code, label, icon, color, category in data.ACTION_TYPES:
            await conn.execute(
                """INSERT INTO action_types (code, label, icon, color_class, category) VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (code) DO UPDATE SET label = EXCLUDED.label, icon = EXCLUDED.icon,
                       color_class = EXCLUDED.color_class, category = EXCLUDED.category""",
                code, label, icon, color, category,
            )
    return {
        table: await conn.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608 - fixed table names
        for table in ("providers", "zones", "instance_types", "models")
    }
