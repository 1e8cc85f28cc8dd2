"""`inventiv up`'s engine key secret: the environment's, else one generated once per data dir (0600)."""

from __future__ import annotations

import stat

import pytest

from services.runtime.engine_keys import SECRET_ENV, decode_secret, generate_secret
from services.stack.engine_key_secret import SECRET_FILE, ensure_engine_key_secret


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generated_once_per_data_dir_private_and_stable(tmp_path):
    first = ensure_engine_key_secret(tmp_path, {})
    path = tmp_path / SECRET_FILE
    assert mode(path) == 0o600 and path.read_text().strip() == first
    assert len(decode_secret(first)) >= 32
    assert ensure_engine_key_secret(tmp_path, {}) == first  # a restart keeps the running workers' keys
    other = tmp_path / "other"
    other.mkdir()
    assert ensure_engine_key_secret(other, {}) != first


def test_the_environment_wins_and_nothing_is_written(tmp_path):
    raw = generate_secret()
    assert ensure_engine_key_secret(tmp_path, {SECRET_ENV: raw}) == raw
    assert not (tmp_path / SECRET_FILE).exists()


def test_a_weak_secret_stops_the_start_without_showing_it(tmp_path):
    with pytest.raises(SystemExit) as stopped:
        ensure_engine_key_secret(tmp_path, {SECRET_ENV: "hunter2hunter2"})
    assert SECRET_ENV in str(stopped.value) and "hunter2" not in str(stopped.value)
    (tmp_path / SECRET_FILE).write_text("aa" * 40)
    with pytest.raises(SystemExit, match="does not look random"):
        ensure_engine_key_secret(tmp_path, {})


def test_a_secret_file_readable_by_others_is_closed_before_use(tmp_path):
    raw = generate_secret()
    path = tmp_path / SECRET_FILE
    path.write_text(raw + "\n")
    path.chmod(0o644)
    assert ensure_engine_key_secret(tmp_path, {}) == raw
    assert mode(path) == 0o600
