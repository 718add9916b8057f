package workflows

import (
	"context"
	"crypto/md5"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Run states.
const (
	StateRunning = "running" // waiting for due_at, or being carried out
	StateDone    = "done"    // every step carried out (or skipped)
	StateStopped = "stopped" // a throttle stopped it
	StateFailed  = "failed"  // it cannot go on: its version is gone, or a step kept failing (last_error)
)

// Step outcomes, in a run's steps.
const (
	StepSent      = "sent"       // a channel step's notification was handed to fan-out
	StepSkipped   = "skipped"    // its conditions did not hold
	StepWaited    = "waited"     // a delay that has passed
	StepWaiting   = "waiting"    // a delay not yet passed
	StepPassed    = "passed"     // a throttle let the run through
	StepThrottled = "suppressed" // a throttle stopped the run (reason throttled)
	StepFailed    = "failed"     // a channel step that could not be sent (its reason says why)
	StepDigesting = "digesting"  // the run owns an open digest and waits for its window to close
	StepCollected = "collected"  // the owner's digest closed: the run goes on with every event
	StepDigested  = "digested"   // the run's event joined another run's open digest; it ends here
)

// runNamespace derives run, trigger and notification ids.
var runNamespace = uuid.MustParse("8f4b7f8e-2f7a-5c57-9a43-52b1c7f0b0a1")

// TriggerID is the id of an app's trigger of a workflow with a key: the same for every retry.
func TriggerID(app, workflow, key string) uuid.UUID {
	return uuid.NewSHA1(runNamespace, []byte("trigger\x00"+app+"\x00"+workflow+"\x00"+key))
}

// RunID is the id of a trigger's run for one user: the MD5 of "run/<trigger>/<user>" (user ids
// hold no "/"), which Postgres computes alike (runIDSQL) for a topic's subscribers.
func RunID(trigger uuid.UUID, user string) uuid.UUID {
	return uuid.UUID(md5.Sum([]byte("run/" + trigger.String() + "/" + user)))
}

// runIDSQL is RunID in SQL, of the trigger $5 and a user_id column.
const runIDSQL = `md5('run/' || $5::uuid::text || '/' || user_id)::uuid`

// NotificationID is the id of the notification a run's channel step sends: the same however
// often the step is carried out, so a redone step is one notification.
func NotificationID(run uuid.UUID, step string) uuid.UUID {
	return uuid.NewSHA1(runNamespace, []byte("notification\x00"+run.String()+"\x00"+step))
}

// StepOutcome is what became of one step of a run.
type StepOutcome struct {
	Status         string    `json:"status"`
	Reason         string    `json:"reason,omitempty"`
	NotificationID string    `json:"notification_id,omitempty"`
	Channel        string    `json:"channel,omitempty"`
	At             time.Time `json:"at"`
	Until          time.Time `json:"until,omitzero"`
	DigestID       string    `json:"digest_id,omitempty"`
	Events         int       `json:"events,omitempty"` // a collected digest's events
}

// Run is one run as the API shows it.
type Run struct {
	ID         string                 `json:"run_id"`
	TriggerID  string                 `json:"trigger_id"`
	WorkflowID string                 `json:"workflow_id"`
	Version    int64                  `json:"version"`
	UserID     string                 `json:"user_id"`
	State      string                 `json:"state"`
	Step       string                 `json:"step,omitempty"` // the step a running run is at
	DueAt      *time.Time             `json:"due_at,omitempty"`
	LastError  string                 `json:"last_error,omitempty"`
	Steps      map[string]StepOutcome `json:"steps"`
	CreatedAt  time.Time              `json:"created_at"`
	UpdatedAt  time.Time              `json:"updated_at"`
}

// Triggered is what a trigger did in this region.
type Triggered struct {
	TriggerID string `json:"trigger_id"`
	Runs      int    `json:"runs"`       // runs started now
	Existing  int    `json:"duplicates"` // runs the same trigger started before
}

// Trigger starts one run of w per user, due at once, and reports how many were new. A user
// whose run of this trigger exists already gets no second one.
func (s *Store) Trigger(ctx context.Context, app string, w Workflow, key string, users []string, payload map[string]any, now time.Time) (Triggered, error) {
	raw, err := payloadJSON(payload)
	if err != nil {
		return Triggered{}, err
	}
	trigger := TriggerID(app, w.ID, key)
	tag, err := s.db.Exec(ctx, `INSERT INTO workflow_runs (run_id, app_id, workflow_id, version, tier, user_id, trigger_id, payload, step_started_at, due_at)
		SELECT `+runIDSQL+`, $2, $3, $4, $8, user_id, $5::uuid, $6, $7, $7 FROM unnest($1::text[]) AS r(user_id)
		ON CONFLICT (run_id) DO NOTHING`, users, app, w.ID, w.Version, trigger, raw, now, w.Type)
	if err != nil {
		return Triggered{}, fmt.Errorf("starting runs of %s: %w", w.ID, err)
	}
	n := int(tag.RowsAffected())
	return Triggered{TriggerID: trigger.String(), Runs: n, Existing: len(users) - n}, nil
}

// TriggerTopic starts one run of w per subscriber of topic in this jurisdiction.
func (s *Store) TriggerTopic(ctx context.Context, app string, w Workflow, key, topic string, payload map[string]any, now time.Time) (Triggered, error) {
	raw, err := payloadJSON(payload)
	if err != nil {
		return Triggered{}, err
	}
	trigger := TriggerID(app, w.ID, key)
	var runs, subscribers int
	err = s.db.QueryRow(ctx, `WITH subs AS (
			SELECT user_id FROM topic_subscriptions WHERE app_id = $1 AND topic = $2
		), ins AS (
			INSERT INTO workflow_runs (run_id, app_id, workflow_id, version, tier, user_id, trigger_id, payload, step_started_at, due_at)
			SELECT `+runIDSQL+`, $1, $3, $4, $8, user_id, $5::uuid, $6, $7, $7 FROM subs
			ON CONFLICT (run_id) DO NOTHING RETURNING 1
		)
		SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM subs)`, app, topic, w.ID, w.Version, trigger, raw, now, w.Type).Scan(&runs, &subscribers)
	if err != nil {
		return Triggered{}, fmt.Errorf("starting runs of %s for topic %s: %w", w.ID, topic, err)
	}
	return Triggered{TriggerID: trigger.String(), Runs: runs, Existing: subscribers - runs}, nil
}

func payloadJSON(payload map[string]any) ([]byte, error) {
	if payload == nil {
		payload = map[string]any{}
	}
	raw, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("encoding a trigger's payload: %w", err)
	}
	return raw, nil
}

// ErrRunNotFound means the app has no such run.
var ErrRunNotFound = errors.New("workflow run not found")

// GetRun reads one of the app's runs.
func (s *Store) GetRun(ctx context.Context, app, id string) (Run, error) {
	rid, err := uuid.Parse(id)
	if err != nil {
		return Run{}, ErrRunNotFound
	}
	var (
		r     Run
		step  int
		steps []byte
		trig  uuid.UUID
	)
	err = s.db.QueryRow(ctx, `SELECT trigger_id, workflow_id, version, user_id, state, step, due_at, last_error, steps, created_at, updated_at
		FROM workflow_runs WHERE run_id = $1 AND app_id = $2`, rid, app).Scan(&trig, &r.WorkflowID, &r.Version, &r.UserID, &r.State, &step, &r.DueAt,
		&r.LastError, &steps, &r.CreatedAt, &r.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Run{}, ErrRunNotFound
	}
	if err != nil {
		return Run{}, fmt.Errorf("reading run %s: %w", id, err)
	}
	r.ID, r.TriggerID = rid.String(), trig.String()
	if err := json.Unmarshal(steps, &r.Steps); err != nil {
		return Run{}, fmt.Errorf("run %s's steps: %w", id, err)
	}
	if r.State == StateRunning {
		if w, err := s.Version(ctx, app, r.WorkflowID, r.Version); err == nil && step < len(w.Steps) {
			r.Step = w.Steps[step].ID
		}
	}
	return r, nil
}
