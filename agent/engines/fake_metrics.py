"""The fake engine's counters, its vLLM-named /metrics page, and the test script that can
override them (``POST /fake/control`` when the engine runs with ``--control-routes``).

A real engine misbehaves in ways a test must be able to reproduce on demand: it hangs with
requests in flight (the token counter stops), reports odd load, or serves garbage on /metrics.
"""

from __future__ import annotations

import asyncio

import msgspec


class EngineCounters:
    """What /metrics reports: live state of this process, named like vLLM's."""

    def __init__(self, max_num_seqs: int, kv_capacity_tokens: int) -> None:
        self.running = 0
        self.waiting = 0
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0
        self.requests_total = 0
        # Tokens reserved by running requests (prompt + max_tokens), against a notional KV cache:
        # gives kv_cache_usage_perc a value that moves with load, like the real gauge.
        self.kv_tokens = 0
        self.kv_capacity_tokens = kv_capacity_tokens
        self.slots = asyncio.Semaphore(max_num_seqs)


class ScriptedMetrics(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Values /metrics reports instead of the live counters; a field left None stays live."""

    running: float | None = None
    waiting: float | None = None
    kv_cache_usage: float | None = None
    prompt_tokens_total: float | None = None
    generation_tokens_total: float | None = None


class FakeControl(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Body of ``POST /fake/control``; fields left out keep their current setting.

    - ``hang``: true pauses generation before the next token (requests stay running and the
      token counter stops: a wedged engine); false lets them continue.
    - ``metrics``: scripted /metrics values (``ScriptedMetrics``); null goes back to live counters.
    - ``metrics_extra``: raw text appended to /metrics (e.g. garbage lines); "" for none.
    """

    hang: bool | None = None
    metrics: ScriptedMetrics | None | msgspec.UnsetType = msgspec.UNSET
    metrics_extra: str | None = None


class FakeScript:
    """The current test script: what /metrics overrides, and whether generation is paused."""

    def __init__(self) -> None:
        self.scripted: ScriptedMetrics | None = None
        self.metrics_extra = ""
        # Cleared while hanging; generation waits on it before every token it releases.
        self._flowing = asyncio.Event()
        self._flowing.set()

    @property
    def hanging(self) -> bool:
        return not self._flowing.is_set()

    def apply(self, change: FakeControl) -> None:
        if change.hang is True:
            self._flowing.clear()
        elif change.hang is False:
            self._flowing.set()
        if change.metrics is not msgspec.UNSET:
            self.scripted = change.metrics
        if change.metrics_extra is not None:
            self.metrics_extra = change.metrics_extra

    async def gate(self) -> None:
        """Returns at once unless hanging; then when the hang is lifted."""
        if not self._flowing.is_set():
            await self._flowing.wait()


_GAUGE, _COUNTER = "gauge", "counter"
_SERIES = (
    ("vllm:num_requests_running", _GAUGE, "Number of requests in model execution batches.", "running"),
    ("vllm:num_requests_waiting", _GAUGE, "Number of requests waiting to be processed.", "waiting"),
    ("vllm:kv_cache_usage_perc", _GAUGE, "KV-cache usage. 1 means 100 percent usage.", "kv_cache_usage"),
    ("vllm:prompt_tokens_total", _COUNTER, "Number of prefill tokens processed.", "prompt_tokens_total"),
    ("vllm:generation_tokens_total", _COUNTER, "Number of generation tokens processed.", "generation_tokens_total"),
)


def render_metrics(c: EngineCounters, model_label: str, script: FakeScript) -> str:
    """Prometheus text in vLLM's names; ``model_label`` is already escaped for a label value."""
    kv = min(c.kv_tokens / c.kv_capacity_tokens, 1.0) if c.kv_capacity_tokens else 0.0
    values = {"running": float(c.running), "waiting": float(c.waiting), "kv_cache_usage": kv,
              "prompt_tokens_total": float(c.prompt_tokens_total),
              "generation_tokens_total": float(c.generation_tokens_total)}
    if script.scripted is not None:
        values.update({k: v for k, v in msgspec.structs.asdict(script.scripted).items() if v is not None})
    label = f'{{model_name="{model_label}"}}'
    lines = []
    for name, kind, help_text, key in _SERIES:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name}{label} {float(values[key])}"]
    lines += ["# HELP vllm:request_success_total Count of successfully processed requests.",
              "# TYPE vllm:request_success_total counter",
              f"vllm:request_success_total{label} {float(c.requests_total)}"]
    return "\n".join(lines) + "\n" + script.metrics_extra
