-- Secrets a region makes for itself, one row per purpose: "unsubscribe" is the AES-256 key
-- that seals the tokens of the List-Unsubscribe links in the region's marketing and social
-- email (region/unsubscribe). Made by the first process that needs it; never leaves the region.
CREATE TABLE region_secrets (
    name       text PRIMARY KEY,
    secret     bytea NOT NULL CHECK (octet_length(secret) = 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
