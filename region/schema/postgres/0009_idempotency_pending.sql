-- An idempotency key is claimed before its event is produced, with the record to produce: until
-- the produce is acknowledged and recorded the claim is pending (pending_value not null). A
-- request that finds its key pending makes sure that same event is on Kafka (it produces the
-- record again when nothing shows it was acknowledged; fan-out deduplicates a repeat) and answers
-- the original notification id. So a claim and the accepted event never disagree: a 503 never
-- hides an event that a retry with the same key would accept again under a new id.
ALTER TABLE idempotency_keys
    ADD COLUMN pending_topic text,
    ADD COLUMN pending_key   text,
    ADD COLUMN pending_value bytea;
