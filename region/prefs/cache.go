package prefs

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	goredis "github.com/redis/go-redis/v9"

	"github.com/herald-notify/herald/platform/retry"
)

var cacheLookups = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "herald_prefs_cache_lookups_total",
	Help: "Preference lookups by where they were answered: local, redis or postgres.",
}, []string{"source"})

// Cache answers preference lookups from an in-process map, then Redis (read-through, TTL),
// then Postgres. An update deletes the entry and announces the eviction on the database, and
// every process listening (every fan-out worker, in every region of the jurisdiction) drops
// it from its map and its region's Redis at once, so an opt-out holds for the next send
// wherever it is made. The hard stop is never taken from here: fan-out reads it from
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

// evictChannel is the Postgres channel evictions are announced on. The regions of a
// jurisdiction share the database, so an update through one region reaches the caches of all.
const evictChannel = "herald_prefs_evict"

// Invalidate drops a user's entry everywhere: this process's map and this region's Redis now,
// and every other process's, in every region of the jurisdiction, through a notification on
// the shared database (Listen).
func (c *Cache) Invalidate(ctx context.Context, app, user string) error {
	c.evict(ctx, app+":"+user)
	if _, err := c.db.Exec(ctx, `SELECT pg_notify($1, $2)`, evictChannel, app+":"+user); err != nil {
		return fmt.Errorf("announcing preference eviction: %w", err)
	}
	return nil
}

// evict drops the entry of "app:user" from the map and from this region's Redis.
func (c *Cache) evict(ctx context.Context, appUser string) {
	key := c.prefix + "prefs:" + appUser
	c.localMu.Lock()
	delete(c.local, key)
	c.localMu.Unlock()
	if err := c.rdb.Del(ctx, key).Err(); err != nil {
		// The entry lives out its TTL; the map is bypassed until the next subscribe clears it.
		c.log.Warn("evicting preferences from redis", "key", key, "err", err)
	}
}

// listenRetry is the wait before listening again: short, since the cache is bypassed meanwhile.
var listenRetry = retry.Backoff{Initial: 250 * time.Millisecond, Max: 5 * time.Second, Jitter: 0.2}

// Listen applies the evictions announced on the shared database until ctx ends. Whenever it
// (re)subscribes it clears the map and this region's Redis entries, since it may have missed
// evictions while not listening (a region coming back from an outage finds its cache as it
// left it); while it cannot subscribe, the map is cleared and the Redis TTL bounds staleness.
func (c *Cache) Listen(ctx context.Context) error {
	waits := listenRetry.Start()
	for ctx.Err() == nil {
		started := time.Now()
		err := c.listen(ctx)
		c.clear()
		if ctx.Err() != nil {
			break
		}
		wait := waits.NextAfter(time.Since(started)) // after a long listen the outage is new
		c.log.Warn("preference evictions: not listening; retrying", "err", err, "backoff", wait)
		retry.Sleep(ctx, wait)
	}
	return nil
}

func (c *Cache) listen(ctx context.Context) error {
	conn, err := c.db.Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection carries the subscription: it is closed, not returned to the pool.
	pc := conn.Hijack()
	defer pc.Close(context.WithoutCancel(ctx))
	if _, err := pc.Exec(ctx, "LISTEN "+evictChannel); err != nil {
		return err
	}
	c.clear()
	if err := c.flushRedis(ctx); err != nil {
		return err
	}
	for {
		n, err := pc.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		c.evict(ctx, n.Payload)
	}
}

// flushRedis deletes this region's cached preferences.
func (c *Cache) flushRedis(ctx context.Context) error {
	iter := c.rdb.Scan(ctx, 0, c.prefix+"prefs:*", 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 1000 {
			if err := c.rdb.Unlink(ctx, batch...).Err(); err != nil {
				return fmt.Errorf("clearing cached preferences: %w", err)
			}
			batch = batch[:0]
		}
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("clearing cached preferences: %w", err)
	}
	if len(batch) > 0 {
		if err := c.rdb.Unlink(ctx, batch...).Err(); err != nil {
			return fmt.Errorf("clearing cached preferences: %w", err)
		}
	}
	return nil
}

func (c *Cache) clear() {
	c.localMu.Lock()
	c.local = map[string]localEntry{}
	c.localMu.Unlock()
}
