// Package profiles loads what fan-out needs to know about a chunk of recipients in three
// queries, whatever the chunk size: preferences (with the hard stop, read from Postgres on every
// send), active devices, and contact points.
package profiles

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/prefs"
)

// Profile is one recipient's delivery profile.
type Profile struct {
	Prefs   prefs.Preferences
	Devices []notify.Device
	Email   string
	Phone   string
}

// Loader reads profiles from the region's Postgres database.
type Loader struct{ db *pgxpool.Pool }

// New returns a Loader.
func New(db *pgxpool.Pool) *Loader { return &Loader{db: db} }

// Load returns a profile for every user (defaults for users with nothing stored).
func (l *Loader) Load(ctx context.Context, appID string, users []string) (map[string]*Profile, error) {
	out := make(map[string]*Profile, len(users))
	for _, u := range users {
		out[u] = &Profile{}
	}
	rows, err := l.db.Query(ctx, `SELECT user_id, prefs, hard_stop FROM preferences WHERE app_id = $1 AND user_id = ANY($2)`, appID, users)
	if err != nil {
		return nil, fmt.Errorf("loading preferences: %w", err)
	}
	for rows.Next() {
		var u string
		var raw []byte
		var hard bool
		if err := rows.Scan(&u, &raw, &hard); err != nil {
			rows.Close()
			return nil, err
		}
		p := out[u]
		if err := json.Unmarshal(raw, &p.Prefs); err != nil {
			rows.Close()
			return nil, fmt.Errorf("decoding preferences of %s: %w", u, err)
		}
		p.Prefs.HardStop = hard
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("loading preferences: %w", err)
	}

	rows, err = l.db.Query(ctx, `SELECT user_id, device_id, platform, token FROM devices WHERE app_id = $1 AND user_id = ANY($2) AND is_active ORDER BY user_id, device_id`, appID, users)
	if err != nil {
		return nil, fmt.Errorf("loading devices: %w", err)
	}
	for rows.Next() {
		var u string
		var d notify.Device
		if err := rows.Scan(&u, &d.DeviceID, &d.Platform, &d.Token); err != nil {
			rows.Close()
			return nil, err
		}
		out[u].Devices = append(out[u].Devices, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("loading devices: %w", err)
	}

	rows, err = l.db.Query(ctx, `SELECT user_id, coalesce(email, ''), coalesce(phone, '') FROM users WHERE app_id = $1 AND user_id = ANY($2)`, appID, users)
	if err != nil {
		return nil, fmt.Errorf("loading contacts: %w", err)
	}
	for rows.Next() {
		var u, email, phone string
		if err := rows.Scan(&u, &email, &phone); err != nil {
			rows.Close()
			return nil, err
		}
		out[u].Email, out[u].Phone = email, phone
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("loading contacts: %w", err)
	}
	return out, nil
}
