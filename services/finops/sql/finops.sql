-- FinOps read model: projections of EVENTS (billing intervals, per-minute costs) and USAGE
-- (token totals). Everything here can be rebuilt by replaying those streams, except that the
-- per-minute rows of still-open intervals are written by the minute closer (deterministically,
-- from the interval alone), so a rebuild followed by one closer pass gives the same rows.
--
-- `{schema}` is `finops` for the live tables and `finops_next` during a rebuild; the
-- checkpoints live beside the rows so both swap together. Idempotent: finops applies it at
-- start under an advisory lock. Changing this file changes its hash (`meta.ddl_sha256`), which
-- makes finops rebuild the schema on its next start.
--
-- Amounts are numeric(24, 9): EUR quantized to 1e-9 half-even (services/finops/money.py).
-- Ids are text: a malformed id from a producer must not stall the projection.

CREATE SCHEMA IF NOT EXISTS {schema};

CREATE TABLE IF NOT EXISTS {schema}.checkpoints (
    name text PRIMARY KEY,
    last_seq bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS {schema}.meta (
    ddl_sha256 text NOT NULL,
    built_at timestamptz NOT NULL DEFAULT now()
);

-- One row per billing interval (billing_started .. billing_stopped) of an instance.
-- Intervals of one instance never overlap, so (instance_id, started_at) identifies one.
CREATE TABLE IF NOT EXISTS {schema}.billing_intervals (
    instance_id text NOT NULL,
    started_at timestamptz NOT NULL,
    org_id text NOT NULL,
    model_name text NOT NULL,
    provider_code text NOT NULL,
    instance_type_code text NOT NULL,
    hourly_price_eur numeric NOT NULL CHECK (hourly_price_eur >= 0),
    stopped_at timestamptz CHECK (stopped_at >= started_at),
    start_event_id text NOT NULL,
    stop_event_id text,
    start_seq bigint NOT NULL,
    stop_seq bigint,
    -- Cost of the whole interval once stopped (NULL while open).
    amount_eur numeric(24, 9) CHECK (amount_eur >= 0),
    -- Open intervals: the minute closer has written every bucket before this instant.
    minutes_written_until timestamptz,
    PRIMARY KEY (instance_id, started_at)
);
CREATE INDEX IF NOT EXISTS billing_intervals_org_idx ON {schema}.billing_intervals (org_id, started_at);
CREATE INDEX IF NOT EXISTS billing_intervals_open_idx ON {schema}.billing_intervals (org_id) WHERE stopped_at IS NULL;
CREATE INDEX IF NOT EXISTS billing_intervals_stopped_idx ON {schema}.billing_intervals (org_id, stopped_at);

-- Actual cost per minute per billing interval (an instance has one interval per minute except
-- where billing stopped and restarted inside that minute). Partial first and last minutes are
-- prorated to the microsecond; the rows of one interval sum exactly to its `amount_eur`.
CREATE TABLE IF NOT EXISTS {schema}.cost_actual_minute (
    instance_id text NOT NULL,
    interval_started_at timestamptz NOT NULL,
    bucket_minute timestamptz NOT NULL,
    org_id text NOT NULL,
    model_name text NOT NULL,
    provider_code text NOT NULL,
    instance_type_code text NOT NULL,
    amount_eur numeric(24, 9) NOT NULL CHECK (amount_eur >= 0),
    PRIMARY KEY (instance_id, interval_started_at, bucket_minute)
);
CREATE INDEX IF NOT EXISTS cost_actual_minute_org_idx ON {schema}.cost_actual_minute (org_id, bucket_minute);

-- One row per proxied request (deduplicates by record id; source of the ragged window edges).
CREATE TABLE IF NOT EXISTS {schema}.usage_records (
    id text PRIMARY KEY,
    seq bigint NOT NULL,
    org_id text NOT NULL,
    api_key_id text NOT NULL DEFAULT '',       -- '' = no API key (a UI session)
    user_id text,
    model text NOT NULL,
    instance_id text,
    endpoint text NOT NULL,
    prompt_tokens bigint NOT NULL,
    completion_tokens bigint NOT NULL,
    status_code integer NOT NULL,
    stream boolean NOT NULL,
    duration_ms double precision NOT NULL,
    ttft_ms double precision,
    occurred_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_records_org_time_idx ON {schema}.usage_records (org_id, occurred_at);

-- Token totals per minute and per UTC day, per org / API key / model.
CREATE TABLE IF NOT EXISTS {schema}.usage_minute (
    org_id text NOT NULL,
    bucket_minute timestamptz NOT NULL,
    api_key_id text NOT NULL,
    model text NOT NULL,
    requests bigint NOT NULL,
    error_requests bigint NOT NULL,
    prompt_tokens bigint NOT NULL,
    completion_tokens bigint NOT NULL,
    PRIMARY KEY (org_id, bucket_minute, api_key_id, model)
);

CREATE TABLE IF NOT EXISTS {schema}.usage_daily (
    org_id text NOT NULL,
    day date NOT NULL,
    api_key_id text NOT NULL,
    model text NOT NULL,
    requests bigint NOT NULL,
    error_requests bigint NOT NULL,
    prompt_tokens bigint NOT NULL,
    completion_tokens bigint NOT NULL,
    PRIMARY KEY (org_id, day, api_key_id, model)
);
