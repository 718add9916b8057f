package gateway

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"

	"github.com/herald-notify/herald/gateway/apikey"
)

// keyCache remembers verified keys for a short TTL, so a request costs no database round trip
// for its key; a revoked key stops working within that TTL. Refused keys are not remembered
// (a key just created works at once).
type keyCache struct {
	next keyVerifier
	ttl  time.Duration

	mu sync.Mutex
	m  map[[32]byte]cachedKey
}

type cachedKey struct {
	k   apikey.Key
	exp time.Time
}

func newKeyCache(next keyVerifier, ttl time.Duration) *keyCache {
	return &keyCache{next: next, ttl: ttl, m: map[[32]byte]cachedKey{}}
}

func (c *keyCache) Verify(ctx context.Context, plaintext string) (apikey.Key, error) {
	h := sha256.Sum256([]byte(plaintext))
	now := time.Now()
	c.mu.Lock()
	if v, ok := c.m[h]; ok && now.Before(v.exp) {
		c.mu.Unlock()
		return v.k, nil
	}
	c.mu.Unlock()
	k, err := c.next.Verify(ctx, plaintext)
	if err != nil {
		return k, err
	}
	c.mu.Lock()
	if len(c.m) > 10_000 {
		for old, v := range c.m {
			if now.After(v.exp) {
				delete(c.m, old)
			}
		}
	}
	c.m[h] = cachedKey{k: k, exp: now.Add(c.ttl)}
	c.mu.Unlock()
	return k, nil
}
