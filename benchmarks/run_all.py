"""Run every benchmark script (`benchmarks/*/bench_*.py`) in turn; each prints its own figures and conditions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    scripts = sorted(HERE.glob("*/bench_*.py"))
    if not scripts:
        print("no benchmarks found")
        return 1
    failed = 0
    for script in scripts:
        print(f"\n=== {script.relative_to(HERE.parent)}", flush=True)
        result = subprocess.run([sys.executable, str(script)], cwd=HERE.parent)
        failed += result.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
