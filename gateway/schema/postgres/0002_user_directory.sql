-- The user directory: which jurisdiction and home region hold each user's data. user_key is
-- residency.UserKey (HMAC-SHA256 of app id and user id under the gateway's directory secret), so
-- the global tier holds no user identifier.
CREATE TABLE user_directory (
    user_key     text PRIMARY KEY,
    jurisdiction text NOT NULL,
    home_region  text NOT NULL,
    country      text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- One row per part of a send split by region; no recipient, only counts. The status endpoint
-- finds a send's parts, or a part's region, here.
CREATE TABLE send_parts (
    app_id          text NOT NULL,
    send_id         text NOT NULL,
    region          text NOT NULL,
    notification_id text NOT NULL,
    recipients      integer NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, send_id, region)
);

CREATE INDEX send_parts_part_idx ON send_parts (app_id, notification_id);
