-- The exporter's delivery events (region/export): one row per recipient x channel x stage,
-- kept in the region (they hold user ids) for a short retention, and the 1-minute windows they
-- fall in. event_key (notification|user|channel|stage) is the primary key on its own, not with
-- the window: a redelivered stage produces its record again with a later time, possibly in the
-- next minute, and must still count once. Kafka keeps records 24 h, less than the retention,
-- so a repeat always finds the first row.
CREATE TABLE analytics_events (
    event_key    text PRIMARY KEY,
    window_start timestamptz NOT NULL,
    app          text NOT NULL,
    tier         text NOT NULL,
    category     text NOT NULL,
    channel      text NOT NULL,
    stage        text NOT NULL,
    reason       text NOT NULL,
    country      text NOT NULL,
    user_id      text NOT NULL,
    latency_ms   bigint,              -- due to delivered, for stage delivered
    inserted_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX analytics_events_window_idx ON analytics_events (window_start);

-- A window is shipped when shipped_version = version: every insert that added rows bumps
-- version, and the closer records the version it aggregated (read in the same snapshot as the
-- rows), so rows that arrive while a window is being shipped make it ship again.
CREATE TABLE analytics_windows (
    window_start     timestamptz PRIMARY KEY,
    version          bigint NOT NULL DEFAULT 1,
    max_inserted_at  timestamptz NOT NULL,
    shipped_version  bigint,
    shipped_at       timestamptz,
    refused          text          -- central's 4xx, when it refused the window's batch
);
