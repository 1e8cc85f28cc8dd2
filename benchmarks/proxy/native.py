"""The C load client and engine (``native/``): built once per source version with the system's C compiler.

Used when the harness must cost next to nothing, so that the cores go to the proxy processes
being measured (the 1-vs-2 process scaling figure). Both are benchmark tools, not product code.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

SRC = Path(__file__).resolve().with_name("native")


def build(workdir: Path) -> dict[str, Path]:
    """Compile ``engine.c`` and ``loadgen.c`` into ``workdir`` (cached by source hash); their paths."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit("--client native / --engine native need a C compiler (cc or gcc) on PATH")
    out: dict[str, Path] = {}
    for name in ("engine", "loadgen"):
        src = SRC / f"{name}.c"
        digest = hashlib.sha256(src.read_bytes()).hexdigest()[:12]
        exe = workdir / f"{name}-{digest}"
        if not exe.exists():
            workdir.mkdir(parents=True, exist_ok=True)
            subprocess.run([cc, "-O2", "-Wall", "-o", str(exe), str(src)], check=True)
        out[name] = exe
    return out


def request_bytes(path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items()),
             f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def run_load(loadgen: Path, reqfile: Path, urls: list[str], *, conc: int, warmup_s: float,
                   seconds: float, stream: bool) -> dict:
    """One measured run of the C client; the figures ``loadgen.run_unary``/``run_stream`` return, plus its CPU."""
    targets = [u.split("//", 1)[1].split("/", 1)[0] for u in urls]
    proc = await asyncio.create_subprocess_exec(
        str(loadgen), str(reqfile), str(conc), str(warmup_s), str(seconds), "1" if stream else "0", *targets,
        stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen exited with {proc.returncode}")
    return json.loads(out)
