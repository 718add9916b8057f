-- The write path's relational state: users' contact points, preferences and devices (read by
-- fan-out), templates, topic subscriptions, idempotency keys and durable scheduled sends.

CREATE TABLE users (
    app_id     text NOT NULL,
    user_id    text NOT NULL,
    email      text,
    phone      text,
    locale     text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, user_id)
);

-- Preferences are a document (categories are data, not schema); hard_stop is a column so the
-- fan-out can read it directly, outside every cache, on every send.
CREATE TABLE preferences (
    app_id     text NOT NULL,
    user_id    text NOT NULL,
    prefs      jsonb NOT NULL DEFAULT '{}'::jsonb,
    hard_stop  boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, user_id)
);

CREATE TABLE devices (
    app_id       text NOT NULL,
    device_id    text NOT NULL,
    user_id      text NOT NULL,
    platform     text NOT NULL CHECK (platform IN ('ios', 'android', 'web')),
    token        text NOT NULL,
    is_active    boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, device_id),
    UNIQUE (app_id, platform, token)
);
CREATE INDEX devices_user_idx ON devices (app_id, user_id) WHERE is_active;

CREATE TABLE templates (
    app_id      text NOT NULL,
    template_id text NOT NULL,
    type        text NOT NULL CHECK (type IN ('transactional', 'social', 'marketing')),
    category    text NOT NULL,
    content     jsonb NOT NULL,
    version     integer NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, template_id)
);

CREATE TABLE topic_subscriptions (
    app_id     text NOT NULL,
    topic      text NOT NULL,
    user_id    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, topic, user_id)
);
CREATE INDEX topic_subscriptions_user_idx ON topic_subscriptions (app_id, user_id);

-- One row per idempotency key for 24 h: a reuse answers 409 with the original notification id.
CREATE TABLE idempotency_keys (
    app_id          text NOT NULL,
    idempotency_key text NOT NULL,
    notification_id text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, idempotency_key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

-- Durable deferrals: send_at events and quiet-hours deferrals. The scheduler claims due rows
-- with FOR UPDATE SKIP LOCKED, puts them back on the tier topic and deletes them in one
-- transaction, so a crash re-sends (and dedup drops the repeat) rather than loses.
CREATE TABLE scheduled_sends (
    id              bigserial PRIMARY KEY,
    app_id          text NOT NULL,
    notification_id text NOT NULL,
    tier            text NOT NULL,
    due_at          timestamptz NOT NULL,
    event           jsonb NOT NULL,
    reason          text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX scheduled_sends_due_idx ON scheduled_sends (due_at);
CREATE INDEX scheduled_sends_notification_idx ON scheduled_sends (notification_id);
