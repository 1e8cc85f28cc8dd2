-- The rebuildable read model: every table here is a pure projection of the EVENTS stream.
-- `{schema}` is `rm` for the live tables and `rm_next` during a rebuild; the checkpoint lives
-- beside the rows so both swap together. Changing this file changes its hash, which makes the
-- projector rebuild on start.
--
-- Every column is a function of the events alone (timestamps come from the events, never
-- now()), so a rebuild compares equal to the live tables; `checkpoints.updated_at` and
-- `meta` are the exceptions and are left out of comparisons. `last_event_seq` on a row is the
-- stream sequence of the newest event that wrote it: writes are guarded by it, so replaying
-- an event changes nothing.

CREATE SCHEMA {schema};

CREATE TABLE {schema}.checkpoints (
    name text PRIMARY KEY,
    last_seq bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- What built this schema: the hash of this file and the projection code's version. A projector
-- only writes into a schema stamped with its own pair (an older replica never writes rows shaped
-- by old code into tables built by new code).
CREATE TABLE {schema}.meta (
    ddl_sha256 text NOT NULL,
    projection_version integer NOT NULL,
    built_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE {schema}.instances (
    id uuid PRIMARY KEY,
    org_id uuid NOT NULL,
    status text NOT NULL,
    progress_percent integer NOT NULL DEFAULT 0,
    provider_code text NOT NULL,
    region_code text NOT NULL,
    zone_code text NOT NULL,
    zone_id uuid NOT NULL,
    instance_type_code text NOT NULL,
    instance_type_id uuid NOT NULL,
    gpu_count integer NOT NULL,
    model_id uuid NOT NULL,
    model_name text NOT NULL,
    hourly_price_eur numeric(10, 4) NOT NULL,
    provider_server_id text,
    ip_address text,
    upstream_url text,
    agent_url text,
    install_phase text,
    error_code text,
    error_message text,
    deletion_reason text,
    is_archived boolean NOT NULL DEFAULT false,
    startup_deadline timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    boot_started_at timestamptz,
    ready_at timestamptz,
    terminated_at timestamptz,
    failed_at timestamptz,
    billing_started_at timestamptz,
    billing_stopped_at timestamptz,
    updated_at timestamptz NOT NULL,
    last_event_seq bigint NOT NULL
);
CREATE INDEX ON {schema}.instances (org_id, created_at DESC);
CREATE INDEX ON {schema}.instances (status);

-- One row per status change; `seq` is the stream sequence of the event that caused it.
CREATE TABLE {schema}.instance_state_history (
    seq bigint PRIMARY KEY,
    instance_id uuid NOT NULL,
    org_id uuid NOT NULL,
    from_status text,
    to_status text NOT NULL,
    reason text,
    created_at timestamptz NOT NULL
);
CREATE INDEX ON {schema}.instance_state_history (instance_id, seq);

-- One row per event (searchable audit of what happened), in the original's action-log shape.
CREATE TABLE {schema}.action_logs (
    seq bigint PRIMARY KEY,
    id uuid NOT NULL UNIQUE,                   -- the event id
    org_id text NOT NULL,
    instance_id uuid,
    action_type text NOT NULL,                 -- UPPER_SNAKE, e.g. PROVIDER_CREATE
    event_type text NOT NULL,                  -- the event's tag, e.g. instance.server_created
    component text NOT NULL,                   -- api | orchestrator | other system:<service> | projector
    status text NOT NULL CHECK (status IN ('success', 'failed', 'in_progress')),
    error_code text,
    error_message text,
    actor text NOT NULL,
    correlation_id text NOT NULL,
    causation_id text,
    instance_status_before text,
    instance_status_after text,
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL
);
CREATE INDEX ON {schema}.action_logs (org_id, seq DESC);
CREATE INDEX ON {schema}.action_logs (instance_id, seq DESC);
CREATE INDEX ON {schema}.action_logs (org_id, action_type, seq DESC);

CREATE TABLE {schema}.organizations (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    slug text NOT NULL UNIQUE,
    created_by_user_id uuid,
    created_at timestamptz NOT NULL,
    last_event_seq bigint NOT NULL DEFAULT 0
);

CREATE TABLE {schema}.users (
    id uuid PRIMARY KEY,
    email text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    is_admin boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL,
    last_event_seq bigint NOT NULL DEFAULT 0
);

CREATE TABLE {schema}.memberships (
    organization_id uuid NOT NULL,
    user_id uuid NOT NULL,
    role text NOT NULL CHECK (role IN ('owner', 'admin', 'manager', 'user')),
    created_at timestamptz NOT NULL,
    last_event_seq bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (organization_id, user_id)
);

CREATE TABLE {schema}.api_keys (
    id uuid PRIMARY KEY,
    org_id uuid NOT NULL,
    user_id uuid NOT NULL,
    name text NOT NULL,
    prefix text NOT NULL,
    key_hash text NOT NULL UNIQUE,
    scopes text[] NOT NULL,
    expires_at timestamptz,
    created_at timestamptz NOT NULL,
    revoked_at timestamptz,
    last_event_seq bigint NOT NULL DEFAULT 0
);
CREATE INDEX ON {schema}.api_keys (org_id);
