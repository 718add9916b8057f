// Package users keeps a user's contact points in the home region: the email address and phone
// number the email and SMS channels deliver to.
package users

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNotFound means the region holds no contact for the user.
var ErrNotFound = errors.New("user not found")

// Contact is a user's contact points.
type Contact struct {
	UserID    string    `json:"user_id"`
	Email     string    `json:"email,omitempty"`
	Phone     string    `json:"phone,omitempty"`
	Locale    string    `json:"locale,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Store keeps contacts in the region's Postgres database.
type Store struct{ db *pgxpool.Pool }

// NewStore returns a Store.
func NewStore(db *pgxpool.Pool) *Store { return &Store{db: db} }

// Patch is a registration or an update of a user: a nil field keeps what is stored, an empty
// one removes it.
type Patch struct {
	Jurisdiction         string
	Email, Phone, Locale *string
}

// Put registers the user as a resident of jurisdiction (or updates them), applies the patch,
// and returns the contact as stored and whether it was new.
func (s *Store) Put(ctx context.Context, appID, userID string, p Patch) (c Contact, created bool, err error) {
	val := func(v *string) (string, bool) {
		if v == nil {
			return "", false
		}
		return *v, true
	}
	email, setEmail := val(p.Email)
	phone, setPhone := val(p.Phone)
	locale, setLocale := val(p.Locale)
	var e, ph, l *string
	c.UserID = userID
	err = s.db.QueryRow(ctx, `INSERT INTO users (app_id, user_id, jurisdiction, email, phone, locale) VALUES ($1, $2, $3, nullif($4, ''), nullif($5, ''), nullif($6, ''))
		ON CONFLICT (app_id, user_id) DO UPDATE SET jurisdiction = EXCLUDED.jurisdiction,
			email = CASE WHEN $7 THEN EXCLUDED.email ELSE users.email END,
			phone = CASE WHEN $8 THEN EXCLUDED.phone ELSE users.phone END,
			locale = CASE WHEN $9 THEN EXCLUDED.locale ELSE users.locale END,
			updated_at = now()
		RETURNING (xmax = 0), email, phone, locale, updated_at`,
		appID, userID, p.Jurisdiction, email, phone, locale, setEmail, setPhone, setLocale).Scan(&created, &e, &ph, &l, &c.UpdatedAt)
	if err != nil {
		return Contact{}, false, fmt.Errorf("storing contact: %w", err)
	}
	c.Email, c.Phone, c.Locale = deref(e), deref(ph), deref(l)
	return c, created, nil
}

// NotResident returns the positions in ids of the users who are not registered here as
// residents of jurisdiction.
func (s *Store) NotResident(ctx context.Context, appID, jurisdiction string, ids []string) ([]int, error) {
	rows, err := s.db.Query(ctx, `SELECT user_id FROM users WHERE app_id = $1 AND user_id = ANY($2) AND jurisdiction = $3`, appID, ids, jurisdiction)
	if err != nil {
		return nil, fmt.Errorf("reading residents: %w", err)
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("reading residents: %w", err)
	}
	if len(found) == len(ids) {
		return nil, nil
	}
	in := make(map[string]bool, len(found))
	for _, u := range found {
		in[u] = true
	}
	var missing []int
	for i, u := range ids {
		if !in[u] {
			missing = append(missing, i)
		}
	}
	return missing, nil
}

// Get returns a user's contact.
func (s *Store) Get(ctx context.Context, appID, userID string) (Contact, error) {
	c := Contact{UserID: userID}
	var email, phone, locale *string
	err := s.db.QueryRow(ctx, `SELECT email, phone, locale, updated_at FROM users WHERE app_id = $1 AND user_id = $2`, appID, userID).
		Scan(&email, &phone, &locale, &c.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Contact{}, ErrNotFound
	}
	if err != nil {
		return Contact{}, fmt.Errorf("reading contact: %w", err)
	}
	c.Email, c.Phone, c.Locale = deref(email), deref(phone), deref(locale)
	return c, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
