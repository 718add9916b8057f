-- Retention of what workflow runs leave behind (docs/workflows.md#retention): the region's
-- sweeper deletes finished runs, closed digests (with their events) and throttle rows past
-- their time, through these indexes.

-- A throttle row counts for the window of the step that let its run through, and is deleted
-- after it. Rows from before this column keep the longest window a throttle may have.
ALTER TABLE workflow_throttle ADD COLUMN expires_at timestamptz;
UPDATE workflow_throttle SET expires_at = passed_at + interval '366 days' WHERE expires_at IS NULL;
ALTER TABLE workflow_throttle ALTER COLUMN expires_at SET NOT NULL;
CREATE INDEX workflow_throttle_expires_idx ON workflow_throttle (expires_at);

-- Finished runs (done, stopped, failed) have no due_at.
CREATE INDEX workflow_runs_finished_idx ON workflow_runs (updated_at) WHERE due_at IS NULL;

CREATE INDEX workflow_digests_closed_idx ON workflow_digests (closes_at) WHERE closed;
