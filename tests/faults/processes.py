"""Real service processes for the fault tests: start, SIGKILL, SIGSTOP/SIGCONT, stop, read their logs.

Each service runs as ``python -m services.cli <service>`` (what the ``inventiv`` script runs) in
its own session, so a signal reaches only the process we mean. Logs are JSON lines in a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.orchestrator.adapters.mock_compute import MARKER_ENV

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ServiceProcess:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = field(default=None, init=False)

    def start(self) -> "ServiceProcess":
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=str(REPO_ROOT), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def is_paused(self) -> bool:
        """Every thread stopped, not just the main one: a thread still finishing a system call when
        the stop arrived (say, just granted a file lock) only stops on its way back to user space."""
        tasks = list(Path(f"/proc/{self.pid}/task").glob("[0-9]*"))
        return bool(tasks) and all(_task_state(task) in ("T", "t") for task in tasks)

    def kill(self) -> None:
        if self.running():
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGCONT (a paused process cannot handle SIGTERM), SIGTERM, then SIGKILL after ``timeout_s``."""
        if not self.running():
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGCONT)
            os.kill(self.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self) -> list[dict[str, Any]]:
        """The structlog JSON lines of the log (anything else, e.g. a traceback, is skipped)."""
        out = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    def logged(self, event: str) -> list[dict[str, Any]]:
        return [entry for entry in self.log_events() if entry.get("event") == event]

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


def cli(service: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "services.cli", service, *args]


def process_state(pid: int) -> str | None:
    """The state letter of /proc/<pid>/stat (R, S, T, Z, ...), None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()[0]


def _task_state(task_dir: Path) -> str | None:
    try:
        return (task_dir / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def marked_processes(nats_url: str) -> list[int]:
    """Live mock-server processes (agents, engines) talking to ``nats_url``: ours, from this test.

    A safety net for teardown: a server whose creation was cut short by a SIGKILL may run
    without a ledger entry, and ``stop_all_servers`` only knows the ledger.
    """
    marker, url = MARKER_ENV.encode() + b"=", f"NATS_URL={nats_url}".encode()
    pids = []
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            environ = (proc_dir / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if url in environ and any(item.startswith(marker) for item in environ):
            if process_state(int(proc_dir.name)) not in (None, "Z"):
                pids.append(int(proc_dir.name))
    return pids


def kill_marked_processes(nats_url: str, timeout_s: float = 5.0) -> list[int]:
    """SIGKILL every leftover mock-server process of this test; returns the pids it found."""
    found = marked_processes(nats_url)
    for pid in found:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while marked_processes(nats_url) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found
