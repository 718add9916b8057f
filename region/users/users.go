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

// Put creates or replaces a contact and reports whether it was new.
func (s *Store) Put(ctx context.Context, appID string, c Contact) (created bool, err error) {
	err = s.db.QueryRow(ctx, `INSERT INTO users (app_id, user_id, email, phone, locale) VALUES ($1, $2, nullif($3, ''), nullif($4, ''), nullif($5, ''))
		ON CONFLICT (app_id, user_id) DO UPDATE SET email = EXCLUDED.email, phone = EXCLUDED.phone, locale = EXCLUDED.locale, updated_at = now()
		RETURNING (xmax = 0)`, appID, c.UserID, c.Email, c.Phone, c.Locale).Scan(&created)
	if err != nil {
		return false, fmt.Errorf("storing contact: %w", err)
	}
	return created, nil
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
