-- The accept path's outbox. A send Kafka did not acknowledge within the region's kafka_wait is
-- kept in scheduled_sends, due a few seconds later (reason 'outbox'), and answered 202: the
-- scheduler puts it on the tier topic, as it does a deferral, once Kafka takes records again.
-- region names the region that accepted it: while that region lives its own schedulers fire it
-- (a late acknowledgement of the first produce is then a repeat its dedup keys drop); another
-- region of the jurisdiction takes it over only when it is long overdue (the region is down).
ALTER TABLE scheduled_sends ADD COLUMN region text;
-- The scheduler claims due rows tier by tier, transactional first.
CREATE INDEX scheduled_sends_tier_due_idx ON scheduled_sends (tier, due_at);
