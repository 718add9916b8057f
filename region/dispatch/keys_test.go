package dispatch

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/envelope"
	"github.com/herald-notify/herald/platform/poll"
	"github.com/herald-notify/herald/region/notify"
)

// keyStore is a notify.Sealer counting the For calls under way; while gate is set, For waits
// for it.
type keyStore struct {
	inFor  atomic.Int64
	maxFor atomic.Int64
	gate   chan struct{}
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
	return envelope.Opened{}, nil
}

// The bulk tiers' For calls wait for one of KeysConcurrency slots; the transactional tier's go
// through while every slot is taken.
func TestLimitedKeysBoundTheBulkTiersButNotTransactional(t *testing.T) {
	store := &keyStore{gate: make(chan struct{})}
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
	poll.True(t, 5*time.Second, "the condition", func() bool { return store.inFor.Load() == 2 })
	done := make(chan error, 1)
	go func() { _, err := keys.For(withTier(ctx, notify.Transactional), "app", []string{"otp"}); done <- err }()
	poll.True(t, 5*time.Second, "the condition", func() bool { return store.inFor.Load() == 3 }) // in the store beside the two bulk calls
	close(store.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if m := store.maxFor.Load(); m != 3 {
		t.Fatalf("at most %d For calls at once, want 2 bulk + 1 transactional", m)
	}
}
