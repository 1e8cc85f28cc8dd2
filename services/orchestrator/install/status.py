"""Read where an install stands (pure): the status command run over SSH and the parse of its output.

The command (POSIX sh, read-only, one round trip) prints ``key=value`` lines from the state files,
whether the install lock is held, then ``--- install.log`` and the log's last bytes. The lock says
whether a run is alive: a generation without an exit code and without a lock holder is an install
that died (reboot, OOM kill) and is reported ``failed`` with ``exit_code`` None.
"""

from __future__ import annotations

import shlex

from .model import InstallStatus

LOG_TAIL_BYTES = 4000
LOG_SEPARATOR = "--- install.log"


def render_status_command(base_dir: str) -> str:
    state = shlex.quote(f"{base_dir}/state")
    log = shlex.quote(f"{base_dir}/logs/install.log")
    # flock -s -n: a shared, non-blocking probe; it fails only while a run holds the exclusive lock.
    return (
        f"d={state}; "
        'if [ -d "$d" ]; then '
        "for k in generation phase exit_code; do "
        'v=; if [ -f "$d/$k" ]; then v=$(head -c 64 "$d/$k"); fi; printf "%s=%s\\n" "$k" "$v"; done; '
        'if [ -f "$d/lock" ] && command -v flock >/dev/null 2>&1; then '
        'if flock -s -n "$d/lock" true; then echo locked=0; else echo locked=1; fi; '
        "else echo locked=0; fi; "
        "fi; "
        f"echo {shlex.quote(LOG_SEPARATOR)}; "
        f"tail -c {LOG_TAIL_BYTES} {log} 2>/dev/null || true"
    )


def _int_or_none(raw: str | None) -> int | None:
    if raw is None or not raw.strip():
        return None
    try:
        return int(raw.strip())
    except ValueError:
        return None


class UnreadableStatus(ValueError):
    """The status command's output is not what it prints (a login banner in the way, a truncated read)."""


def parse_status(output: str) -> InstallStatus:
    head, separator, tail = output.partition(LOG_SEPARATOR + "\n")
    if not separator:
        raise UnreadableStatus(f"no {LOG_SEPARATOR!r} line in the status output: {output[:200]!r}")
    fields: dict[str, str] = {}
    for line in head.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    log_tail = tail
    if len(log_tail.encode()) >= LOG_TAIL_BYTES and "\n" in log_tail:
        log_tail = log_tail.split("\n", 1)[1]  # start at a whole line
    generation = _int_or_none(fields.get("generation"))
    exit_code = _int_or_none(fields.get("exit_code"))
    phase = fields.get("phase") or None
    locked = fields.get("locked") == "1"
    if generation is None:
        state = "running" if locked else "not_started"
        return InstallStatus(state=state, phase=phase if locked else None, generation=None, exit_code=None,
                             log_tail=log_tail)
    if exit_code is not None:
        state = "succeeded" if exit_code == 0 else "failed"
    elif locked:
        state = "running"
    else:
        state = "failed"  # a generation was started, no run holds the lock, no exit code: it died
    return InstallStatus(state=state, phase=phase, generation=generation, exit_code=exit_code, log_tail=log_tail)
