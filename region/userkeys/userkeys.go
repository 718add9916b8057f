// Package userkeys keeps each user's data key in the region's Postgres (table user_keys) and
// seals and opens the region's Kafka records with them (platform/envelope). A key is created on
// first need and destroyed by the erasure; processes cache keys for at most CacheTTL, and the
// erasure reports done only CacheTTL after the key's destruction, so no process can still open
// the user's records by then.
//
// Keys at rest are wrapped by the region's master keyring (platform/masterkey, config
// user_keys), which never enters Postgres: a row holds the data key sealed under the current
// master key, with the additional data naming the row (app, user, key id), and the master key's
// id. Sweep wraps rows still in clear and rewraps rows of older master keys.
package userkeys

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-notify/herald/platform/envelope"
	"github.com/herald-notify/herald/platform/masterkey"
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
	db   *pgxpool.Pool
	ring *masterkey.Keyring
	now  func() time.Time

	mu     sync.Mutex
	byUser map[[2]string]entry // (app, user)
	byID   map[string]entry

	tables []Table // other tables whose secrets the keyring wraps (Include)
}

// New returns the key store of the region database db, whose keys are wrapped by ring.
func New(db *pgxpool.Pool, ring *masterkey.Keyring) *Keys {
	return &Keys{db: db, ring: ring, now: time.Now, byUser: map[[2]string]entry{}, byID: map[string]entry{}}
}

// AAD is the additional data a data key is wrapped with: what names its row (app, user, key
// id), each length-prefixed, so a wrapped key moved to another row does not open.
func AAD(app, user string, keyID uuid.UUID) []byte {
	b := make([]byte, 0, 32+len(app)+len(user)+16)
	b = append(b, "herald user_keys v1\x00"...)
	b = binary.AppendUvarint(b, uint64(len(app)))
	b = append(b, app...)
	b = binary.AppendUvarint(b, uint64(len(user)))
	b = append(b, user...)
	return append(b, keyID[:]...)
}

// stored is a user_keys row's key, in one of its two forms.
type stored struct {
	user    string
	id      uuid.UUID
	inClear []byte  // data_key: a row of before wrapping, until Sweep wraps it
	wrapped []byte  // wrapped_key
	master  *string // master_key_id
}

// columns are the columns scanned into stored, after the app.
const columns = `user_id, key_id, data_key, wrapped_key, master_key_id`

func (r *stored) dest() []any { return []any{&r.user, &r.id, &r.inClear, &r.wrapped, &r.master} }

// open returns the row's data key: unwrapped under its master key, or the key in clear.
func (k *Keys) open(app string, r stored) (envelope.Key, error) {
	key := envelope.Key{ID: r.id.String(), User: r.user}
	if r.wrapped == nil {
		if len(r.inClear) != envelope.KeySize {
			return envelope.Key{}, fmt.Errorf("data key %s: neither wrapped nor %d bytes in clear", key.ID, envelope.KeySize)
		}
		key.Data = r.inClear
		return key, nil
	}
	master := ""
	if r.master != nil {
		master = *r.master
	}
	data, err := k.ring.Unwrap(master, r.wrapped, AAD(app, r.user, r.id))
	if err != nil {
		return envelope.Key{}, fmt.Errorf("unwrapping data key %s (user_keys.master_keys holds %v): %w", key.ID, k.ring.IDs(), err)
	}
	if len(data) != envelope.KeySize {
		return envelope.Key{}, fmt.Errorf("data key %s: %d bytes once unwrapped", key.ID, len(data))
	}
	key.Data = data
	return key, nil
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
	wrapped := make([][]byte, len(missing))
	hashes := make([][]byte, len(missing))
	data := make([]byte, envelope.KeySize)
	var master string
	for i, u := range missing {
		ids[i] = uuid.New()
		if _, err := rand.Read(data); err != nil {
			return nil, err
		}
		var err error
		if wrapped[i], master, err = k.ring.Wrap(data, AAD(app, u, ids[i])); err != nil {
			return nil, fmt.Errorf("wrapping a new data key: %w", err)
		}
		hashes[i] = erasure.Hash(app, u)
	}
	clear(data)
	// Insert the keys that do not exist yet, for users not erased, and read back every key of
	// missing, in one statement: a concurrent creator's key wins (ON CONFLICT), and both use
	// the same. A key committed by another process after this statement began is neither
	// inserted nor seen: the second query reads it.
	got, err := k.query(ctx, app, `WITH ins AS (
			INSERT INTO user_keys (app_id, user_id, key_id, wrapped_key, master_key_id)
			SELECT $1, t.u, t.id, t.w, $6 FROM unnest($2::text[], $3::uuid[], $4::bytea[], $5::bytea[]) AS t(u, id, w, h)
			WHERE NOT EXISTS (SELECT 1 FROM erased_users e WHERE e.app_id = $1 AND e.user_hash = t.h)
			ON CONFLICT (app_id, user_id) DO NOTHING
			RETURNING `+columns+`)
		SELECT `+columns+` FROM ins
		UNION ALL
		SELECT `+columns+` FROM user_keys WHERE app_id = $1 AND user_id = ANY($2)`, app, missing, ids, wrapped, hashes, master)
	if err != nil {
		return nil, err
	}
	if len(got) < len(missing) {
		if got, err = k.query(ctx, app, `SELECT `+columns+` FROM user_keys WHERE app_id = $1 AND user_id = ANY($2)`, app, missing); err != nil {
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

func (k *Keys) query(ctx context.Context, app, q string, args ...any) ([]envelope.Key, error) {
	rows, err := k.db.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("reading data keys: %w", err)
	}
	defer rows.Close()
	var got []envelope.Key
	for rows.Next() {
		var r stored
		if err := rows.Scan(r.dest()...); err != nil {
			return nil, fmt.Errorf("reading data keys: %w", err)
		}
		key, err := k.open(app, r)
		if err != nil {
			return nil, fmt.Errorf("reading data keys: %w", err)
		}
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
	rows, err := k.db.Query(ctx, `SELECT app_id, `+columns+` FROM user_keys WHERE key_id = ANY($1::uuid[])`, missing)
	if err != nil {
		return nil, fmt.Errorf("reading data keys: %w", err)
	}
	defer rows.Close()
	byApp := map[string][]envelope.Key{}
	for rows.Next() {
		var app string
		var r stored
		if err := rows.Scan(append([]any{&app}, r.dest()...)...); err != nil {
			return nil, fmt.Errorf("reading data keys: %w", err)
		}
		key, err := k.open(app, r)
		if err != nil {
			return nil, fmt.Errorf("reading data keys: %w", err)
		}
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
