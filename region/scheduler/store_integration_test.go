//go:build integration

package scheduler_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/kafka"

	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/regiontest"
	"github.com/herald-notify/herald/region/scheduler"
)

// Two regions of a jurisdiction claim the same firings at once on their shared database: each
// firing has one owner, both regions are told the same one, a later claim is told it too, and
// claims older than a week are forgotten.
func TestConcurrentClaimsOfAFiringFromTwoRegionsHaveOneOwner(t *testing.T) {
	c := regiontest.Config(t, "zz-"+regiontest.Letters()+"-1", "EU", t.TempDir())
	ctx := testenv.Context(t, 2*time.Minute)
	pg := regiontest.Migrated(t, c)
	stores := []*scheduler.Store{scheduler.New(pg, "eu-west-1"), scheduler.New(pg, "eu-central-1")}
	due := time.Now().UTC().Truncate(time.Second)

	const firings = 200
	owners := make([][2]string, firings)
	var wg sync.WaitGroup
	errs := make(chan error, 2*firings)
	for i := range firings {
		e := notify.Event{ID: fmt.Sprintf("n-%d", i), AppID: "app", Recipients: []string{"u"}, SendAt: &due, Deferred: true}
		for r, s := range stores {
			wg.Go(func() {
				owner, err := s.ClaimFire(ctx, e)
				if err != nil {
					errs <- err
				}
				owners[i][r] = owner
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	won := map[string]int{}
	for i, o := range owners {
		if o[0] == "" || o[0] != o[1] {
			t.Fatalf("firing %d: eu-west-1 was told %q, eu-central-1 %q", i, o[0], o[1])
		}
		won[o[0]]++
	}
	t.Logf("owners: %v", won)
	// A later copy, in either region, is told the first claimer.
	e := notify.Event{ID: "n-0", AppID: "app", Recipients: []string{"u"}, SendAt: &due, Deferred: true}
	for _, s := range stores {
		if owner, err := s.ClaimFire(ctx, e); err != nil || owner != owners[0][0] {
			t.Fatalf("a later claim: %q, %v; want %q", owner, err, owners[0][0])
		}
	}
	var rows int
	if err := pg.QueryRow(ctx, `SELECT count(*) FROM scheduled_fires`).Scan(&rows); err != nil || rows != firings {
		t.Fatalf("%d claims stored (%v), want %d", rows, err, firings)
	}

	if _, err := pg.Exec(ctx, `UPDATE scheduled_fires SET fired_at = now() - interval '8 days' WHERE notification_id IN ('n-1', 'n-2')`); err != nil {
		t.Fatal(err)
	}
	if n, err := stores[0].ForgetFires(ctx); err != nil || n != 2 {
		t.Fatalf("forgot %d claims (%v), want 2", n, err)
	}
}

// recorder is a Producer that keeps what it is given.
type recorder struct {
	mu   sync.Mutex
	msgs []kafka.Message
}

func (r *recorder) Send(_ context.Context, msgs ...kafka.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, msgs...)
	return nil
}

// fired decodes the events produced so far, by notification id.
func (r *recorder) fired(t *testing.T) map[string]notify.Event {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]notify.Event{}
	for _, m := range r.msgs {
		e, _, err := notify.DecodeEvent(context.Background(), nil, m.Value)
		if err != nil {
			t.Fatalf("decoding %s: %v", m.Topic, err)
		}
		if want := m.Topic; !strings.HasSuffix(want, ".notify."+e.Tier) {
			t.Fatalf("event %s on %s", e.ID, m.Topic)
		}
		out[e.ID] = e
	}
	return out
}

// The accept path's outbox: a kept event fires in the region that kept it once due, not as a
// deferral; a late acknowledgement forgets it, a failed first produce makes it due at once;
// another region of the jurisdiction takes it over only when it is OutboxTakeover overdue.
func TestOutboxRowsFireInTheirRegionAndAnotherRegionTakesThemOverOnlyWhenLongOverdue(t *testing.T) {
	c := regiontest.Config(t, "zz-"+regiontest.Letters()+"-1", "EU", t.TempDir())
	ctx := testenv.Context(t, 2*time.Minute)
	pg := regiontest.Migrated(t, c)
	west, central := scheduler.New(pg, "eu-west-1"), scheduler.New(pg, "eu-central-1")
	poller := func(s *scheduler.Store, region string) (*scheduler.Poller, *recorder) {
		rec := &recorder{}
		return &scheduler.Poller{Store: s, Producer: rec, Topic: func(tier string) string { return notify.IngressTopic(region, tier) },
			Cfg: scheduler.Config{Interval: time.Second, Batch: 100}, Log: slog.New(slog.DiscardHandler)}, rec
	}
	pw, recWest := poller(west, "eu-west-1")
	pc, recCentral := poller(central, "eu-central-1")
	ev := func(id string) notify.Event {
		return notify.Event{ID: id, AppID: "app", Tier: notify.Transactional, Recipients: []string{"u"}, Channels: []string{"in_app"}, AcceptedAt: time.Now().UTC()}
	}
	now := time.Now()
	for _, k := range []struct {
		id  string
		due time.Time
	}{{"due", now.Add(-time.Second)}, {"later", now.Add(time.Hour)}, {"acked", now.Add(-time.Second)}, {"failed", now.Add(time.Hour)}} {
		if err := west.Keep(ctx, ev(k.id), k.due); err != nil {
			t.Fatal(err)
		}
	}
	if err := west.Forget(ctx, "acked"); err != nil { // its first produce was acknowledged late
		t.Fatal(err)
	}
	if err := west.Hasten(ctx, "failed"); err != nil { // its first produce failed
		t.Fatal(err)
	}

	// eu-central-1 leaves eu-west-1's rows to it while they are not long overdue.
	if n, err := pc.FireDue(ctx); err != nil || n != 0 {
		t.Fatalf("eu-central-1 fired %d rows (%v) of a live eu-west-1", n, err)
	}
	if n, err := pw.FireDue(ctx); err != nil || n != 2 {
		t.Fatalf("eu-west-1 fired %d rows (%v), want 2", n, err)
	}
	got := recWest.fired(t)
	for _, id := range []string{"due", "failed"} {
		e, ok := got[id]
		if !ok {
			t.Fatalf("eu-west-1 did not fire %s: %v", id, got)
		}
		if e.Deferred {
			t.Fatalf("kept event %s fired as a deferral: fan-out would skip its quiet hours", id)
		}
	}
	if _, ok := got["acked"]; ok || len(got) != 2 {
		t.Fatalf("eu-west-1 fired %v, want due and failed only", got)
	}

	// eu-west-1 is down and its row long overdue: eu-central-1 puts it on its own topic.
	if _, err := pg.Exec(ctx, `UPDATE scheduled_sends SET due_at = now() - interval '31 seconds' WHERE notification_id = 'later'`); err != nil {
		t.Fatal(err)
	}
	if n, err := pc.FireDue(ctx); err != nil || n != 1 {
		t.Fatalf("eu-central-1 fired %d rows (%v) of a down eu-west-1, want 1", n, err)
	}
	if _, ok := recCentral.fired(t)["later"]; !ok {
		t.Fatal("eu-central-1 did not take over the long overdue row")
	}
	var left int
	if err := pg.QueryRow(ctx, `SELECT count(*) FROM scheduled_sends WHERE reason = $1`, scheduler.ReasonOutbox).Scan(&left); err != nil || left != 0 {
		t.Fatalf("%d outbox rows left (%v)", left, err)
	}
}

// A backlog of due marketing rows never holds back a due one-time code: the scheduler claims
// due rows tier by tier, transactional first, then social, then marketing, then rows of a tier
// it does not know (which it dead-letters).
func TestDueRowsFireTransactionalFirstWhateverTheMarketingBacklog(t *testing.T) {
	c := regiontest.Config(t, "zz-"+regiontest.Letters()+"-1", "EU", t.TempDir())
	ctx := testenv.Context(t, 2*time.Minute)
	pg := regiontest.Migrated(t, c)
	store := scheduler.New(pg, "eu-west-1")
	rec := &recorder{}
	p := &scheduler.Poller{Store: store, Producer: rec, Topic: func(tier string) string { return notify.IngressTopic("eu-west-1", tier) },
		Cfg: scheduler.Config{Interval: time.Second, Batch: 3}, Log: slog.New(slog.DiscardHandler)}
	now := time.Now()
	for _, r := range []struct {
		id, tier string
		due      time.Duration
	}{
		{"m1", notify.Marketing, -time.Minute}, {"m2", notify.Marketing, -time.Minute}, {"m3", notify.Marketing, -time.Minute},
		{"s1", notify.Social, -30 * time.Second}, {"t1", notify.Transactional, -time.Second}, {"t2", notify.Transactional, -time.Second},
	} {
		e := notify.Event{ID: r.id, AppID: "app", Tier: r.tier, Recipients: []string{"u"}, Channels: []string{"in_app"}, AcceptedAt: now.UTC()}
		if err := store.Schedule(ctx, now.Add(r.due), e, "send_at"); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := p.FireDue(ctx); err != nil || n != 3 {
		t.Fatalf("first poll fired %d (%v), want 3", n, err)
	}
	first := rec.fired(t)
	for _, id := range []string{"t1", "t2", "s1"} {
		if _, ok := first[id]; !ok {
			t.Fatalf("the first poll of 3 fired %v: the due one-time codes and the social row must go before the older marketing backlog", first)
		}
	}
	if n, err := p.FireDue(ctx); err != nil || n != 3 || len(rec.fired(t)) != 6 {
		t.Fatalf("second poll fired %d (%v), %d in all, want the 3 marketing rows", n, err, len(rec.fired(t)))
	}
	// A row of a tier Herald does not know is claimed too (and, without a dead-letter writer
	// here, fails the poll naming it).
	if _, err := pg.Exec(ctx, `INSERT INTO scheduled_sends (app_id, notification_id, tier, due_at, event, reason) VALUES ('app', 'x1', 'bogus', now(), '{}', 'send_at')`); err != nil {
		t.Fatal(err)
	}
	if _, err := p.FireDue(ctx); err == nil || !strings.Contains(err.Error(), "unknown tier") {
		t.Fatalf("a row of an unknown tier: %v, want it claimed and refused as an unknown tier", err)
	}
}
