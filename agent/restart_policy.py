"""When to restart a crashed engine, and when to give up. Pure: the supervisor supplies the facts.

Exponential backoff, capped. A run that lasted ``stable_after_s`` counts as healthy, so a worker
that crashes once a day is restarted forever, while one that crash-loops at boot gives up after
``max_restarts`` attempts and reports ``failed`` (the orchestrator then decides what to do).
"""

from __future__ import annotations

import msgspec


class RestartPolicy(msgspec.Struct, frozen=True, kw_only=True):
    base_s: float = 1.0
    factor: float = 2.0
    cap_s: float = 60.0
    max_restarts: int = 5
    stable_after_s: float = 300.0


class RestartDecision(msgspec.Struct, frozen=True, kw_only=True):
    give_up: bool
    delay_s: float
    # Failures in a row, including this one; the supervisor passes it back next time.
    consecutive_failures: int


def backoff_delay_s(policy: RestartPolicy, failures: int) -> float:
    """Delay before restart number ``failures`` (1-based): base, base*factor, ... capped at cap_s."""
    if failures <= 0 or policy.base_s <= 0:
        return 0.0
    # Bound the exponent so a huge failure count cannot overflow the float.
    exponent = min(failures - 1, 64)
    return min(policy.cap_s, policy.base_s * policy.factor**exponent)


def decide_restart(policy: RestartPolicy, consecutive_failures: int, ran_for_s: float) -> RestartDecision:
    """The engine just exited after running ``ran_for_s``; ``consecutive_failures`` exits came before it."""
    previous = 0 if ran_for_s >= policy.stable_after_s else max(consecutive_failures, 0)
    failures = previous + 1
    if failures > policy.max_restarts:
        return RestartDecision(give_up=True, delay_s=0.0, consecutive_failures=failures)
    return RestartDecision(give_up=False, delay_s=backoff_delay_s(policy, failures), consecutive_failures=failures)
