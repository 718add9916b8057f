-- Workflow runs (docs/workflows.md): one per (trigger, user), in the user's home jurisdiction.
-- run_id is derived from (app, workflow, trigger key, user), so a trigger sent again (a retry,
-- a redelivery, the gateway failing over to another region of the jurisdiction) finds its runs
-- and adds none. A run is a row the runner takes when due_at comes (FOR UPDATE SKIP LOCKED):
-- it carries out steps until one waits, in one transaction, so a run survives any process's
-- SIGKILL at any point and a step is redone, never lost (a channel step's notification id is
-- derived from the run and step, so a redone send is dropped by the dedup keys).
CREATE TABLE workflow_runs (
    run_id          uuid PRIMARY KEY,
    app_id          text NOT NULL,
    workflow_id     text NOT NULL,
    version         bigint NOT NULL,
    -- The workflow's tier: each tier's runs are taken by a runner of their own, so a marketing
    -- digest for a million users never delays a transactional workflow.
    tier            text NOT NULL,
    user_id         text NOT NULL,
    trigger_id      uuid NOT NULL,
    payload         jsonb NOT NULL,
    -- The step the run is at (its index in the pinned version), and when it got there.
    step            int NOT NULL DEFAULT 0,
    step_started_at timestamptz NOT NULL,
    -- running: due_at says when the runner takes it next; done, stopped, failed: finished.
    state           text NOT NULL DEFAULT 'running',
    due_at          timestamptz,
    attempts        int NOT NULL DEFAULT 0,
    last_error      text NOT NULL DEFAULT '',
    -- Each step's outcome by step id: status, reason, notification_id, at.
    steps           jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX workflow_runs_due_idx ON workflow_runs (tier, due_at) WHERE due_at IS NOT NULL;
CREATE INDEX workflow_runs_user_idx ON workflow_runs (app_id, user_id);
CREATE INDEX workflow_runs_trigger_idx ON workflow_runs (app_id, trigger_id);

-- The runs a throttle step let through, by (step, user, key value): a run passes when fewer
-- than the limit passed within the window, counted under a lock of the group.
CREATE TABLE workflow_throttle (
    app_id       text NOT NULL,
    workflow_id  text NOT NULL,
    step_id      text NOT NULL,
    user_id      text NOT NULL,
    throttle_key text NOT NULL,
    run_id       uuid NOT NULL,
    passed_at    timestamptz NOT NULL,
    PRIMARY KEY (app_id, workflow_id, step_id, user_id, throttle_key, passed_at, run_id)
);

-- Digests: the first run to reach a digest step for (step, user, key value) opens one and owns
-- it; runs that reach the step while it is open add their payload as an event and end there.
-- When the window closes the owner goes on, once, with every event. Joining and closing take
-- the same lock of the group, so an event is in exactly one digest, and a run's event is
-- stored once (its run id is the key) however often the run is redone.
CREATE TABLE workflow_digests (
    digest_id   uuid PRIMARY KEY,
    app_id      text NOT NULL,
    workflow_id text NOT NULL,
    step_id     text NOT NULL,
    user_id     text NOT NULL,
    digest_key  text NOT NULL,
    owner_run   uuid NOT NULL,
    closes_at   timestamptz NOT NULL,
    closed      boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX workflow_digests_open_idx ON workflow_digests (app_id, workflow_id, step_id, user_id, digest_key) WHERE NOT closed;
CREATE INDEX workflow_digests_user_idx ON workflow_digests (app_id, user_id);

CREATE TABLE workflow_digest_events (
    digest_id uuid NOT NULL,
    run_id    uuid NOT NULL,
    at        timestamptz NOT NULL,
    payload   jsonb NOT NULL,
    PRIMARY KEY (digest_id, run_id)
);

-- What the steps after a digest read: {"count": n, "first": [...], "last": [...]}, set when the
-- owner's window closed.
ALTER TABLE workflow_runs ADD COLUMN digest jsonb;
