package webhooks

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// The endpoints' signing secrets are wrapped under the region's master keyring, like the users'
// data keys: the user-keys sweep (userkeys.Keys.Include) rewraps them under the current master
// key, so an old master key can be retired without leaving a secret that no process opens.

// MasterCounts returns the endpoints' secrets, current and previous, per master key id. A
// previous secret whose overlap is over is not counted: it signs nothing, and the next sweep
// deletes it without opening it (a master key that only such secrets use can go).
func (s *Store) MasterCounts(ctx context.Context) (map[string]int, error) {
	rows, err := s.DB.Query(ctx, `SELECT m, count(*) FROM (
			SELECT secret_master AS m FROM webhook_endpoints
			UNION ALL SELECT previous_secret_master FROM webhook_endpoints WHERE previous_secret_expires_at > $1) x
		GROUP BY m`, s.now())
	if err != nil {
		return nil, fmt.Errorf("counting webhook secrets per master key: %w", err)
	}
	out := map[string]int{}
	var id string
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&id, &n}, func() error { out[id] = n; return nil }); err != nil {
		return nil, fmt.Errorf("counting webhook secrets per master key: %w", err)
	}
	return out, nil
}

// RewrapBatch clears the previous secrets that have expired (they sign nothing any more), then
// rewraps under the current master key the secrets of up to n endpoints that hold one under
// another, in one transaction; rows another transaction holds (a rotation, another region's
// sweep) are left to it. It returns how many endpoints it rewrapped.
func (s *Store) RewrapBatch(ctx context.Context, n int) (int, error) {
	current := s.Keys.Current()
	done := 0
	err := pgx.BeginFunc(ctx, s.DB, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE webhook_endpoints SET previous_secret_wrapped = NULL, previous_secret_master = NULL, previous_secret_expires_at = NULL
			WHERE previous_secret_expires_at <= $1`, s.now()); err != nil {
			return fmt.Errorf("clearing expired previous webhook secrets: %w", err)
		}
		rows, err := tx.Query(ctx, `SELECT app_id, endpoint_id, secret_wrapped, secret_master, previous_secret_wrapped, previous_secret_master, previous_secret_expires_at
			FROM webhook_endpoints WHERE secret_master <> $1 OR previous_secret_master <> $1
			LIMIT $2 FOR UPDATE SKIP LOCKED`, current, n)
		if err != nil {
			return err
		}
		type row struct {
			app, id              string
			wrapped, prevWrapped []byte
			master               string
			prevMaster           *string
			prevExpires          *time.Time
		}
		found, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var x row
			return x, r.Scan(&x.app, &x.id, &x.wrapped, &x.master, &x.prevWrapped, &x.prevMaster, &x.prevExpires)
		})
		if err != nil {
			return err
		}
		for _, r := range found {
			w, m, err := s.rewrap(r.master, r.wrapped, aad(r.app, r.id))
			if err != nil {
				return fmt.Errorf("the secret of webhook endpoint %s: %w", r.id, err)
			}
			pw, pm := r.prevWrapped, r.prevMaster
			if r.prevWrapped != nil && r.prevMaster != nil && r.prevExpires != nil {
				w, m, err := s.rewrap(*r.prevMaster, r.prevWrapped, previousAAD(r.app, r.id, *r.prevExpires))
				if err != nil {
					return fmt.Errorf("the previous secret of webhook endpoint %s: %w", r.id, err)
				}
				pw, pm = w, &m
			}
			if _, err := tx.Exec(ctx, `UPDATE webhook_endpoints SET secret_wrapped = $3, secret_master = $4, previous_secret_wrapped = $5, previous_secret_master = $6
				WHERE app_id = $1 AND endpoint_id = $2`, r.app, r.id, w, m, pw, pm); err != nil {
				return fmt.Errorf("storing the rewrapped secrets of webhook endpoint %s: %w", r.id, err)
			}
			done++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("rewrapping webhook secrets: %w", err)
	}
	return done, nil
}

// rewrap returns wrapped (under master, with additional data ad) wrapped under the current
// master key, or as it is when it already is.
func (s *Store) rewrap(master string, wrapped, ad []byte) ([]byte, string, error) {
	if master == s.Keys.Current() {
		return wrapped, master, nil
	}
	key, err := s.Keys.Unwrap(master, wrapped, ad)
	if err != nil {
		return nil, "", err
	}
	defer clear(key)
	return s.Keys.Wrap(key, ad)
}
