-- Catalog: reference data seeded by `inventiv up` (services/db/seed.py), read by the API to
-- validate deployments. Names and columns follow the original system's so its clients keep working.

CREATE TABLE providers (
    id uuid PRIMARY KEY,
    code text NOT NULL UNIQUE CHECK (code ~ '^[a-z0-9][a-z0-9_-]*$'),
    name text NOT NULL UNIQUE,
    description text,
    is_active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE regions (
    id uuid PRIMARY KEY,
    provider_id uuid NOT NULL REFERENCES providers(id),
    code text NOT NULL,
    name text NOT NULL,
    is_active boolean NOT NULL DEFAULT true,
    UNIQUE (provider_id, code)
);

CREATE TABLE zones (
    id uuid PRIMARY KEY,
    region_id uuid NOT NULL REFERENCES regions(id),
    provider_id uuid NOT NULL REFERENCES providers(id),
    code text NOT NULL,
    name text NOT NULL,
    is_active boolean NOT NULL DEFAULT true,
    UNIQUE (provider_id, code)
);

CREATE TABLE instance_types (
    id uuid PRIMARY KEY,
    provider_id uuid NOT NULL REFERENCES providers(id),
    code text NOT NULL,
    name text NOT NULL,
    gpu_count integer NOT NULL CHECK (gpu_count >= 0),
    vram_per_gpu_gb integer NOT NULL CHECK (vram_per_gpu_gb >= 0),
    cpu_count integer NOT NULL DEFAULT 0,
    ram_gb integer NOT NULL DEFAULT 0,
    bandwidth_bps bigint NOT NULL DEFAULT 0,
    cost_per_hour numeric(10, 4) NOT NULL CHECK (cost_per_hour >= 0),
    is_active boolean NOT NULL DEFAULT true,
    allocation_params jsonb NOT NULL DEFAULT '{}'::jsonb,
    UNIQUE (provider_id, code)
);

CREATE TABLE instance_type_zones (
    instance_type_id uuid NOT NULL REFERENCES instance_types(id),
    zone_id uuid NOT NULL REFERENCES zones(id),
    is_available boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance_type_id, zone_id)
);

CREATE TABLE models (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    model_id text NOT NULL UNIQUE,          -- the served name (Hugging Face id)
    required_vram_gb integer NOT NULL DEFAULT 0,
    context_length integer NOT NULL DEFAULT 2048,
    data_volume_gb integer NOT NULL DEFAULT 0,
    is_active boolean NOT NULL DEFAULT true,
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Badges for the action log (label, lucide icon, colour), as in the original.
CREATE TABLE action_types (
    code text PRIMARY KEY,
    label text NOT NULL,
    icon text NOT NULL,
    color_class text NOT NULL,
    category text NOT NULL,
    is_active boolean NOT NULL DEFAULT true
);
