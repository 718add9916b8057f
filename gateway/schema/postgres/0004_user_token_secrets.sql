-- The secret each app signs its clients' user tokens with (platform/usertoken). It is a
-- symmetric HMAC key, so the gateway needs it in clear to verify; only `herald apikey
-- token-secret` sets it, and it is never returned by any API.
ALTER TABLE apps ADD COLUMN user_token_secret bytea;
