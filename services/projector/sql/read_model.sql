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

-- What each provider offers per zone (server types, prices, stock), from catalog syncs; newest wins.
CREATE TABLE {schema}.provider_offers (
    provider_code text NOT NULL,
    zone_code text NOT NULL,
    offers jsonb NOT NULL,
    observed_at timestamptz NOT NULL,
    last_event_seq bigint NOT NULL,
    PRIMARY KEY (provider_code, zone_code)
);

-- --- identity (owned by the identity projection, services/projector/projections/identity*.py) ---
-- Removals are marked, not deleted (removed_at, deleted_at, revoked_at): the audit keeps its
-- subjects, and a later event (a re-added member, a re-created account) simply overwrites the row.

CREATE TABLE {schema}.organizations (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    slug text NOT NULL UNIQUE,
    created_by_user_id uuid,
    created_at timestamptz NOT NULL,
    updated_at timestamptz,
    last_event_seq bigint NOT NULL DEFAULT 0
);

-- The id is derived from the e-mail address (one aggregate per address), so one address is one row.
CREATE TABLE {schema}.users (
    id uuid PRIMARY KEY,
    email text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    is_admin boolean NOT NULL DEFAULT false,
    first_name text NOT NULL DEFAULT '',
    last_name text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL,
    updated_at timestamptz,
    password_changed_at timestamptz,
    deleted_at timestamptz,
    last_event_seq bigint NOT NULL DEFAULT 0
);

CREATE TABLE {schema}.memberships (
    organization_id uuid NOT NULL,
    user_id uuid NOT NULL,
    role text NOT NULL CHECK (role IN ('owner', 'admin', 'manager', 'user')),
    invitation_id uuid,
    created_at timestamptz NOT NULL,
    updated_at timestamptz,
    removed_at timestamptz,
    last_event_seq bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (organization_id, user_id)
);
CREATE INDEX ON {schema}.memberships (user_id);

CREATE TABLE {schema}.invitations (
    id uuid PRIMARY KEY,
    org_id uuid NOT NULL,
    email text NOT NULL,
    role text NOT NULL CHECK (role IN ('owner', 'admin', 'manager', 'user')),
    token_hash text NOT NULL UNIQUE,
    expires_at timestamptz NOT NULL,
    invited_by_user_id uuid NOT NULL,
    created_at timestamptz NOT NULL,
    accepted_at timestamptz,
    accepted_by_user_id uuid,
    revoked_at timestamptz,
    last_event_seq bigint NOT NULL DEFAULT 0
);
CREATE INDEX ON {schema}.invitations (org_id, created_at DESC);

CREATE TABLE {schema}.api_keys (
    id uuid PRIMARY KEY,
    org_id uuid NOT NULL,
    user_id uuid NOT NULL,
    name text NOT NULL,
    prefix text NOT NULL,
    key_hash text NOT NULL UNIQUE,
    scopes text[] NOT NULL,
    expires_at timestamptz,
    requests_per_minute integer,               -- the proxy's per-key limits; NULL: its defaults
    max_concurrent_requests integer,
    created_at timestamptz NOT NULL,
    revoked_at timestamptz,
    last_event_seq bigint NOT NULL DEFAULT 0
);
CREATE INDEX ON {schema}.api_keys (org_id);
CREATE INDEX ON {schema}.api_keys (user_id);

-- One row per identity event: who did what to whom, readable by the organisation's owners and
-- admins (GET /audit). `org_id` is the tenant the event is filed under ('global' for accounts).
-- `details` never holds a secret or a hash of one.
CREATE TABLE {schema}.audit_log (
    seq bigint PRIMARY KEY,
    event_id uuid NOT NULL,
    org_id text NOT NULL,
    action text NOT NULL,                      -- the event's tag, e.g. membership.role_changed
    actor text NOT NULL,                       -- user:<id> | api_key:<id> | system:<service>
    actor_user_id uuid,
    target_type text NOT NULL,                 -- organization | user | membership | invitation | api_key
    target_id text NOT NULL,
    target_user_id uuid,
    details jsonb NOT NULL DEFAULT '{}'::jsonb,
    correlation_id text NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX ON {schema}.audit_log (org_id, seq DESC);
