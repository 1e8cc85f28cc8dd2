"""The log ring behind GET /logs (tail, since) and the size-rotated JSON-lines file."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from agent.logs import LogRing, RotatingJsonFile


def _event(ring: LogRing, stamp: str, name: str) -> None:
    ring(None, "info", {"event": name, "timestamp": stamp})


def test_tail_returns_the_newest_events_at_or_after_since():
    ring = LogRing(size=3)
    for i, stamp in enumerate(["2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z", "2026-01-01T00:00:03Z",
                               "2026-01-01T00:00:04Z"]):
        _event(ring, stamp, f"e{i}")
    assert ring.total == 4
    assert [e["event"] for e in ring.tail(10)] == ["e1", "e2", "e3"]  # the ring kept the last three
    assert [e["event"] for e in ring.tail(1)] == ["e3"]
    assert ring.tail(0) == []
    since = datetime(2026, 1, 1, 0, 0, 3, tzinfo=UTC)
    assert [e["event"] for e in ring.tail(10, since)] == ["e2", "e3"]
    assert ring.tail(10, datetime(2030, 1, 1, tzinfo=UTC)) == []


def test_events_without_a_readable_timestamp_are_left_out_of_since_queries():
    ring = LogRing()
    ring(None, "info", {"event": "odd", "timestamp": "yesterday"})
    ring(None, "info", {"event": "none"})
    assert ring.tail(10, datetime(2000, 1, 1, tzinfo=UTC)) == []
    assert len(ring.tail(10)) == 2


def test_the_file_sink_writes_json_lines_and_rotates_within_its_budget(tmp_path):
    path = tmp_path / "agent.jsonl"
    sink = RotatingJsonFile(str(path), max_bytes=64 * 1024, backups=2)
    for i in range(2000):
        out = sink(None, "info", {"event": "engine_output", "i": i, "line": "x" * 100, "exc": ValueError("v")})
        assert out["i"] == i  # passed on unchanged to the next processor
    sink.close()
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["agent.jsonl", "agent.jsonl.1", "agent.jsonl.2"]
    assert all(f.stat().st_size <= 64 * 1024 + 200 for f in files)
    newest = [json.loads(line) for line in path.read_text().splitlines()]
    assert newest[-1]["i"] == 1999 and newest[-1]["exc"] == "ValueError('v')"
    older = [json.loads(line)["i"] for line in (tmp_path / "agent.jsonl.1").read_text().splitlines()]
    assert older[-1] + 1 == newest[0]["i"]  # nothing lost at the rotation boundary
