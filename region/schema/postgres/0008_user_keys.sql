-- Crypto-shredding: each user's data key, under which their personal fields in Kafka records
-- are sealed (platform/envelope). Records carry only key_id, a random UUID; the erasure deletes
-- the row, which makes those records unreadable. Only the home region's copy exists: no other
-- region ever holds the user's records.
CREATE TABLE user_keys (
    app_id     text NOT NULL,
    user_id    text NOT NULL,
    key_id     uuid NOT NULL UNIQUE,
    data_key   bytea NOT NULL CHECK (octet_length(data_key) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, user_id)
);
