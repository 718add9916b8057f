package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/region"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/templates"
	"github.com/herald-notify/herald/region/userkeys"
	"github.com/herald-notify/herald/region/workflows"
)

// DigestOptions size the daily-digest benchmark.
type DigestOptions struct {
	Users      int           // users whose digest closes at 09:00
	Events     int           // events in each user's digest
	Lead       time.Duration // how long after the start 09:00 comes: the seeding must be done by then
	Probes     int           // transactional probes at most while the digests go out
	ProbeEvery time.Duration
	Keep       bool
}

const (
	digestWorkflow = "daily-digest"
	digestTemplate = "daily-summary"
)

// Digest runs the 09:00 daily digest of issue 21 in a private region with every role: Users
// runs each own an open digest of Events events that closes at the same instant ("09:00" in
// their one time zone), as a day of triggers would have left them. It measures how long the
// region's workflow runners take from that instant until every digest is closed, and until
// every summary is rendered, sealed and acknowledged by Kafka (the run is done), while
// transactional in-app sends are probed end to end. The day of triggers is seeded straight into
// Postgres (COPY): what is measured is the 09:00 burst, not the day.
func Digest(ctx context.Context, base region.Config, o DigestOptions, out io.Writer, log *slog.Logger) error {
	c, err := privateRegion(base, region.AllRoles())
	if err != nil {
		return err
	}
	c.Postgres.MaxConns = 30
	if err := c.Validate(); err != nil {
		return err
	}
	fmt.Fprintf(out, "bench digest: private region %s (database and keyspace %s), %d users x %d events\n", c.Name, c.Postgres.Database, o.Users, o.Events)
	e, done, err := startPrivate(ctx, c, o.Keep, log)
	if err != nil {
		return err
	}
	defer done()
	pg := e.pg

	nine := time.Now().Add(o.Lead).Truncate(time.Second)
	seedStart := time.Now()
	if err := e.seedDigests(ctx, o, nine); err != nil {
		return err
	}
	seeded := time.Since(seedStart)
	fmt.Fprintf(out, "  seeded in %s; 09:00 is %s\n", seeded.Round(time.Second), nine.Format(time.TimeOnly))
	if time.Now().After(nine) {
		return fmt.Errorf("seeding took %s, longer than --lead %s: 09:00 came before every digest was in place", seeded.Round(time.Second), o.Lead)
	}
	topic := region.IngressTopic(c.Name, notify.Marketing)
	before, err := e.topicCount(topic)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Until(nine)):
	}

	var finished atomic.Bool
	var probes []time.Duration
	var probeErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		probes, probeErr = e.probe(ctx, "digest", o.Probes, o.ProbeEvery, func() bool { return !finished.Load() })
	})
	var closedAt, doneAt time.Duration
	deadline := nine.Add(10 * time.Minute)
	for doneAt == 0 {
		if time.Now().After(deadline) {
			finished.Store(true)
			wg.Wait()
			return fmt.Errorf("the digests were not all sent 10 minutes after 09:00")
		}
		var open, due int
		if err := pg.QueryRow(ctx, `SELECT (SELECT count(*) FROM workflow_digests WHERE NOT closed),
			(SELECT count(*) FROM workflow_runs WHERE tier = $1 AND due_at IS NOT NULL)`, notify.Marketing).Scan(&open, &due); err != nil {
			return err
		}
		now := time.Since(nine)
		if open == 0 && closedAt == 0 {
			closedAt = now
		}
		if due == 0 {
			doneAt = now
			break
		}
		log.Info("bench digest", "since_0900", now.Round(time.Second).String(), "digests_open", open, "runs_due", due)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	finished.Store(true)
	wg.Wait()
	if probeErr != nil {
		return probeErr
	}
	var runsDone, runsOther int
	if err := pg.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'done'), count(*) FILTER (WHERE state <> 'done') FROM workflow_runs`).Scan(&runsDone, &runsOther); err != nil {
		return err
	}
	after, err := e.topicCount(topic)
	if err != nil {
		return err
	}
	results := []Result{
		{"09:00 digest: every digest closed", fmt.Sprintf("%.1f s", closedAt.Seconds()), "", fmt.Sprintf("%d digests of %d events", o.Users, o.Events)},
		{"09:00 digest: every summary rendered, sealed and on Kafka", fmt.Sprintf("%.1f s", doneAt.Seconds()), "< 60s",
			fmt.Sprintf("%.0f summaries/s", float64(o.Users)/doneAt.Seconds())},
		{"runs done / not done", fmt.Sprintf("%d / %d", runsDone, runsOther), fmt.Sprintf("%d / 0", o.Users), ""},
		{"records on the marketing ingress topic", fmt.Sprint(after - before), fmt.Sprintf(">= %d", o.Users), "a redone batch adds records, dropped by fan-out's dedup"},
		{"transactional accept -> inbox meanwhile, p50 / p99", fmtLat(probes), "p99 < 1s", fmt.Sprintf("%d probes", len(probes))},
	}
	return printResults(out, results)
}

// seedDigests stores the workflow and its template, registers the users with their data keys,
// and leaves each user's run owning an open digest of o.Events events that closes at nine.
func (e *env) seedDigests(ctx context.Context, o DigestOptions, nine time.Time) error {
	if _, err := templates.NewStore(e.pg).Put(ctx, e.app, templates.Template{ID: digestTemplate, Type: notify.Marketing, Category: "digest",
		Content: map[string]notify.Content{notify.InApp: {Title: "{{.digest.count}} new since yesterday", Body: "{{range .digest.first}}{{.title}}; {{end}}"}}}); err != nil {
		return err
	}
	def := wire.Workflow{Type: notify.Marketing, Category: "digest", Steps: []wire.WorkflowStep{
		{ID: "collect", Type: wire.StepDigest, Until: "09:00", Items: 3},
		{ID: "summary", Type: notify.InApp, TemplateID: digestTemplate},
	}}
	if verr := def.Validate(); verr != nil {
		return fmt.Errorf("the bench workflow: %v", verr)
	}
	w, _, err := workflows.NewStore(e.pg).Put(ctx, e.app, digestWorkflow, 0, def)
	if err != nil {
		return err
	}
	ring, err := e.cfg.Keyring()
	if err != nil {
		return err
	}
	keys := userkeys.New(e.pg, ring)
	const chunk = 10_000
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for from := 0; from < o.Users; from += chunk {
		g.Go(func() error {
			users := digestUsers(from, min(from+chunk, o.Users))
			if err := e.admit(gctx, users); err != nil {
				return err
			}
			// Users who get a daily digest were sent notifications before: their data keys exist.
			if _, err := keys.For(gctx, e.app, users); err != nil {
				return fmt.Errorf("creating data keys: %w", err)
			}
			return e.copyDigests(gctx, w.Version, users, o.Events, nine)
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, t := range []string{"workflow_runs", "workflow_digests", "workflow_digest_events", "user_keys"} {
		if _, err := e.pg.Exec(ctx, "VACUUM ANALYZE "+t); err != nil {
			return fmt.Errorf("vacuum %s: %w", t, err)
		}
	}
	return nil
}

func digestUsers(from, to int) []string {
	out := make([]string, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("digest-%07d", i))
	}
	return out
}

// copyDigests writes, for users, the state a day of triggers leaves: each user's first trigger
// started a run that opened a digest and waits for it to close at nine; the others' events
// joined it.
func (e *env) copyDigests(ctx context.Context, version int64, users []string, events int, nine time.Time) error {
	dayStart := nine.Add(-24 * time.Hour)
	var runs, digests, evs [][]any
	for _, u := range users {
		trigger := workflows.TriggerID(e.app, digestWorkflow, "day-"+u)
		run := workflows.RunID(trigger, u)
		digest := uuid.NewSHA1(uuid.NameSpaceOID, []byte("bench-digest/"+run.String()))
		steps, err := json.Marshal(map[string]workflows.StepOutcome{"collect": {Status: workflows.StepDigesting, DigestID: digest.String(), At: dayStart, Until: nine}})
		if err != nil {
			return err
		}
		runs = append(runs, []any{run, e.app, digestWorkflow, version, notify.Marketing, u, trigger, []byte(`{"title":"post 0"}`),
			0, dayStart, workflows.StateRunning, nine, steps})
		digests = append(digests, []any{digest, e.app, digestWorkflow, "collect", u, "", run, nine})
		for i := range events {
			by := run
			if i > 0 {
				by = workflows.RunID(workflows.TriggerID(e.app, digestWorkflow, fmt.Sprintf("day-%s-%d", u, i)), u)
			}
			evs = append(evs, []any{digest, by, dayStart.Add(time.Duration(i) * time.Minute), fmt.Appendf(nil, `{"title":"post %d"}`, i)})
		}
	}
	tx, err := e.pg.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit it is a no-op
	for _, c := range []struct {
		table string
		cols  []string
		rows  [][]any
	}{
		{"workflow_runs", []string{"run_id", "app_id", "workflow_id", "version", "tier", "user_id", "trigger_id", "payload", "step", "step_started_at", "state", "due_at", "steps"}, runs},
		{"workflow_digests", []string{"digest_id", "app_id", "workflow_id", "step_id", "user_id", "digest_key", "owner_run", "closes_at"}, digests},
		{"workflow_digest_events", []string{"digest_id", "run_id", "at", "payload"}, evs},
	} {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{c.table}, c.cols, pgx.CopyFromRows(c.rows)); err != nil {
			return fmt.Errorf("copying %s: %w", c.table, err)
		}
	}
	return tx.Commit(ctx)
}
