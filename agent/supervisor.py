"""Runs the engine as a child process: start, capture its output, restart it with backoff, stop it.

The engine gets its own session (process group), so one ``killpg`` reaches vLLM and the worker
processes it forks, and a Ctrl-C on the agent's terminal does not hit the engine behind the
agent's back. The engine must never outlive the agent: ``stop()`` is the orderly path, and
``kill_now()`` is called from every exit path the agent can catch (finally, atexit). The fake
engine additionally exits when its stdin (a pipe held by the agent) closes, which covers even
a SIGKILLed agent.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable

import structlog

from .engine_command import EngineCommand
from .health import EngineState
from .restart_policy import RestartPolicy, decide_restart

log = structlog.get_logger("agent.supervisor")

# Longest engine output line kept in the log; vLLM can print very long lines (configs, tracebacks).
MAX_LINE_CHARS = 4000


class EngineSupervisor:
    def __init__(
        self,
        command: EngineCommand,
        policy: RestartPolicy,
        *,
        on_started: Callable[[int, int], None],
        on_stopped: Callable[[EngineState], None],
        on_restart: Callable[[], None] = lambda: None,
    ) -> None:
        self.command = command
        self.policy = policy
        self._on_started = on_started
        self._on_stopped = on_stopped
        self._on_restart = on_restart
        self._proc: asyncio.subprocess.Process | None = None
        self._stopping = False
        self._wake = asyncio.Event()
        self.incarnation = 0
        self.last_exit_code: int | None = None

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    async def run(self) -> None:
        """Run the engine until ``stop()``, restarting it per the policy; returns when stopped or given up."""
        failures = 0
        env = {**os.environ, **self.command.env}
        while not self._stopping:
            started = time.monotonic()
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    *self.command.argv,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env=env,
                    cwd=self.command.cwd,
                    start_new_session=True,
                    limit=1024 * 1024,
                )
            except OSError as exc:
                log.error("engine_spawn_failed", argv0=self.command.argv[0], error=str(exc))
                code: int | None = None
            else:
                if self._stopping:
                    # stop() ran while we were spawning and could not see this process yet.
                    _kill_group(self._proc.pid, signal.SIGTERM)
                self.incarnation += 1
                log.info("engine_started", pid=self._proc.pid, incarnation=self.incarnation,
                         argv=list(self.command.argv))
                self._on_started(self._proc.pid, self.incarnation)
                pumps = [asyncio.create_task(_pump(self._proc.stdout, "stdout", self._proc.pid)),
                         asyncio.create_task(_pump(self._proc.stderr, "stderr", self._proc.pid))]
                code = await self._proc.wait()
                # Grandchildren may hold the pipes open; do not wait for them forever.
                _, pending = await asyncio.wait(pumps, timeout=1.0)
                for task in pending:
                    task.cancel()
                _kill_group(self._proc.pid, signal.SIGKILL)  # stragglers of the dead engine
            self.last_exit_code = code
            if self._stopping:
                break
            ran_for = time.monotonic() - started
            decision = decide_restart(self.policy, failures, ran_for)
            failures = decision.consecutive_failures
            if decision.give_up:
                log.error("engine_gave_up", exit_code=code, failures=failures, max_restarts=self.policy.max_restarts)
                self._on_stopped("failed")
                return
            log.warning("engine_exited", exit_code=code, ran_for_s=round(ran_for, 3), failures=failures,
                        restart_in_s=decision.delay_s)
            self._on_stopped("restarting")
            self._on_restart()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=decision.delay_s)
            except TimeoutError:
                pass
        self._on_stopped("stopped")

    async def stop(self, grace_s: float) -> int | None:
        """SIGTERM the engine's process group, SIGKILL it after ``grace_s``; returns the exit code."""
        self._stopping = True
        self._wake.set()
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return proc.returncode if proc else None
        log.info("engine_stopping", pid=proc.pid, grace_s=grace_s)
        _kill_group(proc.pid, signal.SIGTERM)
        try:
            code = await asyncio.wait_for(proc.wait(), timeout=grace_s)
        except TimeoutError:
            log.warning("engine_kill", pid=proc.pid, reason="did not exit within the grace period")
            _kill_group(proc.pid, signal.SIGKILL)
            code = await proc.wait()
        _kill_group(proc.pid, signal.SIGKILL)
        log.info("engine_stopped", pid=proc.pid, exit_code=code)
        return code

    def kill_now(self) -> None:
        """Last resort on abnormal exits: SIGKILL the engine's group without waiting. Idempotent."""
        self._stopping = True
        proc = self._proc
        if proc is not None:
            _kill_group(proc.pid, signal.SIGKILL)


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


async def _pump(stream: asyncio.StreamReader | None, name: str, pid: int) -> None:
    """Copy the engine's output, line by line, into the agent's structured log."""
    if stream is None:
        return
    while True:
        try:
            raw = await stream.readline()
        except ValueError:  # a line over the reader's limit: asyncio already dropped it, keep going
            log.warning("engine_output_line_too_long", stream=name, pid=pid)
            continue
        if not raw:
            return
        line = raw.decode("utf-8", "replace").rstrip()
        if line:
            log.info("engine_output", stream=name, pid=pid, line=line[:MAX_LINE_CHARS])
