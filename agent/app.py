"""The running agent: wires settings to the engine supervisor, the monitor, NATS, heartbeats and
the HTTP endpoints, and owns the stop sequence (see ``main.py`` for the lifecycle).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import signal
import socket
import sys

import structlog
from aiohttp import web

from .engine_command import engine_base_url, engine_command
from .gpu import detect_gpu_sampler
from .heartbeat import HeartbeatPublisher
from .http import HttpContext, make_app
from .identity import agent_version, package_sha256
from .logs import LogRing
from .metrics import AgentMetrics
from .monitor import EngineMonitor
from .nats_link import NatsLink
from .probes import EngineClient
from .restart_policy import RestartPolicy
from .settings import AgentSettings
from .state import AgentState
from .supervisor import EngineSupervisor
from .system import SystemSampler

log = structlog.get_logger("agent")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


async def run(settings: AgentSettings, sock: socket.socket, ring: LogRing) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    skip_drain = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            log.warning("second_stop_signal", signal=sig.name, action="skip the drain wait")
            skip_drain.set()
        else:
            log.info("stop_signal", signal=sig.name)
            stop.set()

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)

    metrics = AgentMetrics()
    state = AgentState(metrics)
    version, sha256 = agent_version(), package_sha256()
    gpu, system = detect_gpu_sampler(), SystemSampler()
    log.info("agent_starting", version=version, sha256=sha256, pid=os.getpid(), gpu_sampler=gpu.kind,
             system_sampler=system.kind, settings=settings.redacted())

    def on_restart() -> None:
        state.engine_restarts += 1
        metrics.engine_restarts.inc()

    supervisor = EngineSupervisor(
        engine_command(settings, sys.executable),
        RestartPolicy(base_s=settings.restart_backoff_s, max_restarts=settings.max_restarts),
        on_started=state.engine_started, on_stopped=state.engine_stopped, on_restart=on_restart,
    )
    # Whatever happens from here on, the engine does not outlive this process.
    atexit.register(supervisor.kill_now)
    client = EngineClient(engine_base_url(settings.bind_host, settings.engine_port), settings.engine_api_key,
                          timeout_s=settings.probe_timeout_s)
    monitor = EngineMonitor(state, client, metrics, settings.model,
                            ready_interval_s=min(2.0, settings.heartbeat_interval_s),
                            stall_after_s=settings.stall_after_s)
    link = NatsLink(settings.nats_url, settings.instance_id, metrics, creds_file=settings.nats_creds_file,
                    nkey_seed_file=settings.nats_nkey_seed_file, on_connected=state.status_changed.set)
    publisher = HeartbeatPublisher(
        state=state, link=link, org_id=settings.org_id, instance_id=settings.instance_id, model=settings.model,
        interval_s=settings.heartbeat_interval_s, version=version, sha256=sha256, gpu=gpu, system=system,
        metrics=metrics,
    )
    runner = web.AppRunner(make_app(HttpContext(
        settings=settings, state=state, metrics=metrics, ring=ring, version=version, sha256=sha256,
        gpu_sampler=gpu.kind, system_sampler=system.kind,
    )), access_log=None, handle_signals=False)

    tasks: dict[str, asyncio.Task] = {}
    try:
        await runner.setup()
        await web.SockSite(runner, sock).start()
        log.info("agent_http_listening", host=settings.bind_host, port=settings.agent_port)
        tasks = {
            "supervisor": asyncio.create_task(supervisor.run(), name="supervisor"),
            "monitor": asyncio.create_task(monitor.run(), name="monitor"),
            "nats": asyncio.create_task(link.run(), name="nats"),
            "heartbeat": asyncio.create_task(publisher.run(), name="heartbeat"),
        }
        crashed = await _wait_for_stop(stop, tasks)
        if crashed is not None:
            return 1
        await _drain(settings, state, skip_drain)
        await supervisor.stop(settings.stop_grace_s)
        await asyncio.wait_for(tasks["supervisor"], timeout=5)
        state.refresh()
        await publisher.publish_once()  # the last word: draining, engine stopped
        log.info("agent_stopped", exit_code=0)
        return 0
    except Exception:
        log.exception("agent_crashed")
        return 1
    finally:
        supervisor.kill_now()
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        await link.close()
        await client.close()
        await runner.cleanup()


async def _wait_for_stop(stop: asyncio.Event, tasks: dict[str, asyncio.Task]) -> str | None:
    """Wait for a stop signal; returns the name of a task that crashed instead, if one did."""
    stopper = asyncio.create_task(stop.wait())
    watched = set(tasks.values())
    try:
        while True:
            done, _ = await asyncio.wait(watched | {stopper}, return_when=asyncio.FIRST_COMPLETED)
            if stopper in done:
                return None
            for task in done:
                watched.discard(task)
                exc = task.exception() if not task.cancelled() else None
                if exc is not None:
                    log.error("agent_task_crashed", task=task.get_name(), error=repr(exc), exc_info=exc)
                    return task.get_name()
                # The supervisor returns when it gave up (status failed): normal, the agent keeps
                # serving to say so.
    finally:
        stopper.cancel()


async def _drain(settings: AgentSettings, state: AgentState, skip: asyncio.Event) -> None:
    """Report draining, then wait until the engine has nothing in flight (fresh reading) or the deadline."""
    state.draining = True
    state.refresh()
    start_round = state.probe_rounds
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.drain_timeout_s

    def drained() -> bool:
        if state.engine_state != "running":
            return True
        load = state.engine_load
        # Two rounds: the first may have started before the drain, only the second surely after.
        return state.probe_rounds >= start_round + 2 and load.requests_running + load.requests_waiting == 0

    while not drained() and not skip.is_set():
        remaining = deadline - loop.time()
        if remaining <= 0:
            log.warning("drain_timeout", running=state.engine_load.requests_running,
                        waiting=state.engine_load.requests_waiting, drain_timeout_s=settings.drain_timeout_s)
            return
        state.probe_completed.clear()
        # Wake on the next probe round (every FAST_INTERVAL_S while draining) or a second signal.
        waiters = [asyncio.create_task(state.probe_completed.wait()), asyncio.create_task(skip.wait())]
        await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
    log.info("drained", running=state.engine_load.requests_running, skipped=skip.is_set())

