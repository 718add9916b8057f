-- The retention sweeper (webhooks.delivered_retention, webhooks.dead_letter_retention) deletes
-- delivered deliveries and dead letters the oldest first, in batches: these indexes let each
-- batch start at the oldest row of its kind and stop after the batch, whatever the size of the
-- table, and find the oldest row the sweeper reports (herald_webhook_retention_oldest_age_seconds).
-- Pending deliveries are in neither.
--
-- On a webhook_deliveries table already large, building them here blocks writes to it while they
-- build: create them first by hand, outside a transaction, and this migration finds them:
--   CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_deliveries_delivered_done ON webhook_deliveries (done_at) WHERE status = 'delivered';
--   CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_deliveries_dead_done ON webhook_deliveries (done_at) WHERE status = 'dead';
CREATE INDEX IF NOT EXISTS webhook_deliveries_delivered_done ON webhook_deliveries (done_at) WHERE status = 'delivered';
CREATE INDEX IF NOT EXISTS webhook_deliveries_dead_done ON webhook_deliveries (done_at) WHERE status = 'dead';
