package dispatch

import (
	"context"

	"github.com/herald-notify/herald/platform/envelope"
	"github.com/herald-notify/herald/region/notify"
)

// The data keys are read from the region's Postgres pool, which the API, fan-out and every tier
// of dispatch share. A marketing drain opens (and seals the delivery events of) thousands of
// tasks a second, each needing its user's key, mostly not cached: with 1,024 marketing tasks in
// flight it would queue hundreds of key queries in front of a transactional task's, or an API
// request's, in the pool (measured: API requests timed out at 30 s behind a 10,000-push drain).
// So the social and marketing consumers' key calls (Open, For), and the legacy drain's, go
// through a semaphore of Deps.KeysConcurrency (the region sets half its pool); the transactional
// tier's do not wait for it, and always find the rest of the pool.

type tierKey struct{}

// withTier marks ctx as the work of tier's consumers.
func withTier(ctx context.Context, tier string) context.Context {
	return context.WithValue(ctx, tierKey{}, tier)
}

// urgent reports whether ctx is the transactional tier's work (or no consumer's at all: a
// dead-letter replay, a unit test).
func urgent(ctx context.Context) bool {
	t, ok := ctx.Value(tierKey{}).(string)
	return !ok || t == "" || t == notify.Transactional
}

// limitedKeys is a notify.Sealer whose calls from the bulk tiers take a slot of sem first.
type limitedKeys struct {
	notify.Sealer
	sem chan struct{}
}

func newLimitedKeys(s notify.Sealer, concurrency int) notify.Sealer {
	if concurrency <= 0 {
		return s
	}
	return limitedKeys{Sealer: s, sem: make(chan struct{}, concurrency)}
}

func (k limitedKeys) acquire(ctx context.Context) (func(), error) {
	if urgent(ctx) {
		return func() {}, nil
	}
	select {
	case k.sem <- struct{}{}:
		return func() { <-k.sem }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (k limitedKeys) For(ctx context.Context, app string, users []string) ([]envelope.Key, error) {
	release, err := k.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	return k.Sealer.For(ctx, app, users)
}

func (k limitedKeys) Open(ctx context.Context, raw []byte) (envelope.Opened, error) {
	release, err := k.acquire(ctx)
	if err != nil {
		return envelope.Opened{}, err
	}
	defer release()
	return k.Sealer.Open(ctx, raw)
}
