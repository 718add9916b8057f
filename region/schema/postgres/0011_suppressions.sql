-- Suppression lists: an email address or phone number that bounced for good, complained or
-- unsubscribed from everything is never sent to again by this region's app (fan-out suppresses
-- the delivery with the list's reason). Addresses are kept as Herald normalises them (email
-- lower-cased), with the user whose address it was when it was suppressed: the user's erasure
-- removes the row, and the per-user API lists and removes it.
CREATE TABLE suppressions (
    app_id     text NOT NULL,
    channel    text NOT NULL CHECK (channel IN ('email', 'sms')),
    address    text NOT NULL,
    user_id    text NOT NULL,
    reason     text NOT NULL CHECK (reason IN ('bounced', 'complained', 'unsubscribed')),
    detail     text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, channel, address)
);
CREATE INDEX suppressions_by_user ON suppressions (app_id, user_id);

-- Soft bounces (a full mailbox, one unavailable for now) counted per address: the sends are
-- retried as any transient failure, and the address is suppressed as bounced once that many
-- different notifications soft-bounced on it (dispatch.suppression.soft_bounce_limit) within
-- the window that started with the first (dispatch.suppression.soft_bounce_window; a count
-- older than that starts again at one). The retries of one notification count once.
CREATE TABLE soft_bounces (
    app_id            text NOT NULL,
    channel           text NOT NULL CHECK (channel IN ('email', 'sms')),
    address           text NOT NULL,
    user_id           text NOT NULL,
    notifications     text[] NOT NULL, -- the notifications that soft-bounced in the window, at most 100

    first_at          timestamptz NOT NULL,
    last_at           timestamptz NOT NULL,
    PRIMARY KEY (app_id, channel, address)
);
CREATE INDEX soft_bounces_by_user ON soft_bounces (app_id, user_id);
