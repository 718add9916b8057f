-- A jurisdiction's regions share one database (issue 19): region_info now records the
-- jurisdiction the database belongs to (region is the region that created it), and
-- store_regions every region that `herald migrate` joined to it. A region refuses to start
-- against a database of another jurisdiction, or one it was not migrated into.
CREATE TABLE store_regions (
    region    text PRIMARY KEY,
    joined_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO store_regions (region) SELECT region FROM region_info;

-- The exporter's rows are per region: each region ships what it recorded, under its own name,
-- and a window is the region's. A stage recorded in two regions (a redelivery after a
-- failover) still counts once: event_key stays the key of the table, whichever region came first.
ALTER TABLE analytics_events ADD COLUMN region text;
UPDATE analytics_events SET region = (SELECT region FROM region_info);
ALTER TABLE analytics_events ALTER COLUMN region SET NOT NULL;
DROP INDEX analytics_events_window_idx;
CREATE INDEX analytics_events_window_idx ON analytics_events (region, window_start);

ALTER TABLE analytics_windows ADD COLUMN region text;
UPDATE analytics_windows SET region = (SELECT region FROM region_info);
ALTER TABLE analytics_windows ALTER COLUMN region SET NOT NULL;
ALTER TABLE analytics_windows DROP CONSTRAINT analytics_windows_pkey;
ALTER TABLE analytics_windows ADD PRIMARY KEY (region, window_start);
