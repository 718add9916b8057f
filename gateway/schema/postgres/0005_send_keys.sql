-- One answer per idempotency key across regions: the first send with an app's key claims a send
-- id here before any region is asked, and every concurrent or later send with the key (within
-- 24 h, the regions' own window) gets that id, so concurrent identical sends to users in
-- several regions answer one send id with one set of parts.
CREATE TABLE send_keys (
    app_id          text NOT NULL,
    idempotency_key text NOT NULL,
    send_id         text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, idempotency_key)
);
