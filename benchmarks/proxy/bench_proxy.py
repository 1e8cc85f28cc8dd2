"""Direct vs proxied, side by side, on this machine.

Starts a NATS server (embedded, streams applied), a zero-delay engine (``stub_engine.py`` by
default, or the agent's fake engine with ``--engine fake``), and the proxy (uvicorn, one
process, ``services.api.proxy.standalone``; ``raw`` = the same proxy without Litestar). Feeds
the proxy through NATS as production does (an ``api_key.created`` and an ``instance.ready``
event, heartbeats every 5 s), then measures with an aiohttp load client:

- ``unary c=1``: non-streamed chat completion, back to back: p50/p99 latency;
- ``unary c=32``: 32 concurrent clients: req/s;
- ``stream c=1``: 64-chunk stream: time to first chunk (TTFC) p50;
- ``stream c=64``: 64 concurrent streams: streams/s.

Variants: ``proxy`` is what production runs (Litestar mount, native upstream client); ``raw``
drops Litestar; ``aiohttp`` swaps in aiohttp's client for the upstream hop.

Targets run round-robin, ``--rounds`` times; figures are the median and (min-max) over rounds.
"Proxy CPU" is user+sys CPU of the proxy process per request, from /proc.

    .venv/bin/python benchmarks/proxy/bench_proxy.py [--rounds 3] [--seconds 3] [--variants direct,proxy,raw]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from contracts import codec, ids  # noqa: E402
from contracts.events import ApiKeyCreated, InstanceReady  # noqa: E402
from contracts.heartbeats import EngineLoad, Heartbeat  # noqa: E402
from services.api.keys import generate_api_key, hash_api_key, visible_prefix  # noqa: E402
from services.runtime import natsio  # noqa: E402
from services.runtime.embedded import EmbeddedNats, free_port, wait_for_port  # noqa: E402
from services.runtime.eventstore import JetStreamEventStore  # noqa: E402

MODEL = "bench"
CHAT = b'{"model":"bench","messages":[{"role":"user","content":"Say hello to the benchmark, briefly."}],"max_tokens":16}'
# 64 tokens: the stub engine always streams 64 chunks; the fake engine streams max_tokens of them.
CHAT_STREAM = CHAT.replace(b'"max_tokens":16', b'"max_tokens":64')[:-1] + b',"stream":true}'
CLK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """user+sys CPU seconds of a process and its reaped children."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / CLK


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def med_range(values: list[float], fmt: str = "{:.3f}") -> str:
    if not values:
        return "-"
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"


# --- load client ---------------------------------------------------------------------------------


async def run_unary(session, url, headers, conc: int, seconds: float) -> dict:
    lat: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker():
        nonlocal errors
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            async with session.post(url, data=CHAT, headers=headers) as r:
                await r.read()
                if r.status != 200:
                    errors += 1
            lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conc)))
    wall = time.perf_counter() - t0
    return {"n": len(lat), "rps": len(lat) / wall, "p50_ms": pct(lat, 0.5) * 1e3, "p99_ms": pct(lat, 0.99) * 1e3,
            "errors": errors}


async def run_stream(session, url, headers, conc: int, seconds: float) -> dict:
    ttfc: list[float] = []
    total: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker():
        nonlocal errors
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            first = None
            async with session.post(url, data=CHAT_STREAM, headers=headers) as r:
                if r.status != 200:
                    errors += 1
                tail = b""
                while True:
                    chunk = await r.content.readany()
                    if not chunk:
                        break
                    if first is None and b"data:" in chunk:
                        first = time.perf_counter() - t0
                    tail = (tail + chunk)[-32:]
                if b"[DONE]" not in tail:
                    errors += 1
            ttfc.append(first if first is not None else float("nan"))
            total.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conc)))
    wall = time.perf_counter() - t0
    return {"n": len(total), "rps": len(total) / wall, "ttfc_p50_ms": pct(ttfc, 0.5) * 1e3,
            "ttfc_p99_ms": pct(ttfc, 0.99) * 1e3, "total_p50_ms": pct(total, 0.5) * 1e3, "errors": errors}


# --- the stack -----------------------------------------------------------------------------------


def start_engine(kind: str, port: int) -> subprocess.Popen:
    if kind == "fake":
        cmd = [sys.executable, "-m", "agent.engines.fake_server", "--host", "127.0.0.1", "--port", str(port),
               "--model", MODEL]
    else:
        cmd = [sys.executable, str(Path(__file__).with_name("stub_engine.py")), "--port", str(port),
               "--model", MODEL, "--chunks", "64"]
    proc = subprocess.Popen(cmd, cwd=ROOT)
    wait_for_port("127.0.0.1", port, 15, proc, "engine")
    return proc


def start_proxy(nats_url: str, port: int, raw: bool, client: str = "native") -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVENTIV_") and k != "DATABASE_URL"}
    env.update(NATS_URL=nats_url, INVENTIV_LOG_LEVEL="warning", INVENTIV_PROXY_UPSTREAM_CLIENT=client)
    cmd = [sys.executable, "-m", "services.api.proxy.standalone", "--host", "127.0.0.1", "--port", str(port)]
    if raw:
        cmd.append("--raw")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    wait_for_port("127.0.0.1", port, 20, proc, "proxy")
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
    deadline = time.monotonic() + 20
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


SCENARIOS = [
    ("unary c=1", "unary", 1),
    ("unary c=32", "unary", 32),
    ("stream c=1", "stream", 1),
    ("stream c=64", "stream", 64),
]


async def main_async(args) -> None:
    tmp = Path(args.workdir)
    tmp.mkdir(parents=True, exist_ok=True)
    nats = EmbeddedNats(tmp / f"nats-{os.getpid()}").start()
    procs: list[subprocess.Popen] = []
    hb_task = None
    nc = None
    try:
        nc = await natsio.connect(nats.url, name="bench")
        await natsio.apply_nats_config(nc.jetstream())
        if not args.per_message_usage:
            # Recommended USAGE config: atomic batches, one fsync per batch (see services/api/proxy/usage.py).
            info = await nc.jetstream().stream_info("USAGE")
            info.config.allow_atomic = True
            await nc.jetstream().update_stream(info.config)
        engine_port = free_port()
        procs.append(start_engine(args.engine, engine_port))
        engine_url = f"http://127.0.0.1:{engine_port}"
        org, iid, raw_key = ids.new_id(), ids.new_id(), generate_api_key()
        await feed(nc, org, iid, engine_url, raw_key)
        hb_task = asyncio.create_task(heartbeats(nc, org, iid))
        headers = {"Authorization": f"Bearer {raw_key}", "Content-Type": "application/json"}

        targets: dict[str, tuple[str, int | None]] = {}
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
        for v in variants:
            if v == "direct":
                targets[v] = (engine_url, None)
            else:
                port = free_port()
                proc = start_proxy(nats.url, port, raw=(v == "raw"), client="aiohttp" if v == "aiohttp" else "native")
                procs.append(proc)
                targets[v] = (f"http://127.0.0.1:{port}", proc.pid)

        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=30)
        async with aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",)) as session:
            for name, (base, _) in targets.items():
                if name != "direct":
                    await wait_proxy_ready(session, base, headers)
            results: dict[tuple[str, str], list[dict]] = {}
            for label, kind, conc in SCENARIOS:
                for rnd in range(args.rounds):
                    for name, (base, pid) in targets.items():
                        url = f"{base}/v1/chat/completions"
                        fn = run_unary if kind == "unary" else run_stream
                        await fn(session, url, headers, conc, min(0.5, args.seconds))  # warm-up
                        cpu0 = proc_cpu_s(pid) if pid else 0.0
                        res = await fn(session, url, headers, conc, args.seconds)
                        if pid:
                            res["cpu_us"] = (proc_cpu_s(pid) - cpu0) / max(1, res["n"]) * 1e6
                        results.setdefault((label, name), []).append(res)
                        print(f"  {label:12s} {name:6s} round {rnd + 1}: " + ", ".join(
                            f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in res.items()),
                            file=sys.stderr, flush=True)
        report(results, targets, args)
    finally:
        if hb_task:
            hb_task.cancel()
        if nc is not None:
            await nc.close()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        nats.stop()
        shutil.rmtree(nats.data_dir, ignore_errors=True)


def report(results, targets, args) -> None:
    print()
    print(f"# proxy benchmark — {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"conditions: {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
          f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}, engine={args.engine}, "
          f"{args.rounds} rounds x {args.seconds:.1f} s per target (+0.5 s warm-up), round-robin, "
          f"usage publishing={'per message' if args.per_message_usage else 'atomic batches'}, "
          f"NATS sync_interval=always; "
          f"load client, engine, NATS and proxy share the machine")
    print("figures: median (min–max) over rounds")
    print()
    print("| scenario | target | req/s | p50 ms | p99 ms | added p50 ms | proxy CPU µs/req | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for label, kind, _ in SCENARIOS:
        direct = results.get((label, "direct"), [])
        for name in targets:
            runs = results.get((label, name), [])
            if not runs:
                continue
            if kind == "unary":
                p50 = [r["p50_ms"] for r in runs]
                p99 = [r["p99_ms"] for r in runs]
            else:
                p50 = [r["ttfc_p50_ms"] for r in runs]
                p99 = [r["ttfc_p99_ms"] for r in runs]
            added = "–"
            if name != "direct" and direct:
                dkey = "p50_ms" if kind == "unary" else "ttfc_p50_ms"
                added = med_range([a - d for a, d in zip(p50, [r[dkey] for r in direct])])
            cpu = med_range([r["cpu_us"] for r in runs], "{:.0f}") if "cpu_us" in runs[0] else "–"
            rps = med_range([r["rps"] for r in runs], "{:.0f}")
            errs = sum(r["errors"] for r in runs)
            metric = "" if kind == "unary" else " (TTFC)"
            print(f"| {label}{metric} | {name} | {rps} | {med_range(p50)} | {med_range(p99)} | {added} | {cpu} | {errs} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--variants", default="direct,proxy",
                        help="comma list of: direct (the engine itself), proxy (Litestar mount, native upstream "
                             "client), raw (no Litestar), aiohttp (Litestar mount, aiohttp upstream client)")
    parser.add_argument("--engine", choices=("stub", "fake"), default="stub")
    parser.add_argument("--per-message-usage", action="store_true",
                        help="keep the USAGE stream as in nats/streams (no atomic batches): one fsync per record")
    parser.add_argument("--workdir", default="/tmp/inventiv-bench-proxy")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(main_async(args))
    except ImportError:
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
