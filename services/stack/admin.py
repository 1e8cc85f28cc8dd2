"""One-shot operator commands: apply NATS config, migrate and seed Postgres."""

from __future__ import annotations

import asyncio
import sys

from services.db.migrate import migrate
from services.db.seed import seed_catalog
from services.runtime import natsio, pg
from services.runtime.settings import server_url


def _require(name: str) -> str:
    value = server_url(name)
    if not value:
        print(f"inventiv: set {name}", file=sys.stderr)
        raise SystemExit(2)
    return value


async def apply_nats(url: str) -> list[str]:
    nc = await natsio.connect(url, name="inventiv-admin")
    try:
        return await natsio.apply_nats_config(nc.jetstream())
    finally:
        await nc.drain()


async def migrate_and_seed(dsn: str, *, seed: bool = True) -> tuple[list[str], dict[str, int] | None]:
    conn = await pg.connect(dsn)
    try:
        applied = await migrate(conn)
        counts = await seed_catalog(conn) if seed else None
        return applied, counts
    finally:
        await conn.close()


def run_nats_apply(args) -> int:
    for line in asyncio.run(apply_nats(_require("NATS_URL"))):
        print(line)
    return 0


def run_db_migrate(args) -> int:
    applied, counts = asyncio.run(migrate_and_seed(_require("DATABASE_URL"), seed=not args.no_seed))
    print(f"migrations applied: {', '.join(applied) or 'none pending'}")
    if counts:
        print("catalog: " + ", ".join(f"{n} {table}" for table, n in counts.items()))
    return 0
