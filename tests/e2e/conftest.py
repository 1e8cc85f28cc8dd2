"""The whole stack as a user runs it: `inventiv up` in a subprocess on free ports and a temp data dir."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.runtime.embedded import free_port
from tests.helpers import wait_until_sync

ADMIN_EMAIL = "admin@e2e.test"
ADMIN_PASSWORD = "e2e-Admin-password-1"


@dataclass
class Stack:
    proc: subprocess.Popen
    api_url: str
    nats_url: str
    data_dir: Path
    log_path: Path
    env: dict

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _healthy(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


@pytest.fixture
def stack(tmp_path: Path):
    api_port, nats_port = free_port(), free_port()
    env = dict(
        os.environ,
        INVENTIV_DATA_DIR=str(tmp_path / "data"),
        INVENTIV_API_PORT=str(api_port),
        INVENTIV_NATS_PORT=str(nats_port),
        INVENTIV_NATS_HTTP_PORT=str(free_port()),
        INVENTIV_PG_PORT=str(free_port()),
        INVENTIV_ADMIN_EMAIL=ADMIN_EMAIL,
        INVENTIV_ADMIN_PASSWORD=ADMIN_PASSWORD,
        INVENTIV_MOCK_HEARTBEAT_INTERVAL_S="0.5",
        INVENTIV_LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
        # Each service's metrics port must not collide with a developer's running stack.
        INVENTIV_ORCHESTRATOR_METRICS_PORT=str(free_port()),
        INVENTIV_PROJECTOR_METRICS_PORT=str(free_port()),
        INVENTIV_FINOPS_METRICS_PORT=str(free_port()),
    )
    for name in ("NATS_URL", "DATABASE_URL"):
        env.pop(name, None)
    log_path = tmp_path / "stack.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "services.cli", "up"], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    api_url = f"http://127.0.0.1:{api_port}"
    s = Stack(proc, api_url, f"nats://127.0.0.1:{nats_port}", tmp_path / "data", log_path, env)
    try:
        wait_until_sync(lambda: proc.poll() is not None or _healthy(f"{api_url}/healthz"), timeout_s=90,
                        message="the stack to answer /healthz")
        assert proc.poll() is None, f"inventiv up exited early:\n{s.log()[-5000:]}"
        yield s
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
