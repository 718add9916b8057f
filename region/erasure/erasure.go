// Package erasure carries out the right to be forgotten in a region: the hard stop at once,
// then every row of the user in every regional store, as idempotent steps that are simply run
// again after a crash.
package erasure

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/gocql/gocql"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-notify/herald/platform/retry"
)

// ErrNotFound means the app has no erasure with that id.
var ErrNotFound = errors.New("erasure not found")

// Steps, in the order they run. Each is idempotent, and recorded when done.
// data_keys destroys the user's data key first: every Kafka record sealed for the user alone
// is unreadable from then on, and the user's id leaves the records shared with others.
// cassandra_inbox_delivered (inbox_delivered and inbox_delivered_sets) reads the inbox, so it
// runs before the inbox is deleted.
var Steps = []string{"data_keys", "postgres", "caches", "cassandra_inbox_delivered", "cassandra_inbox", "cassandra_push_content", "cassandra_delivery_log"}

// Erasure is a request's receipt.
type Erasure struct {
	ID          string               `json:"erasure_id"`
	State       string               `json:"state"`
	Steps       map[string]time.Time `json:"steps"`
	CreatedAt   time.Time            `json:"created_at"`
	CompletedAt *time.Time           `json:"completed_at,omitempty"`
}

// Hash is how an erased user is remembered: enough to suppress later sends, not an identifier.
func Hash(app, user string) []byte {
	h := sha256.Sum256([]byte(app + "\x00" + user))
	return h[:]
}

// CacheEvicter drops a user's cached preferences everywhere.
type CacheEvicter interface {
	Invalidate(ctx context.Context, app, user string) error
}

// KeyDestroyer destroys a user's data key (*userkeys.Keys).
type KeyDestroyer interface {
	Destroy(ctx context.Context, app, user string) error
}

// Service records and carries out erasures.
type Service struct {
	DB    *pgxpool.Pool
	Cass  *gocql.Session
	Prefs CacheEvicter
	// Keys destroys the user's data key (crypto-shredding of their Kafka records). Processes
	// may use a key they read for up to KeyCacheTTL: an erasure reports done only that long
	// after the key was destroyed.
	Keys        KeyDestroyer
	KeyCacheTTL time.Duration
	// InboxTTL is how long inbox rows live: the month buckets to clear are every month a row
	// can still live in, computed when the step runs (a region runs across month boundaries).
	InboxTTL time.Duration
	// Now is the clock (time.Now when nil); tests inject one.
	Now      func() time.Time
	Log      *slog.Logger
	Interval time.Duration
}

// Buckets lists every inbox month bucket a row written at or before now can still live in,
// given the rows' TTL: the current month and enough months back to cover the TTL.
func Buckets(now time.Time, ttl time.Duration) []int {
	now = now.UTC()
	months := int(ttl/(30*24*time.Hour)) + 2
	out := make([]int, 0, months)
	for i := 0; i < months; i++ {
		m := time.Date(now.Year(), now.Month()-time.Month(i), 1, 0, 0, 0, 0, time.UTC)
		out = append(out, m.Year()*100+int(m.Month()))
	}
	return out
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// buckets is the month buckets to clear now.
func (s *Service) buckets() []int { return Buckets(s.now(), s.InboxTTL) }

// Request sets the hard stop at once (sends stop before anything is erased) and records the
// erasure; the work happens in Run.
func (s *Service) Request(ctx context.Context, app, user string) (Erasure, error) {
	e := Erasure{ID: uuid.NewString(), State: "pending", Steps: map[string]time.Time{}}
	err := pgx.BeginFunc(ctx, s.DB, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO preferences (app_id, user_id, hard_stop) VALUES ($1, $2, true)
			ON CONFLICT (app_id, user_id) DO UPDATE SET hard_stop = true, updated_at = now()`, app, user); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO erased_users (app_id, user_hash) VALUES ($1, $2) ON CONFLICT DO NOTHING`, app, Hash(app, user)); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `INSERT INTO erasures (erasure_id, app_id, user_id, user_hash, state) VALUES ($1, $2, $3, $4, 'pending') RETURNING created_at`,
			e.ID, app, user, Hash(app, user)).Scan(&e.CreatedAt)
	})
	if err != nil {
		return Erasure{}, fmt.Errorf("recording erasure: %w", err)
	}
	if s.Prefs != nil {
		_ = s.Prefs.Invalidate(ctx, app, user) // the hard stop is read outside caches anyway
	}
	return e, nil
}

// Get returns an erasure of the app.
func (s *Service) Get(ctx context.Context, app, id string) (Erasure, error) {
	if _, err := uuid.Parse(id); err != nil {
		return Erasure{}, ErrNotFound
	}
	e := Erasure{ID: id}
	var steps []byte
	err := s.DB.QueryRow(ctx, `SELECT state, steps, created_at, completed_at FROM erasures WHERE erasure_id = $1 AND app_id = $2`, id, app).
		Scan(&e.State, &steps, &e.CreatedAt, &e.CompletedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Erasure{}, ErrNotFound
	}
	if err != nil {
		return Erasure{}, fmt.Errorf("reading erasure: %w", err)
	}
	if err := json.Unmarshal(steps, &e.Steps); err != nil {
		return Erasure{}, err
	}
	return e, nil
}

// Run carries out pending erasures until ctx ends; one interrupted by a crash is picked up again
// and its steps, all idempotent, run again.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(s.Interval)
	defer t.Stop()
	for {
		if err := s.RunPending(ctx); err != nil && ctx.Err() == nil {
			s.Log.Warn("erasure: will retry", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// RunPending processes every pending erasure once.
func (s *Service) RunPending(ctx context.Context) error {
	for {
		done, err := s.next(ctx)
		if err != nil || !done {
			return err
		}
	}
}

// next claims one pending erasure (SKIP LOCKED: several processes share the work), runs its
// remaining steps and reports whether there was one.
func (s *Service) next(ctx context.Context) (bool, error) {
	found := false
	err := pgx.BeginFunc(ctx, s.DB, func(tx pgx.Tx) error {
		var id, app, user string
		var raw []byte
		err := tx.QueryRow(ctx, `SELECT erasure_id, app_id, user_id, steps FROM erasures WHERE state = 'pending'
			ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED`).Scan(&id, &app, &user, &raw)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		steps := map[string]time.Time{}
		if err := json.Unmarshal(raw, &steps); err != nil {
			return err
		}
		for _, step := range Steps {
			if _, done := steps[step]; done {
				continue
			}
			if err := s.run(ctx, step, app, user); err != nil {
				return fmt.Errorf("erasure %s, step %s: %w", id, step, err)
			}
			steps[step] = time.Now().UTC()
			raw, _ := json.Marshal(steps)
			// In the claiming transaction (it holds the row lock): if a later step fails, the
			// record rolls back and the finished steps run again, which they may, being
			// idempotent.
			if _, err := tx.Exec(ctx, `UPDATE erasures SET steps = $2 WHERE erasure_id = $1`, id, raw); err != nil {
				return err
			}
		}
		// No process may still hold the destroyed key when the erasure reports done.
		if !retry.Sleep(ctx, time.Until(steps["data_keys"].Add(s.KeyCacheTTL))) {
			return ctx.Err()
		}
		raw, _ = json.Marshal(steps)
		_, err = tx.Exec(ctx, `UPDATE erasures SET state = 'done', steps = $2, user_id = NULL, completed_at = now() WHERE erasure_id = $1`, id, raw)
		if err == nil {
			s.Log.Info("erasure done", "erasure", id)
		}
		return err
	})
	return found, err
}

func (s *Service) run(ctx context.Context, step, app, user string) error {
	switch step {
	case "data_keys":
		if s.Keys == nil {
			return errors.New("no key store to destroy the data key with")
		}
		return s.Keys.Destroy(ctx, app, user)
	case "postgres":
		return pgx.BeginFunc(ctx, s.DB, func(tx pgx.Tx) error {
			for _, q := range []string{
				`DELETE FROM devices WHERE app_id = $1 AND user_id = $2`,
				`DELETE FROM users WHERE app_id = $1 AND user_id = $2`,
				`DELETE FROM topic_subscriptions WHERE app_id = $1 AND user_id = $2`,
				`DELETE FROM preferences WHERE app_id = $1 AND user_id = $2`,
				`DELETE FROM suppressions WHERE app_id = $1 AND user_id = $2`,
				`DELETE FROM soft_bounces WHERE app_id = $1 AND user_id = $2`,
				`DELETE FROM analytics_events WHERE app = $1 AND user_id = $2`,
				`DELETE FROM webhook_deliveries WHERE app_id = $1 AND user_id = $2`,
				`DELETE FROM scheduled_sends WHERE app_id = $1 AND event->'recipients' = jsonb_build_array($2::text)`,
				// A workflow's runs hold the trigger's payload; the throttle rows name the user.
				`DELETE FROM workflow_runs WHERE app_id = $1 AND user_id = $2`,
				`DELETE FROM workflow_throttle WHERE app_id = $1 AND user_id = $2`,
				`DELETE FROM workflow_digest_events WHERE digest_id IN (SELECT digest_id FROM workflow_digests WHERE app_id = $1 AND user_id = $2)`,
				`DELETE FROM workflow_digests WHERE app_id = $1 AND user_id = $2`,
				`UPDATE scheduled_sends SET event = jsonb_set(event, '{recipients}', (event->'recipients') - $2::text)
					WHERE app_id = $1 AND event->'recipients' ? $2::text`,
			} {
				if _, err := tx.Exec(ctx, q, app, user); err != nil {
					return err
				}
			}
			return nil
		})
	case "caches":
		if s.Prefs == nil {
			return nil
		}
		return s.Prefs.Invalidate(ctx, app, user)
	case "cassandra_inbox_delivered":
		return s.eraseInboxDelivered(ctx, app, user)
	case "cassandra_inbox":
		for _, b := range s.buckets() {
			if err := s.Cass.Query(`DELETE FROM notification_log WHERE app_id = ? AND user_id = ? AND bucket = ?`, app, user, b).WithContext(ctx).Exec(); err != nil {
				return err
			}
		}
		return nil
	case "cassandra_push_content":
		// The content of the user's content-free pushes (region/pushstore): one partition.
		return s.Cass.Query(`DELETE FROM push_content WHERE app_id = ? AND user_id = ?`, app, user).WithContext(ctx).Exec()
	case "cassandra_delivery_log":
		return s.eraseLog(ctx, app, user)
	}
	return fmt.Errorf("unknown step %q", step)
}

// eraseInboxDelivered deletes the user's in-app delivery states (inbox_delivered_sets and the
// older inbox_delivered, neither with an index on user_id). The user's inbox rows name those
// notifications: each state was written with its inbox row, and both live as long. The inbox
// partition is the app's, so every id is.
func (s *Service) eraseInboxDelivered(ctx context.Context, app, user string) error {
	for _, b := range s.buckets() {
		iter := s.Cass.Query(`SELECT notification_id FROM notification_log WHERE app_id = ? AND user_id = ? AND bucket = ?`, app, user, b).WithContext(ctx).Iter()
		var ids []string
		var id string
		for iter.Scan(&id) {
			ids = append(ids, id)
		}
		if err := iter.Close(); err != nil {
			return err
		}
		for _, id := range ids {
			if err := s.Cass.Query(`DELETE FROM inbox_delivered WHERE notification_id = ? AND user_id = ?`, id, user).WithContext(ctx).Exec(); err != nil {
				return err
			}
			if err := s.eraseFromDeliveredSets(ctx, id, user); err != nil {
				return err
			}
		}
	}
	return nil
}

// eraseFromDeliveredSets takes user out of the in-app delivery sets of one notification: the
// rows holding the user are found by filtering that one partition, and the removal is a blind
// write, so a chunk repeated meanwhile cannot bring back what it did not hold.
func (s *Service) eraseFromDeliveredSets(ctx context.Context, id, user string) error {
	iter := s.Cass.Query(`SELECT chunk FROM inbox_delivered_sets WHERE notification_id = ? AND users CONTAINS ? ALLOW FILTERING`, id, user).WithContext(ctx).Iter()
	var chunks []string
	var chunk string
	for iter.Scan(&chunk) {
		chunks = append(chunks, chunk)
	}
	if err := iter.Close(); err != nil {
		return err
	}
	for _, c := range chunks {
		if err := s.Cass.Query(`UPDATE inbox_delivered_sets SET users = users - ? WHERE notification_id = ? AND chunk = ?`,
			[]string{user}, id, c).WithContext(ctx).Exec(); err != nil {
			return err
		}
	}
	return nil
}

// eraseLog deletes the user's delivery_status and delivery_attempt rows, found through their
// user_id indexes; user ids are per app, so each notification's app is checked.
func (s *Service) eraseLog(ctx context.Context, app, user string) error {
	appOf := map[string]string{}
	ours := func(nid string) (bool, error) {
		if a, ok := appOf[nid]; ok {
			return a == app, nil
		}
		var a string
		err := s.Cass.Query(`SELECT app_id FROM notifications WHERE notification_id = ?`, nid).WithContext(ctx).Scan(&a)
		if err != nil && !errors.Is(err, gocql.ErrNotFound) {
			return false, err
		}
		appOf[nid] = a
		return a == app, nil
	}
	iter := s.Cass.Query(`SELECT notification_id, channel FROM delivery_status WHERE user_id = ?`, user).WithContext(ctx).Iter()
	var nid, ch string
	type key struct{ nid, ch string }
	var states []key
	for iter.Scan(&nid, &ch) {
		states = append(states, key{nid, ch})
	}
	if err := iter.Close(); err != nil {
		return err
	}
	for _, k := range states {
		if ok, err := ours(k.nid); err != nil || !ok {
			if err != nil {
				return err
			}
			continue
		}
		if err := s.Cass.Query(`DELETE FROM delivery_status WHERE notification_id = ? AND user_id = ? AND channel = ?`, k.nid, user, k.ch).WithContext(ctx).Exec(); err != nil {
			return err
		}
	}
	iter = s.Cass.Query(`SELECT notification_id, attempt_at FROM delivery_attempt WHERE user_id = ?`, user).WithContext(ctx).Iter()
	var at gocql.UUID
	type akey struct {
		nid string
		at  gocql.UUID
	}
	var attempts []akey
	for iter.Scan(&nid, &at) {
		attempts = append(attempts, akey{nid, at})
	}
	if err := iter.Close(); err != nil {
		return err
	}
	for _, k := range attempts {
		if ok, err := ours(k.nid); err != nil || !ok {
			if err != nil {
				return err
			}
			continue
		}
		if err := s.Cass.Query(`DELETE FROM delivery_attempt WHERE notification_id = ? AND attempt_at = ?`, k.nid, k.at).WithContext(ctx).Exec(); err != nil {
			return err
		}
	}
	return nil
}
