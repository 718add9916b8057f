-- Which region fans out a keyed send. A request that finds its idempotency key pending in
-- another region (whose acknowledgement was lost with it) produces the event again on its own
-- region's topic: the two copies carry one notification id, and the regions' dedup keys do not
-- meet. The first region to claim the key's fan-out delivers it; the other copy is dropped. A
-- claim not marked done within the takeover window may be taken by the other region, so a
-- region lost mid-fan-out does not hold the send until it returns.
ALTER TABLE idempotency_keys
    ADD COLUMN fanout_region     text,
    ADD COLUMN fanout_claimed_at timestamptz,
    ADD COLUMN fanout_done       boolean NOT NULL DEFAULT false;
