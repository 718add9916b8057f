-- Hourly sums of the minute cells, kept in step by every batch stored or replaced (in the same
-- transaction), so queries over days read hours and only the ragged minutes at the ends of a
-- range from cells. distinct_recipients is not summed: it does not add up across cells.
CREATE TABLE cells_hourly (
    hour     timestamptz NOT NULL CHECK (date_trunc('hour', hour, 'UTC') = hour),
    region   text NOT NULL CHECK (region ~ '^[a-z]{2}-[a-z]+-[0-9]{1,2}$'),
    app      text NOT NULL CHECK (app ~ '^[a-z0-9][a-z0-9_-]{1,62}$'),
    tier     text NOT NULL CHECK (tier IN ('transactional', 'social', 'marketing')),
    category text NOT NULL CHECK (category ~ '^[a-z0-9_.-]{1,64}$'),
    channel  text NOT NULL CHECK (channel IN ('in_app', 'push', 'email', 'sms', 'all')),
    country  text NOT NULL CHECK (country ~ '^([A-Z]{2})?$'),
    stage    text NOT NULL CHECK (stage IN ('accepted', 'fanned_out', 'suppressed', 'deferred', 'expired',
                                            'dispatched', 'delivered', 'failed', 'dead_lettered', 'read')),
    reason   text NOT NULL CHECK (reason IN ('', 'duplicate', 'hard_stop', 'channel_disabled', 'category_disabled',
                                             'no_address', 'no_device', 'erased', 'send_at', 'quiet_hours',
                                             'permanent', 'gone', 'no_provider', 'transient')),
    count    bigint NOT NULL CHECK (count >= 0),
    PRIMARY KEY (hour, region, app, tier, category, channel, country, stage, reason)
);

INSERT INTO cells_hourly (hour, region, app, tier, category, channel, country, stage, reason, count)
SELECT date_trunc('hour', window_start, 'UTC'), region, app, tier, category, channel, country, stage, reason, sum(count)
FROM cells
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9;
