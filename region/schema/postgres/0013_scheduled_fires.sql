-- A deferred event fires once per jurisdiction. The jurisdiction's regions share
-- scheduled_sends, and a row can be fired twice: a region killed after Kafka took the event
-- but before the row was deleted (the row is fired again, by the other region while it is
-- down), or a fan-out repeated after a crash that stored a deferral twice. The fan-out of a
-- fired event claims it here first: the first region to claim it delivers it, and a copy that
-- reaches another region is dropped (a copy in the same region is a redelivery, which the
-- dispatchers' sent keys deduplicate). fire_key is a digest of the event's notification,
-- recipients or topic, channels and due time (scheduler.FireKey); rows go after 7 days.
CREATE TABLE scheduled_fires (
    fire_key        text PRIMARY KEY,
    notification_id text NOT NULL,
    region          text NOT NULL,
    fired_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX scheduled_fires_fired_at_idx ON scheduled_fires (fired_at);
