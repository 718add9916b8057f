//go:build integration

package scheduler_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

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
