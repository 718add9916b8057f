-- The suppression lists' reasons: a delivery suppressed because its address bounced,
-- complained or unsubscribed, and a send failed on a hard bounce.
ALTER TABLE cells DROP CONSTRAINT cells_reason_check,
    ADD CONSTRAINT cells_reason_check CHECK (reason IN ('', 'duplicate', 'hard_stop', 'channel_disabled', 'category_disabled',
        'no_address', 'no_device', 'erased', 'bounced', 'complained', 'unsubscribed', 'send_at', 'quiet_hours',
        'permanent', 'gone', 'no_provider', 'transient'));
ALTER TABLE cells_hourly DROP CONSTRAINT cells_hourly_reason_check,
    ADD CONSTRAINT cells_hourly_reason_check CHECK (reason IN ('', 'duplicate', 'hard_stop', 'channel_disabled', 'category_disabled',
        'no_address', 'no_device', 'erased', 'bounced', 'complained', 'unsubscribed', 'send_at', 'quiet_hours',
        'permanent', 'gone', 'no_provider', 'transient'));
