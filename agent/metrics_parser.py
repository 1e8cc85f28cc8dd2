"""A small parser for the Prometheus text format, and the engine load read from vLLM's metrics.

Pure and total: whatever text the engine (or anything squatting on its port) returns, the
parser returns samples plus a count of lines it could not read. It never raises, so the
heartbeat loop cannot be crashed by a malformed or hostile /metrics page.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

import msgspec

from contracts.heartbeats import EngineLoad

# Real metric lines are well under 1 KiB; the cap bounds regex work on hostile input.
_MAX_LINE = 4096
_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?[ \t]+(\S+)(?:[ \t]+-?[0-9]+)?[ \t]*$")
_LABEL = re.compile(r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\\n]|\\.)*)"[ \t]*(?:,|$)')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
_ESCAPE = re.compile(r"\\.")

# vLLM renamed the KV-cache gauge in v0.10 (V1 engine); older servers still expose the GPU name.
KV_CACHE_NAMES = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
PROMPT_TOKENS = "vllm:prompt_tokens_total"
GENERATION_TOKENS = "vllm:generation_tokens_total"


class Sample(msgspec.Struct, frozen=True):
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float

    def label(self, key: str) -> str | None:
        for k, v in self.labels:
            if k == key:
                return v
        return None


class ParsedMetrics(msgspec.Struct, frozen=True):
    samples: tuple[Sample, ...]
    garbage_lines: int


def _parse_float(raw: str) -> float | None:
    # Python's float() also takes "1_0" and "infinity" variants Prometheus does not; close enough,
    # except underscores, which would turn garbage into numbers.
    if "_" in raw:
        return None
    try:
        return float(raw)
    except ValueError:
        return None


def _parse_labels(body: str) -> tuple[tuple[str, str], ...] | None:
    labels: list[tuple[str, str]] = []
    pos = 0
    body = body.rstrip()
    while pos < len(body):
        m = _LABEL.match(body, pos)
        if m is None or m.end() == pos:
            return None
        value = _ESCAPE.sub(lambda e: _ESCAPES.get(e.group(0), e.group(0)), m.group(2))
        labels.append((m.group(1), value))
        pos = m.end()
    return tuple(labels)


def parse_line(line: str) -> Sample | None:
    """One sample line, or None if it is not one (comments and blanks are the caller's business)."""
    if len(line) > _MAX_LINE:
        return None
    m = _LINE.match(line)
    if m is None:
        return None
    labels = _parse_labels(m.group(2)) if m.group(2) is not None else ()
    value = _parse_float(m.group(3))
    if labels is None or value is None:
        return None
    return Sample(m.group(1), labels, value)


def parse_prometheus_text(text: str) -> ParsedMetrics:
    samples: list[Sample] = []
    garbage = 0
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        sample = parse_line(line)
        if sample is None:
            garbage += 1
        else:
            samples.append(sample)
    return ParsedMetrics(tuple(samples), garbage)


def _series(parsed: ParsedMetrics, name: str, model: str | None) -> list[float]:
    matching = [s for s in parsed.samples if s.name == name and math.isfinite(s.value)]
    if model is not None:
        # One engine serves one model, but a server with several (or a renamed one) must not
        # mix in another model's load; fall back to all series when none carries our label.
        own = [s for s in matching if s.label("model_name") == model]
        if own:
            matching = own
    return [s.value for s in matching]


def _sum(values: Iterable[float]) -> float | None:
    values = list(values)
    return float(sum(values)) if values else None


def engine_load(parsed: ParsedMetrics, models: tuple[str, ...] = (), model: str | None = None) -> EngineLoad:
    """EngineLoad from vLLM metrics. Several series (data-parallel engines) are summed, except the
    KV-cache usage, which is the fullest engine's: routing cares about the first one to fill up."""
    kv: float | None = None
    for name in KV_CACHE_NAMES:
        values = _series(parsed, name, model)
        if values:
            kv = min(max(max(values), 0.0), 1.0)
            break
    return EngineLoad(
        requests_running=max(_sum(_series(parsed, RUNNING, model)) or 0.0, 0.0),
        requests_waiting=max(_sum(_series(parsed, WAITING, model)) or 0.0, 0.0),
        kv_cache_usage=kv,
        prompt_tokens_total=_sum(_series(parsed, PROMPT_TOKENS, model)),
        generation_tokens_total=_sum(_series(parsed, GENERATION_TOKENS, model)),
        models=models,
    )
