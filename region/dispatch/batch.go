package dispatch

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// batcher groups the requests of concurrent callers into one round trip (group commit): the
// first request of an idle batcher goes out at once, alone; requests made while a round is in
// flight wait for it and go out together in the next one. A busy dispatcher therefore makes one
// Redis call for many tasks, an idle one adds no delay, and no goroutine lingers when idle.
//
// do returns the request's own result; an error of the round is every request's error.
type batcher[Q, R any] struct {
	// max bounds the requests of one round.
	max int
	// timeout bounds one round; the round runs on its own context, so one caller giving up does
	// not cancel the others' requests.
	timeout time.Duration
	// round sends the requests and returns one result per request, in order.
	round func(ctx context.Context, reqs []Q) ([]R, error)

	mu      sync.Mutex
	pending []*batchCall[Q, R]
	running bool
}

type batchCall[Q, R any] struct {
	ctx  context.Context
	q    Q
	r    R
	err  error
	done chan struct{}
}

func newBatcher[Q, R any](max int, timeout time.Duration, round func(ctx context.Context, reqs []Q) ([]R, error)) *batcher[Q, R] {
	return &batcher[Q, R]{max: max, timeout: timeout, round: round}
}

// do queues q for the next round and waits for its result, or for ctx to end. A request whose
// ctx ended before its round went out is left out of the round.
func (b *batcher[Q, R]) do(ctx context.Context, q Q) (R, error) {
	return b.submit(ctx, q).wait(ctx)
}

// submit queues q for the next round and returns at once; wait gives the result.
func (b *batcher[Q, R]) submit(ctx context.Context, q Q) *batchCall[Q, R] {
	c := &batchCall[Q, R]{ctx: ctx, q: q, done: make(chan struct{})}
	b.mu.Lock()
	b.pending = append(b.pending, c)
	if !b.running {
		b.running = true
		go b.drain()
	}
	b.mu.Unlock()
	return c
}

// wait returns the request's result once its round is done, or ctx's error if ctx ends first.
func (c *batchCall[Q, R]) wait(ctx context.Context) (R, error) {
	select {
	case <-c.done:
		return c.r, c.err
	case <-ctx.Done():
		var zero R
		return zero, ctx.Err()
	}
}

// drain runs rounds until nothing is pending.
func (b *batcher[Q, R]) drain() {
	for {
		b.mu.Lock()
		n := min(len(b.pending), b.max)
		if n == 0 {
			b.running = false
			b.pending = nil // drop the backing array a burst grew
			b.mu.Unlock()
			return
		}
		calls := make([]*batchCall[Q, R], 0, n)
		for _, c := range b.pending[:n] {
			if c.ctx.Err() == nil {
				calls = append(calls, c)
			}
		}
		b.pending = b.pending[n:]
		b.mu.Unlock()
		if len(calls) > 0 {
			b.run(calls)
		}
	}
}

func (b *batcher[Q, R]) run(calls []*batchCall[Q, R]) {
	reqs := make([]Q, len(calls))
	for i, c := range calls {
		reqs[i] = c.q
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	res, err := b.round(ctx, reqs)
	cancel()
	if err == nil && len(res) != len(calls) {
		err = fmt.Errorf("batch of %d requests got %d results", len(calls), len(res))
	}
	for i, c := range calls {
		if err != nil {
			c.err = err
		} else {
			c.r = res[i]
		}
		close(c.done)
	}
}

// lanes is a batcher per priority, the urgent one for the transactional tier's requests: they go
// out in rounds of their own, at once when none of theirs is under way, never waiting for a
// round of the other tiers' requests (which a backlog keeps full and busy) to come back.
type lanes[Q, R any] struct {
	urgent, bulk *batcher[Q, R]
}

func newLanes[Q, R any](max int, timeout time.Duration, round func(ctx context.Context, reqs []Q) ([]R, error)) lanes[Q, R] {
	return lanes[Q, R]{urgent: newBatcher(max, timeout, round), bulk: newBatcher(max, timeout, round)}
}

func (l lanes[Q, R]) lane(urgent bool) *batcher[Q, R] {
	if urgent {
		return l.urgent
	}
	return l.bulk
}

// do is the lane's batcher.do.
func (l lanes[Q, R]) do(ctx context.Context, q Q, urgent bool) (R, error) {
	return l.lane(urgent).do(ctx, q)
}
