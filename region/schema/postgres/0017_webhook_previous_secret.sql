-- Rotating an endpoint's signing secret keeps the secret it replaces valid for an overlap window
-- (POST .../rotate-secret, expire_previous_in_seconds, default 24 h): until
-- previous_secret_expires_at every delivery is signed with both secrets, so a receiver that has
-- not deployed the new one yet still verifies it. The previous secret is wrapped under the
-- region's master keyring like the current one, with additional data that also names its expiry
-- (a wrapped previous secret does not open with another expiry, nor as the current secret). The
-- three columns are set together or not at all; the user-keys sweep rewraps both secrets under
-- the current master key and clears a previous secret once it has expired.
ALTER TABLE webhook_endpoints ADD COLUMN previous_secret_wrapped bytea;
ALTER TABLE webhook_endpoints ADD COLUMN previous_secret_master text;
ALTER TABLE webhook_endpoints ADD COLUMN previous_secret_expires_at timestamptz;
ALTER TABLE webhook_endpoints ADD CONSTRAINT webhook_endpoints_previous_secret_whole CHECK (
    (previous_secret_wrapped IS NULL) = (previous_secret_master IS NULL)
    AND (previous_secret_wrapped IS NULL) = (previous_secret_expires_at IS NULL));
