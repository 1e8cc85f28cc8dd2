"""The agent's logs on disk stay within a fixed budget: the rotated file counts bytes (multi-byte text
included), an oversized event is replaced, stderr is narrowed and capped when a file is set."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.logs import CappedStream, RotatingJsonFile
from agent.settings import ConfigError, parse_settings

REPO = Path(__file__).resolve().parents[3]
REQUIRED = {"INVENTIV_INSTANCE_ID": "i", "INVENTIV_ORG_ID": "o", "INVENTIV_MODEL": "m"}


def _files(directory: Path, name: str) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name == name or p.name.startswith(name + "."))


@settings(max_examples=40, deadline=None)
@given(lines=st.lists(st.text(max_size=3000), min_size=1, max_size=60),
       max_bytes=st.integers(4096, 20000), backups=st.integers(0, 3))
def test_no_file_ever_exceeds_max_bytes_and_the_kept_ones_end_with_the_newest_events(lines, max_bytes, backups):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "agent.log"
        sink = RotatingJsonFile(str(path), max_bytes, backups)
        for i, line in enumerate(lines):
            sink(None, "info", {"event": "engine_output", "i": i, "line": line})
        sink.close()
        files = _files(Path(tmp), "agent.log")
        assert len(files) <= backups + 1
        assert all(f.stat().st_size <= max_bytes for f in files)
        kept = [json.loads(line)["i"] for f in [*(Path(f"{path}.{n}") for n in range(backups, 0, -1)), path]
                if f.exists() for line in f.read_text(encoding="utf-8").split("\n") if line]  # "\n" ends a record
        assert kept and kept == list(range(kept[0], len(lines)))  # the newest, contiguous, nothing lost between


def test_sizes_are_bytes_not_characters(tmp_path):
    sink = RotatingJsonFile(str(tmp_path / "agent.log"), 4096, 1)
    for i in range(200):
        sink(None, "info", {"event": "engine_output", "i": i, "line": "日本語のテキスト" * 20})  # 3 bytes a char
    sink.close()
    assert all(f.stat().st_size <= 4096 for f in _files(tmp_path, "agent.log"))
    assert json.loads((tmp_path / "agent.log").read_text().splitlines()[-1])["i"] == 199


def test_an_event_larger_than_a_file_is_replaced_by_a_short_record(tmp_path):
    sink = RotatingJsonFile(str(tmp_path / "agent.log"), 4096, 0)
    out = sink(None, "info", {"event": "engine_output", "line": "x" * 10_000, "timestamp": "t", "level": "info"})
    assert out["line"] == "x" * 10_000  # the other processors still get the whole event
    sink.close()
    [record] = [json.loads(line) for line in (tmp_path / "agent.log").read_text().splitlines()]
    assert record["event"] == "log_event_too_large" and record["original_event"] == "engine_output"
    assert record["size_bytes"] > 10_000


def test_without_backups_the_file_is_emptied_instead(tmp_path):
    sink = RotatingJsonFile(str(tmp_path / "agent.log"), 4096, 0)
    for i in range(500):
        sink(None, "info", {"event": "e", "i": i})
    sink.close()
    assert [p.name for p in tmp_path.iterdir()] == ["agent.log"]
    assert json.loads((tmp_path / "agent.log").read_text().splitlines()[-1])["i"] == 499


def test_a_write_error_is_reported_once_and_the_agent_goes_on(tmp_path, capsys):
    sink = RotatingJsonFile(str(tmp_path / "missing-dir" / "agent.log"), 4096, 1)
    for _ in range(3):
        assert sink(None, "info", {"event": "e"}) == {"event": "e"}
    assert capsys.readouterr().err.count("cannot write the log file") == 1


class _Sink:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass


def test_capped_stream_passes_max_bytes_at_most_and_says_so_once():
    sink = _Sink()
    stream = CappedStream(sink, 1000, "capped: see the file")
    for i in range(100):
        stream.write(f"line {i} é\n")
    stream.write("x" * 5000)
    assert len(sink.text.encode()) <= 1000
    assert sink.text.startswith("line 0 é\n") and sink.text.count("capped: see the file") == 1
    assert sink.text.endswith("capped: see the file\n")


_AGENT_LOGGING = """
import logging, structlog, sys
from agent.logs import LogRing, RotatingJsonFile, configure_logging
sink = RotatingJsonFile(sys.argv[1], 4096, 1)
configure_logging("json", LogRing(), "info", sink, sys.argv[2] if len(sys.argv) > 2 else None)
log = structlog.get_logger("test")
for i in range(2000):
    log.info("engine_output", line=f"line {i}")
    if i % 100 == 0:
        log.warning("something_odd", i=i)
        logging.getLogger("nats").warning("library warning %d", i)
logging.getLogger("nats").warning("library warning, the last")
log.info("newest")
raise RuntimeError("a crash traceback goes to the capped stderr too")
"""


def _run_agent_logging(tmp_path: Path, *args: str) -> tuple[str, list[dict]]:
    proc = subprocess.run([sys.executable, "-c", _AGENT_LOGGING, str(tmp_path / "agent.log"), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 1
    events = [json.loads(line) for f in (tmp_path / "agent.log.1", tmp_path / "agent.log") if f.exists()
              for line in f.read_text().splitlines()]
    return proc.stderr, events


def test_with_a_file_stderr_keeps_warnings_only_within_the_cap_and_the_file_gets_everything(tmp_path):
    stderr, events = _run_agent_logging(tmp_path, "warning")
    assert len(stderr.encode()) <= 4096
    assert "engine_output" not in stderr and "something_odd" in stderr
    assert "stderr capped at 4096 bytes" in stderr  # 20 warnings and 20 library warnings do not fit
    assert events[-1]["event"] == "newest"
    assert any(e.get("logger") == "nats" and e["event"].startswith("library warning") for e in events)
    assert all(f.stat().st_size <= 4096 for f in _files(tmp_path, "agent.log"))


def test_without_a_stderr_level_stderr_still_gets_every_event_up_to_the_cap(tmp_path):
    stderr, _ = _run_agent_logging(tmp_path)
    assert stderr.startswith('{"line": "line 0"') or '"line 0"' in stderr.splitlines()[0]
    assert len(stderr.encode()) <= 4096


def test_the_stderr_level_and_the_smaller_rotation_size_are_settings():
    s = parse_settings([], {**REQUIRED, "INVENTIV_LOG_STDERR_LEVEL": "WARNING", "INVENTIV_LOG_FILE_MAX_BYTES": "4096"})
    assert (s.log_stderr_level, s.log_file_max_bytes) == ("warning", 4096)
    assert parse_settings([], REQUIRED).log_stderr_level is None
    with pytest.raises(ConfigError, match="INVENTIV_LOG_STDERR_LEVEL"):
        parse_settings([], {**REQUIRED, "INVENTIV_LOG_STDERR_LEVEL": "loud"})
    with pytest.raises(ConfigError, match="at least 4096"):
        parse_settings(["--log-file-max-bytes", "4095"], REQUIRED)
