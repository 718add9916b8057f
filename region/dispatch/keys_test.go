package dispatch

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/envelope"
	"github.com/herald-notify/herald/region/notify"
)

// keyStore is a notify.Sealer and KeyLookup over a map, counting its calls; while gate is set,
// For and Lookup wait for it.
type keyStore struct {
	keys    map[string]envelope.Key // by id
	lookups atomic.Int64
	inFor   atomic.Int64
	maxFor  atomic.Int64
	gate    chan struct{}
}

func (s *keyStore) For(ctx context.Context, app string, users []string) ([]envelope.Key, error) {
	n := s.inFor.Add(1)
	defer s.inFor.Add(-1)
	for m := s.maxFor.Load(); n > m && !s.maxFor.CompareAndSwap(m, n); m = s.maxFor.Load() {
	}
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return nil, nil
}

func (s *keyStore) Open(ctx context.Context, raw []byte) (envelope.Opened, error) {
	return envelope.Open(ctx, raw, s.Lookup)
}

func (s *keyStore) Lookup(_ context.Context, ids []string) (map[string][]byte, error) {
	s.lookups.Add(1)
	time.Sleep(5 * time.Millisecond) // a query's round trip: concurrent Opens pile up meanwhile
	out := map[string][]byte{}
	for _, id := range ids {
		if k, ok := s.keys[id]; ok {
			out[id] = k.Data
		}
	}
	return out, nil
}

func sealedFor(t *testing.T, s *keyStore, user string) []byte {
	t.Helper()
	k := envelope.Key{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", len(s.keys)), User: user, Data: make([]byte, envelope.KeySize)}
	_, _ = rand.Read(k.Data)
	s.keys[k.ID] = k
	raw, err := envelope.Seal([]byte(`{"user":"`+user+`"}`), []envelope.Key{k})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// Concurrent Opens of a marketing drain share key lookups (far fewer than records), and each
// still gets its own user's record.
func TestLimitedKeysOpensShareLookups(t *testing.T) {
	store := &keyStore{keys: map[string]envelope.Key{}}
	keys := newLimitedKeys(store, 2)
	const n = 200
	raws := make([][]byte, n)
	for i := range raws {
		raws[i] = sealedFor(t, store, fmt.Sprintf("u%03d", i))
	}
	ctx := withTier(context.Background(), notify.Marketing)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o, err := keys.Open(ctx, raws[i])
			if err != nil || len(o.Users) != 1 || o.Users[0] != fmt.Sprintf("u%03d", i) {
				t.Errorf("open %d: %+v %v", i, o, err)
			}
		}()
	}
	wg.Wait()
	if got := store.lookups.Load(); got >= n/4 {
		t.Fatalf("%d key lookups for %d concurrent opens: not shared", got, n)
	}
}

// The bulk tiers' For calls wait for one of KeysConcurrency slots; the transactional tier's go
// through while every slot is taken.
func TestLimitedKeysBoundTheBulkTiersButNotTransactional(t *testing.T) {
	store := &keyStore{keys: map[string]envelope.Key{}, gate: make(chan struct{})}
	keys := newLimitedKeys(store, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = keys.For(withTier(ctx, notify.Marketing), "app", []string{"u"})
		}()
	}
	waitFor(t, func() bool { return store.inFor.Load() == 2 })
	done := make(chan error, 1)
	go func() { _, err := keys.For(withTier(ctx, notify.Transactional), "app", []string{"otp"}); done <- err }()
	waitFor(t, func() bool { return store.inFor.Load() == 3 }) // in the store beside the two bulk calls
	close(store.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if m := store.maxFor.Load(); m != 3 {
		t.Fatalf("at most %d For calls at once, want 2 bulk + 1 transactional", m)
	}
}
