"""The supervisor against real child processes: restarts, giving up, and killing the whole group."""

from __future__ import annotations

import asyncio
import sys

from agent.engine_command import EngineCommand
from agent.restart_policy import RestartPolicy
from agent.supervisor import EngineSupervisor

from .conftest import pid_alive
from tests.helpers import wait_until


class Recorder:
    def __init__(self) -> None:
        self.started: list[tuple[int, int]] = []
        self.stopped: list[str] = []
        self.restarts = 0

    def supervisor(self, code: str, policy: RestartPolicy) -> EngineSupervisor:
        return EngineSupervisor(EngineCommand(argv=(sys.executable, "-c", code)), policy,
                                on_started=lambda pid, n: self.started.append((pid, n)),
                                on_stopped=self.stopped.append, on_restart=self._restart)

    def _restart(self) -> None:
        self.restarts += 1


async def test_a_crash_looping_engine_is_restarted_then_given_up_on():
    rec = Recorder()
    sup = rec.supervisor("import sys; print('boom', flush=True); sys.exit(3)",
                         RestartPolicy(base_s=0.01, max_restarts=2))
    await asyncio.wait_for(sup.run(), timeout=15)
    assert [n for _, n in rec.started] == [1, 2, 3]
    assert rec.stopped == ["restarting", "restarting", "failed"]
    assert rec.restarts == 2 and sup.last_exit_code == 3


async def test_stop_terminates_the_engine_and_its_children():
    # The "engine" forks a grandchild that sleeps; killing only the direct child would leave it behind.
    code = ("import subprocess, sys, time; "
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            "print(child.pid, flush=True); time.sleep(60)")
    rec = Recorder()
    sup = rec.supervisor(code, RestartPolicy(base_s=0.01, max_restarts=5))
    task = asyncio.create_task(sup.run())
    await wait_until(lambda: rec.started, timeout_s=10, message="the engine to start")
    pid = rec.started[0][0]
    grandchild = await wait_until(lambda: _children_of(pid), timeout_s=10, message="the grandchild")
    assert await sup.stop(grace_s=5) is not None
    await asyncio.wait_for(task, timeout=10)
    assert rec.stopped == ["stopped"]
    await wait_until(lambda: not pid_alive(pid) and not any(pid_alive(p) for p in grandchild), timeout_s=10,
                     message="the engine and its child to be gone")


async def test_an_engine_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path):
    marker = tmp_path / "ignoring"
    # The marker is written once SIGTERM is ignored, so the test never signals before that.
    code = ("import pathlib, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            f"pathlib.Path({str(marker)!r}).touch(); time.sleep(60)")
    rec = Recorder()
    sup = rec.supervisor(code, RestartPolicy())
    task = asyncio.create_task(sup.run())
    await wait_until(marker.exists, timeout_s=10, message="the engine to ignore SIGTERM")
    pid = rec.started[0][0]
    exit_code = await sup.stop(grace_s=0.3)
    await asyncio.wait_for(task, timeout=10)
    assert exit_code == -9 and not pid_alive(pid)


def _children_of(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []
