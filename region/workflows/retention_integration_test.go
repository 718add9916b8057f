//go:build integration

package workflows_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/region/workflows"
)

// The sweeper deletes finished runs and closed digests (with their events) past the retention,
// and throttle rows past their step's window; a running run, an open digest and a throttle row
// still in its window stay, whatever their age.
func TestTheSweeperDeletesOnlyWhatIsPastItsTime(t *testing.T) {
	f := newFixture(t, "marketing")
	ctx := t.Context()
	capped := f.define(t, "capped", wire.Workflow{Type: "marketing", Category: "c", Steps: []wire.WorkflowStep{
		{ID: "cap", Type: "throttle", Limit: 5, Duration: "1h"}, {ID: "chat", Type: "in_app", TemplateID: "t"}}})
	digest := f.define(t, "digest", wire.Workflow{Type: "marketing", Category: "c", Steps: []wire.WorkflowStep{
		{ID: "collect", Type: "digest", Duration: "10m"}, {ID: "chat", Type: "in_app", TemplateID: "t"}}})
	waiting := f.define(t, "waiting", wire.Workflow{Type: "marketing", Category: "c", Steps: []wire.WorkflowStep{
		{ID: "later", Type: "delay", Duration: "30d"}, {ID: "chat", Type: "in_app", TemplateID: "t"}}})
	f.clock.Set(mustTime(t, "2026-06-01T10:00:00Z"))
	for _, tr := range []struct {
		w   workflows.Workflow
		key string
	}{{capped, "c1"}, {digest, "d1"}, {digest, "d2"}, {waiting, "w1"}} {
		if _, err := f.store.Trigger(ctx, "app", tr.w, tr.key, []string{"u"}, map[string]any{"who": "x"}, f.clock.Now()); err != nil {
			t.Fatal(err)
		}
	}
	f.drain(t)
	f.clock.Advance(10 * time.Minute)
	f.drain(t)
	// A digest opened now stays open: never swept.
	if _, err := f.store.Trigger(ctx, "app", digest, "d3", []string{"v"}, map[string]any{"who": "x"}, f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	f.drain(t)
	count := func(table string) int {
		t.Helper()
		var n int
		if err := f.pg.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	state := func() [4]int {
		return [4]int{count("workflow_runs"), count("workflow_digests"), count("workflow_digest_events"), count("workflow_throttle")}
	}
	if got := state(); got != [4]int{5, 2, 3, 1} {
		t.Fatalf("runs, digests, events, throttle rows before any sweep: %v", got)
	}
	sw := &workflows.Sweeper{DB: f.pg, Region: "zz-test", Retention: 30 * 24 * time.Hour, SweepInterval: time.Hour,
		Log: slog.New(slog.DiscardHandler), Now: f.clock.Now}
	sweep := func() workflows.SweepResult {
		t.Helper()
		res, err := sw.Sweep(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := sweep(); res != (workflows.SweepResult{}) {
		t.Fatalf("a sweep with nothing past its time deleted %+v", res)
	}
	f.clock.Advance(2 * time.Hour) // the throttle's window is over
	if res := sweep(); res != (workflows.SweepResult{Throttle: 1}) {
		t.Fatalf("after the throttle's window: deleted %+v", res)
	}
	f.clock.Advance(29*24*time.Hour + 22*time.Hour + time.Minute) // 30 days and a minute after the last run finished
	if res := sweep(); res != (workflows.SweepResult{Runs: 3, Digests: 1, DigestEvents: 2}) {
		t.Fatalf("after the retention: deleted %+v", res)
	}
	// Left: the run still waiting for its delay, and the digest still open with its owner.
	if got := state(); got != [4]int{2, 1, 1, 0} {
		t.Fatalf("runs, digests, events, throttle rows after the sweeps: %v", got)
	}
	var waitingState string
	if err := f.pg.QueryRow(ctx, `SELECT state FROM workflow_runs WHERE workflow_id = 'waiting'`).Scan(&waitingState); err != nil || waitingState != "running" {
		t.Fatalf("the waiting run: %q, %v", waitingState, err)
	}

	// A sweep that cannot reach Postgres fails, and the failure is counted.
	closed, err := pgxpool.New(ctx, f.pg.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	broken := *sw
	broken.DB = closed
	before := testutil.ToFloat64(workflows.SweepErrors("zz-test"))
	if _, err := broken.Sweep(context.WithoutCancel(ctx)); err == nil {
		t.Fatal("a sweep on a closed pool succeeded")
	}
	if got := testutil.ToFloat64(workflows.SweepErrors("zz-test")); got != before+1 {
		t.Fatalf("herald_workflow_sweep_errors_total %v, want %v", got, before+1)
	}
}
