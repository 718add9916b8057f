// Package devices keeps users' push device tokens.
package devices

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-notify/herald/region/notify"
)

// Store keeps devices in the region's Postgres database.
type Store struct{ db *pgxpool.Pool }

// NewStore returns a Store.
func NewStore(db *pgxpool.Pool) *Store { return &Store{db: db} }

// Register adds or refreshes a device. A token registered again by another user moves to that
// user, since the device changed hands.
func (s *Store) Register(ctx context.Context, appID, userID string, d notify.Device) error {
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM devices WHERE app_id = $1 AND platform = $2 AND token = $3 AND device_id <> $4`,
			appID, d.Platform, d.Token, d.DeviceID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO devices (app_id, device_id, user_id, platform, token) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (app_id, device_id) DO UPDATE SET user_id = EXCLUDED.user_id, platform = EXCLUDED.platform,
				token = EXCLUDED.token, is_active = true, last_seen_at = now()`, appID, d.DeviceID, userID, d.Platform, d.Token)
		return err
	})
	if err != nil {
		return fmt.Errorf("registering device: %w", err)
	}
	return nil
}

// Active lists the user's active devices.
func (s *Store) Active(ctx context.Context, appID, userID string) ([]notify.Device, error) {
	rows, err := s.db.Query(ctx, `SELECT device_id, platform, token FROM devices WHERE app_id = $1 AND user_id = $2 AND is_active ORDER BY device_id`, appID, userID)
	if err != nil {
		return nil, fmt.Errorf("reading devices: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (notify.Device, error) {
		var d notify.Device
		err := r.Scan(&d.DeviceID, &d.Platform, &d.Token)
		return d, err
	})
}

// Remove deletes one of the user's devices and reports whether it existed.
func (s *Store) Remove(ctx context.Context, appID, userID, deviceID string) (bool, error) {
	tag, err := s.db.Exec(ctx, `DELETE FROM devices WHERE app_id = $1 AND user_id = $2 AND device_id = $3`, appID, userID, deviceID)
	if err != nil {
		return false, fmt.Errorf("removing device: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}
