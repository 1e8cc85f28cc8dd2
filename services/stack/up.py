"""`inventiv up` (`make run`): the whole stack on one machine.

Starts nats-server and Postgres under the data dir unless NATS_URL / DATABASE_URL name
running servers, applies streams and migrations, seeds the catalog, creates the admin,
starts api, orchestrator, projector and finops, prints the URLs, and on Ctrl-C or SIGTERM
stops everything, child processes and mock-provider workers included.

The orchestrator and the API get ``INVENTIV_ENGINE_KEY_SECRET`` (the environment's, else one
generated once under the data dir: engine_key_secret.py), so every mock worker's engine is keyed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import urllib.request
from pathlib import Path

import asyncpg
import structlog

from services.runtime.embedded import EmbeddedNats, EmbeddedPostgres, free_port
from services.runtime.logging import configure_logging
from services.runtime.settings import data_dir_from_env, env_int, write_stack_env

from .admin import apply_nats, migrate_and_seed
from .children import Child, service_child
from .engine_key_secret import ensure_engine_key_secret

log = structlog.get_logger("inventiv.up")

SERVICES = ("projector", "orchestrator", "finops", "api")
# The services that derive per-worker engine keys (services/runtime/engine_keys.py); no other gets the secret.
ENGINE_KEY_SERVICES = ("orchestrator", "api")
ENGINE_KEY_SECRET_ENV = "INVENTIV_ENGINE_KEY_SECRET"
DATABASE_NAME = "inventiv"


def _port_or_free(preferred: int) -> int:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()


async def _ensure_database(server: EmbeddedPostgres) -> str:
    conn = await asyncpg.connect(server.dsn())
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE_NAME):
            await conn.execute(f"CREATE DATABASE {DATABASE_NAME}")
    finally:
        await conn.close()
    return server.dsn(DATABASE_NAME)


async def _ensure_admin(nats_url: str) -> str | None:
    from services.api.bootstrap_admin import ensure_admin
    from services.runtime import natsio

    nc = await natsio.connect(nats_url, name="inventiv-up")
    try:
        return await ensure_admin(
            nc.jetstream(),
            email=os.environ.get("INVENTIV_ADMIN_EMAIL", "admin@inventiv.local"),
            password=os.environ.get("INVENTIV_ADMIN_PASSWORD") or None,
        )
    finally:
        await nc.drain()


def _wait_http_ok(url: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def run_up(args) -> int:
    configure_logging("up", fmt=os.environ.get("INVENTIV_LOG_FORMAT", "console"))
    data_dir: Path = data_dir_from_env()
    data_dir.mkdir(parents=True, exist_ok=True)
    engine_key_secret = ensure_engine_key_secret(data_dir)  # before anything starts: a bad one stops here
    stop_requested = False

    def request_stop(signum, frame):  # noqa: ARG001
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    nats_server: EmbeddedNats | None = None
    pg_server: EmbeddedPostgres | None = None
    children: list[Child] = []
    try:
        nats_url = os.environ.get("NATS_URL")
        if not nats_url:
            nats_server = EmbeddedNats(data_dir / "nats", port=_port_or_free(env_int("INVENTIV_NATS_PORT", 4250)),
                                       http_port=_port_or_free(env_int("INVENTIV_NATS_HTTP_PORT", 8250))).start()
            nats_url = nats_server.url
        database_url = os.environ.get("DATABASE_URL")
        if not database_url:
            pg_server = EmbeddedPostgres(data_dir / "postgres",
                                         port=_port_or_free(env_int("INVENTIV_PG_PORT", 5450))).start()
            database_url = asyncio.run(_ensure_database(pg_server))

        for line in asyncio.run(apply_nats(nats_url)):
            log.info("nats.applied", what=line)
        applied, counts = asyncio.run(migrate_and_seed(database_url))
        log.info("db.ready", migrations_applied=applied, catalog=counts)
        generated = asyncio.run(_ensure_admin(nats_url))

        # Operator commands (`inventiv projector rebuild`, …) find the servers through this file.
        write_stack_env(data_dir, {"NATS_URL": nats_url, "DATABASE_URL": database_url})
        env = dict(os.environ, NATS_URL=nats_url, DATABASE_URL=database_url, INVENTIV_DATA_DIR=str(data_dir))
        env.pop(ENGINE_KEY_SECRET_ENV, None)
        keyed_env = dict(env, **{ENGINE_KEY_SECRET_ENV: engine_key_secret})
        children = [service_child(name, keyed_env if name in ENGINE_KEY_SERVICES else env) for name in SERVICES]
        for child in children:
            child.start()

        api_port = env_int("INVENTIV_API_PORT", 8003)
        api_url = f"http://127.0.0.1:{api_port}"
        ready = _wait_http_ok(f"{api_url}/healthz", 60)
        _print_banner(api_url, nats_url, database_url, nats_server, generated, ready)

        while not stop_requested:
            now = time.monotonic()
            for child in children:
                child.poll_restart(now)
            time.sleep(0.2)
    finally:
        _shutdown(children, data_dir, pg_server, nats_server)
    return 0


def _print_banner(api_url, nats_url, database_url, nats_server, generated_password, ready) -> None:
    admin = os.environ.get("INVENTIV_ADMIN_EMAIL", "admin@inventiv.local")
    lines = [
        "",
        "Inventiv is up." if ready else "Inventiv started, but the API did not answer /healthz yet (see logs).",
        f"  API + OpenAI endpoint  {api_url}   (OpenAI base_url: {api_url}/v1)",
        f"  API docs               {api_url}/api-docs/swagger",
        f"  NATS                   {nats_url}" + (f"   monitoring {nats_server.monitoring_url}" if nats_server else ""),
        f"  Postgres               {database_url}",
        f"  Admin                  {admin}",
    ]
    if generated_password:
        lines.append(f"  Admin password         {generated_password}   (generated; shown once)")
    lines.append("Press Ctrl-C to stop.")
    print("\n".join(lines), flush=True)


def _shutdown(children: list[Child], data_dir: Path, pg_server, nats_server) -> None:
    log.info("stack.stopping")
    for child in children:
        child.terminate()
    deadline = time.monotonic() + 20
    for child in children:
        child.wait_or_kill(deadline)
    try:
        from services.orchestrator.adapters.mock_compute import stop_all_servers

        stopped = stop_all_servers(data_dir / "mock-provider")
        log.info("mock_provider.stopped", servers=stopped)
    except Exception as exc:  # noqa: BLE001 - shutdown must go on whatever happens here
        log.warning("mock_provider.stop_failed", error=str(exc))
    (data_dir / "stack.env").unlink(missing_ok=True)
    if pg_server:
        pg_server.stop()
    if nats_server:
        nats_server.stop()
    log.info("stack.stopped")
    sys.stdout.flush()
