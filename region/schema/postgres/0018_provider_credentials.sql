-- The provider credentials an app stored in this jurisdiction (PUT .../credentials/{kind}):
-- its APNs key, FCM service account, SMTP login and sender, Twilio account and sender. The
-- regions of a jurisdiction share its database, so each of them sends with them. The whole
-- credential is kept wrapped under the region's master keyring (user_keys.master_keys), with
-- additional data naming the app, the kind and the version, so a wrapped credential opens for
-- no other row; settings holds its fields that are not secret, as the API shows them.
-- version comes from one sequence: a credential stored again (rotated, or deleted and stored
-- anew) never has a version a dispatcher has seen before, so its client cache cannot mistake a
-- new credential for an old one.
CREATE SEQUENCE provider_credentials_version;
CREATE TABLE provider_credentials (
    app_id         text NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('apns', 'fcm', 'smtp', 'twilio')),
    jurisdiction   text NOT NULL,
    version        bigint NOT NULL,
    settings       jsonb NOT NULL,
    fingerprint    text NOT NULL,
    secret_wrapped bytea NOT NULL,
    secret_master  text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, kind)
);
