"""The test stub engine (``stub_engine.StubEngine``) as a process of its own, to be killed mid-request.

    python -m tests.integration.proxy.engine_process --port 8001 --model m1 --tokens 20 --delay 0.05
"""

from __future__ import annotations

import argparse
import asyncio

from .stub_engine import StubEngine


async def serve(port: int, model: str, tokens: int, delay_s: float, unary_delay_s: float) -> None:
    engine = StubEngine(model, tokens=tokens, delay_s=delay_s, unary_delay_s=unary_delay_s)
    engine.port = port
    await engine.start()
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--tokens", type=int, default=8)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between streamed events")
    parser.add_argument("--unary-delay", type=float, default=0.0, help="seconds before a non-streamed answer")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.model, args.tokens, args.delay, args.unary_delay))


if __name__ == "__main__":
    main()
