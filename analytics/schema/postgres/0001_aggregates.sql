-- One row per batch a region posted, keyed by its idempotency key. A batch posted again under
-- the same key replaces the first (its cells are deleted with it), so it counts once.
CREATE TABLE batches (
    region           text NOT NULL CHECK (region ~ '^[a-z]{2}-[a-z]+-[0-9]{1,2}$'),
    window_start     timestamptz NOT NULL CHECK (date_trunc('minute', window_start) = window_start),
    seq              integer NOT NULL CHECK (seq >= 0),
    -- SHA-256 of the batch as stored: tells a repeat (unchanged) from a replacement.
    digest           bytea NOT NULL CHECK (length(digest) = 32),
    withheld         bigint NOT NULL CHECK (withheld >= 0),
    latency_withheld bigint NOT NULL CHECK (latency_withheld >= 0),
    received_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (region, window_start, seq)
);

CREATE INDEX batches_window_idx ON batches (window_start);

-- Counts per dimension cell. Text columns are closed: the CHECKs mirror analytics/wire.
CREATE TABLE cells (
    region              text NOT NULL,
    window_start        timestamptz NOT NULL,
    seq                 integer NOT NULL,
    app                 text NOT NULL CHECK (app ~ '^[a-z0-9][a-z0-9_-]{1,62}$'),
    tier                text NOT NULL CHECK (tier IN ('transactional', 'social', 'marketing')),
    category            text NOT NULL CHECK (category ~ '^[a-z0-9_.-]{1,64}$'),
    channel             text NOT NULL CHECK (channel IN ('in_app', 'push', 'email', 'sms', 'all')),
    country             text NOT NULL CHECK (country ~ '^([A-Z]{2})?$'),
    stage               text NOT NULL CHECK (stage IN ('accepted', 'fanned_out', 'suppressed', 'deferred', 'expired',
                                                       'dispatched', 'delivered', 'failed', 'dead_lettered', 'read')),
    reason              text NOT NULL CHECK (reason IN ('', 'duplicate', 'hard_stop', 'channel_disabled', 'category_disabled',
                                                        'no_address', 'no_device', 'erased', 'send_at', 'quiet_hours',
                                                        'permanent', 'gone', 'no_provider', 'transient')),
    count               bigint NOT NULL CHECK (count > 0),
    distinct_recipients bigint NOT NULL CHECK (distinct_recipients > 0 AND distinct_recipients <= count),
    PRIMARY KEY (region, window_start, seq, app, tier, category, channel, country, stage, reason),
    FOREIGN KEY (region, window_start, seq) REFERENCES batches ON DELETE CASCADE
);

CREATE INDEX cells_window_idx ON cells (window_start);

-- Accept-to-delivered latency histograms per tier and channel (fixed buckets, wire.LatencyBoundsMS).
CREATE TABLE latency (
    region       text NOT NULL,
    window_start timestamptz NOT NULL,
    seq          integer NOT NULL,
    tier         text NOT NULL CHECK (tier IN ('transactional', 'social', 'marketing')),
    channel      text NOT NULL CHECK (channel IN ('in_app', 'push', 'email', 'sms', 'all')),
    bounds_ms    bigint[] NOT NULL,
    counts       bigint[] NOT NULL CHECK (cardinality(counts) = cardinality(bounds_ms) + 1),
    PRIMARY KEY (region, window_start, seq, tier, channel),
    FOREIGN KEY (region, window_start, seq) REFERENCES batches ON DELETE CASCADE
);

CREATE INDEX latency_window_idx ON latency (window_start);
