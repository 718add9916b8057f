package dispatch

import (
	"context"
	"slices"
	"time"

	"github.com/herald-notify/herald/platform/envelope"
	"github.com/herald-notify/herald/region/notify"
)

// The data keys are read from the region's Postgres pool, which the API, fan-out and every tier
// of dispatch share. A marketing drain opens (and seals the delivery events of) thousands of
// tasks a second, each needing its user's key, mostly not cached: one query per task would queue
// hundreds of queries in front of a transactional task's, or an API request's, in the pool, and
// cap the drain at what a few connections answer one by one (about 250 tasks/s on the 2-core
// machine). So:
//   - the key reads of concurrent Opens share one query per round (a batcher, as the Redis calls
//     do), the transactional tier's in rounds of their own (lanes);
//   - the social and marketing consumers' other key calls (For: the delivery events, retries)
//     go through a semaphore of Deps.KeysConcurrency, and so do the legacy drain's; the
//     transactional tier's do not wait for it.

// keyLookupRoundMax bounds the key ids of one batched lookup; keyLookupTimeout bounds its query.
const (
	keyLookupRoundMax = 512
	keyLookupTimeout  = 10 * time.Second
)

// KeyLookup is a key store that reads several keys in one call (*userkeys.Keys).
type KeyLookup interface {
	Lookup(ctx context.Context, ids []string) (map[string][]byte, error)
}

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

// limitedKeys is a notify.Sealer whose Opens share batched key reads (when the store is a
// KeyLookup) and whose For calls from the bulk tiers take a slot of sem first (when sem is set).
type limitedKeys struct {
	notify.Sealer
	sem     chan struct{}
	lookups *lanes[[]string, map[string][]byte]
}

func newLimitedKeys(s notify.Sealer, concurrency int) notify.Sealer {
	k := limitedKeys{Sealer: s}
	if concurrency > 0 {
		k.sem = make(chan struct{}, concurrency)
	}
	if store, ok := s.(KeyLookup); ok {
		l := newLanes(keyLookupRoundMax, keyLookupTimeout, func(ctx context.Context, reqs [][]string) ([]map[string][]byte, error) {
			var ids []string
			for _, r := range reqs {
				ids = append(ids, r...)
			}
			slices.Sort(ids)
			found, err := store.Lookup(ctx, slices.Compact(ids))
			if err != nil {
				return nil, err
			}
			out := make([]map[string][]byte, len(reqs))
			for i, r := range reqs {
				out[i] = make(map[string][]byte, len(r))
				for _, id := range r {
					if key, ok := found[id]; ok {
						out[i][id] = key
					}
				}
			}
			return out, nil
		})
		k.lookups = &l
	}
	return k
}

func (k limitedKeys) acquire(ctx context.Context) (func(), error) {
	if k.sem == nil || urgent(ctx) {
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
	if k.lookups != nil {
		return envelope.Open(ctx, raw, func(ctx context.Context, ids []string) (map[string][]byte, error) {
			return k.lookups.do(ctx, ids, urgent(ctx))
		})
	}
	release, err := k.acquire(ctx)
	if err != nil {
		return envelope.Opened{}, err
	}
	defer release()
	return k.Sealer.Open(ctx, raw)
}
