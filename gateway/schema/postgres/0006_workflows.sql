-- Workflows are app-wide like templates: the latest version of each is kept here and pushed to
-- every region of the policy (workflow_sync: which version each region holds).
--
-- last_version reserves a version before any region is asked, so two concurrent saves never
-- push two bodies under one number (regions keep every version of a workflow, immutable). A row
-- with version 0 is a reservation whose save no region accepted yet: it is not a workflow.
-- Templates reserve theirs the same way.
CREATE TABLE workflows (
    app_id       text NOT NULL,
    workflow_id  text NOT NULL,
    body         bytea NOT NULL,
    deleted      boolean NOT NULL DEFAULT false,
    version      bigint NOT NULL,
    last_version bigint NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, workflow_id)
);

CREATE TABLE workflow_sync (
    app_id      text NOT NULL,
    workflow_id text NOT NULL,
    region      text NOT NULL,
    version     bigint NOT NULL,
    PRIMARY KEY (app_id, workflow_id, region)
);

ALTER TABLE templates ADD COLUMN last_version bigint NOT NULL DEFAULT 0;
