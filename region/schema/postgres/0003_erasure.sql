-- Right to be forgotten. An erasure request is resumable work: its steps are recorded as they
-- complete, so a crash half-way resumes where it stopped.
CREATE TABLE erasures (
    erasure_id   uuid PRIMARY KEY,
    app_id       text NOT NULL,
    user_id      text,              -- cleared when the erasure completes
    user_hash    bytea NOT NULL,
    state        text NOT NULL CHECK (state IN ('pending', 'done')),
    steps        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
);
CREATE INDEX erasures_pending_idx ON erasures (created_at) WHERE state = 'pending';

-- Users erased: sends to them are suppressed with reason "erased". Only a hash of the id is kept.
CREATE TABLE erased_users (
    app_id    text NOT NULL,
    user_hash bytea NOT NULL,
    erased_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, user_hash)
);
