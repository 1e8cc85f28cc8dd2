"""Named crash points for the fault tests, off unless ``INVENTIV_FAILPOINTS`` names them.

``INVENTIV_FAILPOINTS="after_provider_create"`` (comma-separated) makes the process SIGKILL
itself the first time it reaches that point: no clean-up, no flush, exactly what a power cut
or an OOM kill does. The points sit where a crash is most dangerous:

- ``before_provider_create``: decided to create a server, nothing created yet;
- ``after_provider_create``: the provider created the server, our event is not appended;
- ``before_ack``: the events are appended, the command message is not acknowledged.

Read once at import; in production the variable is unset and ``hit`` is one set lookup.
"""

from __future__ import annotations

import os
import signal

POINTS = frozenset({"before_provider_create", "after_provider_create", "before_ack"})


def _parse(raw: str) -> frozenset[str]:
    names = frozenset(part.strip() for part in raw.split(",") if part.strip())
    unknown = names - POINTS
    if unknown:
        raise SystemExit(f"inventiv: unknown INVENTIV_FAILPOINTS {sorted(unknown)}; known: {sorted(POINTS)}")
    return names


_ACTIVE = _parse(os.environ.get("INVENTIV_FAILPOINTS", ""))


def hit(name: str) -> None:
    if name in _ACTIVE:
        os.kill(os.getpid(), signal.SIGKILL)
