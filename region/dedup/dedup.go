// Package dedup keeps the keys that stop a recipient x channel of a notification from being
// delivered twice: after a crash Kafka re-delivers whole batches, and the recipients already
// handed on are skipped.
package dedup

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Keys claims and checks dedup keys in Redis.
type Keys struct {
	rdb    *goredis.Client
	prefix string
	ttl    time.Duration
}

// New returns Keys under prefix (the region's Redis prefix) kept for ttl (24 h by default).
func New(rdb *goredis.Client, prefix string, ttl time.Duration) *Keys {
	return &Keys{rdb: rdb, prefix: prefix + "dd:", ttl: ttl}
}

// Key names one recipient x channel of a notification. It is a 128-bit hash rather than the
// ids themselves: at tens of millions of keys a day, key length is most of Redis's memory.
func (k *Keys) Key(notificationID, userID, channel string) string {
	h := sha256.New()
	h.Write([]byte(notificationID))
	h.Write([]byte{0})
	h.Write([]byte(channel))
	h.Write([]byte{0})
	h.Write([]byte(userID))
	return k.prefix + base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:16])
}

// Done returns, for each key, the state it was handed on with ("" when it was not).
func (k *Keys) Done(ctx context.Context, keys []string) ([]string, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	vals, err := k.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, fmt.Errorf("reading dedup keys: %w", err)
	}
	out := make([]string, len(keys))
	for i, v := range vals {
		if s, ok := v.(string); ok {
			out[i] = s
		}
	}
	return out, nil
}

// Mark records keys as handed on, each with the state it reached. SET NX keeps the first
// mark's value and expiry, so a repeat neither changes nor extends it.
func (k *Keys) Mark(ctx context.Context, keys, states []string) error {
	if len(keys) == 0 {
		return nil
	}
	_, err := k.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, key := range keys {
			p.SetNX(ctx, key, states[i], k.ttl)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("marking dedup keys: %w", err)
	}
	return nil
}
