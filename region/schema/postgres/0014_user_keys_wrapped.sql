-- Data keys at rest are wrapped by a master key that never enters Postgres (envelope encryption
-- of the keys; region/userkeys, platform/masterkey): wrapped_key is nonce || AES-256-GCM(master
-- key, data key) with additional data naming the row (app, user, key id), so a wrapped key
-- copied into another row does not open; master_key_id names the master key of the region's
-- keyring (user_keys.master_keys) it was wrapped under. A row holds its key in one form only:
-- data_key (in clear, rows of before this migration, and rows a process of an older version
-- writes during an upgrade) or wrapped_key. Each region process wraps the rows still in clear
-- at start and every user_keys.rewrap_interval, emptying data_key, and rewraps rows of an older
-- master key under the current one.
ALTER TABLE user_keys ALTER COLUMN data_key DROP NOT NULL;
ALTER TABLE user_keys ADD COLUMN wrapped_key bytea CHECK (octet_length(wrapped_key) = 60);
ALTER TABLE user_keys ADD COLUMN master_key_id text;
ALTER TABLE user_keys ADD CONSTRAINT user_keys_one_form CHECK (
    (data_key IS NULL) <> (wrapped_key IS NULL) AND (wrapped_key IS NULL) = (master_key_id IS NULL));
CREATE INDEX user_keys_master_key_id_idx ON user_keys (master_key_id);
CREATE INDEX user_keys_in_clear_idx ON user_keys (key_id) WHERE data_key IS NOT NULL;

-- Each master key id the database has met, with a check value sealed under it (AES-256-GCM of
-- a fixed text, additional data the id): a process whose key file holds another key by the same
-- id refuses to start, instead of wrapping keys no other process can open.
CREATE TABLE user_key_masters (
    master_key_id text PRIMARY KEY,
    check_value   bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
