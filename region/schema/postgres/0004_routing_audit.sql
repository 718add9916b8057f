-- The routing audit: every routing decision the gateway made for this region, hash-chained.
-- Each entry's hash covers the previous entry's hash and every field of the entry
-- (region/audit), and audit_head records the last (seq, hash), so a changed, removed or
-- inserted entry and a truncated tail are all found by `herald audit verify`.
CREATE TABLE audit_log (
    seq            bigint PRIMARY KEY CHECK (seq > 0),
    id             uuid NOT NULL UNIQUE,   -- chosen by the gateway: a retried batch appends once
    at             timestamptz NOT NULL,
    app_id         text NOT NULL,
    user_key       text NOT NULL,          -- residency.UserKey: never the user id
    jurisdiction   text NOT NULL,
    region         text NOT NULL,          -- empty when the request was refused
    reason         text NOT NULL,
    policy_version bigint NOT NULL,
    request_id     text NOT NULL,
    prev_hash      bytea NOT NULL,
    hash           bytea NOT NULL
);
CREATE INDEX audit_log_user_idx ON audit_log (app_id, user_key, seq);

-- The chain's head, locked FOR UPDATE by every append, so there is one chain and appends are
-- serialised. seq 0 with 32 zero bytes is the empty chain.
CREATE TABLE audit_head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    seq       bigint NOT NULL,
    hash      bytea NOT NULL
);
INSERT INTO audit_head (seq, hash) VALUES (0, '\x0000000000000000000000000000000000000000000000000000000000000000');

-- Append-only for everyone who does not first disable this trigger (the table's owner can):
-- the chain, not the trigger, is what makes a rewrite detectable.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP;
END;
$$;
CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
