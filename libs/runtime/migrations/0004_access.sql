-- Every service's copy of the access context (API keys, custom roles), projected from the
-- access events topic by libs/runtime/access.py. Only hashes of API keys are kept.
CREATE TABLE IF NOT EXISTS access_api_keys (
    key_id text PRIMARY KEY,
    name text NOT NULL,
    secret_hash text NOT NULL,
    scopes text[] NOT NULL,
    channel text,
    warehouses text[],
    rate_limit_per_second numeric,
    expires_at timestamptz,
    issued_at timestamptz NOT NULL,
    revoked_at timestamptz,
    revoked_reason text,
    version int NOT NULL
);

CREATE TABLE IF NOT EXISTS access_roles (
    role text PRIMARY KEY,
    permissions text[] NOT NULL,
    description text NOT NULL DEFAULT '',
    removed boolean NOT NULL DEFAULT false,
    defined_at timestamptz NOT NULL,
    version int NOT NULL
);
