"""Generation throughput of one real worker, direct vs through the control plane's proxy.

Starts the GPU test stack (``tests/gpu/stack.py``): an embedded NATS, ``inventiv-agent --engine
vllm`` serving a tiny random-weight Llama built locally (``tests/gpu/tiny_model.py``, no
download), and the OpenAI proxy fed through NATS as production feeds it. Then, for each
concurrency, round-robin over the targets: ``c`` clients stream chat completions of
``--max-tokens`` tokens (``ignore_eos``, so every answer has that length) for ``--seconds``.

Figures per target: generated tokens/s (completion tokens from each stream's final usage chunk /
wall time), time to first token p50, and the proxy's tokens/s relative to direct in the same round.
The tiny model makes the GPU fast and the hop comparatively expensive: the proxy's share is an
upper bound of what it costs a real model.

    .venv/bin/python benchmarks/gpu/bench_worker_tokens.py [--rounds 3] [--seconds 10] [--concurrency 1,16,64]
    .venv/bin/python benchmarks/gpu/bench_worker_tokens.py --engine fake   # the harness on CPU, no GPU

Writes the report to ``benchmarks/gpu/results.md`` (``--out``) as well as stdout. Without a GPU or
vLLM (and without ``--engine fake``) it prints why and exits 0, so ``run_all.py`` keeps going.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.gpu.stack import SERVED_NAME, GpuWorkerStack, gpu_present  # noqa: E402


def chat_body(max_tokens: int) -> bytes:
    return json.dumps({
        "model": SERVED_NAME, "max_tokens": max_tokens, "ignore_eos": True, "temperature": 0, "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "hello world please answer the benchmark question briefly"}],
    }).encode()


async def stream_once(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict) -> tuple[int, float]:
    """(completion tokens, seconds to the first content chunk) of one streamed completion."""
    t0 = time.perf_counter()
    first = float("nan")
    tokens = 0
    async with session.post(url, data=body, headers=headers) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{url}: HTTP {resp.status}: {(await resp.read())[:200]!r}")
        async for raw in resp.content:
            if not raw.startswith(b"data: {"):
                continue
            doc = json.loads(raw[6:])
            if first != first and doc.get("choices") and doc["choices"][0].get("delta", {}).get("content"):
                first = time.perf_counter() - t0
            if doc.get("usage"):
                tokens = doc["usage"]["completion_tokens"]
    return tokens, first


async def load(session, url: str, headers: dict, concurrency: int, seconds: float, max_tokens: int) -> dict:
    body = chat_body(max_tokens)
    tokens: list[int] = []
    ttft: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        while time.perf_counter() < deadline:
            n, first = await stream_once(session, url, body, headers)
            tokens.append(n)
            ttft.append(first)

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    firsts = sorted(x for x in ttft if x == x)
    return {"tokens_per_s": sum(tokens) / wall, "requests": len(tokens),
            "ttft_p50_ms": (firsts[len(firsts) // 2] * 1e3) if firsts else float("nan"),
            "short": sum(1 for n in tokens if n != max_tokens)}


def med(values: list[float], fmt: str = "{:.0f}") -> str:
    if not values:
        return "-"
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def conditions(args, engine: str) -> str:
    parts = [f"{os.cpu_count()} CPUs ({platform.machine()})", f"Python {platform.python_version()}"]
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        name = pynvml.nvmlDeviceGetName(handle)
        parts.append(f"GPU {name.decode() if isinstance(name, bytes) else name}, driver "
                     f"{pynvml.nvmlSystemGetDriverVersion()}")
        pynvml.nvmlShutdown()
    except Exception:
        parts.append("no GPU reading")
    if engine == "vllm":
        import torch
        import vllm

        parts.append(f"vLLM {vllm.__version__}, torch {torch.__version__}")
        parts.append("model: tiny random Llama (2 layers, hidden 256, bf16), max_model_len 512, max_num_seqs 64, "
                     "gpu_memory_utilization 0.3")
    else:
        parts.append("engine: the agent's CPU fake engine (harness check, not a GPU figure)")
    parts.append(f"{args.rounds} rounds x {args.seconds:.0f} s per target and concurrency (+ warm-up), round-robin, "
                 f"max_tokens {args.max_tokens} with ignore_eos, streamed; load client, NATS, proxy and engine "
                 "share the machine")
    return "; ".join(parts)


async def main_async(args) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="inventiv-bench-gpu-"))
    model_dir = None
    if args.engine == "vllm":
        from tests.gpu.tiny_model import build_tiny_llama

        model_dir = await asyncio.to_thread(build_tiny_llama, workdir / "tiny-llama")
    stack = GpuWorkerStack(workdir / "stack", model_dir, engine=args.engine)
    results: dict[tuple[int, str], list[dict]] = {}
    try:
        timeout = aiohttp.ClientTimeout(total=600)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            await stack.start()
            await stack.wait_ready(session)
            await stack.wait_routable(session)
            targets = {"direct": (stack.engine_url + "/v1/chat/completions", {}),
                       "proxy": (stack.proxy_url + "/v1/chat/completions", stack.auth)}
            for concurrency in args.concurrency:
                for rnd in range(args.rounds):
                    for name, (url, headers) in targets.items():
                        await load(session, url, headers, concurrency, min(2.0, args.seconds), args.max_tokens)
                        res = await load(session, url, headers, concurrency, args.seconds, args.max_tokens)
                        results.setdefault((concurrency, name), []).append(res)
                        print(f"  c={concurrency:<3} {name:6s} round {rnd + 1}: {res['tokens_per_s']:.0f} tok/s, "
                              f"ttft p50 {res['ttft_p50_ms']:.1f} ms, {res['requests']} requests", file=sys.stderr,
                              flush=True)
    finally:
        await stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    report = render(results, args)
    print(report)
    if args.out:
        Path(args.out).write_text(report)
        print(f"(written to {args.out})", file=sys.stderr)
    return 0


def render(results, args) -> str:
    lines = [f"# Worker throughput, direct vs proxy — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", "",
             f"conditions: {conditions(args, args.engine)}", "",
             "figures: median (min–max) over rounds", "",
             "| concurrency | target | tokens/s | proxy / direct | TTFT p50 ms | requests | short answers |",
             "|---|---|---|---|---|---|---|"]
    for concurrency in args.concurrency:
        direct = results.get((concurrency, "direct"), [])
        for name in ("direct", "proxy"):
            runs = results.get((concurrency, name), [])
            if not runs:
                continue
            ratio = "–"
            if name == "proxy" and direct:
                ratio = med([p["tokens_per_s"] / d["tokens_per_s"] for p, d in zip(runs, direct)], "{:.3f}")
            lines.append(f"| {concurrency} | {name} | {med([r['tokens_per_s'] for r in runs])} | {ratio} | "
                         f"{med([r['ttft_p50_ms'] for r in runs], '{:.1f}')} | {sum(r['requests'] for r in runs)} | "
                         f"{sum(r['short'] for r in runs)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=lambda raw: [int(x) for x in raw.split(",")], default=[1, 16, 64])
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--engine", choices=("vllm", "fake"), default="vllm")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results.md")),
                        help="where to write the report ('' for stdout only)")
    args = parser.parse_args()
    if args.engine == "vllm":
        import importlib.util

        missing = [m for m in ("vllm", "torch", "transformers") if importlib.util.find_spec(m) is None]
        if missing or not gpu_present():
            print(f"skipped: needs {'the ' + ', '.join(missing) + ' package(s)' if missing else 'an NVIDIA GPU'}"
                  " (or run with --engine fake to check the harness)")
            return
    raise SystemExit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
