-- Apps (tenants) and their API keys. Keys are stored as SHA-256 hashes: they are 256-bit random
-- secrets, so a fast hash is enough and a leaked table reveals no usable key.
CREATE TABLE apps (
    app_id     text PRIMARY KEY,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    key_id             text PRIMARY KEY,
    app_id             text NOT NULL REFERENCES apps (app_id),
    name               text NOT NULL DEFAULT '',
    secret_hash        bytea NOT NULL,
    rate_limit_per_min integer CHECK (rate_limit_per_min IS NULL OR rate_limit_per_min > 0),
    created_at         timestamptz NOT NULL DEFAULT now(),
    revoked_at         timestamptz
);

CREATE INDEX api_keys_app_idx ON api_keys (app_id);
