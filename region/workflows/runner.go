package workflows

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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

// Sender hands channel steps' notifications to fan-out, durably (on their tiers' topics): it
// returns nil once every one is acknowledged. erased[i] reports that the user of events[i] was
// erased, so nothing was produced for it.
type Sender interface {
	Send(ctx context.Context, events []notify.Event) (erased []bool, err error)
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
	// Batch is how many runs one transaction takes (2,000 when 0); Workers how many transactions
	// take runs at once (4 when 0); Poll how long a worker waits when nothing is due (250 ms
	// when 0).
	Batch   int
	Workers int
	Poll    time.Duration
	// Now is the clock (time.Now when nil); tests move it.
	Now func() time.Time
}

// maxAttempts is how many times a step is tried before its run fails (about 25 minutes of
// retries at the 1-minute cap): a run is never retried for ever out of sight.
const maxAttempts = 30

// sendTimeout bounds the hand-off of a batch's notifications to Kafka: the batch's rows stay
// locked meanwhile.
const sendTimeout = 10 * time.Second

// batch is what the runs of one transaction share.
type batch struct {
	// templates read once a batch, by app and id
	templates map[string]templates.Template
	// sends are the channel steps' notifications, handed to Kafka together before the commit
	sends []pendingSend
	// counts are the steps carried out, added to herald_workflow_steps_total once committed
	counts map[[2]string]int
}

type pendingSend struct {
	x     *run
	step  string
	event notify.Event
}

func (b *batch) count(typ, outcome string, n int) {
	if b.counts == nil {
		b.counts = map[[2]string]int{}
	}
	b.counts[[2]string{typ, outcome}] += n
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

// Run takes due runs until ctx ends, with r.Workers transactions at once (rows are taken FOR
// UPDATE SKIP LOCKED, so no two take the same run).
func (r *Runner) Run(ctx context.Context) error {
	workers := r.Workers
	if workers <= 0 {
		workers = 4
	}
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.work(ctx, i == 0)
		}()
	}
	wg.Wait()
	return nil
}

func (r *Runner) work(ctx context.Context, observe bool) {
	poll := r.Poll
	if poll <= 0 {
		poll = 250 * time.Millisecond
	}
	waits := retry.Backoff{Initial: 250 * time.Millisecond, Max: 5 * time.Second, Jitter: 0.2}.Start()
	for ctx.Err() == nil {
		if observe {
			if err := r.ObserveLag(ctx); err != nil && ctx.Err() == nil {
				r.Log.Warn("workflow runner: reading the due lag", "tier", r.Tier, "err", err)
			}
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
}

func (r *Runner) batch() int {
	if r.Batch > 0 {
		return r.Batch
	}
	return 2000
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
	taken       int // attempts when the row was read
	steps       map[string]StepOutcome
	digest      map[string]any // what a closed digest collected, for the steps after it
	decodeErr   error          // the row did not decode: the run fails
	batch       *batch
	counts      map[[2]string]int // steps carried out, added to the batch's once the run's attempt stands
	closed      bool              // its digest was closed by the batch: its row is left as it was, due, for the next transaction
	undone      bool              // its attempt was taken back and recorded apart

	// what carrying it out decided
	state     string
	dueAt     *time.Time
	lastError string
	prefs     *prefs.Preferences
}

// RunDue carries out the steps of the runs due now, up to a batch, in one transaction, and
// reports how many it took. The batch's channel-step notifications are handed to Kafka together
// before the commit, and the runs are written back in one statement.
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
		x.taken = x.attempts
		x.decodeErr = errors.Join(json.Unmarshal(payload, &x.payload), json.Unmarshal(steps, &x.steps))
		if digest != nil {
			x.decodeErr = errors.Join(x.decodeErr, json.Unmarshal(digest, &x.digest))
		}
		return &x, nil
	})
	if err != nil {
		return 0, err
	}
	if len(runs) == 0 {
		return 0, tx.Commit(ctx)
	}
	defs := map[string]*Workflow{}
	shared := &batch{templates: map[string]templates.Template{}}
	for _, x := range runs {
		x.batch = shared
	}
	// Digests whose window has ended are closed together (the 09:00 digest of a million users is
	// a million of them); their summaries go out in the next transaction, once the close is
	// committed and no event can join them any more.
	if err := r.closeDue(ctx, tx, defs, runs, now); err != nil {
		return 0, err
	}
	// Everything the runs' steps do from here is taken back if the batch's notifications cannot
	// be handed to Kafka.
	steps, err := tx.Begin(ctx)
	if err != nil {
		return 0, err
	}
	for _, x := range runs {
		if x.closed {
			continue
		}
		w, err := r.definition(ctx, defs, x)
		switch {
		case x.decodeErr != nil:
			x.state, x.lastError = StateFailed, "the run's row does not decode: "+x.decodeErr.Error()
		case err != nil:
			r.retryLater(x, now, err)
		case w == nil:
			x.state, x.lastError = StateFailed, fmt.Sprintf("version %d of workflow %s is not stored, or does not decode", x.version, x.wf)
		default:
			// Each run in a savepoint, begun at its first statement: a statement of one run that
			// fails (which aborts a transaction) takes back that run's attempt only.
			sp := &savepoint{tx: steps}
			r.advance(ctx, sp, w, x)
			if err := sp.end(ctx); err != nil {
				if ctx.Err() != nil {
					return 0, ctx.Err()
				}
				// What the attempt did in the database is taken back; its sends are redone under
				// the same ids. The run stays as it was, due again later (or fails, out of attempts).
				reason := x.lastError
				if reason == "" {
					reason = err.Error()
				}
				if err := r.undo(ctx, steps, []*run{x}, reason, now); err != nil {
					return 0, err
				}
				continue
			}
		}
		for k, n := range x.counts {
			shared.count(k[0], k[1], n)
		}
	}
	if err := r.flush(ctx, shared); err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		// Kafka did not take them: every run's attempt is taken back, and the runs that were to
		// send wait at their step, due again later.
		if rerr := steps.Rollback(ctx); rerr != nil {
			return 0, rerr
		}
		senders := map[*run]bool{}
		var undo []*run
		for _, p := range shared.sends {
			if !senders[p.x] {
				senders[p.x] = true
				undo = append(undo, p.x)
				stepsTotal.WithLabelValues(r.Region, r.Tier, p.x.steps[p.step].Channel, "retry").Inc()
			}
		}
		r.Log.Warn("workflow steps will be retried: their notifications were not handed to Kafka", "tier", r.Tier, "runs", len(undo), "err", err)
		for _, x := range runs {
			x.undone = x.undone || !x.closed
		}
		if err := r.undo(ctx, tx, undo, err.Error(), now); err != nil {
			return 0, err
		}
		if err := r.saveAll(ctx, tx, runs, now); err != nil {
			return 0, err
		}
		return len(runs), tx.Commit(ctx)
	}
	if err := steps.Commit(ctx); err != nil {
		return 0, err
	}
	if err := r.saveAll(ctx, tx, runs, now); err != nil {
		return 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, err
	}
	for k, n := range shared.counts {
		stepsTotal.WithLabelValues(r.Region, r.Tier, k[0], k[1]).Add(float64(n))
	}
	for _, x := range runs {
		if !x.undone && x.state != StateRunning {
			runsFinished.WithLabelValues(r.Region, r.Tier, x.state).Inc()
		}
	}
	return len(runs), nil
}

// undo records that the attempts of runs were taken back: each stays at its step, due again
// after a wait that grows with its attempts, or fails when it is out of attempts.
func (r *Runner) undo(ctx context.Context, q pgx.Tx, runs []*run, reason string, now time.Time) error {
	if len(runs) == 0 {
		return nil
	}
	ids := make([]string, len(runs))
	dues := make([]time.Time, len(runs))
	errs := make([]string, len(runs))
	for i, x := range runs {
		x.undone = true
		n := x.taken + 1
		ids[i], dues[i], errs[i] = x.id.String(), now.Add(retryWait(n)), reason
		if n >= maxAttempts {
			errs[i] = fmt.Sprintf("%d attempts: %s", n, reason)
			r.Log.Error("workflow run failed: a step kept failing", "run", x.id, "workflow", x.wf, "attempts", n, "err", reason)
		}
	}
	_, err := q.Exec(ctx, `UPDATE workflow_runs r SET attempts = r.attempts + 1, due_at = u.due, last_error = u.err, updated_at = $1,
		state = CASE WHEN r.attempts + 1 >= $2 THEN 'failed' ELSE r.state END
		FROM unnest($3::text[], $4::timestamptz[], $5::text[]) AS u(id, due, err) WHERE r.run_id = u.id::uuid`,
		now, maxAttempts, ids, dues, errs)
	return err
}

// flush hands the batch's notifications to Kafka, all together.
func (r *Runner) flush(ctx context.Context, b *batch) error {
	if len(b.sends) == 0 {
		return nil
	}
	events := make([]notify.Event, len(b.sends))
	for i, p := range b.sends {
		events[i] = p.event
	}
	sctx, cancel := context.WithTimeout(ctx, sendTimeout)
	erased, err := r.Sender.Send(sctx, events)
	cancel()
	if err != nil {
		return fmt.Errorf("handing %d notifications to fan-out: %w", len(events), err)
	}
	for i, p := range b.sends {
		if i >= len(erased) || !erased[i] || p.x.undone {
			continue
		}
		out := p.x.steps[p.step]
		p.x.steps[p.step] = StepOutcome{Status: StepFailed, Reason: "erased", Channel: out.Channel, At: out.At}
		p.x.state, p.x.dueAt, p.x.lastError = StateStopped, nil, "the user was erased"
		b.count(out.Channel, StepSent, -1)
		b.count(out.Channel, StepFailed, 1)
	}
	return nil
}

// savepoint is a run's savepoint, begun at its first statement: most steps (a channel step, a
// delay) need none, and a batch of a thousand runs spares two thousand round trips. Statements
// run on the transaction inside it; one that fails aborts it, and end takes it back.
type savepoint struct {
	tx     pgx.Tx
	begun  bool
	failed error
}

func (s *savepoint) begin(ctx context.Context) error {
	if s.failed != nil {
		return s.failed // the savepoint is aborted: nothing more runs in it
	}
	if !s.begun {
		if _, err := s.tx.Exec(ctx, `SAVEPOINT run`); err != nil {
			s.failed = err
			return err
		}
		s.begun = true
	}
	return nil
}

func (s *savepoint) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if err := s.begin(ctx); err != nil {
		return pgconn.CommandTag{}, err
	}
	tag, err := s.tx.Exec(ctx, sql, args...)
	if err != nil {
		s.failed = err
	}
	return tag, err
}

func (s *savepoint) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := s.begin(ctx); err != nil {
		return errRow{err}
	}
	return watchedRow{s.tx.QueryRow(ctx, sql, args...), s}
}

// watchedRow records a failed statement in its savepoint (no row is not a failure).
type watchedRow struct {
	pgx.Row
	s *savepoint
}

func (w watchedRow) Scan(dest ...any) error {
	err := w.Row.Scan(dest...)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		w.s.failed = err
	}
	return err
}

// end releases the savepoint or, when a statement in it failed, takes it back and returns that
// statement's error.
func (s *savepoint) end(ctx context.Context) error {
	switch {
	case !s.begun:
		return s.failed
	case s.failed != nil:
		if _, err := s.tx.Exec(ctx, `ROLLBACK TO SAVEPOINT run`); err != nil {
			return err
		}
		if _, err := s.tx.Exec(ctx, `RELEASE SAVEPOINT run`); err != nil {
			return err
		}
		return s.failed
	}
	_, err := s.tx.Exec(ctx, `RELEASE SAVEPOINT run`)
	return err
}

type errRow struct{ err error }

func (e errRow) Scan(...any) error { return e.err }

// querier is what a step's statements run on: the run's savepoint, or the batch's transaction.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
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

// saveAll writes what carrying out the runs decided, in one statement (the runs whose attempt
// was taken back were recorded apart).
func (r *Runner) saveAll(ctx context.Context, q pgx.Tx, runs []*run, now time.Time) error {
	var (
		ids, states, errs, steps []string
		stepAt                   []int32
		started                  []time.Time
		dues                     []*time.Time
		attempts                 []int32
		digests                  []*string
	)
	for _, x := range runs {
		if x.undone || x.closed {
			continue
		}
		raw, err := json.Marshal(x.steps)
		if err != nil {
			return err
		}
		var digest *string
		if x.digest != nil {
			d, err := json.Marshal(x.digest)
			if err != nil {
				return err
			}
			ds := string(d)
			digest = &ds
		}
		ids, states, errs, steps = append(ids, x.id.String()), append(states, x.state), append(errs, x.lastError), append(steps, string(raw))
		stepAt, started, dues = append(stepAt, int32(x.step)), append(started, x.stepStarted), append(dues, x.dueAt) //nolint:gosec // a step index
		attempts, digests = append(attempts, int32(x.attempts)), append(digests, digest)                             //nolint:gosec // at most maxAttempts
	}
	if len(ids) == 0 {
		return nil
	}
	_, err := q.Exec(ctx, `UPDATE workflow_runs r SET step = u.step, step_started_at = u.started, state = u.state, due_at = u.due,
		attempts = u.attempts, last_error = u.err, steps = u.steps::jsonb, updated_at = $1, digest = u.digest::jsonb
		FROM unnest($2::text[], $3::int[], $4::timestamptz[], $5::text[], $6::timestamptz[], $7::int[], $8::text[], $9::text[], $10::text[])
			AS u(id, step, started, state, due, attempts, err, steps, digest)
		WHERE r.run_id = u.id::uuid`, now, ids, stepAt, started, states, dues, attempts, errs, steps, digests)
	if err != nil {
		return fmt.Errorf("saving %d runs: %w", len(ids), err)
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
func (r *Runner) advance(ctx context.Context, tx querier, w *Workflow, x *run) {
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
			x.count(st.Type, "retry")
			r.retryLater(x, now, fmt.Errorf("step %s: %w", st.ID, err))
			return
		case err != nil:
			x.state, x.lastError = StateFailed, err.Error()
			return
		}
		out := x.steps[st.ID]
		x.count(st.Type, out.Status)
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
func (r *Runner) carryOut(ctx context.Context, tx querier, w *Workflow, x *run, st wire.WorkflowStep, now time.Time) (bool, error) {
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

func (x *run) count(typ, outcome string) {
	if x.counts == nil {
		x.counts = map[[2]string]int{}
	}
	x.counts[[2]string{typ, outcome}]++
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
func (r *Runner) collect(ctx context.Context, tx querier, w *Workflow, x *run, st wire.WorkflowStep, now time.Time) (bool, error) {
	key := groupKey(st, x)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 13))`, digestGroup(x, w, st)); err != nil {
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
// one) and its events become the run's digest data. The caller holds the digest's lock.
func (r *Runner) close(ctx context.Context, tx querier, x *run, st wire.WorkflowStep, own StepOutcome, now time.Time) (bool, error) {
	id, err := uuid.Parse(own.DigestID)
	if err != nil {
		return false, fmt.Errorf("run %s's digest id %q: %w", x.id, own.DigestID, err)
	}
	got, err := closeDigests(ctx, tx, []closing{{x: x, st: st, own: own, id: id}})
	if err != nil {
		return false, errRetry{err}
	}
	got[0].apply(now)
	return true, nil
}

// closing is an owner's digest whose window has ended.
type closing struct {
	x     *run
	st    wire.WorkflowStep
	own   StepOutcome
	id    uuid.UUID
	group string // its lock's key
	// what it collected
	count       int
	first, last []any
}

func (c *closing) apply(now time.Time) {
	c.x.digest = map[string]any{"count": c.count, "first": c.first, "last": c.last}
	c.x.steps[c.st.ID] = StepOutcome{Status: StepCollected, DigestID: c.own.DigestID, Events: c.count, At: now, Until: c.own.Until}
}

// closeDigests marks the digests closed and reads what each collected.
func closeDigests(ctx context.Context, q querier, cs []closing) ([]closing, error) {
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.id.String()
	}
	if _, err := q.Exec(ctx, `UPDATE workflow_digests SET closed = true WHERE digest_id = ANY($1::uuid[])`, ids); err != nil {
		return nil, fmt.Errorf("closing %d digests: %w", len(cs), err)
	}
	return readDigests(ctx, q, cs)
}

// readDigests reads what each digest collected (count, the first and last items) in one
// statement, whatever their number. A closed digest's events no longer change.
func readDigests(ctx context.Context, q querier, cs []closing) ([]closing, error) {
	ids := make([]string, len(cs))
	items := make([]int32, len(cs))
	at := make(map[string]int, len(cs))
	for i, c := range cs {
		ids[i], items[i] = c.id.String(), int32(c.st.DigestItems()) //nolint:gosec // validated, small
		at[ids[i]] = i
	}
	var raw []byte
	err := q.QueryRow(ctx, `SELECT coalesce(jsonb_agg(jsonb_build_array(d.id, (SELECT count(*) FROM workflow_digest_events WHERE digest_id = d.id::uuid),
			coalesce((SELECT jsonb_agg(payload ORDER BY at, run_id) FROM (SELECT payload, at, run_id FROM workflow_digest_events
				WHERE digest_id = d.id::uuid ORDER BY at, run_id LIMIT d.n) f), '[]'),
			coalesce((SELECT jsonb_agg(payload ORDER BY at, run_id) FROM (SELECT payload, at, run_id FROM workflow_digest_events
				WHERE digest_id = d.id::uuid ORDER BY at DESC, run_id DESC LIMIT d.n) l), '[]'))), '[]')
		FROM unnest($1::text[], $2::int[]) AS d(id, n)`, ids, items).Scan(&raw)
	if err != nil {
		return nil, fmt.Errorf("reading %d digests: %w", len(cs), err)
	}
	var rows [][4]json.RawMessage
	if err := json.Unmarshal(raw, &rows); err != nil {
		return nil, fmt.Errorf("reading %d digests: %w", len(cs), err)
	}
	if len(rows) != len(cs) {
		return nil, fmt.Errorf("read %d of %d digests", len(rows), len(cs))
	}
	for _, row := range rows {
		var id string
		var count int
		var first, last []any
		if err := errors.Join(json.Unmarshal(row[0], &id), json.Unmarshal(row[1], &count), json.Unmarshal(row[2], &first),
			json.Unmarshal(row[3], &last)); err != nil {
			return nil, fmt.Errorf("reading digest: %w", err)
		}
		i, ok := at[id]
		if !ok {
			return nil, fmt.Errorf("read digest %s, not asked for", id)
		}
		cs[i].count, cs[i].first, cs[i].last = count, first, last
		if cs[i].first == nil {
			cs[i].first = []any{}
		}
		if cs[i].last == nil {
			cs[i].last = []any{}
		}
	}
	return cs, nil
}

// closeDue handles, together, the batch's owners whose digest window has ended (the 09:00
// digest of a million users is a million of them), in a handful of statements:
//   - a digest still open is closed under its lock (the locks taken in one statement, in the
//     order of their keys); its run's row is left as it was, due, for the next transaction;
//   - a digest closed by an earlier transaction holds its events for good: the run reads them
//     and goes on to its next steps in this one (the summary is sent).
//
// So a summary is only ever sent after its digest's close was committed, and a run's row is
// written once. When closing fails the owners are left to the per-run path, which takes each
// lock and closes each digest alone.
func (r *Runner) closeDue(ctx context.Context, tx pgx.Tx, defs map[string]*Workflow, runs []*run, now time.Time) error {
	var cs []closing
	for _, x := range runs {
		if x.decodeErr != nil {
			continue
		}
		w, err := r.definition(ctx, defs, x)
		if err != nil || w == nil || x.step >= len(w.Steps) {
			continue
		}
		st := w.Steps[x.step]
		own, ok := x.steps[st.ID]
		if st.Type != wire.StepDigest || !ok || own.Status != StepDigesting || now.Before(own.Until) {
			continue
		}
		id, err := uuid.Parse(own.DigestID)
		if err != nil {
			continue
		}
		cs = append(cs, closing{x: x, st: st, own: own, id: id, group: digestGroup(x, w, st)})
	}
	if len(cs) == 0 {
		return nil
	}
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.id.String()
	}
	rows, err := tx.Query(ctx, `SELECT digest_id::text FROM workflow_digests WHERE digest_id = ANY($1::uuid[]) AND closed`, ids)
	if err != nil {
		return err
	}
	done, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	isClosed := make(map[string]bool, len(done))
	for _, id := range done {
		isClosed[id] = true
	}
	var open, ready []closing
	for _, c := range cs {
		if isClosed[c.id.String()] {
			ready = append(ready, c)
		} else {
			open = append(open, c)
		}
	}
	if len(ready) > 0 {
		got, err := readDigests(ctx, tx, ready)
		if err != nil {
			return err
		}
		for i := range got {
			c := &got[i]
			c.apply(now)
			x := c.x
			x.count(c.st.Type, StepCollected)
			x.state, x.lastError = StateRunning, ""
			x.step++
			x.attempts = 0
			x.stepStarted = c.own.Until
		}
	}
	if len(open) == 0 {
		return nil
	}
	slices.SortFunc(open, func(a, b closing) int { return strings.Compare(a.group, b.group) })
	groups := make([]string, len(open))
	openIDs := make([]string, len(open))
	for i, c := range open {
		groups[i], openIDs[i] = c.group, c.id.String()
	}
	sp, err := tx.Begin(ctx)
	if err != nil {
		return err
	}
	_, err = sp.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended(k, 13)) FROM unnest($1::text[]) WITH ORDINALITY AS g(k, i) ORDER BY i`, groups)
	if err == nil {
		_, err = sp.Exec(ctx, `UPDATE workflow_digests SET closed = true WHERE digest_id = ANY($1::uuid[])`, openIDs)
	}
	if err == nil {
		err = sp.Commit(ctx)
	}
	if err != nil {
		if rerr := sp.Rollback(ctx); rerr != nil {
			return rerr
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.Log.Warn("workflow runner: closing digests together failed; closing each alone", "tier", r.Tier, "digests", len(open), "err", err)
		return nil
	}
	for _, c := range open {
		c.x.closed = true
	}
	return nil
}

// digestGroup is the key of the lock a digest's joiners and its owner take.
func digestGroup(x *run, w *Workflow, st wire.WorkflowStep) string {
	return fmt.Sprintf("%s/%s/%s/%s/%s", x.app, w.ID, st.ID, x.user, groupKey(st, x))
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

// template reads an app's template once a batch.
func (r *Runner) template(ctx context.Context, x *run, id string) (templates.Template, error) {
	key := x.app + "\x00" + id
	if t, ok := x.batch.templates[key]; ok {
		return t, nil
	}
	t, err := r.Templates.Get(ctx, x.app, id)
	if err != nil {
		return templates.Template{}, err
	}
	x.batch.templates[key] = t
	return t, nil
}

// send renders the step's template with the run's payload and queues the notification, under
// an id derived from the run and the step, for the batch's hand-off to fan-out.
func (r *Runner) send(ctx context.Context, w *Workflow, x *run, st wire.WorkflowStep, now time.Time) error {
	fail := func(reason string) error {
		x.steps[st.ID] = StepOutcome{Status: StepFailed, Reason: reason, Channel: st.Type, At: now}
		return nil
	}
	t, err := r.template(ctx, x, st.TemplateID)
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
		Workflow: &notify.WorkflowRef{ID: w.ID, Version: w.Version, RunID: x.id.String(), Step: st.ID},
	}
	x.batch.sends = append(x.batch.sends, pendingSend{x: x, step: st.ID, event: e})
	x.steps[st.ID] = StepOutcome{Status: StepSent, NotificationID: id, Channel: st.Type, At: x.stepStarted}
	return nil
}

// throttle lets the run through when fewer than the step's limit of runs passed it within its
// window, for the user and the key's value, counted under a lock of that group; otherwise the
// run stops, suppressed with the reason throttled.
func (r *Runner) throttle(ctx context.Context, tx querier, w *Workflow, x *run, st wire.WorkflowStep, now time.Time) (bool, error) {
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
	// The row counts for this step's window, and the sweeper deletes it after that.
	if _, err := tx.Exec(ctx, `INSERT INTO workflow_throttle (app_id, workflow_id, step_id, user_id, throttle_key, run_id, passed_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, x.app, w.ID, st.ID, x.user, key, x.id, now, now.Add(st.DelayFor())); err != nil {
		return false, errRetry{err}
	}
	x.steps[st.ID] = StepOutcome{Status: StepPassed, At: now}
	return true, nil
}

// DueLag is the tier's herald_workflow_runs_due_lag_seconds, for tests.
func DueLag(region, tier string) prometheus.Gauge { return runsDueLag.WithLabelValues(region, tier) }
