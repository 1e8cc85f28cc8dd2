"""Real processes for the proxy tests: standalone proxies and stub engines, each its own OS process.

Used where the test needs what only separate processes give: several API processes with their
own key caches, or a worker that can be SIGKILLed mid-request.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from services.runtime.embedded import free_port

ROOT = Path(__file__).resolve().parents[3]


class Process:
    def __init__(self, argv: list[str], env: dict, log_path: Path, what: str) -> None:
        self.port = free_port()
        self.what = what
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen([*argv, "--port", str(self.port)], cwd=ROOT, env=env, stdout=log,
                                         stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    async def wait_listening(self, timeout_s: float = 60.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.what} exited ({self.proc.returncode}):\n{self.log()}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            except OSError:
                if loop.time() > deadline:
                    raise AssertionError(f"{self.what} not listening after {timeout_s}s:\n{self.log()}") from None
                await asyncio.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, its connections die with it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVENTIV_") and k not in ("NATS_URL",
                                                                                                "DATABASE_URL")}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


def start_proxy(nats_url: str, log_path: Path, **settings: str) -> Process:
    env = _env(NATS_URL=nats_url, INVENTIV_LOG_LEVEL="warning", **settings)
    return Process([sys.executable, "-m", "services.api.proxy.standalone", "--host", "127.0.0.1"], env, log_path,
                   "proxy process")


def start_engine(model: str, log_path: Path, *, tokens: int, delay_s: float, unary_delay_s: float = 0.0) -> Process:
    return Process([sys.executable, "-m", "tests.integration.proxy.engine_process", "--model", model,
                    "--tokens", str(tokens), "--delay", str(delay_s), "--unary-delay", str(unary_delay_s)],
                   _env(), log_path, "engine process")
