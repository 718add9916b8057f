package prefs

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	goredis "github.com/redis/go-redis/v9"
)

var cacheLookups = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "herald_prefs_cache_lookups_total",
	Help: "Preference lookups by where they were answered: local, redis or postgres.",
}, []string{"source"})

// Cache answers preference lookups from an in-process map, then Redis (read-through, TTL),
// then Postgres. An update deletes the Redis entry and publishes an eviction that every
// process subscribed (every fan-out worker) applies to its own map at once, so an opt-out
// holds for the next send. The hard stop is never taken from here: fan-out reads it from
// Postgres on every send.
type Cache struct {
	db      *pgxpool.Pool
	rdb     *goredis.Client
	prefix  string
	ttl     time.Duration
	localMu sync.RWMutex
	local   map[string]localEntry
	max     int
	log     *slog.Logger
}

type localEntry struct {
	p       Preferences
	expires time.Time
}

// NewCache returns a cache under the region's Redis prefix.
func NewCache(db *pgxpool.Pool, rdb *goredis.Client, prefix string, ttl time.Duration, log *slog.Logger) *Cache {
	return &Cache{db: db, rdb: rdb, prefix: prefix, ttl: ttl, local: map[string]localEntry{}, max: 100_000, log: log}
}

func (c *Cache) key(app, user string) string { return c.prefix + "prefs:" + app + ":" + user }
func (c *Cache) channel() string             { return c.prefix + "prefs-evict" }

// Many returns the preferences of users (defaults for users with none).
func (c *Cache) Many(ctx context.Context, app string, users []string) (map[string]Preferences, error) {
	out := make(map[string]Preferences, len(users))
	now := time.Now()
	var missing []string
	c.localMu.RLock()
	for _, u := range users {
		if e, ok := c.local[c.key(app, u)]; ok && now.Before(e.expires) {
			out[u] = e.p
		} else {
			missing = append(missing, u)
		}
	}
	c.localMu.RUnlock()
	cacheLookups.WithLabelValues("local").Add(float64(len(users) - len(missing)))
	if len(missing) == 0 {
		return out, nil
	}
	keys := make([]string, len(missing))
	for i, u := range missing {
		keys[i] = c.key(app, u)
	}
	var fromDB []string
	vals, err := c.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		c.log.Warn("preferences cache unavailable; reading Postgres", "err", err)
		fromDB = missing
	} else {
		for i, v := range vals {
			var p Preferences
			if s, ok := v.(string); ok && json.Unmarshal([]byte(s), &p) == nil {
				out[missing[i]] = p
				c.remember(keys[i], p, now)
				cacheLookups.WithLabelValues("redis").Inc()
				continue
			}
			fromDB = append(fromDB, missing[i])
		}
	}
	if len(fromDB) == 0 {
		return out, nil
	}
	loaded, err := c.load(ctx, app, fromDB)
	if err != nil {
		return nil, err
	}
	cacheLookups.WithLabelValues("postgres").Add(float64(len(fromDB)))
	pipe := c.rdb.Pipeline()
	for _, u := range fromDB {
		p := loaded[u]
		out[u] = p
		raw, _ := json.Marshal(p)
		pipe.Set(ctx, c.key(app, u), raw, c.ttl)
		c.remember(c.key(app, u), p, now)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		c.log.Warn("filling the preferences cache", "err", err)
	}
	return out, nil
}

func (c *Cache) remember(key string, p Preferences, now time.Time) {
	c.localMu.Lock()
	defer c.localMu.Unlock()
	if len(c.local) >= c.max {
		for k := range c.local { // drop an arbitrary tenth: cheap, and the map stays bounded
			delete(c.local, k)
			if len(c.local) < c.max*9/10 {
				break
			}
		}
	}
	c.local[key] = localEntry{p: p, expires: now.Add(c.ttl)}
}

func (c *Cache) load(ctx context.Context, app string, users []string) (map[string]Preferences, error) {
	return (&Store{db: c.db}).Many(ctx, app, users)
}

// Invalidate drops a user's entry everywhere: Redis now, and every process's map through the
// eviction channel.
func (c *Cache) Invalidate(ctx context.Context, app, user string) error {
	key := c.key(app, user)
	c.localMu.Lock()
	delete(c.local, key)
	c.localMu.Unlock()
	if err := c.rdb.Del(ctx, key).Err(); err != nil {
		return fmt.Errorf("evicting preferences: %w", err)
	}
	if err := c.rdb.Publish(ctx, c.channel(), key).Err(); err != nil {
		return fmt.Errorf("publishing preference eviction: %w", err)
	}
	return nil
}

// Listen applies evictions published by other processes until ctx ends. While it cannot
// subscribe, the map is cleared and bypassed by the short TTL of what Redis returns.
func (c *Cache) Listen(ctx context.Context) error {
	for ctx.Err() == nil {
		sub := c.rdb.Subscribe(ctx, c.channel())
		if _, err := sub.Receive(ctx); err != nil {
			sub.Close()
			c.clear()
			if ctx.Err() == nil {
				c.log.Warn("preference evictions: subscribe failed; retrying", "err", err)
				select {
				case <-time.After(time.Second):
				case <-ctx.Done():
				}
			}
			continue
		}
		// Entries cached while not subscribed may have missed evictions.
		c.clear()
		ch := sub.Channel()
		for open := true; open; {
			select {
			case <-ctx.Done():
				open = false
			case m, ok := <-ch:
				if !ok {
					open = false
					break
				}
				if strings.HasPrefix(m.Payload, c.prefix) {
					c.localMu.Lock()
					delete(c.local, m.Payload)
					c.localMu.Unlock()
				}
			}
		}
		sub.Close()
	}
	return nil
}

func (c *Cache) clear() {
	c.localMu.Lock()
	c.local = map[string]localEntry{}
	c.localMu.Unlock()
}
