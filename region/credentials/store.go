// Package credentials keeps the provider credentials each app stores in a jurisdiction: its
// APNs key and topic, FCM service account, SMTP login and sender, Twilio account and sender
// (wire.Credential). They live in the jurisdiction's Postgres, which its regions share, wrapped
// under the region's master keyring; the API shows only their settings and a fingerprint. The
// dispatcher sends an app's messages with the app's own credential of the provider's kind, and
// never with another app's (region/dispatch).
package credentials

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-notify/herald/platform/wire"
)

// ErrNotFound is a credential the app has not stored here.
var ErrNotFound = errors.New("provider credential not found")

// Keyring wraps the credentials (the region's master keyring).
type Keyring interface {
	Wrap(key, aad []byte) (wrapped []byte, id string, err error)
	Unwrap(id string, wrapped, aad []byte) ([]byte, error)
	Current() string
}

// View is a stored credential as the API shows it: never a secret.
type View struct {
	Kind         string            `json:"kind"`
	Jurisdiction string            `json:"jurisdiction"`
	Version      int64             `json:"version"`
	Settings     map[string]string `json:"settings"`
	Fingerprint  string            `json:"fingerprint"`
	CreatedAt    time.Time         `json:"created_at"`
	UpdatedAt    time.Time         `json:"updated_at"`
}

// Loaded is a credential opened for sending.
type Loaded struct {
	wire.Credential
	Version int64
}

// Store keeps the credentials in the jurisdiction's Postgres.
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

// aad binds a wrapped credential to its row and version.
func aad(app, kind string, version int64) []byte {
	return []byte("provider-credential\x00" + app + "\x00" + kind + "\x00" + strconv.FormatInt(version, 10))
}

const viewCols = `kind, jurisdiction, version, settings, fingerprint, created_at, updated_at`

func scanView(row pgx.Row) (View, error) {
	var v View
	err := row.Scan(&v.Kind, &v.Jurisdiction, &v.Version, &v.Settings, &v.Fingerprint, &v.CreatedAt, &v.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return View{}, ErrNotFound
	}
	return v, err
}

// Put stores app's credential of c.Kind in jurisdiction, replacing the one it held (a
// rotation): the new one has a new version, and sends use it from the dispatchers' next
// refresh. created says whether there was none.
func (s *Store) Put(ctx context.Context, app, jurisdiction string, c wire.Credential) (v View, created bool, err error) {
	if e := c.Validate(); e != nil {
		return View{}, false, e
	}
	plain, err := json.Marshal(c.Body())
	if err != nil {
		return View{}, false, fmt.Errorf("encoding a %s credential: %w", c.Kind, err)
	}
	settings, err := json.Marshal(c.Settings())
	if err != nil {
		return View{}, false, err
	}
	var version int64
	if err := s.DB.QueryRow(ctx, `SELECT nextval('provider_credentials_version')`).Scan(&version); err != nil {
		return View{}, false, fmt.Errorf("numbering a %s credential: %w", c.Kind, err)
	}
	wrapped, master, err := s.Keys.Wrap(plain, aad(app, c.Kind, version))
	if err != nil {
		return View{}, false, fmt.Errorf("wrapping a %s credential: %w", c.Kind, err)
	}
	now := s.now()
	row := s.DB.QueryRow(ctx, `INSERT INTO provider_credentials AS p (app_id, kind, jurisdiction, version, settings, fingerprint, secret_wrapped, secret_master, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
		ON CONFLICT (app_id, kind) DO UPDATE SET jurisdiction = EXCLUDED.jurisdiction, version = EXCLUDED.version, settings = EXCLUDED.settings,
			fingerprint = EXCLUDED.fingerprint, secret_wrapped = EXCLUDED.secret_wrapped, secret_master = EXCLUDED.secret_master, updated_at = EXCLUDED.updated_at
		RETURNING `+viewCols+`, (xmax = 0)`, app, c.Kind, jurisdiction, version, settings, c.Fingerprint(), wrapped, master, now)
	err = row.Scan(&v.Kind, &v.Jurisdiction, &v.Version, &v.Settings, &v.Fingerprint, &v.CreatedAt, &v.UpdatedAt, &created)
	if err != nil {
		return View{}, false, fmt.Errorf("storing a %s credential: %w", c.Kind, err)
	}
	return v, created, nil
}

// Get returns app's credential of kind, as the API shows it.
func (s *Store) Get(ctx context.Context, app, jurisdiction, kind string) (View, error) {
	return scanView(s.DB.QueryRow(ctx, `SELECT `+viewCols+` FROM provider_credentials WHERE app_id = $1 AND kind = $2 AND jurisdiction = $3`, app, kind, jurisdiction))
}

// List returns app's credentials in jurisdiction, by kind.
func (s *Store) List(ctx context.Context, app, jurisdiction string) ([]View, error) {
	rows, err := s.DB.Query(ctx, `SELECT `+viewCols+` FROM provider_credentials WHERE app_id = $1 AND jurisdiction = $2
		ORDER BY array_position(ARRAY['apns','fcm','smtp','twilio'], kind)`, app, jurisdiction)
	if err != nil {
		return nil, fmt.Errorf("listing provider credentials: %w", err)
	}
	out := []View{}
	for rows.Next() {
		v, err := scanView(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("listing provider credentials: %w", err)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Delete removes app's credential of kind: its sends of that kind go through the region's own
// provider again (or are refused, where the region requires app credentials).
func (s *Store) Delete(ctx context.Context, app, jurisdiction, kind string) error {
	tag, err := s.DB.Exec(ctx, `DELETE FROM provider_credentials WHERE app_id = $1 AND kind = $2 AND jurisdiction = $3`, app, kind, jurisdiction)
	if err != nil {
		return fmt.Errorf("deleting a %s credential: %w", kind, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// Load opens app's credential of kind for sending, and checks it again as the API did: a row
// that does not open, or whose credential no longer validates, is an error, never a credential
// of another app or kind.
func (s *Store) Load(ctx context.Context, app, jurisdiction, kind string) (Loaded, error) {
	var version int64
	var wrapped []byte
	var master string
	err := s.DB.QueryRow(ctx, `SELECT version, secret_wrapped, secret_master FROM provider_credentials WHERE app_id = $1 AND kind = $2 AND jurisdiction = $3`,
		app, kind, jurisdiction).Scan(&version, &wrapped, &master)
	if errors.Is(err, pgx.ErrNoRows) {
		return Loaded{}, ErrNotFound
	}
	if err != nil {
		return Loaded{}, fmt.Errorf("reading app %s's %s credential: %w", app, kind, err)
	}
	plain, err := s.Keys.Unwrap(master, wrapped, aad(app, kind, version))
	if err != nil {
		return Loaded{}, fmt.Errorf("opening app %s's %s credential (version %d): %w", app, kind, version, err)
	}
	c, e := wire.DecodeCredential(kind, plain)
	if e != nil {
		return Loaded{}, fmt.Errorf("app %s's %s credential (version %d) no longer reads: %w", app, kind, version, e)
	}
	return Loaded{Credential: c, Version: version}, nil
}

// MasterCounts returns the credentials per master key id (userkeys.Wrapped).
func (s *Store) MasterCounts(ctx context.Context) (map[string]int, error) {
	rows, err := s.DB.Query(ctx, `SELECT secret_master, count(*) FROM provider_credentials GROUP BY secret_master`)
	if err != nil {
		return nil, fmt.Errorf("counting provider credentials per master key: %w", err)
	}
	out := map[string]int{}
	var id string
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&id, &n}, func() error { out[id] = n; return nil }); err != nil {
		return nil, fmt.Errorf("counting provider credentials per master key: %w", err)
	}
	return out, nil
}

// RewrapBatch rewraps under the current master key up to n credentials wrapped under another,
// in one transaction; rows another transaction holds (a rotation, another region's sweep) are
// left to it. It returns how many it rewrapped (userkeys.Wrapped).
func (s *Store) RewrapBatch(ctx context.Context, n int) (int, error) {
	current := s.Keys.Current()
	done := 0
	err := pgx.BeginFunc(ctx, s.DB, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT app_id, kind, version, secret_wrapped, secret_master FROM provider_credentials
			WHERE secret_master <> $1 LIMIT $2 FOR UPDATE SKIP LOCKED`, current, n)
		if err != nil {
			return err
		}
		type row struct {
			app, kind, master string
			version           int64
			wrapped           []byte
		}
		found, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var x row
			return x, r.Scan(&x.app, &x.kind, &x.version, &x.wrapped, &x.master)
		})
		if err != nil {
			return err
		}
		for _, r := range found {
			a := aad(r.app, r.kind, r.version)
			plain, err := s.Keys.Unwrap(r.master, r.wrapped, a)
			if err != nil {
				return fmt.Errorf("the %s credential of app %s: %w", r.kind, r.app, err)
			}
			w, m, err := s.Keys.Wrap(plain, a)
			if err != nil {
				return fmt.Errorf("the %s credential of app %s: %w", r.kind, r.app, err)
			}
			if _, err := tx.Exec(ctx, `UPDATE provider_credentials SET secret_wrapped = $3, secret_master = $4 WHERE app_id = $1 AND kind = $2`,
				r.app, r.kind, w, m); err != nil {
				return err
			}
			done++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("rewrapping provider credentials: %w", err)
	}
	return done, nil
}
