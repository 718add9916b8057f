//go:build integration

package workflows_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/prefs"
	"github.com/herald-notify/herald/region/regiontest"
	"github.com/herald-notify/herald/region/templates"
	"github.com/herald-notify/herald/region/workflows"
)

// sent records what the runner handed to fan-out; fail makes the next sends fail.
type sent struct {
	mu     sync.Mutex
	events []notify.Event
	fail   error
}

func (s *sent) Send(_ context.Context, events []notify.Event) ([]bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	s.events = append(s.events, events...)
	return make([]bool, len(events)), nil
}

func (s *sent) ids(user string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.events {
		if e.Recipients[0] == user {
			out = append(out, e.Metadata["workflow_step"]+":"+e.ID)
		}
	}
	return out
}

// statuses answers the message outcomes a test sets, by notification id.
type statuses map[string][]string

func (s statuses) Status(_ context.Context, _, _ string, o workflows.StepOutcome) ([]string, error) {
	return s[o.NotificationID], nil
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Set(t time.Time)         { c.mu.Lock(); c.now = t; c.mu.Unlock() }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }
func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

type fixture struct {
	pg     *pgxpool.Pool
	store  *workflows.Store
	sent   *sent
	status statuses
	clock  *clock
	runner *workflows.Runner
	prefs  *prefs.Store
}

func newFixture(t *testing.T, tier string) *fixture {
	t.Helper()
	c := regiontest.Config(t, "zz-"+regiontest.Letters()+"-1", "EU", t.TempDir())
	pg := regiontest.Migrated(t, c)
	ctx := testenv.Context(t, time.Minute)
	tpl := templates.NewStore(pg)
	if _, err := tpl.Put(ctx, "app", templates.Template{ID: "t", Type: tier, Category: "c", Content: map[string]notify.Content{
		notify.InApp: {Title: "hi {{.who}}"}, notify.Push: {Title: "hi {{.who}}"}, notify.Email: {Subject: "hi {{.who}}", Text: "x"}}}); err != nil {
		t.Fatal(err)
	}
	f := &fixture{pg: pg, store: workflows.NewStore(pg), sent: &sent{}, status: statuses{}, clock: &clock{}, prefs: prefs.NewStore(pg)}
	f.runner = &workflows.Runner{DB: pg, Region: "zz-test", Tier: tier, Workflows: f.store, Templates: tpl, Prefs: f.prefs,
		Sender: f.sent, Status: f.status, Log: slog.New(slog.DiscardHandler), Now: f.clock.Now}
	return f
}

func (f *fixture) define(t *testing.T, id string, w wire.Workflow) workflows.Workflow {
	t.Helper()
	if e := w.Validate(); e != nil {
		t.Fatal(e)
	}
	saved, _, err := f.store.Put(t.Context(), "app", id, 0, w)
	if err != nil {
		t.Fatal(err)
	}
	return saved
}

// drain runs the due runs until none is left.
func (f *fixture) drain(t *testing.T) {
	t.Helper()
	for range 100 {
		n, err := f.runner.RunDue(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
	t.Fatal("runs kept coming due")
}

// A delay until 09:00, and a daily digest at 09:00, wait for 09:00 in each user's own time
// zone, across a DST change; the digest sends one summary of every event of the night.
func TestNineOClockIsNineInEachUsersZone(t *testing.T) {
	for _, tt := range []struct {
		name  string
		first wire.WorkflowStep
	}{
		{"a delay", wire.WorkflowStep{ID: "nine", Type: "delay", Until: "09:00"}},
		{"a daily digest", wire.WorkflowStep{ID: "nine", Type: "digest", Until: "09:00"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, "marketing")
			ctx := t.Context()
			for user, tz := range map[string]string{"paris": "Europe/Paris", "ny": "America/New_York"} {
				if err := f.prefs.Put(ctx, "app", user, prefs.Preferences{Timezone: tz}); err != nil {
					t.Fatal(err)
				}
			}
			w := f.define(t, "morning", wire.Workflow{Type: "marketing", Category: "c", Steps: []wire.WorkflowStep{
				tt.first, {ID: "chat", Type: "in_app", TemplateID: "t"}}})
			// Saturday 28 March 2026, 14:00 UTC (10:00 in New York, past 09:00); Paris springs
			// forward in the night (New York did on the 8th).
			f.clock.Set(mustTime(t, "2026-03-28T14:00:00Z"))
			for i := range 3 { // three events in the evening
				if _, err := f.store.Trigger(ctx, "app", w, fmt.Sprint("k", i), []string{"paris", "ny", "utc"}, map[string]any{"who": "x"}, f.clock.Now()); err != nil {
					t.Fatal(err)
				}
				f.drain(t)
				f.clock.Advance(time.Hour)
			}
			want := 3 // a delay sends each run's message
			if tt.first.Type == "digest" {
				want = 1 // a digest, one summary
			}
			at := map[string]string{"paris": "2026-03-29T07:00:00Z", "ny": "2026-03-29T13:00:00Z", "utc": "2026-03-29T09:00:00Z"}
			for _, step := range []string{"2026-03-29T06:59:59Z", "2026-03-29T07:00:00Z", "2026-03-29T08:59:59Z", "2026-03-29T09:00:00Z", "2026-03-29T12:59:59Z", "2026-03-29T13:00:00Z"} {
				now := mustTime(t, step)
				f.clock.Set(now)
				f.drain(t)
				for user, due := range at {
					n := 0
					if !now.Before(mustTime(t, due)) {
						n = want
					}
					if got := len(f.sent.ids(user)); got != n {
						t.Fatalf("at %s %s has %d in-app messages, want %d (due %s)", step, user, got, n, due)
					}
				}
			}
		})
	}
}

// The fallback chain as a runner sees it: read in time, no push; unread, push; the push
// undelivered (no device), email.
func TestTheFallbackChainFollowsWhatBecameOfEachMessage(t *testing.T) {
	f := newFixture(t, "social")
	ctx := t.Context()
	w := f.define(t, "comment", wire.Workflow{Type: "social", Category: "c", Steps: []wire.WorkflowStep{
		{ID: "chat", Type: "in_app", TemplateID: "t"},
		{ID: "wait", Type: "delay", Duration: "1h"},
		{ID: "nudge", Type: "push", TemplateID: "t", If: []wire.WorkflowCondition{{Step: "chat", Is: "unread"}}},
		{ID: "grace", Type: "delay", Duration: "1m"},
		{ID: "mail", Type: "email", TemplateID: "t", If: []wire.WorkflowCondition{{Step: "chat", Is: "unread"}, {Step: "nudge", Is: "undelivered"}}},
	}})
	f.clock.Set(mustTime(t, "2026-06-01T10:00:00Z"))
	got, err := f.store.Trigger(ctx, "app", w, "k1", []string{"reader", "pushed", "nodevice"}, map[string]any{"who": "Ada"}, f.clock.Now())
	if err != nil || got.Runs != 3 {
		t.Fatalf("trigger: %+v %v", got, err)
	}
	f.drain(t)
	trig := workflows.TriggerID("app", "comment", "k1")
	chat := func(u string) string { return workflows.NotificationID(workflows.RunID(trig, u), "chat").String() }
	f.status[chat("reader")] = []string{"delivered", "read"}
	f.status[chat("pushed")] = []string{"delivered"}
	f.status[chat("nodevice")] = []string{"delivered"}
	f.clock.Advance(time.Hour)
	f.drain(t)
	f.status[workflows.NotificationID(workflows.RunID(trig, "pushed"), "nudge").String()] = []string{"delivered"}
	f.status[workflows.NotificationID(workflows.RunID(trig, "nodevice"), "nudge").String()] = []string{"skipped"}
	f.clock.Advance(time.Minute)
	f.drain(t)
	want := map[string][]string{"reader": {"chat"}, "pushed": {"chat", "nudge"}, "nodevice": {"chat", "nudge", "mail"}}
	for u, steps := range want {
		var gotSteps []string
		for _, s := range f.sent.ids(u) {
			gotSteps = append(gotSteps, s[:len(s)-37])
		}
		if !slices.Equal(gotSteps, steps) {
			t.Errorf("%s got %v, want %v", u, gotSteps, steps)
		}
		r, err := f.store.GetRun(ctx, "app", workflows.RunID(trig, u).String())
		if err != nil || r.State != workflows.StateDone {
			t.Errorf("%s's run: %+v %v", u, r, err)
		}
	}
	// Sent again, the trigger starts nothing.
	if again, err := f.store.Trigger(ctx, "app", w, "k1", []string{"nodevice", "reader", "pushed"}, nil, f.clock.Now()); err != nil || again.Runs != 0 || again.Existing != 3 {
		t.Fatalf("the same trigger again: %+v %v", again, err)
	}
}

// A step whose send fails is retried and the run waits at it; a send that reached Kafka but
// whose transaction did not commit (the process died) is redone under the same notification id.
func TestAFailedSendIsRetriedAndARedoneStepKeepsItsNotificationID(t *testing.T) {
	f := newFixture(t, "transactional")
	ctx := t.Context()
	w := f.define(t, "otp", wire.Workflow{Type: "transactional", Category: "c", Steps: []wire.WorkflowStep{
		{ID: "code", Type: "push", TemplateID: "t"}, {ID: "copy", Type: "email", TemplateID: "t"}}})
	f.clock.Set(mustTime(t, "2026-06-01T10:00:00Z"))
	if _, err := f.store.Trigger(ctx, "app", w, "k", []string{"u"}, map[string]any{"who": "x"}, f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	f.sent.fail = errors.New("kafka: not enough in-sync replicas")
	f.drain(t)
	r, _ := f.store.GetRun(ctx, "app", workflows.RunID(workflows.TriggerID("app", "otp", "k"), "u").String())
	if r.State != workflows.StateRunning || r.Step != "code" || r.LastError == "" || r.DueAt == nil || !r.DueAt.After(f.clock.Now()) {
		t.Fatalf("after a failed send: %+v", r)
	}
	if err := f.runner.ObserveLag(ctx); err != nil {
		t.Fatal(err)
	}
	f.sent.fail = nil
	f.clock.Advance(2 * time.Second)

	// The transaction dies after the send: its context ends before the commit.
	f.crashAfterSend(t)
	f.drain(t)
	// The push and the email went to Kafka together, then the transaction died: both are redone,
	// each under its id and time.
	ids := f.sent.ids("u")
	if len(ids) != 4 || ids[0] != ids[2] || ids[1] != ids[3] || ids[0][:4] != "code" || ids[1][:4] != "copy" {
		t.Fatalf("sends %v, want the push and the email, then both again under the same ids", ids)
	}
	if a, b := f.sent.events[0].AcceptedAt, f.sent.events[2].AcceptedAt; !a.Equal(b) {
		t.Fatalf("the redone push was accepted at %v, the first at %v: the inbox row and the run's record would differ", b, a)
	}

	// A step that keeps failing fails its run after its attempts, never retried out of sight.
	if _, err := f.store.Trigger(ctx, "app", w, "k2", []string{"v"}, map[string]any{"who": "x"}, f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	f.sent.fail = errors.New("kafka: the broker is gone")
	for range 40 {
		f.drain(t)
		f.clock.Advance(2 * time.Minute)
	}
	r, _ = f.store.GetRun(ctx, "app", workflows.RunID(workflows.TriggerID("app", "otp", "k2"), "v").String())
	if r.State != workflows.StateFailed || !strings.Contains(r.LastError, "30 attempts") {
		t.Fatalf("a run whose send always fails: %+v", r)
	}
}

// A digest's owner closes its digest when the window ends even if the step's conditions no
// longer hold (the user turned the channel off): the events in it are never left in a digest
// that stays open and swallows the next ones.
func TestADigestClosesWhenItsWindowEndsWhateverItsConditionsSayThen(t *testing.T) {
	f := newFixture(t, "social")
	ctx := t.Context()
	w := f.define(t, "d", wire.Workflow{Type: "social", Category: "c", Steps: []wire.WorkflowStep{
		{ID: "collect", Type: "digest", Duration: "10m", If: []wire.WorkflowCondition{{Preference: "email", Is: "enabled"}}},
		{ID: "mail", Type: "email", TemplateID: "t", If: []wire.WorkflowCondition{{Preference: "email", Is: "enabled"}}},
	}})
	f.clock.Set(mustTime(t, "2026-06-01T10:00:00Z"))
	for _, k := range []string{"a", "b"} {
		if _, err := f.store.Trigger(ctx, "app", w, k, []string{"u"}, map[string]any{"who": k}, f.clock.Now()); err != nil {
			t.Fatal(err)
		}
	}
	f.drain(t)
	if err := f.prefs.Put(ctx, "app", "u", prefs.Preferences{Channels: map[string]bool{"email": false}}); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(10 * time.Minute)
	f.drain(t)
	owner, _ := f.store.GetRun(ctx, "app", workflows.RunID(workflows.TriggerID("app", "d", "a"), "u").String())
	if owner.Steps["collect"].Status == workflows.StepDigested { // b came first
		owner, _ = f.store.GetRun(ctx, "app", workflows.RunID(workflows.TriggerID("app", "d", "b"), "u").String())
	}
	if owner.State != workflows.StateDone || owner.Steps["collect"].Status != workflows.StepCollected || owner.Steps["collect"].Events != 2 ||
		owner.Steps["mail"].Status != workflows.StepSkipped {
		t.Fatalf("the owner: %+v", owner)
	}
	var open int
	if err := f.pg.QueryRow(ctx, `SELECT count(*) FROM workflow_digests WHERE NOT closed`).Scan(&open); err != nil || open != 0 {
		t.Fatalf("%d digests left open (%v)", open, err)
	}
}

// crashAfterSend takes due runs in a transaction that dies right after its first send (as a
// process killed between the produce and the commit): the send happened, nothing committed.
func (f *fixture) crashAfterSend(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	crashing := *f.runner
	crashing.Sender = senderFunc(func(c context.Context, events []notify.Event) ([]bool, error) {
		erased, err := f.sent.Send(c, events)
		cancel()
		return erased, err
	})
	if _, err := crashing.RunDue(ctx); err == nil {
		t.Fatal("the crashed transaction committed")
	}
}

type senderFunc func(context.Context, []notify.Event) ([]bool, error)

func (s senderFunc) Send(ctx context.Context, events []notify.Event) ([]bool, error) {
	return s(ctx, events)
}

// A runner that stops while runs are due shows it in the due lag: the metric that exists for it.
func TestTheDueLagGrowsWhileNoRunnerTakesTheRuns(t *testing.T) {
	f := newFixture(t, "marketing")
	ctx := t.Context()
	w := f.define(t, "promo", wire.Workflow{Type: "marketing", Category: "c", Steps: []wire.WorkflowStep{{ID: "chat", Type: "in_app", TemplateID: "t"}}})
	f.clock.Set(mustTime(t, "2026-06-01T10:00:00Z"))
	if _, err := f.store.Trigger(ctx, "app", w, "k", []string{"a", "b"}, nil, f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(90 * time.Second) // nobody ran them
	if err := f.runner.ObserveLag(ctx); err != nil {
		t.Fatal(err)
	}
	if lag := testutil.ToFloat64(workflows.DueLag("zz-test", "marketing")); lag != 90 {
		t.Fatalf("lag %v with runs due for 90 s", lag)
	}
	f.drain(t)
	if err := f.runner.ObserveLag(ctx); err != nil {
		t.Fatal(err)
	}
	if lag := testutil.ToFloat64(workflows.DueLag("zz-test", "marketing")); lag != 0 {
		t.Fatalf("lag %v after the runs were taken", lag)
	}
}

// 50 triggers of a digest arrive while three runners take runs at once, each trigger is sent
// twice, and the runner that closes the window dies after sending the summary: the digest holds
// each event once, and one summary per key goes out, under one notification id, listing all.
func TestADigestHoldsEveryEventOnceAndSendsOneSummaryPerKey(t *testing.T) {
	f := newFixture(t, "social")
	ctx := t.Context()
	if _, err := templates.NewStore(f.pg).Put(ctx, "app", templates.Template{ID: "sum", Type: "social", Category: "c", Content: map[string]notify.Content{
		notify.Email: {Subject: "{{.digest.count}} new on {{.post.id}}", Text: "{{range .digest.first}}{{.who}} {{end}}|{{range .digest.last}}{{.who}} {{end}}"}}}); err != nil {
		t.Fatal(err)
	}
	w := f.define(t, "digest", wire.Workflow{Type: "social", Category: "c", Steps: []wire.WorkflowStep{
		{ID: "collect", Type: "digest", Duration: "10m", Key: "post.id", Items: 2},
		{ID: "summary", Type: "email", TemplateID: "sum"},
	}})
	f.clock.Set(mustTime(t, "2026-06-01T10:00:00Z"))
	stop := make(chan struct{})
	var runners sync.WaitGroup
	for range 3 {
		runners.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := f.runner.RunDue(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	var triggers sync.WaitGroup
	for i := range 55 {
		post := 7
		if i >= 50 {
			post = 8
		}
		for range 2 { // every trigger is sent twice
			triggers.Go(func() {
				if _, err := f.store.Trigger(ctx, "app", w, fmt.Sprint("k", i), []string{"u"},
					map[string]any{"who": fmt.Sprint("w", i), "post": map[string]any{"id": post}}, f.clock.Now()); err != nil {
					t.Error(err)
				}
			})
		}
	}
	triggers.Wait()
	close(stop)
	runners.Wait()
	f.drain(t)
	var events, digests int
	if err := f.pg.QueryRow(ctx, `SELECT count(*), count(DISTINCT digest_id) FROM workflow_digest_events`).Scan(&events, &digests); err != nil || events != 55 || digests != 2 {
		t.Fatalf("%d events in %d digests (%v), want 55 in 2", events, digests, err)
	}
	if got := f.sent.ids("u"); len(got) != 0 {
		t.Fatalf("sent before the window closed: %v", got)
	}

	// The window closes: the digests' contents are committed before any summary is sent; then
	// the runner dies after the first summary's send, before its commit.
	f.clock.Advance(10 * time.Minute)
	if n, err := f.runner.RunDue(ctx); err != nil || n != 2 {
		t.Fatalf("closing the digests: %d runs, %v", n, err)
	}
	if got := f.sent.ids("u"); len(got) != 0 {
		t.Fatalf("sent in the closing transaction: %v", got)
	}
	// An event of the closed window's time, processed late, opens the next digest, never
	// joins the closed one.
	if _, err := f.store.Trigger(ctx, "app", w, "late-but-in-time", []string{"u"}, map[string]any{"who": "x", "post": map[string]any{"id": 7}},
		f.clock.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	f.crashAfterSend(t)
	f.drain(t)
	summaries := map[string]notify.Event{}
	f.sent.mu.Lock()
	for _, e := range f.sent.events {
		summaries[e.ID] = e
	}
	f.sent.mu.Unlock()
	if len(summaries) != 2 {
		t.Fatalf("%d summaries, want one per post", len(summaries))
	}
	for _, e := range summaries {
		subject := e.Content[notify.Email].Subject
		if subject != "50 new on 7" && subject != "5 new on 8" {
			t.Errorf("summary %q", subject)
		}
		first, last, _ := strings.Cut(e.Content[notify.Email].Text, "|")
		if len(strings.Fields(first)) != 2 || len(strings.Fields(last)) != 2 {
			t.Errorf("summary items %q, want the first 2 and the last 2", e.Content[notify.Email].Text)
		}
	}
	var owners, digested int
	if err := f.pg.QueryRow(ctx, `SELECT count(*) FILTER (WHERE steps->'collect'->>'status' = 'collected'),
		count(*) FILTER (WHERE steps->'collect'->>'status' = 'digested') FROM workflow_runs WHERE state = 'done' AND steps->'collect'->>'status' <> 'digesting'`).Scan(&owners, &digested); err != nil || owners != 2 || digested != 53 {
		t.Fatalf("owners %d, digested %d (%v)", owners, digested, err)
	}

	// The late event opened the next digest; an event after the window closed joins that one.
	if _, err := f.store.Trigger(ctx, "app", w, "late", []string{"u"}, map[string]any{"who": "late", "post": map[string]any{"id": 7}}, f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	f.drain(t)
	next, err := f.store.GetRun(ctx, "app", workflows.RunID(workflows.TriggerID("app", "digest", "late-but-in-time"), "u").String())
	if err != nil || next.Steps["collect"].Status != workflows.StepDigesting {
		t.Fatalf("the late event's run: %+v %v", next, err)
	}
	r, err := f.store.GetRun(ctx, "app", workflows.RunID(workflows.TriggerID("app", "digest", "late"), "u").String())
	if err != nil || r.Steps["collect"].Status != workflows.StepDigested || r.Steps["collect"].DigestID != next.Steps["collect"].DigestID {
		t.Fatalf("an event after the window: %+v %v", r, err)
	}
}

// Nothing one run holds stops the tier: a run whose row does not decode and a run of a version
// changed by hand each fail alone, with the reason, and the runs beside them go through.
func TestAPoisonedRunNeverStopsTheRunsBesideIt(t *testing.T) {
	f := newFixture(t, "transactional")
	ctx := t.Context()
	w := f.define(t, "otp", wire.Workflow{Type: "transactional", Category: "c", Steps: []wire.WorkflowStep{{ID: "code", Type: "push", TemplateID: "t"}}})
	bad := f.define(t, "bad", wire.Workflow{Type: "transactional", Category: "c", Steps: []wire.WorkflowStep{{ID: "code", Type: "push", TemplateID: "t"}}})
	f.clock.Set(mustTime(t, "2026-06-01T10:00:00Z"))
	if _, err := f.store.Trigger(ctx, "app", w, "k", []string{"a", "poisoned", "b"}, map[string]any{"who": "x"}, f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Trigger(ctx, "app", bad, "k", []string{"c"}, map[string]any{"who": "x"}, f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	poisoned := workflows.RunID(workflows.TriggerID("app", "otp", "k"), "poisoned")
	if _, err := f.pg.Exec(ctx, `UPDATE workflow_runs SET payload = '[1, 2]' WHERE run_id = $1`, poisoned); err != nil {
		t.Fatal(err)
	}
	if _, err := f.pg.Exec(ctx, `UPDATE workflow_versions SET definition = '{"type": "urgent"}' WHERE app_id = 'app' AND workflow_id = 'bad'`); err != nil {
		t.Fatal(err)
	}
	f.drain(t)
	for user, want := range map[string]string{"a": "done", "b": "done", "poisoned": "failed"} {
		r, err := f.store.GetRun(ctx, "app", workflows.RunID(workflows.TriggerID("app", "otp", "k"), user).String())
		if err != nil || r.State != want {
			t.Errorf("%s: %+v %v, want %s", user, r, err, want)
		}
	}
	r, err := f.store.GetRun(ctx, "app", workflows.RunID(workflows.TriggerID("app", "bad", "k"), "c").String())
	if err != nil || r.State != workflows.StateFailed || !strings.Contains(r.LastError, "does not decode") {
		t.Errorf("a run of a corrupt version: %+v %v", r, err)
	}
	if len(f.sent.ids("a")) != 1 || len(f.sent.ids("b")) != 1 || len(f.sent.ids("poisoned")) != 0 {
		t.Errorf("sends: a %v, b %v, poisoned %v", f.sent.ids("a"), f.sent.ids("b"), f.sent.ids("poisoned"))
	}
}

// Digests that close at once are closed a batch at a time; when one's lock is held elsewhere
// (a run joining it, stuck), the batch's digests are closed one by one instead: the others go
// out, and the held one closes once its lock is free, each summary once with every event.
func TestADigestWhoseLockIsHeldDoesNotHoldBackTheOthersClosingWithIt(t *testing.T) {
	f := newFixture(t, "marketing")
	ctx := t.Context()
	w := f.define(t, "daily", wire.Workflow{Type: "marketing", Category: "c", Steps: []wire.WorkflowStep{
		{ID: "collect", Type: "digest", Duration: "1h", Items: 5},
		{ID: "chat", Type: "in_app", TemplateID: "t"},
	}})
	f.clock.Set(mustTime(t, "2026-06-01T08:00:00Z"))
	users := []string{"a", "b", "c"}
	for i := range 3 {
		if _, err := f.store.Trigger(ctx, "app", w, fmt.Sprint("k", i), users, map[string]any{"who": fmt.Sprint("w", i)}, f.clock.Now()); err != nil {
			t.Fatal(err)
		}
	}
	f.drain(t)
	f.clock.Advance(time.Hour)

	held, err := f.pg.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Rollback(ctx) //nolint:errcheck // released below
	if _, err := held.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 13))`, "app/daily/collect/b/"); err != nil {
		t.Fatal(err)
	}
	f.drain(t)
	if got := f.sent.ids("b"); len(got) != 0 {
		t.Fatalf("b's summary went out while its digest's lock was held: %v", got)
	}
	for _, u := range []string{"a", "c"} {
		if got := f.sent.ids(u); len(got) != 1 {
			t.Fatalf("%s's summaries while b's lock was held: %v, want 1", u, got)
		}
	}
	if err := held.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Minute)
	f.drain(t)
	for _, u := range users {
		f.sent.mu.Lock()
		var titles []string
		for _, e := range f.sent.events {
			if e.Recipients[0] == u {
				titles = append(titles, e.Content[notify.InApp].Title)
			}
		}
		f.sent.mu.Unlock()
		if len(titles) != 1 {
			t.Errorf("%s got %d summaries, want 1", u, len(titles))
		}
	}
	var counts []int
	rows, err := f.pg.Query(ctx, `SELECT (steps->'collect'->>'events')::int FROM workflow_runs WHERE steps->'collect'->>'status' = 'collected' ORDER BY user_id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n int
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		counts = append(counts, n)
	}
	if !slices.Equal(counts, []int{3, 3, 3}) {
		t.Fatalf("events per collected digest %v, want 3 for each user", counts)
	}
}

// A user erased while their run sends: nothing is produced for them (the sender says so), the
// step fails with the reason and the run stops; the batch's other runs go on.
func TestARunWhoseUserWasErasedStopsAndTheBatchGoesOn(t *testing.T) {
	f := newFixture(t, "social")
	ctx := t.Context()
	w := f.define(t, "two", wire.Workflow{Type: "social", Category: "c", Steps: []wire.WorkflowStep{
		{ID: "chat", Type: "in_app", TemplateID: "t"}, {ID: "mail", Type: "email", TemplateID: "t"}}})
	f.clock.Set(mustTime(t, "2026-06-01T10:00:00Z"))
	if _, err := f.store.Trigger(ctx, "app", w, "k", []string{"gone", "kept"}, map[string]any{"who": "x"}, f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	f.runner.Sender = senderFunc(func(c context.Context, events []notify.Event) ([]bool, error) {
		erased := make([]bool, len(events))
		var kept []notify.Event
		for i, e := range events {
			if e.Recipients[0] == "gone" {
				erased[i] = true
			} else {
				kept = append(kept, e)
			}
		}
		_, err := f.sent.Send(c, kept)
		return erased, err
	})
	f.drain(t)
	gone, err := f.store.GetRun(ctx, "app", workflows.RunID(workflows.TriggerID("app", "two", "k"), "gone").String())
	if err != nil {
		t.Fatal(err)
	}
	if gone.State != workflows.StateStopped || gone.Steps["chat"].Status != workflows.StepFailed || gone.Steps["chat"].Reason != "erased" {
		t.Fatalf("the erased user's run: %+v", gone)
	}
	if got := f.sent.ids("kept"); len(got) != 2 {
		t.Fatalf("the other user's sends: %v, want both steps", got)
	}
}
