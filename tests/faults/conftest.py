"""Fault-test fixture: a ``FaultStack`` of real processes on this test's nats-server and database.

Teardown kills everything the test started: orchestrators (SIGKILL: they may be paused or
mid-call), every mock server in the ledger (``stop_all_servers``), any mock-server process of
this test that never reached the ledger, then the projector.
"""

from __future__ import annotations

import pytest_asyncio

from services.orchestrator.bootstrap import stop_all_servers
from services.runtime import pg

from .processes import kill_marked_processes
from .stack import TEST_ACK_WAIT_S, FaultStack


@pytest_asyncio.fixture
async def stack(nats_server, nats_client, database_url, tmp_path):
    pool = await pg.create_pool(database_url, min_size=1, max_size=4)
    faults = FaultStack(nats_server, database_url, tmp_path, nats_client, pool)
    try:
        await faults.set_ack_wait(TEST_ACK_WAIT_S)
        faults.start_projector()
        yield faults
    finally:
        for process in faults.processes:
            if process.name != "projector":
                process.kill()
        stop_all_servers(faults.data_dir, grace_s=2.0)
        kill_marked_processes(nats_server.url)
        for process in faults.processes:
            process.stop(timeout_s=10.0)
        await pool.close()
