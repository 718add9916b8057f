// Package retry is how Herald waits between attempts: an exponential backoff with jitter
// (cenkalti/backoff underneath) and a wait that ends with its context. Every loop that retries
// a failing call (a consumer group's session, a watch, a transaction, a store's listener) takes
// its waits from here, so caps and jitter are stated once per loop and never hand-rolled.
package retry

import (
	"context"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Backoff is an exponential backoff: Initial after the first failure, doubling up to Max, each
// wait drawn uniformly from ±Jitter of it (0.2: 80-120 %), so processes that failed together do
// not retry in step. Max bounds the wait after jitter too: no wait is ever longer than Max.
type Backoff struct {
	Initial, Max time.Duration
	Jitter       float64
}

// BackOff returns b for backoff.Retry.
func (b Backoff) BackOff() backoff.BackOff { return b.Start() }

func (b Backoff) exponential() *backoff.ExponentialBackOff {
	initial := max(b.Initial, time.Millisecond)
	return &backoff.ExponentialBackOff{InitialInterval: initial, RandomizationFactor: min(max(b.Jitter, 0), 1),
		Multiplier: 2, MaxInterval: max(b.Max, initial)}
}

// Start returns a new sequence of b's waits.
func (b Backoff) Start() *Waits { return &Waits{b: b.exponential()} }

// Waits is one loop's sequence of waits; not safe for concurrent use.
type Waits struct{ b *backoff.ExponentialBackOff }

// Next returns the wait before the next attempt, and lengthens the one after.
func (w *Waits) Next() time.Duration { return min(w.b.NextBackOff(), w.b.MaxInterval) }

// NextAfter is Next for an attempt that ran for ran before it ended: one that lasted longer
// than Max had been working (a subscription that was live, a listener that was listening), so
// its end is a new outage and the waits start again from Initial.
func (w *Waits) NextAfter(ran time.Duration) time.Duration {
	if ran > w.b.MaxInterval {
		w.Reset()
	}
	return w.Next()
}

// NextBackOff is Next, so that Waits is a backoff.BackOff.
func (w *Waits) NextBackOff() time.Duration { return w.Next() }

// Reset starts the sequence again from Initial: call it after a success.
func (w *Waits) Reset() { w.b.Reset() }

// Sleep waits d, or less if ctx ends first, and reports whether ctx is still live.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Loop calls op until ctx ends. After op fails it waits the next of b's waits (telling
// failed, when set, the error and the wait); after op returns nil the waits start again, and
// op is called again at once. It suits work that runs until shutdown, such as a consumer
// group's session or a subscription, where an error means "try again", never "give up".
func Loop(ctx context.Context, b Backoff, op func(ctx context.Context) error, failed func(err error, wait time.Duration)) {
	w := b.Start()
	for ctx.Err() == nil {
		err := op(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			w.Reset()
			continue
		}
		wait := w.Next()
		if failed != nil {
			failed(err, wait)
		}
		if !Sleep(ctx, wait) {
			return
		}
	}
}
