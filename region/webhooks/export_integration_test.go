//go:build integration

package webhooks

import (
	"context"
	"sync"
	"time"
)

// What the integration tests (package webhooks_test) use of the deliverer's store calls.
type (
	Pending = pending
	Outcome = outcome
)

// Claim is the deliverer's claim: a deliverer that stops (crashes) after it leaves the rows
// to their lease.
func (s *Store) Claim(ctx context.Context, region string, n int, lease, takeover time.Duration) ([]Pending, error) {
	return s.claim(ctx, region, n, lease, takeover)
}

// Settle records os[i] as the outcome of ps[i], in one batch, as the settler does.
func (s *Store) Settle(ctx context.Context, ps []Pending, os []Outcome) error {
	rs := make([]settled, len(ps))
	for i := range ps {
		rs[i] = settled{ps[i], os[i]}
	}
	return s.settle(ctx, rs)
}

// Lease is how long a claim of d hides a delivery.
func (d *Deliverer) Lease() time.Duration { return d.lease() }

// BatchCounter is the store a sweeper deletes through, recording how many rows each batch
// deleted.
type BatchCounter struct {
	*Store
	mu      sync.Mutex
	batches []int64
}

func (b *BatchCounter) deleteDone(ctx context.Context, status string, before, from time.Time, n int) (int64, time.Time, error) {
	gone, last, err := b.Store.deleteDone(ctx, status, before, from, n)
	b.mu.Lock()
	b.batches = append(b.batches, gone)
	b.mu.Unlock()
	return gone, last, err
}

// Batches are the rows each batch deleted, in order.
func (b *BatchCounter) Batches() []int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]int64(nil), b.batches...)
}

// Require is helpers_test.go's assertions, for package webhooks_test.
var Require = require
