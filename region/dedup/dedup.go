// Package dedup keeps the keys that stop a recipient x channel of a notification from being
// delivered twice: after a crash Kafka re-delivers whole batches, and the recipients already
// handed on are skipped.
package dedup

import (
	"context"
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
	return &Keys{rdb: rdb, prefix: prefix + "dedup:", ttl: ttl}
}

// Key names one recipient x channel of a notification.
func (k *Keys) Key(notificationID, userID, channel string) string {
	return k.prefix + notificationID + ":" + channel + ":" + userID
}

// Done reports which of keys were already marked done.
func (k *Keys) Done(ctx context.Context, keys []string) ([]bool, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	vals, err := k.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, fmt.Errorf("reading dedup keys: %w", err)
	}
	out := make([]bool, len(keys))
	for i, v := range vals {
		out[i] = v != nil
	}
	return out, nil
}

// Mark records keys as done, after their work was handed on. SET NX keeps the first mark's
// expiry, so a repeat does not extend the window.
func (k *Keys) Mark(ctx context.Context, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	_, err := k.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for _, key := range keys {
			p.SetNX(ctx, key, "1", k.ttl)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("marking dedup keys: %w", err)
	}
	return nil
}
