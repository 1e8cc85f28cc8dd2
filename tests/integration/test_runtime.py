"""The shared runtime against real servers: stream config, optimistic concurrency, migrations."""

from __future__ import annotations

from datetime import datetime, timezone

import asyncpg
import pytest

from contracts import ids
from contracts.events import ApiKeyCreated, ApiKeyRevoked
from services.db.migrate import MigrationError, discover, migrate
from services.runtime import natsio
from services.runtime.eventstore import ConcurrencyConflict, JetStreamEventStore


def _key_event(key_id: str, org: str, cls=ApiKeyCreated, **extra):
    base = dict(id=ids.new_id(), org_id=org, actor="system:test", correlation_id="c", causation_id="c",
                occurred_at=datetime.now(timezone.utc), key_id=key_id)
    if cls is ApiKeyCreated:
        base.update(name="k", prefix="sk-inv-abc", key_hash="h" * 64, user_id=ids.new_id())
    base.update(extra)
    return cls(**base)


async def test_apply_is_idempotent_and_streams_match_files(nats_client):
    js = nats_client.jetstream()
    again = await natsio.apply_nats_config(js)
    assert all("updated" in line or "applied" in line for line in again)
    info = await js.stream_info("EVENTS")
    assert info.config.deny_delete and info.config.deny_purge
    assert getattr(info.config.discard, "value", info.config.discard) == "new"


async def test_append_with_stale_expected_sequence_is_refused(nats_client):
    store = JetStreamEventStore(nats_client.jetstream())
    org, key = ids.new_id(), ids.new_id()
    first = await store.append(_key_event(key, org), expected_last_seq=0)
    with pytest.raises(ConcurrencyConflict):
        await store.append(_key_event(key, org, ApiKeyRevoked), expected_last_seq=0)
    second = await store.append(_key_event(key, org, ApiKeyRevoked), expected_last_seq=first)
    loaded = await store.load(f"evt.{org}.api_key.{key}.*")
    assert [e.seq for e in loaded] == [first, second]
    assert isinstance(loaded[1].event, ApiKeyRevoked)


async def test_duplicate_message_id_is_stored_once(nats_client):
    store = JetStreamEventStore(nats_client.jetstream())
    event = _key_event(ids.new_id(), ids.new_id())
    seq1 = await store.append(event, expected_last_seq=None)
    seq2 = await store.append(event, expected_last_seq=None)
    assert seq1 == seq2


async def test_migrations_are_recorded_and_reapplying_changes_nothing(database_url):
    conn = await asyncpg.connect(database_url)
    try:
        assert await migrate(conn) == []
        count = await conn.fetchval("SELECT count(*) FROM schema_migrations")
        assert count == len(discover())
    finally:
        await conn.close()


async def test_a_changed_applied_migration_is_refused(database_url, tmp_path):
    for version, name, sql, _ in discover():
        (tmp_path / f"{version:04d}_{name}.sql").write_text(sql + ("\n-- edited" if version == 1 else ""))
    conn = await asyncpg.connect(database_url)
    try:
        with pytest.raises(MigrationError):
            await migrate(conn, tmp_path)
    finally:
        await conn.close()


def test_embedded_nats_retries_on_another_port_when_its_port_was_taken_in_between(tmp_path, monkeypatch):
    """free_port() then bind is a race: another process may take the port in between."""
    import socket

    from services.runtime import embedded

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))  # bound, not listening: connecting is refused, binding fails
    taken = squatter.getsockname()[1]
    ports = [taken]
    real = embedded.free_port
    monkeypatch.setattr(embedded, "free_port", lambda host="127.0.0.1": ports.pop(0) if ports else real(host))
    server = embedded.EmbeddedNats(tmp_path / "nats").start()
    try:
        assert server.port != taken and server.proc.poll() is None
    finally:
        server.stop()
        squatter.close()


def test_embedded_postgres_retries_on_another_port_when_its_port_was_taken_in_between(tmp_path, monkeypatch):
    """The squatter LISTENS: a TCP connect succeeds there, so readiness must come from our own postmaster."""
    import socket

    from services.runtime import embedded

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    ports = [taken]
    real = embedded.free_port
    monkeypatch.setattr(embedded, "free_port", lambda host="127.0.0.1": ports.pop(0) if ports else real(host))
    server = embedded.EmbeddedPostgres(tmp_path / "pg", fast_unsafe=True).start()
    try:
        assert server.port != taken and server.proc.poll() is None
    finally:
        server.stop()
        squatter.close()
