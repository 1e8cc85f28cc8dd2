"""What the proxy benchmark runs against: an engine, proxy processes, and the facts fed through NATS."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import aiohttp

from contracts import codec, ids
from contracts.events import ApiKeyCreated, InstanceReady
from contracts.heartbeats import EngineLoad, Heartbeat
from services.api.keys import hash_api_key, visible_prefix
from services.runtime.embedded import wait_for_port
from services.runtime.eventstore import JetStreamEventStore

from loadgen import CHAT  # noqa: E402 - benchmarks/proxy is on sys.path (scripts, not a package)

ROOT = Path(__file__).resolve().parents[2]
MODEL = "bench"
CLK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """user+sys CPU seconds of a process and its reaped children."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / CLK


def machine_busy_s() -> float:
    """CPU seconds all cores spent not idle (user, nice, system, irq, softirq, steal), from /proc/stat.

    Includes work charged to no process (loopback TCP processed in softirq context), so the sum
    over the measured processes can fall short of it.
    """
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLK


def start_engine(kind: str, port: int, native_engine: Path | None = None) -> subprocess.Popen:
    if kind == "native":
        cmd = [str(native_engine), str(port), MODEL, "64"]
    elif kind == "fake":
        cmd = [sys.executable, "-m", "agent.engines.fake_server", "--host", "127.0.0.1", "--port", str(port),
               "--model", MODEL]
    else:
        cmd = [sys.executable, str(Path(__file__).with_name("stub_engine.py")), "--port", str(port),
               "--model", MODEL, "--chunks", "64"]
    proc = subprocess.Popen(cmd, cwd=ROOT)
    wait_for_port("127.0.0.1", port, 15, proc, "engine")
    return proc


def start_proxy(nats_url: str, port: int, *, litestar_mount: bool = False, client: str = "native",
                reuse_port: bool = False) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVENTIV_") and k != "DATABASE_URL"}
    env.update(NATS_URL=nats_url, INVENTIV_LOG_LEVEL="warning", INVENTIV_PROXY_UPSTREAM_CLIENT=client,
               # Per-key limits stay ON (their cost is measured) but far above what one key sends here.
               INVENTIV_PROXY_KEY_RPM="1000000000", INVENTIV_PROXY_KEY_CONCURRENCY="1000000")
    cmd = [sys.executable, "-m", "services.api.proxy.standalone", "--host", "127.0.0.1", "--port", str(port)]
    if litestar_mount:
        cmd.append("--litestar-mount")
    if reuse_port:
        cmd.append("--reuse-port")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    if not reuse_port:
        wait_for_port("127.0.0.1", port, 30, proc, "proxy")
    return proc


async def feed(nc, org: str, iid: str, engine_url: str, raw_key: str) -> None:
    store = JetStreamEventStore(nc.jetstream())
    now = datetime.now(timezone.utc)
    env = dict(org_id=org, actor="system:bench", correlation_id=ids.new_id(), causation_id=ids.new_id(),
               occurred_at=now)
    await store.append(ApiKeyCreated(id=ids.new_id(), **env, key_id=ids.new_id(), name="bench",
                                     prefix=visible_prefix(raw_key), key_hash=hash_api_key(raw_key),
                                     user_id=ids.new_id(), scopes=("inference",)), expected_last_seq=None)
    await store.append(InstanceReady(id=ids.new_id(), **env, instance_id=iid, upstream_url=engine_url,
                                     model_name=MODEL), expected_last_seq=None)


async def heartbeats(nc, org: str, iid: str) -> None:
    while True:
        hb = Heartbeat(status="ready", model=MODEL, sent_at=datetime.now(timezone.utc),
                       engine=EngineLoad(models=(MODEL,)))
        await nc.publish(f"hb.{org}.{iid}", codec.encode(hb))
        await asyncio.sleep(5)


async def wait_proxy_ready(session, base: str, headers) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            async with session.post(f"{base}/v1/chat/completions", data=CHAT, headers=headers) as r:
                await r.read()
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("proxy never routed a request")


def listening_sockets(port: int) -> int:
    """How many sockets listen on 127.0.0.1:``port`` (several with SO_REUSEPORT), from /proc/net/tcp."""
    want = f"0100007F:{port:04X}"
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == want and fields[3] == "0A":  # local address, state LISTEN
            count += 1
    return count


def wait_listening(port: int, n: int, procs: list[subprocess.Popen], timeout_s: float = 60) -> None:
    """uvicorn listens once its lifespan startup is done (key cache and routing table loaded)."""
    deadline = time.monotonic() + timeout_s
    while listening_sockets(port) < n:
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"proxy exited with code {p.returncode} while starting")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{n} proxy processes not listening on {port} within {timeout_s} s")
        time.sleep(0.05)
