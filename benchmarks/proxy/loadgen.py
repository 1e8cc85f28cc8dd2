"""The load client of the proxy benchmark: aiohttp on uvloop, N workers sending back to back.

Each worker keeps its own keep-alive connection(s). With several base URLs (two proxy processes
on two ports) worker ``i`` uses ``urls[i % len(urls)]``: the client spreads connections evenly,
as an L4 load balancer would.
"""

from __future__ import annotations

import asyncio
import time

CHAT = b'{"model":"bench","messages":[{"role":"user","content":"Say hello to the benchmark, briefly."}],"max_tokens":16}'
# 64 tokens: the stub engine always streams 64 chunks; the fake engine streams max_tokens of them.
CHAT_STREAM = CHAT.replace(b'"max_tokens":16', b'"max_tokens":64')[:-1] + b',"stream":true}'


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def run_unary(session, urls: list[str], headers, conc: int, seconds: float) -> dict:
    lat: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(url: str):
        nonlocal errors
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            async with session.post(url, data=CHAT, headers=headers) as r:
                await r.read()
                if r.status != 200:
                    errors += 1
            lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(urls[i % len(urls)]) for i in range(conc)))
    wall = time.perf_counter() - t0
    return {"n": len(lat), "rps": len(lat) / wall, "p50_ms": pct(lat, 0.5) * 1e3, "p99_ms": pct(lat, 0.99) * 1e3,
            "errors": errors}


async def run_stream(session, urls: list[str], headers, conc: int, seconds: float) -> dict:
    ttfc: list[float] = []
    total: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(url: str):
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
    await asyncio.gather(*(worker(urls[i % len(urls)]) for i in range(conc)))
    wall = time.perf_counter() - t0
    return {"n": len(total), "rps": len(total) / wall, "ttfc_p50_ms": pct(ttfc, 0.5) * 1e3,
            "ttfc_p99_ms": pct(ttfc, 0.99) * 1e3, "total_p50_ms": pct(total, 0.5) * 1e3, "errors": errors}
