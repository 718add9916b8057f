// Package userkeys keeps each user's data key in the region's Postgres (table user_keys) and
// seals and opens the region's Kafka records with them (platform/envelope). A key is created on
// first need and destroyed by the erasure; processes cache keys for at most CacheTTL, and the
// erasure reports done only CacheTTL after the key's destruction, so no process can still open
// the user's records by then.
package userkeys

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-notify/herald/platform/envelope"
	"github.com/herald-notify/herald/region/erasure"
)

// CacheTTL is how long a process may use a key it read: the erasure waits this long after
// destroying a key before it reports done.
const CacheTTL = 5 * time.Second

// maxCached bounds the cache; when full it is emptied (keys are read again, a query per chunk).
const maxCached = 200_000

type entry struct {
	key envelope.Key
	at  time.Time
}

// Keys reads, creates and destroys data keys, with a short cache.
type Keys struct {
	db  *pgxpool.Pool
	now func() time.Time

	mu     sync.Mutex
	byUser map[[2]string]entry // (app, user)
	byID   map[string]entry
}

// New returns the key store of the region database db.
func New(db *pgxpool.Pool) *Keys {
	return &Keys{db: db, now: time.Now, byUser: map[[2]string]entry{}, byID: map[string]entry{}}
}

func (k *Keys) cached(app, user string) (envelope.Key, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	e, ok := k.byUser[[2]string{app, user}]
	if !ok || k.now().Sub(e.at) >= CacheTTL {
		return envelope.Key{}, false
	}
	return e.key, true
}

func (k *Keys) remember(app string, keys []envelope.Key, at time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.byID)+len(keys) > maxCached {
		clear(k.byID)
		clear(k.byUser)
	}
	for _, key := range keys {
		e := entry{key: key, at: at}
		k.byUser[[2]string{app, key.User}] = e
		k.byID[key.ID] = e
	}
}

// For returns the data keys of users of app, in the order of users, creating the missing ones:
// one query for the cached-out users of the call, one more in a race with another process. A
// user in erased_users gets no new key (a zero Key): nothing is sealed for an erased user again,
// not even by a stage still finishing their last records while the erasure runs.
func (k *Keys) For(ctx context.Context, app string, users []string) ([]envelope.Key, error) {
	out := make([]envelope.Key, len(users))
	var missing []string
	at := map[string][]int{}
	for i, u := range users {
		if key, ok := k.cached(app, u); ok {
			out[i] = key
			continue
		}
		if _, dup := at[u]; !dup {
			missing = append(missing, u)
		}
		at[u] = append(at[u], i)
	}
	if len(missing) == 0 {
		return out, nil
	}
	read := k.now()
	ids := make([]uuid.UUID, len(missing))
	data := make([][]byte, len(missing))
	hashes := make([][]byte, len(missing))
	for i, u := range missing {
		ids[i] = uuid.New()
		data[i] = make([]byte, envelope.KeySize)
		if _, err := rand.Read(data[i]); err != nil {
			return nil, err
		}
		hashes[i] = erasure.Hash(app, u)
	}
	// Insert the keys that do not exist yet, for users not erased, and read back every key of
	// missing, in one statement: a concurrent creator's key wins (ON CONFLICT), and both use
	// the same. A key committed by another process after this statement began is neither
	// inserted nor seen: the second query reads it.
	got, err := k.query(ctx, `WITH ins AS (
			INSERT INTO user_keys (app_id, user_id, key_id, data_key)
			SELECT $1, t.u, t.id, t.d FROM unnest($2::text[], $3::uuid[], $4::bytea[], $5::bytea[]) AS t(u, id, d, h)
			WHERE NOT EXISTS (SELECT 1 FROM erased_users e WHERE e.app_id = $1 AND e.user_hash = t.h)
			ON CONFLICT (app_id, user_id) DO NOTHING
			RETURNING user_id, key_id, data_key)
		SELECT user_id, key_id, data_key FROM ins
		UNION ALL
		SELECT user_id, key_id, data_key FROM user_keys WHERE app_id = $1 AND user_id = ANY($2)`, app, missing, ids, data, hashes)
	if err != nil {
		return nil, err
	}
	if len(got) < len(missing) {
		if got, err = k.query(ctx, `SELECT user_id, key_id, data_key FROM user_keys WHERE app_id = $1 AND user_id = ANY($2)`, app, missing); err != nil {
			return nil, err
		}
	}
	for _, key := range got {
		for _, i := range at[key.User] {
			out[i] = key
		}
	}
	k.remember(app, got, read) // users still without a key are erased: not cached
	return out, nil
}

func (k *Keys) query(ctx context.Context, q string, args ...any) ([]envelope.Key, error) {
	rows, err := k.db.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("reading data keys: %w", err)
	}
	defer rows.Close()
	var got []envelope.Key
	for rows.Next() {
		var key envelope.Key
		var id uuid.UUID
		if err := rows.Scan(&key.User, &id, &key.Data); err != nil {
			return nil, fmt.Errorf("reading data keys: %w", err)
		}
		key.ID = id.String()
		got = append(got, key)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading data keys: %w", err)
	}
	return got, nil
}

// Lookup returns the keys among ids that still exist (envelope.Lookup).
func (k *Keys) Lookup(ctx context.Context, ids []string) (map[string][]byte, error) {
	out := make(map[string][]byte, len(ids))
	var missing []string
	k.mu.Lock()
	now := k.now()
	for _, id := range ids {
		if e, ok := k.byID[id]; ok && now.Sub(e.at) < CacheTTL {
			out[id] = e.key.Data
		} else if _, err := uuid.Parse(id); err == nil {
			missing = append(missing, id)
		}
	}
	k.mu.Unlock()
	if len(missing) == 0 {
		return out, nil
	}
	rows, err := k.db.Query(ctx, `SELECT app_id, user_id, key_id, data_key FROM user_keys WHERE key_id = ANY($1::uuid[])`, missing)
	if err != nil {
		return nil, fmt.Errorf("reading data keys: %w", err)
	}
	defer rows.Close()
	byApp := map[string][]envelope.Key{}
	for rows.Next() {
		var app string
		var key envelope.Key
		var id uuid.UUID
		if err := rows.Scan(&app, &key.User, &id, &key.Data); err != nil {
			return nil, fmt.Errorf("reading data keys: %w", err)
		}
		key.ID = id.String()
		out[key.ID] = key.Data
		byApp[app] = append(byApp[app], key)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading data keys: %w", err)
	}
	for app, keys := range byApp {
		k.remember(app, keys, now)
	}
	return out, nil
}

// Open opens a sealed record (envelope.Open with the store's keys).
func (k *Keys) Open(ctx context.Context, raw []byte) (envelope.Opened, error) {
	return envelope.Open(ctx, raw, k.Lookup)
}

// Destroy deletes the user's data key (the erasure's step): every record sealed for the user
// alone becomes unreadable, and the user's id leaves the records shared with others.
func (k *Keys) Destroy(ctx context.Context, app, user string) error {
	if _, err := k.db.Exec(ctx, `DELETE FROM user_keys WHERE app_id = $1 AND user_id = $2`, app, user); err != nil {
		return fmt.Errorf("destroying data key: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if e, ok := k.byUser[[2]string{app, user}]; ok {
		delete(k.byID, e.key.ID)
		delete(k.byUser, [2]string{app, user})
	}
	return nil
}
