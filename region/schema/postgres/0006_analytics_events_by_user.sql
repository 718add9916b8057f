-- Erasure deletes a user's delivery events (they hold the user id) before their retention ends.
CREATE INDEX analytics_events_user_idx ON analytics_events (app, user_id);
