// Package directory is the gateway's user directory: for each (app, user), named only by its
// keyed hash (residency.UserKey), the jurisdiction and home region that hold the user's data.
package directory

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-notify/herald/residency"
)

var (
	// ErrNotFound means the user was never registered (or was erased).
	ErrNotFound = errors.New("directory: user not registered")
	// ErrOtherJurisdiction means a registration names another jurisdiction than the user's:
	// moving a user between jurisdictions means moving their data, which the gateway never does
	// on its own.
	ErrOtherJurisdiction = errors.New("directory: user is registered in another jurisdiction")
)

// Entry is where one user's data lives.
type Entry struct {
	Jurisdiction string
	HomeRegion   string
	Country      string // ISO 3166-1 alpha-2, "" when registered by jurisdiction
}

// Directory reads and writes the user_directory table, with an in-memory cache in front.
type Directory struct {
	db     *pgxpool.Pool
	secret []byte
	cache  *cache
}

// New returns a Directory on db; secret keys the user hashes. cacheSize 0 disables the cache.
func New(db *pgxpool.Pool, secret []byte, cacheSize int, cacheTTL time.Duration) *Directory {
	return &Directory{db: db, secret: secret, cache: newCache(cacheSize, cacheTTL)}
}

// Key is the user's directory key.
func (d *Directory) Key(app, user string) string { return residency.UserKey(d.secret, app, user) }

// Lookup returns the user's entry, or ErrNotFound.
func (d *Directory) Lookup(ctx context.Context, app, user string) (Entry, error) {
	key := d.Key(app, user)
	if e, ok := d.cache.get(key); ok {
		return e, nil
	}
	var e Entry
	var country *string
	err := d.db.QueryRow(ctx, `SELECT jurisdiction, home_region, country FROM user_directory WHERE user_key = $1`, key).
		Scan(&e.Jurisdiction, &e.HomeRegion, &country)
	if errors.Is(err, pgx.ErrNoRows) {
		return Entry{}, ErrNotFound
	}
	if err != nil {
		return Entry{}, fmt.Errorf("reading the user directory: %w", err)
	}
	if country != nil {
		e.Country = *country
	}
	d.cache.put(key, e)
	return e, nil
}

// LookupMany returns the entries of users (by index into users); missing lists the indexes of
// users that are not registered. One query for every user not in the cache.
func (d *Directory) LookupMany(ctx context.Context, app string, users []string) (found map[int]Entry, missing []int, err error) {
	found = make(map[int]Entry, len(users))
	keys := make([]string, len(users))
	var ask []string
	for i, u := range users {
		keys[i] = d.Key(app, u)
		if e, ok := d.cache.get(keys[i]); ok {
			found[i] = e
		} else {
			ask = append(ask, keys[i])
		}
	}
	if len(ask) > 0 {
		rows, err := d.db.Query(ctx, `SELECT user_key, jurisdiction, home_region, coalesce(country, '') FROM user_directory WHERE user_key = ANY($1)`, ask)
		if err != nil {
			return nil, nil, fmt.Errorf("reading the user directory: %w", err)
		}
		got := make(map[string]Entry, len(ask))
		for rows.Next() {
			var k string
			var e Entry
			if err := rows.Scan(&k, &e.Jurisdiction, &e.HomeRegion, &e.Country); err != nil {
				rows.Close()
				return nil, nil, fmt.Errorf("reading the user directory: %w", err)
			}
			got[k] = e
			d.cache.put(k, e)
		}
		if err := rows.Err(); err != nil {
			return nil, nil, fmt.Errorf("reading the user directory: %w", err)
		}
		for i, k := range keys {
			if _, ok := found[i]; ok {
				continue
			}
			if e, ok := got[k]; ok {
				found[i] = e
			} else {
				missing = append(missing, i)
			}
		}
	}
	return found, missing, nil
}

// Register records the user in e's jurisdiction and home region. An existing entry in the same
// jurisdiction keeps its home region (the data is there) and takes the new country; one in
// another jurisdiction is ErrOtherJurisdiction. It returns the entry in force and whether it
// was created.
func (d *Directory) Register(ctx context.Context, app, user string, e Entry) (Entry, bool, error) {
	key := d.Key(app, user)
	var country *string
	if e.Country != "" {
		country = &e.Country
	}
	// Insert, or touch the row (country only) when the jurisdiction matches; the WHERE makes
	// a conflicting jurisdiction update nothing, so RETURNING gives no row.
	var got Entry
	var gotCountry *string
	var created bool
	err := d.db.QueryRow(ctx, `
		INSERT INTO user_directory (user_key, jurisdiction, home_region, country) VALUES ($1, $2, $3, $4)
		ON CONFLICT (user_key) DO UPDATE SET country = coalesce(EXCLUDED.country, user_directory.country), updated_at = now()
		WHERE user_directory.jurisdiction = EXCLUDED.jurisdiction
		RETURNING jurisdiction, home_region, country, (xmax = 0)`, key, e.Jurisdiction, e.HomeRegion, country).
		Scan(&got.Jurisdiction, &got.HomeRegion, &gotCountry, &created)
	if errors.Is(err, pgx.ErrNoRows) {
		cur, lerr := d.lookupDB(ctx, key)
		if lerr != nil {
			return Entry{}, false, lerr
		}
		return cur, false, fmt.Errorf("%w (%s, asked %s)", ErrOtherJurisdiction, cur.Jurisdiction, e.Jurisdiction)
	}
	if err != nil {
		return Entry{}, false, fmt.Errorf("writing the user directory: %w", err)
	}
	if gotCountry != nil {
		got.Country = *gotCountry
	}
	d.cache.put(key, got)
	return got, created, nil
}

func (d *Directory) lookupDB(ctx context.Context, key string) (Entry, error) {
	var e Entry
	err := d.db.QueryRow(ctx, `SELECT jurisdiction, home_region, coalesce(country, '') FROM user_directory WHERE user_key = $1`, key).
		Scan(&e.Jurisdiction, &e.HomeRegion, &e.Country)
	if errors.Is(err, pgx.ErrNoRows) {
		return Entry{}, ErrNotFound
	}
	if err != nil {
		return Entry{}, fmt.Errorf("reading the user directory: %w", err)
	}
	return e, nil
}

// Remove deletes the user's entry (after erasure). Other gateways' caches forget it within the
// cache TTL.
func (d *Directory) Remove(ctx context.Context, app, user string) error {
	key := d.Key(app, user)
	d.cache.del(key)
	if _, err := d.db.Exec(ctx, `DELETE FROM user_directory WHERE user_key = $1`, key); err != nil {
		return fmt.Errorf("deleting from the user directory: %w", err)
	}
	return nil
}

// cache is a bounded map with a TTL: entries change only on registration and erasure, both
// rare, so a short TTL bounds how long another gateway's copy can be stale.
type cache struct {
	mu  sync.Mutex
	max int
	ttl time.Duration
	m   map[string]cached
	now func() time.Time
}

type cached struct {
	e   Entry
	exp time.Time
}

func newCache(max int, ttl time.Duration) *cache {
	return &cache{max: max, ttl: ttl, m: make(map[string]cached), now: time.Now}
}

func (c *cache) get(k string) (Entry, bool) {
	if c.max <= 0 {
		return Entry{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[k]
	if !ok {
		return Entry{}, false
	}
	if c.now().After(v.exp) {
		delete(c.m, k)
		return Entry{}, false
	}
	return v.e, true
}

func (c *cache) put(k string, e Entry) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; !ok && len(c.m) >= c.max {
		// Full: drop an arbitrary entry (map order is random), cheaper than LRU bookkeeping and
		// as good for a directory whose hot set is much smaller than the cache.
		for old := range c.m {
			delete(c.m, old)
			break
		}
	}
	c.m[k] = cached{e: e, exp: c.now().Add(c.ttl)}
}

func (c *cache) del(k string) {
	c.mu.Lock()
	delete(c.m, k)
	c.mu.Unlock()
}
