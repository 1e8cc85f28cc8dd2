"""Forward progress: is an engine with running requests still producing tokens? Pure.

A wedged engine (a stuck NCCL collective, a hung CUDA kernel, a deadlocked scheduler) keeps
answering ``/v1/models`` and ``/metrics`` while its requests never finish, so liveness probes
alone call it healthy. The signal here is the one that cannot lie: vLLM's
``vllm:generation_tokens_total`` counter. If requests are running and that counter has not
moved for ``stall_after_s``, the engine is stalled.

The monitor feeds every fresh ``/metrics`` reading into ``observe_progress`` with the mark it
returned last time. The clock restarts whenever the counter moves (up, or down after an
engine restart), whenever nothing is running, at the first reading that shows work after an
idle one (the work may have arrived just before it), and when the counter is missing (an
engine that does not report one cannot be judged, so it is never called stalled).
"""

from __future__ import annotations

import msgspec

# Long enough for the slowest legitimate silence: a single request prefilling a maximum-length
# prompt produces no generation token until its prefill ends (tens of seconds for a 128k-token
# prompt on a large model); short enough that a wedged worker stops receiving traffic within a
# minute. With several requests running, decode steps of the others move the counter anyway.
DEFAULT_STALL_AFTER_S = 60.0


class ProgressSample(msgspec.Struct, frozen=True, kw_only=True):
    requests_running: float
    generation_tokens_total: float | None


class ProgressMark(msgspec.Struct, frozen=True, kw_only=True):
    # The counter at the last reading, and when progress was last seen (monotonic seconds).
    generation_tokens_total: float | None
    progress_at: float
    stalled: bool = False
    # Whether requests were running at that reading.
    busy: bool = False

    def silent_for_s(self, now: float) -> float:
        return max(0.0, now - self.progress_at)


def observe_progress(previous: ProgressMark | None, sample: ProgressSample, now: float,
                     stall_after_s: float) -> ProgressMark:
    """The new mark after ``sample`` taken at ``now``. ``stall_after_s <= 0`` disables the check."""
    tokens = sample.generation_tokens_total
    busy = sample.requests_running > 0
    moved = previous is None or tokens != previous.generation_tokens_total
    if moved or not busy or not previous.busy or tokens is None or stall_after_s <= 0:
        return ProgressMark(generation_tokens_total=tokens, progress_at=now, busy=busy)
    # Readings may arrive out of order in time only through a bug; never let the clock run backwards.
    progress_at = min(previous.progress_at, now)
    return ProgressMark(generation_tokens_total=tokens, progress_at=progress_at, busy=True,
                        stalled=now - progress_at >= stall_after_s)
