// Package dedup keeps the keys that stop a recipient x channel of a notification from being
// delivered twice: after a crash Kafka re-delivers whole batches, and the recipients already
// handed on are skipped.
//
// A notification's keys are fields of a few Redis hashes (buckets) rather than a Redis key
// each: a fan-out chunk checks its 500 recipients with one HMGET per bucket and marks them with
// one HSET per bucket, where a key each took 500 SETs. Per recipient that was most of Redis's
// CPU in the write path, and a small hash (listpack) also takes a fraction of a key's memory.
package dedup

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Buckets is how many hashes hold one notification's keys. A million-subscriber topic send
// stays at about 60,000 fields a hash (a few MB, freed in the background when it expires,
// and spread over a cluster's slots), while a chunk still needs at most 16 commands a step.
const Buckets = 16

// sep separates a key's hash from its field. Neither part, both prefix and base64url, contains it.
const sep = "|"

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

// Key names one recipient x channel of a notification: the notification's bucket hash, then
// the field. Both are hashes rather than the ids themselves: at tens of millions of keys a day,
// key length is most of Redis's memory. The field is 128 bits, so two recipients of one send
// never share it (a shared field would suppress a delivery as a duplicate).
func (k *Keys) Key(notificationID, userID, channel string) string {
	f := sha256.New()
	f.Write([]byte(channel))
	f.Write([]byte{0})
	f.Write([]byte(userID))
	field := f.Sum(nil)[:16]
	n := sha256.Sum256([]byte(notificationID))
	return fmt.Sprintf("%s%s:%x%s%s", k.prefix, base64.RawURLEncoding.EncodeToString(n[:12]), field[0]%Buckets, sep,
		base64.RawURLEncoding.EncodeToString(field))
}

// split returns a key's hash and field.
func split(key string) (hash, field string, err error) {
	i := strings.LastIndex(key, sep)
	if i < 0 {
		return "", "", fmt.Errorf("dedup key %q was not made by Key", key)
	}
	return key[:i], key[i+len(sep):], nil
}

// group is the keys of one hash, with their positions in the caller's list.
type group struct {
	hash   string
	fields []string
	at     []int
}

func groups(keys []string) ([]*group, error) {
	byHash := map[string]*group{}
	var out []*group
	for i, key := range keys {
		h, f, err := split(key)
		if err != nil {
			return nil, err
		}
		g := byHash[h]
		if g == nil {
			g = &group{hash: h}
			byHash[h] = g
			out = append(out, g)
		}
		g.fields, g.at = append(g.fields, f), append(g.at, i)
	}
	return out, nil
}

// Done returns, for each key, the state it was handed on with ("" when it was not).
func (k *Keys) Done(ctx context.Context, keys []string) ([]string, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	gs, err := groups(keys)
	if err != nil {
		return nil, err
	}
	cmds := make([]*goredis.SliceCmd, len(gs))
	if _, err := k.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, g := range gs {
			cmds[i] = p.HMGet(ctx, g.hash, g.fields...)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("reading dedup keys: %w", err)
	}
	out := make([]string, len(keys))
	for i, g := range gs {
		for j, v := range cmds[i].Val() {
			if s, ok := v.(string); ok {
				out[g.at[j]] = s
			}
		}
	}
	return out, nil
}

// Mark records keys as handed on, each with the state it reached, and keeps each hash for the
// TTL after its latest mark. The HSET and EXPIRE of a hash go in one MULTI, so a hash is never
// left without its expiry. A key marked again keeps its state: fan-out marks only what Done
// found unmarked, and a delivery's state on one channel is always the same.
func (k *Keys) Mark(ctx context.Context, keys, states []string) error {
	if len(keys) == 0 {
		return nil
	}
	gs, err := groups(keys)
	if err != nil {
		return err
	}
	_, err = k.rdb.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		for _, g := range gs {
			args := make([]any, 0, 2*len(g.fields))
			for j, f := range g.fields {
				args = append(args, f, states[g.at[j]])
			}
			p.HSet(ctx, g.hash, args...)
			p.Expire(ctx, g.hash, k.ttl)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("marking dedup keys: %w", err)
	}
	return nil
}
