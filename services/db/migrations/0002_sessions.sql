-- Server-side sessions: operational state, not domain facts, so not event-sourced.
-- The cookie holds a random token; only its SHA-256 is stored. Logout sets revoked_at.
CREATE TABLE user_sessions (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL,
    token_sha256 text NOT NULL UNIQUE,
    current_organization_id uuid,
    ip_address text,
    user_agent text,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX user_sessions_user_idx ON user_sessions (user_id);

-- Last heartbeat per worker: telemetry (expires from NATS), so kept out of the rebuildable read model.
CREATE TABLE worker_heartbeats (
    instance_id uuid PRIMARY KEY,
    org_id text NOT NULL,
    status text NOT NULL,
    model text NOT NULL,
    received_at timestamptz NOT NULL,
    stream_seq bigint NOT NULL,
    payload jsonb NOT NULL
);
