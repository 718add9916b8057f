-- Latency histograms carry their distinct recipients, and central refuses one below k (like a
-- cell). Until this migration they were thresholded on observations, so a histogram of
-- thousands of deliveries to fewer than k users was stored and published while the funnel
-- withheld the same deliveries. The recipients of the histograms stored so far are unknown and
-- cannot be checked: they are deleted, with their hourly sums (the batches' latency_withheld
-- totals stay). k is at least 2 in any config; the configured k is checked at ingest.
DELETE FROM latency_hourly;
DELETE FROM latency;
ALTER TABLE latency ADD COLUMN distinct_recipients bigint NOT NULL CHECK (distinct_recipients >= 2);
