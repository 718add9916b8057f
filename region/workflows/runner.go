package workflows

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/herald-notify/herald/platform/retry"
	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/prefs"
	"github.com/herald-notify/herald/region/templates"
)

var (
	stepsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_workflow_steps_total", Help: "Workflow steps carried out, by tier, step type and outcome.",
	}, []string{"region", "tier", "type", "outcome"})
	runsFinished = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_workflow_runs_finished_total", Help: "Workflow runs that finished, by tier and state (done, stopped, failed).",
	}, []string{"region", "tier", "state"})
	runsDueLag = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "herald_workflow_runs_due_lag_seconds",
		Help: "How long the oldest due workflow run of a tier has waited to be taken (0 when none is due), as the tier's runner last looked.",
	}, []string{"region", "tier"})
)

// TemplateSource reads an app's templates.
type TemplateSource interface {
	Get(ctx context.Context, app, id string) (templates.Template, error)
}

// PrefsSource reads a user's preferences.
type PrefsSource interface {
	Get(ctx context.Context, app, user string) (prefs.Preferences, error)
}

// Sender hands a channel step's notification to fan-out, durably (on its tier's topic). It
// returns notify.ErrErased (wrapped) for a user who was erased.
type Sender interface {
	Send(ctx context.Context, e notify.Event) error
}

// MessageStatus tells what became of the message a channel step sent: the outcomes of
// wire.StepStatuses it has reached (sent, delivered, read, failed ...).
type MessageStatus interface {
	Status(ctx context.Context, app, user string, o StepOutcome) ([]string, error)
}

// Runner carries out the due steps of one tier's runs.
type Runner struct {
	DB        *pgxpool.Pool
	Region    string
	Tier      string
	Workflows *Store
	Templates TemplateSource
	Prefs     PrefsSource
	Sender    Sender
	Status    MessageStatus
	Log       *slog.Logger
	// Batch is how many runs one transaction takes (500 when 0); Poll how long the runner waits
	// when nothing is due (250 ms when 0).
	Batch int
	Poll  time.Duration
	// Now is the clock (time.Now when nil); tests move it.
	Now func() time.Time
}

// maxAttempts is how many times a step is tried before its run fails (about 25 minutes of
// retries at the 1-minute cap): a run is never retried for ever out of sight.
const maxAttempts = 30

// sendTimeout bounds one channel step's hand-off to Kafka: the batch's rows stay locked meanwhile.
const sendTimeout = 10 * time.Second

// batch is what the runs of one transaction share.
type batch struct {
	// sendErr is the first failed send: Kafka is not taking records, so the batch's other sends
	// wait for the next attempt instead of each waiting out its timeout with the rows locked.
	sendErr error
}

// retryWaits are the waits before a step that failed for a reason that may pass (Kafka, a
// store) is tried again.
var retryWaits = retry.Backoff{Initial: time.Second, Max: time.Minute, Jitter: 0.2}

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now().UTC()
	}
	return time.Now().UTC()
}

// Run takes due runs until ctx ends.
func (r *Runner) Run(ctx context.Context) error {
	poll := r.Poll
	if poll <= 0 {
		poll = 250 * time.Millisecond
	}
	waits := retry.Backoff{Initial: 250 * time.Millisecond, Max: 5 * time.Second, Jitter: 0.2}.Start()
	for ctx.Err() == nil {
		if err := r.ObserveLag(ctx); err != nil && ctx.Err() == nil {
			r.Log.Warn("workflow runner: reading the due lag", "tier", r.Tier, "err", err)
		}
		n, err := r.RunDue(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			wait := waits.Next()
			r.Log.Warn("workflow runner: taking due runs failed; retrying", "tier", r.Tier, "err", err, "retry_in", wait)
			retry.Sleep(ctx, wait)
		case n < r.batch():
			waits.Reset()
			retry.Sleep(ctx, poll)
		default:
			waits.Reset()
		}
	}
	return nil
}

func (r *Runner) batch() int {
	if r.Batch > 0 {
		return r.Batch
	}
	return 500
}

// run is one run as the runner holds it.
type run struct {
	id          uuid.UUID
	app, wf     string
	version     int64
	user        string
	payload     map[string]any
	step        int
	stepStarted time.Time
	attempts    int
	steps       map[string]StepOutcome
	digest      map[string]any // what a closed digest collected, for the steps after it
	decodeErr   error          // the row did not decode: the run fails
	batch       *batch

	// what carrying it out decided
	state     string
	dueAt     *time.Time
	lastError string
	prefs     *prefs.Preferences
}

// RunDue carries out the steps of the runs due now, up to a batch, in one transaction, and
// reports how many it took.
func (r *Runner) RunDue(ctx context.Context) (int, error) {
	now := r.now()
	tx, err := r.DB.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit it is a no-op
	// A run that waits for another batch's lock of its throttle or digest gives up and is
	// retried, rather than holding this batch's rows.
	if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '5s'`); err != nil {
		return 0, err
	}
	rows, err := tx.Query(ctx, `SELECT run_id, app_id, workflow_id, version, user_id, payload, step, step_started_at, attempts, steps, digest
		FROM workflow_runs WHERE tier = $1 AND due_at <= $2 AND state = 'running' ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED`, r.Tier, now, r.batch())
	if err != nil {
		return 0, err
	}
	// A row that does not decode fails its run alone: nothing one run holds may stop the tier.
	runs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*run, error) {
		var x run
		var payload, steps, digest []byte
		if err := row.Scan(&x.id, &x.app, &x.wf, &x.version, &x.user, &payload, &x.step, &x.stepStarted, &x.attempts, &steps, &digest); err != nil {
			return nil, err
		}
		x.decodeErr = errors.Join(json.Unmarshal(payload, &x.payload), json.Unmarshal(steps, &x.steps))
		if digest != nil {
			x.decodeErr = errors.Join(x.decodeErr, json.Unmarshal(digest, &x.digest))
		}
		return &x, nil
	})
	if err != nil {
		return 0, err
	}
	defs := map[string]*Workflow{}
	shared := &batch{}
	for _, x := range runs {
		x.batch = shared
		w, err := r.definition(ctx, defs, x)
		switch {
		case x.decodeErr != nil:
			x.state, x.lastError = StateFailed, "the run's row does not decode: "+x.decodeErr.Error()
		case err != nil:
			r.retryLater(x, now, err)
		case w == nil:
			x.state, x.lastError = StateFailed, fmt.Sprintf("version %d of workflow %s is not stored, or does not decode", x.version, x.wf)
		default:
			// Each run in a savepoint: a statement of one run that fails (which aborts a
			// transaction) takes back that run's attempt only.
			sp, err := tx.Begin(ctx)
			if err != nil {
				return 0, err
			}
			r.advance(ctx, sp, w, x)
			if err = r.save(ctx, sp, x, now); err == nil {
				err = sp.Commit(ctx)
			}
			if err == nil {
				continue
			}
			if rerr := sp.Rollback(ctx); rerr != nil {
				return 0, rerr
			}
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			// What the attempt did in the database is taken back; its sends are redone under the
			// same ids. The run stays as it was, due again later (or fails, out of attempts).
			if _, err := tx.Exec(ctx, `UPDATE workflow_runs SET attempts = attempts + 1, due_at = $2, last_error = $3, updated_at = $4,
				state = CASE WHEN attempts + 1 >= $5 THEN 'failed' ELSE state END WHERE run_id = $1`,
				x.id, now.Add(retryWait(x.attempts+1)), err.Error(), now, maxAttempts); err != nil {
				return 0, err
			}
			continue
		}
		if err := r.save(ctx, tx, x, now); err != nil {
			return 0, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, err
	}
	return len(runs), nil
}

// definition is the version x pinned (nil when it is gone or does not decode), read once a batch.
func (r *Runner) definition(ctx context.Context, defs map[string]*Workflow, x *run) (*Workflow, error) {
	key := fmt.Sprintf("%s/%s/%d", x.app, x.wf, x.version)
	if w, ok := defs[key]; ok {
		return w, nil
	}
	v, err := r.Workflows.Version(ctx, x.app, x.wf, x.version)
	switch {
	case errors.Is(err, ErrNotFound) || errors.Is(err, ErrCorrupt):
		defs[key] = nil
		return nil, nil
	case err != nil:
		return nil, err
	}
	defs[key] = &v
	return &v, nil
}

// save writes what carrying out x decided.
func (r *Runner) save(ctx context.Context, q pgx.Tx, x *run, now time.Time) error {
	steps, err := json.Marshal(x.steps)
	if err != nil {
		return err
	}
	var digest []byte
	if x.digest != nil {
		if digest, err = json.Marshal(x.digest); err != nil {
			return err
		}
	}
	if _, err := q.Exec(ctx, `UPDATE workflow_runs SET step = $2, step_started_at = $3, state = $4, due_at = $5, attempts = $6,
		last_error = $7, steps = $8, updated_at = $9, digest = $10 WHERE run_id = $1`,
		x.id, x.step, x.stepStarted, x.state, x.dueAt, x.attempts, x.lastError, steps, now, digest); err != nil {
		return err
	}
	if x.state != StateRunning {
		runsFinished.WithLabelValues(r.Region, r.Tier, x.state).Inc()
	}
	return nil
}

// retryLater keeps x at its step, due again after a wait that grows with its attempts.
func (r *Runner) retryLater(x *run, now time.Time, err error) {
	x.attempts++
	if x.attempts >= maxAttempts {
		x.state, x.dueAt, x.lastError = StateFailed, nil, fmt.Sprintf("%d attempts: %v", x.attempts, err)
		r.Log.Error("workflow run failed: a step kept failing", "run", x.id, "workflow", x.wf, "attempts", x.attempts, "err", err)
		return
	}
	due := now.Add(retryWait(x.attempts))
	x.state, x.dueAt, x.lastError = StateRunning, &due, err.Error()
	r.Log.Warn("workflow step will be retried", "run", x.id, "workflow", x.wf, "attempt", x.attempts, "err", err, "retry_at", due)
}

// retryWait is the wait before attempt n (1, 2, ...) at a step: 1 s doubling to 1 min, jittered.
func retryWait(n int) time.Duration {
	w := retryWaits.Start()
	var d time.Duration
	for range min(max(n, 1), 10) {
		d = w.Next()
	}
	return d
}

// ObserveLag sets herald_workflow_runs_due_lag_seconds from the oldest due run of the tier (one
// index read): it grows when the runners fall behind or stop, whatever they report.
func (r *Runner) ObserveLag(ctx context.Context) error {
	now := r.now()
	var oldest *time.Time
	if err := r.DB.QueryRow(ctx, `SELECT min(due_at) FROM workflow_runs WHERE tier = $1 AND due_at <= $2 AND state = 'running'`, r.Tier, now).Scan(&oldest); err != nil {
		return err
	}
	lag := 0.0
	if oldest != nil {
		lag = now.Sub(*oldest).Seconds()
	}
	runsDueLag.WithLabelValues(r.Region, r.Tier).Set(lag)
	return nil
}

// errRetry marks a step that failed for a reason that may pass: the run stays at the step.
type errRetry struct{ err error }

func (e errRetry) Error() string { return e.err.Error() }
func (e errRetry) Unwrap() error { return e.err }

// advance carries out x's steps from the one it is at until one waits or the run ends. Every
// effect is in tx or idempotent (a channel step's notification id is the run's and the step's),
// so a run redone after a crash does what it did once.
func (r *Runner) advance(ctx context.Context, tx pgx.Tx, w *Workflow, x *run) {
	x.state, x.dueAt, x.lastError = StateRunning, nil, ""
	if x.steps == nil {
		x.steps = map[string]StepOutcome{}
	}
	for x.step < len(w.Steps) {
		st := w.Steps[x.step]
		now := r.now()
		done, err := r.carryOut(ctx, tx, w, x, st, now)
		var again errRetry
		switch {
		case errors.As(err, &again):
			stepsTotal.WithLabelValues(r.Region, r.Tier, st.Type, "retry").Inc()
			r.retryLater(x, now, fmt.Errorf("step %s: %w", st.ID, err))
			return
		case err != nil:
			x.state, x.lastError = StateFailed, err.Error()
			return
		}
		out := x.steps[st.ID]
		stepsTotal.WithLabelValues(r.Region, r.Tier, st.Type, out.Status).Inc()
		if !done {
			return // waiting (x.dueAt set) or stopped (x.state set)
		}
		x.step++
		x.attempts = 0
		if out.Status == StepWaited || out.Status == StepCollected {
			// The next step starts when the wait ended, a time stored before: a step redone
			// after a crash sends the same notification (id and time) as the first try.
			x.stepStarted = out.Until
		}
		if out.Status == StepCollected {
			// The digest's contents are committed before its summary is sent: a summary sent by
			// a transaction that then failed would be redone with other contents, under the
			// same id, and dropped.
			x.dueAt = &now
			return
		}
	}
	x.state = StateDone
}

// carryOut does one step. It reports whether the run goes on to the next step at once; when
// not, it has set x.dueAt (the step waits) or x.state (the run stopped).
func (r *Runner) carryOut(ctx context.Context, tx pgx.Tx, w *Workflow, x *run, st wire.WorkflowStep, now time.Time) (bool, error) {
	if prev, ok := x.steps[st.ID]; ok && prev.Status == StepWaiting {
		// A delay that has come: it was checked when it began.
		if now.Before(prev.Until) {
			x.dueAt = &prev.Until
			return false, nil
		}
		x.steps[st.ID] = StepOutcome{Status: StepWaited, At: now, Until: prev.Until}
		return true, nil
	}
	if prev, ok := x.steps[st.ID]; ok && prev.Status == StepDigesting {
		// The owner of a digest whose window may have closed: its conditions held when it
		// opened the digest, and others' events are in it.
		return r.collect(ctx, tx, w, x, st, now)
	}
	facts := Facts{Payload: x.data(), Steps: map[string][]string{}, Enabled: func(ch string) bool {
		p, err := r.userPrefs(ctx, x)
		if err != nil {
			return false
		}
		ok, _ := p.Allows(ch, w.Category)
		return ok
	}}
	for _, c := range st.If {
		if c.Step == "" {
			continue
		}
		statuses, err := r.stepStatus(ctx, x, c.Step)
		if err != nil {
			return false, errRetry{err}
		}
		facts.Steps[c.Step] = statuses
	}
	if c := preferenceConditions(st.If); c && x.prefs == nil {
		if _, err := r.userPrefs(ctx, x); err != nil {
			return false, errRetry{err}
		}
	}
	if ok, which := Holds(st.If, facts); !ok {
		x.steps[st.ID] = StepOutcome{Status: StepSkipped, Reason: "condition_false: " + which, At: now}
		return true, nil
	}
	switch {
	case st.IsChannel():
		return true, r.send(ctx, w, x, st, now)
	case st.Type == wire.StepDelay:
		// From when the step was reached, so a runner's lag does not lengthen the wait.
		until := x.stepStarted.Add(st.DelayFor())
		if st.Until != "" {
			p, err := r.userPrefs(ctx, x)
			if err != nil {
				return false, errRetry{err}
			}
			if until, err = NextTimeOfDay(x.stepStarted, st.Until, p.Location()); err != nil {
				return false, err
			}
		}
		x.steps[st.ID] = StepOutcome{Status: StepWaiting, At: now, Until: until}
		x.dueAt = &until
		return false, nil
	case st.Type == wire.StepThrottle:
		return r.throttle(ctx, tx, w, x, st, now)
	case st.Type == wire.StepDigest:
		return r.collect(ctx, tx, w, x, st, now)
	}
	return false, fmt.Errorf("step %s: %s steps are not carried out by this version of Herald", st.ID, st.Type)
}

// data is what templates and conditions read: the trigger's payload and, after a digest, what
// it collected under "digest" (count, first, last).
func (x *run) data() map[string]any {
	if x.digest == nil {
		return x.payload
	}
	d := make(map[string]any, len(x.payload)+1)
	for k, v := range x.payload {
		d[k] = v
	}
	d["digest"] = x.digest
	return d
}

// groupKey is the value of a digest's or throttle's key in the run's payload, as JSON ("" when
// the step has no key, "null" when the payload lacks it).
func groupKey(st wire.WorkflowStep, x *run) string {
	if st.Key == "" {
		return ""
	}
	v, _ := wire.PayloadValue(x.payload, st.Key)
	raw, _ := json.Marshal(v)
	return string(raw)
}

// collect carries out a digest step. The first run to reach it for (step, user, key value)
// opens a digest it owns and waits for the window; a run that reaches it while that digest is
// open adds its payload as an event and ends; when the window closes the owner goes on once
// with every event (count, the first and last items). Joining and closing hold the same lock,
// so an event is in exactly one digest.
func (r *Runner) collect(ctx context.Context, tx pgx.Tx, w *Workflow, x *run, st wire.WorkflowStep, now time.Time) (bool, error) {
	key := groupKey(st, x)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 13))`,
		fmt.Sprintf("%s/%s/%s/%s/%s", x.app, w.ID, st.ID, x.user, key)); err != nil {
		return false, errRetry{err}
	}
	if own, ok := x.steps[st.ID]; ok && own.Status == StepDigesting {
		if now.Before(own.Until) {
			x.dueAt = &own.Until
			return false, nil
		}
		return r.close(ctx, tx, x, st, own, now)
	}
	var (
		open      uuid.UUID
		owner     uuid.UUID
		openUntil time.Time
	)
	err := tx.QueryRow(ctx, `SELECT digest_id, owner_run, closes_at FROM workflow_digests WHERE app_id = $1 AND workflow_id = $2 AND step_id = $3
		AND user_id = $4 AND digest_key = $5 AND NOT closed`, x.app, w.ID, st.ID, x.user, key).Scan(&open, &owner, &openUntil)
	switch {
	case err == nil && owner != x.id && !x.stepStarted.Before(openUntil):
		// The open digest's window ended before this event came; its owner has not closed it
		// yet. The event opens the next digest once it has.
		retry := now.Add(time.Second)
		x.dueAt = &retry
		return false, nil
	case err == nil && owner != x.id:
		if _, err := tx.Exec(ctx, `INSERT INTO workflow_digest_events (digest_id, run_id, at, payload) VALUES ($1, $2, $3, $4)
			ON CONFLICT DO NOTHING`, open, x.id, x.stepStarted, x.payload); err != nil {
			return false, errRetry{err}
		}
		x.steps[st.ID] = StepOutcome{Status: StepDigested, DigestID: open.String(), Reason: "into run " + owner.String(), At: now}
		x.state = StateDone
		return false, nil
	case err != nil && !errors.Is(err, pgx.ErrNoRows):
		return false, errRetry{err}
	}
	// None open (or this run's own, opened by a try that did not commit): open one, its window
	// starting with this event.
	closes := x.stepStarted.Add(st.DelayFor())
	if st.Until != "" {
		p, err := r.userPrefs(ctx, x)
		if err != nil {
			return false, errRetry{err}
		}
		if closes, err = NextTimeOfDay(x.stepStarted, st.Until, p.Location()); err != nil {
			return false, err
		}
	}
	id := uuid.NewSHA1(runNamespace, []byte("digest\x00"+x.id.String()+"\x00"+st.ID))
	if _, err := tx.Exec(ctx, `INSERT INTO workflow_digests (digest_id, app_id, workflow_id, step_id, user_id, digest_key, owner_run, closes_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (digest_id) DO NOTHING`, id, x.app, w.ID, st.ID, x.user, key, x.id, closes); err != nil {
		return false, errRetry{err}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO workflow_digest_events (digest_id, run_id, at, payload) VALUES ($1, $2, $3, $4)
		ON CONFLICT DO NOTHING`, id, x.id, x.stepStarted, x.payload); err != nil {
		return false, errRetry{err}
	}
	x.steps[st.ID] = StepOutcome{Status: StepDigesting, DigestID: id.String(), At: now, Until: closes}
	x.dueAt = &closes
	return false, nil
}

// close ends the owner's window: the digest is marked closed (so the next event opens a new
// one) and its events become the run's digest data.
func (r *Runner) close(ctx context.Context, tx pgx.Tx, x *run, st wire.WorkflowStep, own StepOutcome, now time.Time) (bool, error) {
	id, err := uuid.Parse(own.DigestID)
	if err != nil {
		return false, fmt.Errorf("run %s's digest id %q: %w", x.id, own.DigestID, err)
	}
	if _, err := tx.Exec(ctx, `UPDATE workflow_digests SET closed = true WHERE digest_id = $1`, id); err != nil {
		return false, errRetry{err}
	}
	n := st.DigestItems()
	var count int
	var first, last []byte
	if err := tx.QueryRow(ctx, `SELECT count(*),
			coalesce((SELECT jsonb_agg(payload ORDER BY at, run_id) FROM (SELECT payload, at, run_id FROM workflow_digest_events WHERE digest_id = $1 ORDER BY at, run_id LIMIT $2) f), '[]'),
			coalesce((SELECT jsonb_agg(payload ORDER BY at, run_id) FROM (SELECT payload, at, run_id FROM workflow_digest_events WHERE digest_id = $1 ORDER BY at DESC, run_id DESC LIMIT $2) l), '[]')
		FROM workflow_digest_events WHERE digest_id = $1`, id, n).Scan(&count, &first, &last); err != nil {
		return false, errRetry{err}
	}
	var f, l []any
	if err := json.Unmarshal(first, &f); err != nil {
		return false, err
	}
	if err := json.Unmarshal(last, &l); err != nil {
		return false, err
	}
	x.digest = map[string]any{"count": count, "first": f, "last": l}
	x.steps[st.ID] = StepOutcome{Status: StepCollected, DigestID: own.DigestID, Events: count, At: now, Until: own.Until}
	return true, nil
}

func preferenceConditions(conds []wire.WorkflowCondition) bool {
	for _, c := range conds {
		if c.Preference != "" {
			return true
		}
	}
	return false
}

func (r *Runner) userPrefs(ctx context.Context, x *run) (prefs.Preferences, error) {
	if x.prefs != nil {
		return *x.prefs, nil
	}
	p, err := r.Prefs.Get(ctx, x.app, x.user)
	if err != nil {
		return prefs.Preferences{}, fmt.Errorf("reading the user's preferences: %w", err)
	}
	x.prefs = &p
	return p, nil
}

// stepStatus is what became of an earlier step of x.
func (r *Runner) stepStatus(ctx context.Context, x *run, step string) ([]string, error) {
	o, ok := x.steps[step]
	switch {
	case !ok:
		return nil, nil
	case o.Status != StepSent:
		return []string{o.Status}, nil
	}
	got, err := r.Status.Status(ctx, x.app, x.user, o)
	if err != nil {
		return nil, fmt.Errorf("reading the status of step %s: %w", step, err)
	}
	return append(got, StepSent), nil
}

// send renders the step's template with the run's payload and hands the notification to
// fan-out, under an id derived from the run and the step.
func (r *Runner) send(ctx context.Context, w *Workflow, x *run, st wire.WorkflowStep, now time.Time) error {
	fail := func(reason string) error {
		x.steps[st.ID] = StepOutcome{Status: StepFailed, Reason: reason, Channel: st.Type, At: now}
		return nil
	}
	t, err := r.Templates.Get(ctx, x.app, st.TemplateID)
	if errors.Is(err, templates.ErrNotFound) {
		return fail("unknown_template: " + st.TemplateID)
	}
	if err != nil {
		return errRetry{fmt.Errorf("reading template %s: %w", st.TemplateID, err)}
	}
	content, err := templates.Render(t, x.data())
	if err != nil {
		return fail("render: " + err.Error())
	}
	c, ok := content[st.Type]
	if !ok {
		return fail(fmt.Sprintf("template %s has no %s content", st.TemplateID, st.Type))
	}
	localized, err := templates.RenderLocales(t, x.data())
	if err != nil {
		return fail("render: " + err.Error())
	}
	for loc, chans := range localized {
		if lc, ok := chans[st.Type]; ok {
			localized[loc] = map[string]notify.Content{st.Type: lc}
		} else {
			delete(localized, loc)
		}
	}
	if len(localized) == 0 {
		localized = nil
	}
	id := NotificationID(x.id, st.ID).String()
	e := notify.Event{
		ID: id, AppID: x.app, Tier: w.Type, Category: w.Category, Recipients: []string{x.user}, Channels: []string{st.Type},
		TemplateID: t.ID, Content: map[string]notify.Content{st.Type: c}, Localized: localized, AcceptedAt: x.stepStarted,
		Metadata: map[string]string{"workflow_id": w.ID, "workflow_version": fmt.Sprint(w.Version), "workflow_run_id": x.id.String(), "workflow_step": st.ID},
	}
	if x.batch != nil && x.batch.sendErr != nil {
		return errRetry{fmt.Errorf("not sent: an earlier send of this batch failed: %w", x.batch.sendErr)}
	}
	sctx, cancel := context.WithTimeout(ctx, sendTimeout)
	err = r.Sender.Send(sctx, e)
	cancel()
	if err != nil {
		if errors.Is(err, notify.ErrErased) {
			return fail("erased")
		}
		if x.batch != nil {
			x.batch.sendErr = err
		}
		return errRetry{fmt.Errorf("sending step %s: %w", st.ID, err)}
	}
	x.steps[st.ID] = StepOutcome{Status: StepSent, NotificationID: id, Channel: st.Type, At: x.stepStarted}
	return nil
}

// throttle lets the run through when fewer than the step's limit of runs passed it within its
// window, for the user and the key's value, counted under a lock of that group; otherwise the
// run stops, suppressed with the reason throttled.
func (r *Runner) throttle(ctx context.Context, tx pgx.Tx, w *Workflow, x *run, st wire.WorkflowStep, now time.Time) (bool, error) {
	key := groupKey(st, x)
	group := fmt.Sprintf("%s/%s/%s/%s/%s", x.app, w.ID, st.ID, x.user, key)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 11))`, group); err != nil {
		return false, errRetry{err}
	}
	var passed int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM workflow_throttle WHERE app_id = $1 AND workflow_id = $2 AND step_id = $3 AND user_id = $4
		AND throttle_key = $5 AND passed_at > $6`, x.app, w.ID, st.ID, x.user, key, now.Add(-st.DelayFor())).Scan(&passed); err != nil {
		return false, errRetry{err}
	}
	if passed >= st.Limit {
		x.steps[st.ID] = StepOutcome{Status: StepThrottled, Reason: fmt.Sprintf("throttled: %d runs within %s", passed, st.Duration), At: now}
		x.state = StateStopped
		return false, nil
	}
	if _, err := tx.Exec(ctx, `INSERT INTO workflow_throttle (app_id, workflow_id, step_id, user_id, throttle_key, run_id, passed_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, x.app, w.ID, st.ID, x.user, key, x.id, now); err != nil {
		return false, errRetry{err}
	}
	x.steps[st.ID] = StepOutcome{Status: StepPassed, At: now}
	return true, nil
}

// DueLag is the tier's herald_workflow_runs_due_lag_seconds, for tests.
func DueLag(region, tier string) prometheus.Gauge { return runsDueLag.WithLabelValues(region, tier) }
