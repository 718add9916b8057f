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
// one query for the cached-out users of the call, one more when some have no key yet.
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
	for i := range missing {
		ids[i] = uuid.New()
		data[i] = make([]byte, envelope.KeySize)
		if _, err := rand.Read(data[i]); err != nil {
			return nil, err
		}
	}
	// Insert the keys that do not exist yet and read back every key of missing, in one
	// statement: a concurrent creator's key wins (ON CONFLICT), and both use the same. A key
	// committed by another process after this statement began is neither inserted nor seen:
	// the second query reads it.
	got, err := k.query(ctx, `WITH ins AS (
			INSERT INTO user_keys (app_id, user_id, key_id, data_key)
			SELECT $1, u, id, d FROM unnest($2::text[], $3::uuid[], $4::bytea[]) AS t(u, id, d)
			ON CONFLICT (app_id, user_id) DO NOTHING
			RETURNING user_id, key_id, data_key)
		SELECT user_id, key_id, data_key FROM ins
		UNION ALL
		SELECT user_id, key_id, data_key FROM user_keys WHERE app_id = $1 AND user_id = ANY($2)`, app, missing, ids, data)
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
	for _, is := range at {
		if out[is[0]].ID == "" {
			return nil, fmt.Errorf("no data key for a user of app %s after creating it (%d users asked)", app, len(users)) // never names the user
		}
	}
	k.remember(app, got, read)
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

// Prefetch reads or creates the keys of users at once (notify.Sealer).
func (k *Keys) Prefetch(ctx context.Context, app string, users []string) error {
	_, err := k.For(ctx, app, users)
	return err
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

// Seal seals content for users of app (envelope.Seal) and returns the record with the Kafka
// key to produce it under: the user's key id when there is one user (their records stay in
// order without the key naming them), fallback otherwise.
func (k *Keys) Seal(ctx context.Context, app string, users []string, content []byte, fallback string) (value []byte, recordKey string, err error) {
	keys, err := k.For(ctx, app, users)
	if err != nil {
		return nil, "", err
	}
	value, err = envelope.Seal(content, keys)
	if err != nil {
		return nil, "", fmt.Errorf("sealing record: %w", err)
	}
	if len(keys) == 1 {
		return value, keys[0].ID, nil
	}
	return value, fallback, nil
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
