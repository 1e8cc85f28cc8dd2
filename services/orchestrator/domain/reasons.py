"""Reason codes carried by lifecycle events and rejections.

Upper-case, stable strings, named like the original system's (original-system.md §3.2) so
people who knew it read the action log the same way. Never rename one: they are stored.
"""

from __future__ import annotations

from typing import Final

# Why an instance is terminated.
USER_REQUEST: Final = "USER_REQUEST"

# Why a serving instance left ``ready`` (instance.unavailable / instance.draining).
WORKER_HEARTBEAT_TIMEOUT: Final = "WORKER_HEARTBEAT_TIMEOUT"
WORKER_UNHEALTHY: Final = "WORKER_UNHEALTHY"
WORKER_DRAINING: Final = "WORKER_DRAINING"

# Why the worker is installed again, or an instance replaced or terminated by the orchestrator.
UNAVAILABLE_TOO_LONG: Final = "UNAVAILABLE_TOO_LONG"
FAILED_SERVER_RELEASED: Final = "FAILED_SERVER_RELEASED"
PROVIDER_DELETED: Final = "PROVIDER_DELETED"
REPLACED: Final = "REPLACED"

# Why an instance failed.
INSTALL_FAILED: Final = "INSTALL_FAILED"
PROVIDER_CREATE_FAILED: Final = "PROVIDER_CREATE_FAILED"
STARTUP_TIMEOUT: Final = "STARTUP_TIMEOUT"
WORKER_FAILED: Final = "WORKER_FAILED"

# Why a command was rejected (recorded as ``command.rejected``, acked, never retried).
MALFORMED_COMMAND: Final = "MALFORMED_COMMAND"
UNKNOWN_INSTANCE: Final = "UNKNOWN_INSTANCE"
INSTANCE_ALREADY_EXISTS: Final = "INSTANCE_ALREADY_EXISTS"
INVALID_TRANSITION: Final = "INVALID_TRANSITION"
MISSING_MODEL: Final = "MISSING_MODEL"
INVALID_STARTUP_TIMEOUT: Final = "INVALID_STARTUP_TIMEOUT"
NOT_SUPPORTED: Final = "NOT_SUPPORTED"
MAX_ATTEMPTS_EXCEEDED: Final = "MAX_ATTEMPTS_EXCEEDED"


def termination_reason(reason: str) -> str:
    """A TerminateInstance ``reason`` (``"user_request"``) as a reason code (``"USER_REQUEST"``).

    Anything that is not a plain word becomes USER_REQUEST: the code lands in read models and
    log filters, so it must stay a small, predictable vocabulary.
    """
    code = reason.strip().upper().replace("-", "_")
    if not code or len(code) > 64 or not all(ch.isalnum() or ch == "_" for ch in code):
        return USER_REQUEST
    return code
