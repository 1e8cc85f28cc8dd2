"""``inventiv orchestrator`` whose mock servers are ``sleep`` processes instead of agents.

For the benchmark only. The mock provider is unchanged (ledger under a file lock, look-up by
tag, one real process spawned per server, killed on delete); only the program it starts is a
``sleep`` instead of ``python -m agent.main --engine fake``, so that measuring the orchestrator
with a hundred servers does not measure a hundred Python interpreters booting on the same cores.
Those servers never heartbeat: the instances never get ready (their check timers keep running).

    python benchmarks/orchestrator/stub_server_orchestrator.py   # same environment as `inventiv orchestrator`
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from services.orchestrator.adapters import mock_compute  # noqa: E402

STUB_SERVER = ["sleep", "86400"]


def main() -> None:
    mock_compute.default_agent_command = lambda: list(STUB_SERVER)
    from services.orchestrator.main import main as orchestrator_main

    orchestrator_main()


if __name__ == "__main__":
    main()
