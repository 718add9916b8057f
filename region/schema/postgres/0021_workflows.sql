-- Workflows (docs/workflows.md). Every version an app saved is kept, immutable: a run pins the
-- version it started on, so a change never alters runs in flight. Versions are the gateway's
-- (the same number in every jurisdiction); workflows points at the latest.
CREATE TABLE workflow_versions (
    app_id      text NOT NULL,
    workflow_id text NOT NULL,
    version     bigint NOT NULL,
    definition  jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, workflow_id, version)
);

CREATE TABLE workflows (
    app_id      text NOT NULL,
    workflow_id text NOT NULL,
    version     bigint NOT NULL,
    deleted     boolean NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, workflow_id)
);
