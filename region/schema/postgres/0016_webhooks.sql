-- Webhook endpoints an app registered in this jurisdiction (the regions of a jurisdiction share
-- its database, so each of them sees every endpoint). The signing secret is kept wrapped under
-- the region's master keyring (user_keys.master_keys), like the users' data keys; the API shows
-- it once, at create and at rotate.
CREATE TABLE webhook_endpoints (
    app_id         text NOT NULL,
    endpoint_id    text NOT NULL,
    jurisdiction   text NOT NULL,
    url            text NOT NULL,
    description    text NOT NULL DEFAULT '',
    event_types    text[] NOT NULL DEFAULT '{}', -- empty: every event type
    disabled       boolean NOT NULL DEFAULT false,
    secret_wrapped bytea NOT NULL,
    secret_master  text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, endpoint_id)
);

-- One row per event x endpoint, written before the events record's Kafka offset is committed:
-- the primary key makes a redelivered record (or a replayed one) insert nothing. region is the
-- region that consumed the event (the user's home region) and delivers it; another region of the
-- jurisdiction takes over a delivery overdue by webhooks.takeover_after (that one is down). status: pending
-- (next_attempt_at says when), delivered, dead (retries past the horizon; replayable).
CREATE TABLE webhook_deliveries (
    app_id          text NOT NULL,
    endpoint_id     text NOT NULL,
    event_id        text NOT NULL,
    region          text NOT NULL,
    event_type      text NOT NULL,
    user_id         text NOT NULL,
    payload         bytea NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    first_at        timestamptz NOT NULL DEFAULT now(), -- the retry horizon counts from here
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status     integer NOT NULL DEFAULT 0,
    last_error      text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    done_at         timestamptz,
    PRIMARY KEY (app_id, endpoint_id, event_id),
    FOREIGN KEY (app_id, endpoint_id) REFERENCES webhook_endpoints ON DELETE CASCADE
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (region, next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_overdue ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_dead ON webhook_deliveries (app_id, endpoint_id, done_at) WHERE status = 'dead';
CREATE INDEX webhook_deliveries_by_user ON webhook_deliveries (app_id, user_id);
