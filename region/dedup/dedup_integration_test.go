//go:build integration

package dedup

import (
	"fmt"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/redis"
	"github.com/herald-notify/herald/platform/testenv"
)

func TestMarkedKeysAreDoneWithTheirStateAndExpireWithTheirHash(t *testing.T) {
	c := testenv.Redis(t)
	ctx := testenv.Context(t, 30*time.Second)
	rdb, err := redis.Connect(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	k := New(rdb, c.Prefix, 3*time.Second)

	var keys, states []string
	for i := range 500 {
		keys = append(keys, k.Key("n-marked", fmt.Sprint("user-", i), "in_app"), k.Key("n-marked", fmt.Sprint("user-", i), "push"))
		states = append(states, "delivered", "queued")
	}
	// Mark every other recipient; the rest must still read as not done.
	var marked, markedStates []string
	for i := 0; i < len(keys); i += 4 {
		marked = append(marked, keys[i], keys[i+1])
		markedStates = append(markedStates, states[i], states[i+1])
	}
	if err := k.Mark(ctx, marked, markedStates); err != nil {
		t.Fatal(err)
	}
	done, err := k.Done(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	for i := range keys {
		want := ""
		if i%4 < 2 {
			want = states[i]
		}
		if done[i] != want {
			t.Fatalf("key %d: done %q, want %q", i, done[i], want)
		}
	}
	// Another notification's identical recipients are not done.
	other, err := k.Done(ctx, []string{k.Key("n-other", "user-0", "in_app")})
	if err != nil || other[0] != "" {
		t.Fatalf("another notification's key reads %q, %v", other[0], err)
	}
	// Every hash has the TTL, and the keys go with it.
	gs, _ := groups(marked)
	for _, g := range gs {
		if ttl := rdb.PTTL(ctx, g.hash).Val(); ttl <= 0 || ttl > 3*time.Second {
			t.Fatalf("hash %s has TTL %v, want (0, 3s]", g.hash, ttl)
		}
	}
	time.Sleep(3100 * time.Millisecond)
	done, err = k.Done(ctx, marked)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range done {
		if d != "" {
			t.Fatalf("key %d still done after its TTL: %q", i, d)
		}
	}
}
