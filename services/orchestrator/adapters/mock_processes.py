"""The mock provider's "servers" as local processes: find, signal and stop them safely.

A server is an ``inventiv-agent`` process group started with ``INVENTIV_MOCK_SERVER_ID`` in its
environment. A recorded pid alone is never trusted (pids are reused): the process must still
have the start time recorded for it, or carry the marker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

MARKER_ENV = "INVENTIV_MOCK_SERVER_ID"


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name: [state, ppid, pgrp, ...]; None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw.rsplit(")", 1)[1].split()


def _start_ticks(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def _leader_is_ours(entry: dict[str, Any]) -> bool:
    """Is ``pid`` still the process we started (not a reused pid)?"""
    fields = _stat(entry["pid"])
    if fields is None:
        if not Path("/proc").is_dir():  # no procfs: best effort with signal 0
            try:
                os.kill(entry["pid"], 0)
            except OSError:
                return False
            return True
        return False
    if fields[0] == "Z":
        return False
    expected = entry.get("pid_start")
    return expected is None or int(fields[19]) == expected


def _marked_pids(server_id: str) -> list[int]:
    """Every live process carrying this server's marker in its environment (the agent and its engine)."""
    needle = f"{MARKER_ENV}={server_id}".encode()
    pids = []
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            if needle in (proc_dir / "environ").read_bytes().split(b"\0"):
                pid = int(proc_dir.name)
                fields = _stat(pid)
                if fields and fields[0] != "Z":
                    pids.append(pid)
        except (OSError, ValueError):
            continue
    return pids


def _alive(entry: dict[str, Any]) -> bool:
    return _leader_is_ours(entry) or bool(_marked_pids(entry["server_id"]))


def _signal(entry: dict[str, Any], sig: int) -> None:
    """Signal the server's process group, and any of its processes that left the group (an
    engine started in a session of its own, or survivors of a leader that already exited)."""
    group = entry["pid"] if _leader_is_ours(entry) else None
    if group is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, sig)
    for pid in _marked_pids(entry["server_id"]):
        fields = _stat(pid)
        if group is not None and fields is not None and int(fields[2]) == group:
            continue  # already signalled with its group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _stop_process(entry: dict[str, Any], grace_s: float, child: subprocess.Popen | None) -> None:
    _signal(entry, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if child is not None:
            child.poll()  # reap our own child so it does not linger as a zombie
        if not _alive(entry):
            break
        time.sleep(0.05)
    else:
        log.warning("mock.server_kill", server_id=entry["server_id"], pid=entry["pid"])
        _signal(entry, signal.SIGKILL)
        kill_deadline = time.monotonic() + 2.0
        while _alive(entry) and time.monotonic() < kill_deadline:
            if child is not None:
                child.poll()
            time.sleep(0.02)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=0.5)


def _tail(path: str | None, max_bytes: int = 2000) -> str:
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
