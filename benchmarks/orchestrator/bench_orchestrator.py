"""The orchestrator with the mock provider: 1 replica and 3, side by side, on this machine.

For each replica count, on a fresh embedded nats-server (streams and consumers from ``nats/``,
``sync_interval: always``) and a fresh mock-provider data dir, it starts that many real
orchestrator processes (``stub_server_orchestrator.py``: ``inventiv orchestrator`` whose mock
servers are ``sleep`` processes, see there) and measures:

- **command → first event**: ``--latency-n`` ProvisionInstance commands published one at a time
  (the next once the previous one's first event arrived); the time from the start of the
  publish (PubAck included, as the API does it) to ``instance.requested`` arriving at a plain
  NATS subscriber. p50 / p95 / max.
- **provisions per second**: ``--burst-n`` ProvisionInstance commands published at once; the
  time from the first publish until *every* instance has ``instance.server_created`` (the
  provider created its server and the orchestrator recorded it, billing started, the check
  timer armed). Not ``ready``: that would measure agent boots, not the orchestrator. Also shown:
  the time until every instance had its first event, and the orchestrators' CPU per provision.
- **terminations per second**: then every instance is terminated at once, until all are
  ``instance.terminated`` (server processes stopped and confirmed gone).

Each figure is the median (min–max) over ``--rounds`` rounds; the replica counts take turns.

    .venv/bin/python benchmarks/orchestrator/bench_orchestrator.py [--replicas 1,3] [--latency-n 40] [--burst-n 100]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from contracts import codec, headers  # noqa: E402
from contracts import commands as cmd  # noqa: E402
from contracts.catalog import Placement  # noqa: E402
from contracts.ids import new_id  # noqa: E402
from services.orchestrator.bootstrap import stop_all_servers  # noqa: E402
from services.runtime import natsio  # noqa: E402
from services.runtime.embedded import EmbeddedNats, nats_server_binary  # noqa: E402

ORG = "bench"
CONCURRENCY = 16  # INVENTIV_ORCHESTRATOR_CONCURRENCY, the shipped default
PLACEMENT = Placement(
    provider_code="mock", region_code="local", zone_code="local-1", zone_id="z1", instance_type_code="MOCK-GPU-1",
    instance_type_id="t1", gpu_count=1, vram_per_gpu_gb=24, hourly_price_eur=Decimal("1.25"), model_id="m1",
    model_name="bench/model",
)
CLK_TCK = os.sysconf("SC_CLK_TCK")


class EventWatch:
    """When each (instance, event name) was first seen on ``evt.bench.instance.*.*`` (monotonic)."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], float] = {}
        self._changed = asyncio.Event()

    async def start(self, nc) -> None:
        await nc.subscribe(f"evt.{ORG}.instance.*.*", cb=self._on_message)

    async def _on_message(self, msg) -> None:
        _, _, _, instance, name = msg.subject.split(".")
        self.seen.setdefault((instance, name), time.monotonic())
        self._changed.set()

    async def wait(self, keys: set[tuple[str, str]], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not keys <= self.seen.keys():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = len(keys - self.seen.keys())
                raise TimeoutError(f"{missing} of {len(keys)} events not seen within {timeout_s}s")
            self._changed.clear()  # no await since the check above: no wake-up can be lost
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)


def provision() -> cmd.ProvisionInstance:
    command_id = new_id()
    return cmd.ProvisionInstance(
        id=command_id, org_id=ORG, actor="user:bench", correlation_id=command_id, causation_id=command_id,
        occurred_at=datetime.now(timezone.utc), instance_id=new_id(), placement=PLACEMENT, startup_timeout_s=3600,
    )


def terminate(instance_id: str) -> cmd.TerminateInstance:
    command_id = new_id()
    return cmd.TerminateInstance(id=command_id, org_id=ORG, actor="user:bench", correlation_id=command_id,
                                 causation_id=command_id, occurred_at=datetime.now(timezone.utc),
                                 instance_id=instance_id)


async def publish(js, command) -> None:
    await js.publish(codec.command_subject_for(command), codec.encode(command), stream="COMMANDS",
                     headers=headers.envelope_headers(command), timeout=30)


def cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def start_replicas(count: int, nats_url: str, work: Path) -> list[subprocess.Popen]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVENTIV_")}
    env.update(
        NATS_URL=nats_url, DATABASE_URL="postgresql://unused@127.0.0.1:1/unused",  # the orchestrator needs none
        INVENTIV_DATA_DIR=str(work / "data"), INVENTIV_LOG_FORMAT="json", INVENTIV_LOG_LEVEL="warning",
        INVENTIV_ORCHESTRATOR_METRICS_PORT="0", INVENTIV_ORCHESTRATOR_CONCURRENCY=str(CONCURRENCY),
    )
    procs = []
    for n in range(count):
        with open(work / f"orchestrator-{n}.log", "ab") as log:
            procs.append(subprocess.Popen([sys.executable, str(HERE / "stub_server_orchestrator.py")], env=env,
                                          cwd=str(ROOT), stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True))
    return procs


async def wait_replicas_pulling(js, count: int, timeout_s: float = 60.0) -> None:
    """Every replica has a pull request waiting on the command consumer: it is up."""
    deadline = time.monotonic() + timeout_s
    while (await js.consumer_info("COMMANDS", "orchestrator")).num_waiting < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} orchestrator replicas did not start within {timeout_s}s")
        await asyncio.sleep(0.05)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def measure(replicas: int, latency_n: int, burst_n: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"inventiv-bench-orch-{replicas}-"))
    server = EmbeddedNats(work / "nats").start()
    procs: list[subprocess.Popen] = []
    nc = await natsio.connect(server.url, name="bench")
    try:
        js = nc.jetstream()
        await natsio.apply_nats_config(js)
        watch = EventWatch()
        await watch.start(nc)
        procs = start_replicas(replicas, server.url, work)
        await wait_replicas_pulling(js, replicas)

        latencies, pubacks, instances = [], [], []
        for _ in range(latency_n):
            command = provision()
            instances.append(command.instance_id)
            started = time.monotonic()
            await publish(js, command)
            pubacks.append(time.monotonic() - started)
            await watch.wait({(command.instance_id, "requested")}, 30)
            latencies.append(watch.seen[(command.instance_id, "requested")] - started)

        burst = [provision() for _ in range(burst_n)]
        instances += [c.instance_id for c in burst]
        cpu_before = sum(cpu_s(p.pid) for p in procs)
        started = time.monotonic()
        await asyncio.gather(*(publish(js, c) for c in burst))
        await watch.wait({(c.instance_id, "server_created") for c in burst}, 600)
        cpu_burst = sum(cpu_s(p.pid) for p in procs) - cpu_before
        all_created = max(watch.seen[(c.instance_id, "server_created")] for c in burst) - started
        all_requested = max(watch.seen[(c.instance_id, "requested")] for c in burst) - started

        started = time.monotonic()
        await asyncio.gather(*(publish(js, terminate(i)) for i in instances))
        await watch.wait({(i, "terminated") for i in instances}, 600)
        all_terminated = max(watch.seen[(i, "terminated")] for i in instances) - started
        return {
            "replicas": replicas,
            "latency_ms": [x * 1000 for x in latencies],
            "puback_ms": [x * 1000 for x in pubacks],
            "burst_requested_s": all_requested,
            "burst_created_s": all_created,
            "provisions_per_s": burst_n / all_created,
            "cpu_ms_per_provision": cpu_burst * 1000 / burst_n,
            "terminations_per_s": len(instances) / all_terminated,
            "terminated": len(instances),
        }
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        stop_all_servers(work / "data", grace_s=2.0)
        await nc.close()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def conditions(args, load_before: float) -> list[str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "?")
    nats_version = subprocess.run([nats_server_binary(), "--version"], capture_output=True, text=True).stdout.strip()
    return [
        f"date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores ({cpu}); "
        f"load average (1 min) before: {load_before:.2f}, after: {os.getloadavg()[0]:.2f}",
        f"Python {platform.python_version()}; {nats_version}; one embedded nats-server, sync_interval: always",
        f"orchestrator: INVENTIV_ORCHESTRATOR_CONCURRENCY={CONCURRENCY}, provider concurrency 8 (shipped defaults), "
        "ack wait 30 s (nats/consumers)",
        "mock provider: servers are `sleep` processes (no agent, no heartbeats: the heartbeat interval plays no part; "
        "instances never get ready, their check timers keep firing); one ledger file under a file lock shared by "
        "all replicas",
        f"latency: {args.latency_n} provisions one at a time; burst: {args.burst_n} provisions published at once",
    ]


def med_range(values: list[float], fmt: str = "{:.1f}") -> str:
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"


FIGURES = (  # column, how one round's result gives it, format
    ("cmd→1st event p50 ms", lambda r: statistics.median(r["latency_ms"]), "{:.1f}"),
    ("p95 ms", lambda r: pct(r["latency_ms"], 0.95), "{:.1f}"),
    ("PubAck p50 ms", lambda r: statistics.median(r["puback_ms"]), "{:.1f}"),
    ("burst: all requested s", lambda r: r["burst_requested_s"], "{:.2f}"),
    ("all server_created s", lambda r: r["burst_created_s"], "{:.2f}"),
    ("provisions/s", lambda r: r["provisions_per_s"], "{:.1f}"),
    ("orch CPU ms/provision", lambda r: r["cpu_ms_per_provision"], "{:.1f}"),
    ("terminations/s", lambda r: r["terminations_per_s"], "{:.1f}"),
)


def report(results: dict[int, list[dict]], args, load_before: float) -> None:
    print("\n".join(conditions(args, load_before)))
    print(f"each figure: median (min–max) over {args.rounds} round(s), replica counts measured in turn\n")
    head = ("replicas",) + tuple(name for name, _, _ in FIGURES)
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for replicas, rounds in results.items():
        row = [str(replicas)] + [med_range([get(r) for r in rounds], fmt) for _, get, fmt in FIGURES]
        print("| " + " | ".join(row) + " |")
    counts = list(results)
    base = statistics.median(r["provisions_per_s"] for r in results[counts[0]])
    for replicas in counts[1:]:
        ratio = statistics.median(r["provisions_per_s"] for r in results[replicas]) / base
        print(f"\n{replicas} replicas vs {counts[0]}: provisions/s x{ratio:.2f} (medians)")


async def main_async(args) -> int:
    load_before = os.getloadavg()[0]
    counts = [int(x) for x in args.replicas.split(",")]
    results: dict[int, list[dict]] = {n: [] for n in counts}
    for round_no in range(1, args.rounds + 1):
        for replicas in counts:
            print(f"round {round_no}/{args.rounds}: {replicas} replica(s)...", file=sys.stderr, flush=True)
            results[replicas].append(await measure(replicas, args.latency_n, args.burst_n))
    report(results, args, load_before)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", default="1,3", help="orchestrator process counts, compared side by side")
    parser.add_argument("--latency-n", type=int, default=40)
    parser.add_argument("--burst-n", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
