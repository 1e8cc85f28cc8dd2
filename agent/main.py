"""``inventiv-agent``: parse settings, check the machine, then run until SIGTERM/SIGINT/SIGHUP.

Lifecycle:
  start   HTTP endpoints first (so probes answer at once), then the engine, its monitor, the
          NATS connection (background, never awaited) and the heartbeat loop.
  run     until a stop signal. An engine the supervisor gave up on does not stop the agent:
          it keeps heartbeating ``failed`` so the control plane can act.
  drain   on the first signal: status ``draining`` (heartbeat sent at once), wait up to
          ``drain_timeout_s`` for the engine to report no running/waiting requests (a second
          signal skips the wait), then SIGTERM the engine, SIGKILL after ``stop_grace_s``,
          publish a last heartbeat, flush NATS, exit 0.
  crash   any unexpected error: kill the engine, exit 1 (the service manager restarts us).

Exit codes: 0 after a requested stop, 1 on an internal error, 2 on a configuration error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

# Only light imports before the configuration is validated: a bad config fails fast, and
# nothing (no event loop, no engine, no socket other than the preflight's) has started.
from .preflight import preflight
from .settings import ConfigError, parse_settings


def main(argv: Sequence[str] | None = None) -> None:
    try:
        settings = parse_settings(sys.argv[1:] if argv is None else argv, os.environ)
        sock = preflight(settings)
    except ConfigError as exc:
        print(f"inventiv-agent: config error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    import asyncio

    from .app import run
    from .logs import LogRing, RotatingJsonFile, configure_logging

    ring = LogRing()
    file_sink = None
    if settings.log_file:
        file_sink = RotatingJsonFile(settings.log_file, settings.log_file_max_bytes, settings.log_file_backups)
    configure_logging(settings.log_format, ring, settings.log_level, file_sink, settings.log_stderr_level)
    raise SystemExit(asyncio.run(run(settings, sock, ring)))


if __name__ == "__main__":
    main()
