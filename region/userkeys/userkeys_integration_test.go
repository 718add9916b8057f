//go:build integration

package userkeys_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/envelope"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region/erasure"
	"github.com/herald-notify/herald/region/regiontest"
	"github.com/herald-notify/herald/region/userkeys"
)

// TestKeysAreCreatedOnceUnderConcurrentFirstUseAndDestroyedForEveryProcess runs two key stores
// (two region processes) on one database: their concurrent first use of the same users makes
// one key per user, and a key destroyed through one is gone for the other once its cache
// entry expires, the bound the erasure waits for.
func TestKeysAreCreatedOnceUnderConcurrentFirstUseAndDestroyedForEveryProcess(t *testing.T) {
	c := regiontest.Config(t, "zz-"+regiontest.Letters()+"-1", "EU", t.TempDir())
	ctx := testenv.Context(t, 3*time.Minute)
	pg := regiontest.Migrated(t, c)
	a, b := userkeys.New(pg, testenv.MasterKeyring(t)), userkeys.New(pg, testenv.MasterKeyring(t))
	users := make([]string, 500)
	for i := range users {
		users[i] = fmt.Sprintf("user-%03d", i)
	}
	users = append(users, users[0]) // a duplicate in one call

	var got [2][]envelope.Key
	var errs [2]error
	var wg sync.WaitGroup
	start := time.Now()
	for i, k := range []*userkeys.Keys{a, b} {
		wg.Go(func() { got[i], errs[i] = k.For(ctx, "app", users) })
	}
	wg.Wait()
	created := time.Since(start)
	for i := range got {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
	}
	for i := range users {
		if got[0][i].ID == "" || got[0][i].ID != got[1][i].ID || string(got[0][i].Data) != string(got[1][i].Data) || got[0][i].User != users[i] {
			t.Fatalf("user %s: keys %s and %s", users[i], got[0][i].ID, got[1][i].ID)
		}
	}
	var n int
	if err := pg.QueryRow(ctx, `SELECT count(*) FROM user_keys WHERE app_id = 'app'`).Scan(&n); err != nil || n != 500 {
		t.Fatalf("%d key rows (%v), want 500", n, err)
	}
	start = time.Now()
	if _, err := a.For(ctx, "app", users); err != nil {
		t.Fatal(err)
	}
	cached := time.Since(start)
	ids := make([]string, 500)
	for i := range ids {
		ids[i] = got[0][i].ID
	}
	cold := userkeys.New(pg, testenv.MasterKeyring(t))
	start = time.Now()
	found, err := cold.Lookup(ctx, ids)
	if err != nil || len(found) != 500 {
		t.Fatalf("lookup found %d (%v)", len(found), err)
	}
	t.Logf("500 users: keys created by two processes at once in %v, read from cache in %v, looked up by id cold in %v", created, cached, time.Since(start))

	// The other app's user of the same id has another key.
	other, err := a.For(ctx, "other-app", users[:1])
	if err != nil || other[0].ID == got[0][0].ID {
		t.Fatalf("another app's user shares the key (%v)", err)
	}

	// b read user-000's key; a destroys it (the erasure). b may use its cached copy for at
	// most CacheTTL, then finds nothing.
	if err := a.Destroy(ctx, "app", users[0]); err != nil {
		t.Fatal(err)
	}
	if k, _ := a.Lookup(ctx, ids[:1]); len(k) != 0 {
		t.Fatal("the destroying process still finds the key")
	}
	deadline := time.Now().Add(userkeys.CacheTTL + 2*time.Second)
	for {
		k, err := b.Lookup(ctx, ids[:1])
		if err != nil {
			t.Fatal(err)
		}
		if len(k) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("another process still opens the destroyed key after %v", userkeys.CacheTTL+2*time.Second)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// No key is ever made for an erased user (erased_users), whatever stage asks.
	if _, err := pg.Exec(ctx, `INSERT INTO erased_users (app_id, user_hash) VALUES ('app', $1)`, erasure.Hash("app", "gone")); err != nil {
		t.Fatal(err)
	}
	if k, err := b.For(ctx, "app", []string{"gone", users[1]}); err != nil || k[0].ID != "" || k[1].ID != got[0][1].ID {
		t.Fatalf("keys for an erased user and another: %+v (%v)", k, err)
	}
	if err := pg.QueryRow(ctx, `SELECT count(*) FROM user_keys WHERE user_id = 'gone'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d key rows for the erased user (%v)", n, err)
	}
	// A later first use of the same user, not erased, makes a new key: what was sealed before
	// stays shut.
	again, err := b.For(ctx, "app", users[:1])
	if err != nil || again[0].ID == got[0][0].ID {
		t.Fatalf("the destroyed key came back (%v)", err)
	}
}
