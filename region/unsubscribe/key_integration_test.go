//go:build integration

package unsubscribe_test

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/migrate"
	"github.com/herald-notify/herald/platform/postgres"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region/schema"
	"github.com/herald-notify/herald/region/unsubscribe"
)

// Region processes starting together (a deployment's dispatchers, a test's two processes) each
// load the key on first use: every one of them gets the one key that was stored, none fails.
func TestLoadKeyGivesEveryConcurrentFirstUseTheOneStoredKey(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	pc := testenv.Postgres(t)
	pool, err := postgres.Connect(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ms, err := migrate.Load(schema.Postgres(), "sql")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.Postgres(ctx, pool, ms); err != nil {
		t.Fatal(err)
	}
	for round := range 5 {
		if _, err := pool.Exec(ctx, `DELETE FROM region_secrets`); err != nil {
			t.Fatal(err)
		}
		const n = 16
		keys := make([][]byte, n)
		errs := make([]error, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				keys[i], errs[i] = unsubscribe.LoadKey(ctx, pool)
			})
		}
		close(start)
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("round %d: load %d: %v", round, i, errs[i])
			}
			if len(keys[i]) != 32 || !bytes.Equal(keys[i], keys[0]) {
				t.Fatalf("round %d: load %d got key %x, load 0 got %x", round, i, keys[i], keys[0])
			}
		}
	}
	again, err := unsubscribe.LoadKey(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	var stored []byte
	if err := pool.QueryRow(ctx, `SELECT secret FROM region_secrets WHERE name = 'unsubscribe'`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, stored) {
		t.Fatal("a later load does not return the stored key")
	}
}
