-- A region stores nothing for a user who is not registered in its own jurisdiction: a user is a
-- resident once the gateway registered them here (PUT /v1/users/{id} with the jurisdiction),
-- and the API refuses sends, devices, preferences and subscriptions for anyone else. Rows from
-- before were all written by the gateway's registration, so they belong to this region's
-- jurisdiction.
ALTER TABLE users ADD COLUMN jurisdiction text;
UPDATE users SET jurisdiction = (SELECT jurisdiction FROM region_info) WHERE jurisdiction IS NULL;
