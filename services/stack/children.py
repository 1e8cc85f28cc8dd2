"""Supervise the service processes of `inventiv up`: start, restart with backoff, stop cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger("inventiv.up")

RESTART_DELAYS_S = (0.5, 1, 2, 5, 10, 30)


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen | None = None
    restarts: int = 0
    next_start_at: float = 0.0
    started_at: float = field(default=0.0)

    def start(self) -> None:
        # Own process group, so Ctrl-C in the terminal reaches only `up`, which stops children in order.
        self.proc = subprocess.Popen(self.argv, env=self.env, start_new_session=True)
        self.started_at = time.monotonic()
        log.info("child.started", child=self.name, pid=self.proc.pid)

    def poll_restart(self, now: float) -> None:
        if self.proc is None or self.proc.poll() is None:
            return
        if self.next_start_at == 0.0:
            # A child that ran a while before dying starts its backoff afresh.
            if now - self.started_at > 60:
                self.restarts = 0
            delay = RESTART_DELAYS_S[min(self.restarts, len(RESTART_DELAYS_S) - 1)]
            self.next_start_at = now + delay
            log.warning("child.exited", child=self.name, code=self.proc.returncode, restart_in_s=delay)
        elif now >= self.next_start_at:
            self.restarts += 1
            self.next_start_at = 0.0
            self.start()

    def terminate(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)

    def wait_or_kill(self, deadline: float) -> None:
        if not self.proc:
            return
        try:
            self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("child.killed", child=self.name)
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def service_child(name: str, env: dict[str, str]) -> Child:
    return Child(name=name, argv=[sys.executable, "-m", "services.cli", name], env=env)
