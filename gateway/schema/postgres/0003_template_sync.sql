-- Templates are app-wide: the gateway keeps the latest version of each here and pushes it to
-- every region of the policy; template_sync says which version each region holds, so a region
-- that was down catches up when it is back.
CREATE TABLE templates (
    app_id      text NOT NULL,
    template_id text NOT NULL,
    body        bytea NOT NULL,
    deleted     boolean NOT NULL DEFAULT false,
    version     bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, template_id)
);

CREATE TABLE template_sync (
    app_id      text NOT NULL,
    template_id text NOT NULL,
    region      text NOT NULL,
    version     bigint NOT NULL,
    PRIMARY KEY (app_id, template_id, region)
);
