package webhooks

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNotFound is an endpoint the app has not registered here.
var ErrNotFound = errors.New("webhook endpoint not found")

// Keyring wraps the endpoints' signing secrets (the region's master keyring).
type Keyring interface {
	Wrap(key, aad []byte) (wrapped []byte, id string, err error)
	Unwrap(id string, wrapped, aad []byte) ([]byte, error)
	Current() string
}

// Endpoint is a registered endpoint, as the API shows it (never its secrets).
type Endpoint struct {
	ID           string    `json:"id"`
	Jurisdiction string    `json:"jurisdiction"`
	URL          string    `json:"url"`
	Description  string    `json:"description"`
	EventTypes   []string  `json:"event_types"`
	Disabled     bool      `json:"disabled"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
	// PreviousSecretValid says whether the secret the last rotation replaced still signs
	// deliveries (next to the current one) until PreviousSecretExpiresAt (exclusive), which is
	// left out when it does not.
	PreviousSecretValid     bool       `json:"previous_secret_valid"`
	PreviousSecretExpiresAt *time.Time `json:"previous_secret_expires_at,omitempty"`
}

// Spec is what an app registers.
type Spec struct {
	URL         string
	Description string
	EventTypes  []string
}

// secretBytes is the length of a signing key: 24 bytes, as Standard Webhooks suggests (24-64).
const secretBytes = 24

// secretPrefix marks a Standard Webhooks secret.
const secretPrefix = "whsec_"

// FormatSecret is key as the API shows it: whsec_ and the base64 of the key.
func FormatSecret(key []byte) string { return secretPrefix + base64.StdEncoding.EncodeToString(key) }

// Store keeps the endpoints and their deliveries in the jurisdiction's Postgres.
type Store struct {
	DB   *pgxpool.Pool
	Keys Keyring
	Now  func() time.Time
}

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func aad(app, endpoint string) []byte {
	return []byte("webhook-endpoint\x00" + app + "\x00" + endpoint)
}

// previousAAD is the additional data of an endpoint's previous secret: it names the row, the
// slot and the expiry, so a wrapped previous secret opens neither as the current secret nor
// with a later expiry written over the stored one.
func previousAAD(app, endpoint string, expires time.Time) []byte {
	return []byte("webhook-endpoint-previous\x00" + app + "\x00" + endpoint + "\x00" + strconv.FormatInt(expires.Unix(), 10))
}

func newEndpointID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "ep_" + hex.EncodeToString(b)
}

func (s *Store) newSecret(app, id string) (key, wrapped []byte, master string, err error) {
	key = make([]byte, secretBytes)
	if _, err := rand.Read(key); err != nil {
		return nil, nil, "", err
	}
	wrapped, master, err = s.Keys.Wrap(key, aad(app, id))
	if err != nil {
		return nil, nil, "", fmt.Errorf("wrapping a webhook secret: %w", err)
	}
	return key, wrapped, master, nil
}

const endpointCols = `endpoint_id, jurisdiction, url, description, event_types, disabled, created_at, updated_at, previous_secret_expires_at`

// scanEndpoint reads a row of endpointCols; its previous secret is valid when it expires after
// now.
func scanEndpoint(row pgx.Row, now time.Time) (Endpoint, error) {
	var e Endpoint
	var expires *time.Time
	err := row.Scan(&e.ID, &e.Jurisdiction, &e.URL, &e.Description, &e.EventTypes, &e.Disabled, &e.CreatedAt, &e.UpdatedAt, &expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return Endpoint{}, ErrNotFound
	}
	if e.EventTypes == nil {
		e.EventTypes = []string{}
	}
	if expires != nil && PreviousValid(*expires, now) {
		e.PreviousSecretValid, e.PreviousSecretExpiresAt = true, expires
	}
	return e, err
}

// PreviousValid reports whether a previous secret expiring at expires still signs at now: up
// to, not including, its expiry.
func PreviousValid(expires, now time.Time) bool { return now.Before(expires) }

// Create registers an endpoint of app in jurisdiction; it returns it with its secret (shown
// once).
func (s *Store) Create(ctx context.Context, app, jurisdiction string, spec Spec) (Endpoint, string, error) {
	id := newEndpointID()
	key, wrapped, master, err := s.newSecret(app, id)
	if err != nil {
		return Endpoint{}, "", err
	}
	types := spec.EventTypes
	if types == nil {
		types = []string{}
	}
	e, err := scanEndpoint(s.DB.QueryRow(ctx, `INSERT INTO webhook_endpoints (app_id, endpoint_id, jurisdiction, url, description, event_types, secret_wrapped, secret_master)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING `+endpointCols, app, id, jurisdiction, spec.URL, spec.Description, types, wrapped, master), s.now())
	if err != nil {
		return Endpoint{}, "", fmt.Errorf("storing a webhook endpoint: %w", err)
	}
	return e, FormatSecret(key), nil
}

// List returns app's endpoints in jurisdiction, oldest first.
func (s *Store) List(ctx context.Context, app, jurisdiction string) ([]Endpoint, error) {
	rows, err := s.DB.Query(ctx, `SELECT `+endpointCols+` FROM webhook_endpoints WHERE app_id = $1 AND jurisdiction = $2 ORDER BY created_at, endpoint_id`, app, jurisdiction)
	if err != nil {
		return nil, fmt.Errorf("listing webhook endpoints: %w", err)
	}
	out := []Endpoint{}
	now := s.now()
	for rows.Next() {
		e, err := scanEndpoint(rows, now)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("listing webhook endpoints: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Get returns one endpoint.
func (s *Store) Get(ctx context.Context, app, jurisdiction, id string) (Endpoint, error) {
	return scanEndpoint(s.DB.QueryRow(ctx, `SELECT `+endpointCols+` FROM webhook_endpoints WHERE app_id = $1 AND jurisdiction = $2 AND endpoint_id = $3`, app, jurisdiction, id), s.now())
}

// PreviousExpiry is when a previous secret kept for keep from now expires: now + keep, rounded
// up to the second (the overlap is never shorter than asked; the expiry is part of the wrapped
// secret's additional data, in seconds).
func PreviousExpiry(now time.Time, keep time.Duration) time.Time {
	at := now.Add(keep)
	if t := at.Truncate(time.Second); !t.Equal(at) {
		return t.Add(time.Second)
	}
	return at
}

// Rotate gives the endpoint a new secret and returns it (shown once); deliveries signed from
// now on use it. The secret it replaces keeps signing them too, next to the new one, for
// keepPrevious (until now + keepPrevious); 0 retires it at once. A previous secret of an earlier
// rotation is dropped: only the secret current until this call stays valid. The endpoint's row
// is locked meanwhile (a concurrent rotation or sweep waits).
func (s *Store) Rotate(ctx context.Context, app, jurisdiction, id string, keepPrevious time.Duration) (Endpoint, string, error) {
	if keepPrevious < 0 {
		return Endpoint{}, "", fmt.Errorf("rotating webhook endpoint %s: negative overlap %s", id, keepPrevious)
	}
	key, wrapped, master, err := s.newSecret(app, id)
	if err != nil {
		return Endpoint{}, "", err
	}
	now := s.now()
	var e Endpoint
	err = pgx.BeginFunc(ctx, s.DB, func(tx pgx.Tx) error {
		var oldWrapped []byte
		var oldMaster string
		err := tx.QueryRow(ctx, `SELECT secret_wrapped, secret_master FROM webhook_endpoints
			WHERE app_id = $1 AND jurisdiction = $2 AND endpoint_id = $3 FOR UPDATE`, app, jurisdiction, id).Scan(&oldWrapped, &oldMaster)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("reading webhook endpoint %s: %w", id, err)
		}
		var prevWrapped []byte
		var prevMaster *string
		var prevExpires *time.Time
		if keepPrevious > 0 {
			// The previous secret moves to its own slot, wrapped again under the current master key.
			old, err := s.Keys.Unwrap(oldMaster, oldWrapped, aad(app, id))
			if err != nil {
				return fmt.Errorf("opening the secret of webhook endpoint %s to keep it valid: %w", id, err)
			}
			expires := PreviousExpiry(now, keepPrevious)
			w, m, err := s.Keys.Wrap(old, previousAAD(app, id, expires))
			clear(old)
			if err != nil {
				return fmt.Errorf("wrapping the previous secret of webhook endpoint %s: %w", id, err)
			}
			prevWrapped, prevMaster, prevExpires = w, &m, &expires
		}
		e, err = scanEndpoint(tx.QueryRow(ctx, `UPDATE webhook_endpoints SET secret_wrapped = $4, secret_master = $5,
				previous_secret_wrapped = $6, previous_secret_master = $7, previous_secret_expires_at = $8, updated_at = now()
			WHERE app_id = $1 AND jurisdiction = $2 AND endpoint_id = $3 RETURNING `+endpointCols,
			app, jurisdiction, id, wrapped, master, prevWrapped, prevMaster, prevExpires), now)
		return err
	})
	if err != nil {
		return Endpoint{}, "", err
	}
	return e, FormatSecret(key), nil
}

// SetDisabled disables (or enables again) an endpoint. Disabling turns its pending deliveries
// into dead letters at once (replayable once it is enabled again).
func (s *Store) SetDisabled(ctx context.Context, app, jurisdiction, id string, disabled bool) (Endpoint, error) {
	var e Endpoint
	err := pgx.BeginFunc(ctx, s.DB, func(tx pgx.Tx) error {
		var err error
		e, err = scanEndpoint(tx.QueryRow(ctx, `UPDATE webhook_endpoints SET disabled = $4, updated_at = now()
			WHERE app_id = $1 AND jurisdiction = $2 AND endpoint_id = $3 RETURNING `+endpointCols, app, jurisdiction, id, disabled), s.now())
		if err != nil || !disabled {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE webhook_deliveries SET status = 'dead', done_at = now(), last_error = 'endpoint disabled'
			WHERE app_id = $1 AND endpoint_id = $2 AND status = 'pending'`, app, id)
		return err
	})
	return e, err
}

// DeadLetter is a delivery given up on.
type DeadLetter struct {
	EventID    string    `json:"event_id"`
	EventType  string    `json:"event_type"`
	Attempts   int       `json:"attempts"`
	LastStatus int       `json:"last_status"`
	LastError  string    `json:"last_error"`
	FirstAt    time.Time `json:"first_attempt_at"`
	DeadAt     time.Time `json:"dead_at"`
	Region     string    `json:"region"`
}

// DeadLetters lists an endpoint's dead letters, newest first, at most limit.
func (s *Store) DeadLetters(ctx context.Context, app, jurisdiction, id string, limit int) ([]DeadLetter, error) {
	if _, err := s.Get(ctx, app, jurisdiction, id); err != nil {
		return nil, err
	}
	rows, err := s.DB.Query(ctx, `SELECT event_id, event_type, attempts, last_status, last_error, first_at, done_at, region FROM webhook_deliveries
		WHERE app_id = $1 AND endpoint_id = $2 AND status = 'dead' ORDER BY done_at DESC, event_id LIMIT $3`, app, id, limit)
	if err != nil {
		return nil, fmt.Errorf("listing dead webhook deliveries: %w", err)
	}
	out := []DeadLetter{}
	for rows.Next() {
		var d DeadLetter
		if err := rows.Scan(&d.EventID, &d.EventType, &d.Attempts, &d.LastStatus, &d.LastError, &d.FirstAt, &d.DeadAt, &d.Region); err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// Replay makes an endpoint's dead letters (those of ids; all when ids is empty) pending again
// with a fresh horizon; region delivers them. It returns how many.
func (s *Store) Replay(ctx context.Context, app, jurisdiction, id, region string, ids []string) (int64, error) {
	e, err := s.Get(ctx, app, jurisdiction, id)
	if err != nil {
		return 0, err
	}
	if e.Disabled {
		return 0, ErrDisabled
	}
	if ids == nil {
		ids = []string{} // NULL would match nothing
	}
	now := s.now()
	tag, err := s.DB.Exec(ctx, `UPDATE webhook_deliveries SET status = 'pending', attempts = 0, first_at = $3, next_attempt_at = $3,
			region = $4, done_at = NULL, last_error = ''
		WHERE app_id = $1 AND endpoint_id = $2 AND status = 'dead' AND (cardinality($5::text[]) = 0 OR event_id = ANY($5))`,
		app, id, now, region, ids)
	if err != nil {
		return 0, fmt.Errorf("replaying webhook deliveries: %w", err)
	}
	return tag.RowsAffected(), nil
}

// ErrDisabled is a replay asked of a disabled endpoint.
var ErrDisabled = errors.New("webhook endpoint is disabled")

// target is an enabled endpoint as the consumer matches events to it.
type target struct {
	ID         string
	EventTypes []string
	CreatedAt  time.Time
}

// enabled lists app's enabled endpoints in jurisdiction.
// anyEnabled reports whether any app has an enabled endpoint in jurisdiction.
func (s *Store) anyEnabled(ctx context.Context, jurisdiction string) (bool, error) {
	var any bool
	if err := s.DB.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM webhook_endpoints WHERE jurisdiction = $1 AND NOT disabled)`, jurisdiction).Scan(&any); err != nil {
		return false, fmt.Errorf("reading webhook endpoints: %w", err)
	}
	return any, nil
}

func (s *Store) enabled(ctx context.Context, app, jurisdiction string) ([]target, error) {
	rows, err := s.DB.Query(ctx, `SELECT endpoint_id, event_types, created_at FROM webhook_endpoints WHERE app_id = $1 AND jurisdiction = $2 AND NOT disabled`, app, jurisdiction)
	if err != nil {
		return nil, fmt.Errorf("reading webhook endpoints: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (target, error) {
		var t target
		return t, r.Scan(&t.ID, &t.EventTypes, &t.CreatedAt)
	})
}

// delivery is one event for one endpoint.
type delivery struct {
	App, Endpoint, EventID, Type, User string
	Payload                            []byte
}

// enqueue stores deliveries as pending for region; ones already stored (same endpoint and event)
// are left as they are. It returns how many were new.
func (s *Store) enqueue(ctx context.Context, region string, ds []delivery) (int64, error) {
	if len(ds) == 0 {
		return 0, nil
	}
	apps, eps, ids, types, users := make([]string, len(ds)), make([]string, len(ds)), make([]string, len(ds)), make([]string, len(ds)), make([]string, len(ds))
	payloads := make([][]byte, len(ds))
	for i, d := range ds {
		apps[i], eps[i], ids[i], types[i], users[i], payloads[i] = d.App, d.Endpoint, d.EventID, d.Type, d.User, d.Payload
	}
	tag, err := s.DB.Exec(ctx, `INSERT INTO webhook_deliveries (app_id, endpoint_id, event_id, region, event_type, user_id, payload, first_at, next_attempt_at)
		SELECT a, e, i, $1, t, u, p, $8, $8 FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bytea[]) AS x(a, e, i, t, u, p)
		ON CONFLICT (app_id, endpoint_id, event_id) DO NOTHING`, region, apps, eps, ids, types, users, payloads, s.now())
	if err != nil {
		return 0, fmt.Errorf("storing webhook deliveries: %w", err)
	}
	return tag.RowsAffected(), nil
}

// pending is a claimed delivery with what sending it needs.
type pending struct {
	delivery
	URL string
	Key []byte
	// PreviousKey is the secret the last rotation replaced, while it is valid (before
	// PreviousUntil): deliveries carry its signature too. Nil when there is none.
	PreviousKey   []byte
	PreviousUntil time.Time
	Attempts      int
	FirstAt       time.Time
	// Disabled: the endpoint was disabled after the delivery was made (the consumer's cache
	// still listed it); it becomes a dead letter, like those pending at the disable.
	Disabled bool
}

// claim takes up to n of region's due deliveries, hiding them from other claims for lease,
// and, unless takeover is 0, up to n of another region of the jurisdiction (they share the
// database) overdue by more than takeover: that region is down, and its users' events go out
// from this one. Looking for those scans every pending delivery overdue by takeover, this
// region's too (a backlog of them, when it is catching up): the deliverer does it only now and
// then.
//
// The rows are updated in a statement of their own (claimed) and joined with their endpoints
// only after: an UPDATE that also joins the endpoints may be planned, on a table whose
// statistics lag behind a burst of new deliveries, as a scan of all of an endpoint's
// deliveries for each one claimed (400 ms for 128 of 20,000 rather than 5 ms).
func (s *Store) claim(ctx context.Context, region string, n int, lease, takeover time.Duration) ([]pending, error) {
	now := s.now()
	rows, err := s.DB.Query(ctx, `WITH own AS (
			SELECT app_id, endpoint_id, event_id FROM webhook_deliveries
			WHERE region = $1 AND status = 'pending' AND next_attempt_at <= $2
			ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED),
		orphaned AS (
			SELECT app_id, endpoint_id, event_id FROM webhook_deliveries
			WHERE $6 AND status = 'pending' AND next_attempt_at <= $5 AND region <> $1
			ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED),
		due AS (SELECT * FROM own UNION ALL SELECT * FROM orphaned),
		claimed AS (
			UPDATE webhook_deliveries d SET next_attempt_at = $4, region = $1 FROM due
			WHERE d.app_id = due.app_id AND d.endpoint_id = due.endpoint_id AND d.event_id = due.event_id
			RETURNING d.app_id, d.endpoint_id, d.event_id, d.event_type, d.user_id, d.payload, d.attempts, d.first_at)
		SELECT c.app_id, c.endpoint_id, c.event_id, c.event_type, c.user_id, c.payload, c.attempts, c.first_at, e.url, e.secret_wrapped, e.secret_master, e.disabled,
			CASE WHEN e.previous_secret_expires_at > $2 THEN e.previous_secret_wrapped END, e.previous_secret_master, e.previous_secret_expires_at
		FROM claimed c JOIN webhook_endpoints e ON e.app_id = c.app_id AND e.endpoint_id = c.endpoint_id`,
		region, now, n, now.Add(lease), now.Add(-takeover), takeover > 0)
	if err != nil {
		return nil, fmt.Errorf("claiming webhook deliveries: %w", err)
	}
	var out []pending
	for rows.Next() {
		var p pending
		var wrapped, prevWrapped []byte
		var master string
		var prevMaster *string
		var prevExpires *time.Time
		if err := rows.Scan(&p.App, &p.Endpoint, &p.EventID, &p.Type, &p.User, &p.Payload, &p.Attempts, &p.FirstAt, &p.URL, &wrapped, &master, &p.Disabled,
			&prevWrapped, &prevMaster, &prevExpires); err != nil {
			rows.Close()
			return nil, fmt.Errorf("claiming webhook deliveries: %w", err)
		}
		if p.Key, err = s.Keys.Unwrap(master, wrapped, aad(p.App, p.Endpoint)); err != nil {
			rows.Close()
			return nil, fmt.Errorf("opening the secret of webhook endpoint %s: %w", p.Endpoint, err)
		}
		if prevWrapped != nil && prevMaster != nil && prevExpires != nil {
			if p.PreviousKey, err = s.Keys.Unwrap(*prevMaster, prevWrapped, previousAAD(p.App, p.Endpoint, *prevExpires)); err != nil {
				rows.Close()
				return nil, fmt.Errorf("opening the previous secret of webhook endpoint %s: %w", p.Endpoint, err)
			}
			p.PreviousUntil = *prevExpires
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// outcome is what became of one attempt.
type outcome struct {
	Status    string // delivered, pending, dead
	Attempts  int
	Next      time.Time
	HTTP      int
	Error     string
	Postponed bool // not attempted (breaker open), tried again later: attempts unchanged
	// NotAttempted is true when no call was made (the breaker was open): the last status stays.
	NotAttempted bool
}

// settled is one attempt's delivery and outcome.
type settled struct {
	p pending
	o outcome
}

// settle records the outcomes of attempts, in one statement.
func (s *Store) settle(ctx context.Context, rs []settled) error {
	if len(rs) == 0 {
		return nil
	}
	now := s.now()
	n := len(rs)
	apps, eps, ids, statuses, errs := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	attempts, codes := make([]int32, n), make([]int32, n)
	nexts, dones := make([]time.Time, n), make([]*time.Time, n)
	kept := make([]bool, n)
	for i, r := range rs {
		apps[i], eps[i], ids[i], statuses[i], errs[i] = r.p.App, r.p.Endpoint, r.p.EventID, r.o.Status, r.o.Error
		attempts[i], codes[i], kept[i] = int32(r.o.Attempts), int32(r.o.HTTP), r.o.NotAttempted
		if nexts[i] = r.o.Next; nexts[i].IsZero() {
			nexts[i] = now
		}
		if r.o.Status != "pending" {
			dones[i] = &now
		}
	}
	// Not attempted (the breaker was open): the last attempt's status and error stay.
	//
	// Each row is found by its primary key in a lateral subquery (OFFSET 0 keeps it one lookup per
	// outcome), then updated by its ctid: joined directly, a table whose statistics lag behind a
	// burst of deliveries may be planned as a hash join over every pending delivery (through the
	// partial indexes that status = 'pending' matches), for each batch.
	_, err := s.DB.Exec(ctx, `UPDATE webhook_deliveries d SET status = x.status, attempts = x.attempts, next_attempt_at = x.next,
			last_status = CASE WHEN x.kept THEN d.last_status ELSE x.code END,
			last_error = CASE WHEN x.kept AND x.status = 'pending' THEN d.last_error ELSE x.err END, done_at = x.done
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::timestamptz[], $7::int[], $8::text[], $9::timestamptz[], $10::bool[])
				AS x(app, endpoint, event, status, attempts, next, code, err, done, kept),
			LATERAL (SELECT w.ctid FROM webhook_deliveries w
				WHERE w.app_id = x.app AND w.endpoint_id = x.endpoint AND w.event_id = x.event OFFSET 0) AS w
		WHERE d.ctid = w.ctid AND d.status = 'pending'`,
		apps, eps, ids, statuses, attempts, nexts, codes, errs, dones, kept)
	if err != nil {
		return fmt.Errorf("recording %d webhook attempts: %w", n, err)
	}
	return nil
}
