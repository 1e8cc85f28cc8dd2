"""Shared fixtures: real nats-server and real Postgres on ephemeral ports in temp dirs.

- ``nats_server``: a fresh JetStream server per test (starts in ~50 ms), streams applied.
- ``pg_cluster``: one Postgres per session; ``database_url``: a fresh database per test,
  cloned from a migrated template (``CREATE DATABASE … TEMPLATE``), dropped afterwards.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from services.db.migrate import migrate
from services.runtime import natsio
from services.runtime.embedded import EmbeddedNats, EmbeddedPostgres

TEMPLATE_DB = "inventiv_template"


@pytest.fixture(autouse=True)
def _clean_inventiv_env(monkeypatch):
    """Tests never inherit a developer's servers or settings."""
    for name in list(os.environ):
        if name.startswith("INVENTIV_") or name in ("NATS_URL", "DATABASE_URL"):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
def nats_server(tmp_path: Path):
    server = EmbeddedNats(tmp_path / "nats").start()
    yield server
    server.stop()


@pytest_asyncio.fixture
async def nats_client(nats_server):
    nc = await natsio.connect(nats_server.url, name="test")
    await natsio.apply_nats_config(nc.jetstream())
    yield nc
    await nc.drain()


@pytest.fixture(scope="session")
def pg_cluster():
    # Outside pytest's temp root: Postgres runs as another user when we are root, and a second
    # pytest session resets that root to mode 0700, which would lock the server out of its data.
    data_dir = Path(tempfile.mkdtemp(prefix="inventiv-test-pg-"))
    cluster = EmbeddedPostgres(data_dir, fast_unsafe=True).start()
    yield cluster
    cluster.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest_asyncio.fixture(scope="session")
async def pg_template(pg_cluster):
    conn = await asyncpg.connect(pg_cluster.dsn())
    await conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    await conn.close()
    tconn = await asyncpg.connect(pg_cluster.dsn(TEMPLATE_DB))
    await migrate(tconn)
    await tconn.close()
    return TEMPLATE_DB


@pytest_asyncio.fixture
async def database_url(pg_cluster, pg_template):
    name = "t_" + uuid.uuid4().hex[:16]
    admin = await asyncpg.connect(pg_cluster.dsn())
    await admin.execute(f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    yield pg_cluster.dsn(name)
    await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await admin.close()
