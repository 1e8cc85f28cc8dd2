"""Direct vs proxied, side by side, on this machine; one proxy process and two.

Starts a NATS server (embedded, streams applied), a zero-delay engine (``stub_engine.py`` by
default, or the agent's fake engine with ``--engine fake``), and the proxy (uvicorn,
``services.api.proxy.standalone``). Feeds the proxy through NATS as production does (an
``api_key.created`` and an ``instance.ready`` event, heartbeats every 5 s), then measures with an
aiohttp load client (``loadgen.py``; ``--client native``: the C client of ``native/``):

- ``unary c=1``: non-streamed chat completion, back to back: p50/p99 latency;
- ``unary c=32``: 32 concurrent clients: req/s;
- ``stream c=1``: 64-chunk stream: time to first chunk (TTFC) p50;
- ``stream c=64``: 64 concurrent streams: streams/s.

Variants (``--variants``):

- ``direct``: the engine itself;
- ``proxy``: what production runs: one process, ``/v1`` answered before Litestar
  (``Proxy.wrap_asgi``, as ``services.api.app.asgi_entry`` serves it), native upstream client,
  auth + limits + routing + usage publishing + metrics all on;
- ``litestar``: the same through Litestar's mount; ``aiohttp``: aiohttp as upstream client;
- ``proxy2``: TWO proxy processes bound to one port with ``SO_REUSEPORT`` (the kernel spreads
  connections over them by a hash of each connection);
- ``proxy2-spread``: two processes on two ports, the load client spreading its connections
  evenly over them (what an L4 load balancer does).

Targets run round-robin, ``--rounds`` times; figures are the median and (min-max) over rounds.
"Proxy CPU" is user+sys CPU of the proxy process(es) per request, from /proc; the load client's
and the engine's CPU per request are shown too (medians): on a 2-core box the three share the
cores, so a proxy's throughput is bounded by everyone's CPU, not its own alone. The 2-process
scaling is each round's req/s of the 2-process variant over the 1-process ``proxy`` of the same
round, printed beside what the machine allows: its cores over the CPU per request the 2-process
run measured (proxies + client + engine + NATS), over the 1-process req/s (``ceiling_rps``).

Harness (``--client``, ``--engine``): the default is the aiohttp client and the Python stub engine.
With ``--client native --engine native`` both are the small C programs of ``native/`` (built
here with the system's C compiler, a few µs of CPU per request each instead of ~80 + 15), so
that on a small box the cores go to the proxy processes: that is how the 1-vs-2 process
scaling is measured. Direct-vs-proxy ratios with the C harness compare the proxy against an
engine that costs almost nothing, so they are not the issue's ``≥ 80 % of direct`` figure,
which is measured with the default harness.

    .venv/bin/python benchmarks/proxy/bench_proxy.py [--rounds 5] [--seconds 3] [--variants direct,proxy,proxy2]
    .venv/bin/python benchmarks/proxy/bench_proxy.py --client native --engine native \
        --scenarios unary-c32,stream-c64 --variants proxy,proxy2-spread,proxy2 --rounds 7
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT), str(HERE)]

import native  # noqa: E402
import stack  # noqa: E402
from loadgen import CHAT, CHAT_STREAM, run_stream, run_unary  # noqa: E402

from contracts import ids  # noqa: E402
from services.api.keys import generate_api_key  # noqa: E402
from services.runtime import natsio  # noqa: E402
from services.runtime.embedded import EmbeddedNats, free_port  # noqa: E402

SCENARIOS = [
    ("unary c=1", "unary", 1),
    ("unary c=32", "unary", 32),
    ("stream c=1", "stream", 1),
    ("stream c=64", "stream", 64),
]
VARIANTS = ("direct", "proxy", "litestar", "aiohttp", "proxy2", "proxy2-spread")
TWO = ("proxy2", "proxy2-spread")


def med_range(values: list[float], fmt: str = "{:.3f}") -> str:
    if not values:
        return "-"
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def _self_cpu_s() -> float:
    """CPU of the load client (this process: the aiohttp client and NATS feeder)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def start_variant(name: str, nats_url: str, engine_url: str) -> tuple[list[str], list[subprocess.Popen]]:
    """Base URLs the load client uses, and the processes to measure."""
    if name == "direct":
        return [engine_url], []
    if name == "proxy2":
        port = free_port()
        procs = [stack.start_proxy(nats_url, port, reuse_port=True) for _ in range(2)]
        stack.wait_listening(port, 2, procs)
        return [f"http://127.0.0.1:{port}"], procs
    if name == "proxy2-spread":
        ports = [free_port(), free_port()]
        procs = [stack.start_proxy(nats_url, p) for p in ports]
        return [f"http://127.0.0.1:{p}" for p in ports], procs
    port = free_port()
    proc = stack.start_proxy(nats_url, port, litestar_mount=name == "litestar",
                             client="aiohttp" if name == "aiohttp" else "native")
    return [f"http://127.0.0.1:{port}"], [proc]


async def main_async(args) -> None:
    tmp = Path(args.workdir)
    tmp.mkdir(parents=True, exist_ok=True)
    nats = EmbeddedNats(tmp / f"nats-{os.getpid()}").start()
    procs: list[subprocess.Popen] = []
    hb_task = None
    nc = None
    load_before = os.getloadavg()
    if args.pin:
        os.sched_setaffinity(0, {0})  # the load client (and its children: NATS, the engine) on CPU 0
    try:
        nc = await natsio.connect(nats.url, name="bench")
        await natsio.apply_nats_config(nc.jetstream())
        if not args.per_message_usage:
            # Recommended USAGE config: atomic batches, one fsync per batch (see services/api/proxy/usage.py).
            info = await nc.jetstream().stream_info("USAGE")
            info.config.allow_atomic = True
            await nc.jetstream().update_stream(info.config)
        tools = native.build(tmp / "native") if "native" in (args.client, args.engine) else {}
        engine_port = free_port()
        engine = stack.start_engine(args.engine, engine_port, tools.get("engine"))
        procs.append(engine)
        engine_url = f"http://127.0.0.1:{engine_port}"
        org, iid, raw_key = ids.new_id(), ids.new_id(), generate_api_key()
        await stack.feed(nc, org, iid, engine_url, raw_key)
        hb_task = asyncio.create_task(stack.heartbeats(nc, org, iid))
        headers = {"Authorization": f"Bearer {raw_key}", "Content-Type": "application/json"}
        reqfiles = {}
        if args.client == "native":
            for kind, body in (("unary", CHAT), ("stream", CHAT_STREAM)):
                reqfiles[kind] = tmp / f"request-{kind}-{os.getpid()}.http"
                reqfiles[kind].write_bytes(native.request_bytes("/v1/chat/completions", headers, body))

        async def measure(session, urls: list[str], kind: str, conc: int, seconds: float) -> dict:
            if args.client == "native":
                return await native.run_load(tools["loadgen"], reqfiles[kind], urls, conc=conc, warmup_s=0,
                                             seconds=seconds, stream=kind == "stream")
            fn = run_unary if kind == "unary" else run_stream
            return await fn(session, urls, headers, conc, seconds)

        targets: dict[str, tuple[list[str], list[subprocess.Popen]]] = {}
        for v in [v.strip() for v in args.variants.split(",") if v.strip()]:
            if v not in VARIANTS:
                raise SystemExit(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
            targets[v] = start_variant(v, nats.url, engine_url)
            procs.extend(targets[v][1])
            if args.pin:
                for p in targets[v][1]:
                    os.sched_setaffinity(p.pid, {1})  # every proxy process on CPU 1
        scenarios = [s for s in SCENARIOS if not args.scenarios or s[0].replace(" ", "").replace("=", "")
                     in args.scenarios.replace("-", "").split(",")]

        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=30)
        async with aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",)) as session:
            for name, (bases, _) in targets.items():
                if name != "direct":
                    for base in bases:
                        await stack.wait_proxy_ready(session, base, headers)
            results: dict[tuple[str, str], list[dict]] = {}
            for label, kind, conc in scenarios:
                for rnd in range(args.rounds):
                    for name, (bases, pprocs) in targets.items():
                        urls = [f"{b}/v1/chat/completions" for b in bases]
                        await measure(session, urls, kind, conc, min(0.5, args.seconds))  # warm-up
                        cpu0 = sum(stack.proc_cpu_s(p.pid) for p in pprocs)
                        engine0, client0 = stack.proc_cpu_s(engine.pid), _self_cpu_s()
                        nats0, busy0, t0 = stack.proc_cpu_s(nats.proc.pid), stack.machine_busy_s(), time.monotonic()
                        res = await measure(session, urls, kind, conc, args.seconds)
                        n = max(1, res["n"])
                        res["nats_us"] = (stack.proc_cpu_s(nats.proc.pid) - nats0) / n * 1e6
                        res["busy_cores"] = (stack.machine_busy_s() - busy0) / (time.monotonic() - t0)
                        if pprocs:
                            res["cpu_us"] = (sum(stack.proc_cpu_s(p.pid) for p in pprocs) - cpu0) / n * 1e6
                        res["engine_us"] = (stack.proc_cpu_s(engine.pid) - engine0) / n * 1e6
                        # The C client reports its own CPU; this process then only feeds heartbeats.
                        res["client_us"] = res.pop("client_cpu_us", None) or (_self_cpu_s() - client0) / n * 1e6
                        results.setdefault((label, name), []).append(res)
                        print(f"  {label:12s} {name:13s} round {rnd + 1}: " + ", ".join(
                            f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in res.items()),
                            file=sys.stderr, flush=True)
        report(results, targets, scenarios, args, load_before, os.getloadavg())
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


def ceiling_rps(run: dict) -> float:
    """The most req/s this box's cores allow at the CPU per request this run measured (every process of it).

    The 2-process scaling can only be judged against it: when a run reaches it, the machine, not
    the proxy, is the limit. Work charged to no process (softirq) is left out, so it is an upper bound.
    """
    per_request_s = (run.get("cpu_us", 0) + run["client_us"] + run["engine_us"] + run["nats_us"]) / 1e6
    return (os.cpu_count() or 1) / per_request_s if per_request_s > 0 else float("inf")


def report(results, targets, scenarios, args, load_before, load_after) -> None:
    print()
    print(f"# proxy benchmark — {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"conditions: {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
          f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}, client={args.client}, "
          f"engine={args.engine}, "
          f"{args.rounds} rounds x {args.seconds:.1f} s per target (+0.5 s warm-up), round-robin, "
          f"usage publishing={'per message' if args.per_message_usage else 'atomic batches'}, "
          f"NATS sync_interval=always; load client, engine, NATS and proxy share the machine"
          f"{' (pinned: client, NATS, engine on CPU 0; proxies on CPU 1)' if args.pin else ' (not pinned)'}; "
          f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)")
    print("figures: median (min–max) over rounds")
    print()
    print("| scenario | target | req/s | p50 ms | p99 ms | added p50 ms | proxy CPU µs/req | client / engine / NATS "
          "CPU µs/req | machine busy, cores | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, kind, _ in scenarios:
        direct = results.get((label, "direct"), [])
        for name in targets:
            runs = results.get((label, name), [])
            if not runs:
                continue
            key = "p50_ms" if kind == "unary" else "ttfc_p50_ms"
            p50 = [r[key] for r in runs]
            p99 = [r["p99_ms" if kind == "unary" else "ttfc_p99_ms"] for r in runs]
            added = "–"
            if name != "direct" and direct:
                added = med_range([a - d[key] for a, d in zip(p50, direct)])
            cpu = med_range([r["cpu_us"] for r in runs], "{:.0f}") if "cpu_us" in runs[0] else "–"
            others = " / ".join(f"{statistics.median(r[k] for r in runs):.0f}"
                                for k in ("client_us", "engine_us", "nats_us"))
            busy = med_range([r["busy_cores"] for r in runs], "{:.2f}")
            errs = sum(r["errors"] for r in runs)
            metric = "" if kind == "unary" else " (TTFC)"
            print(f"| {label}{metric} | {name} | {med_range([r['rps'] for r in runs], '{:.0f}')} | {med_range(p50)} "
                  f"| {med_range(p99)} | {added} | {cpu} | {others} | {busy} | {errs} |")
    ratios = []
    for label, kind, conc in scenarios:
        if conc == 1:
            continue
        base = results.get((label, "proxy"), [])
        direct = results.get((label, "direct"), [])
        for name in targets:
            runs = results.get((label, name), [])
            if name != "direct" and direct and runs:
                ratios.append((label, f"{name} / direct", [r["rps"] / d["rps"] for r, d in zip(runs, direct)]))
            if name in TWO and base and runs:
                ratios.append((label, f"{name} / proxy", [r["rps"] / b["rps"] for r, b in zip(runs, base)]))
                ratios.append((label, f"{name} / proxy: what {os.cpu_count()} cores allow",
                               [min(2.0, ceiling_rps(r) / b["rps"]) for r, b in zip(runs, base)]))
    if ratios:
        print()
        print("| scenario | throughput ratio (per round) | median (min–max) |")
        print("|---|---|---|")
        for label, what, values in ratios:
            print(f"| {label} | {what} | {med_range(values, '{:.2f}')} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--variants", default="direct,proxy,proxy2", help=f"comma list of: {', '.join(VARIANTS)}")
    parser.add_argument("--scenarios", default="", help="comma list of: unary-c1,unary-c32,stream-c1,stream-c64 "
                                                        "(default: all)")
    parser.add_argument("--engine", choices=("stub", "fake", "native"), default="stub",
                        help="stub: stub_engine.py; fake: the agent's fake engine; native: native/engine.c")
    parser.add_argument("--client", choices=("aiohttp", "native"), default="aiohttp",
                        help="aiohttp: loadgen.py in this process; native: native/loadgen.c")
    parser.add_argument("--per-message-usage", action="store_true",
                        help="keep the USAGE stream as in nats/streams (no atomic batches): one fsync per record")
    parser.add_argument("--pin", action="store_true",
                        help="load client, NATS and engine on CPU 0, every proxy process on CPU 1 (other "
                             "processes on the machine still float over both)")
    parser.add_argument("--workdir", default="/tmp/inventiv-bench-proxy")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(main_async(args))
    except ImportError:
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
