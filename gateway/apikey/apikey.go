// Package apikey creates, lists, revokes and verifies the API keys apps authenticate with.
// A key reads "hk_<key id>_<secret>"; only a hash of it is stored.
package apikey

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

var (
	// ErrInvalid means the presented key is malformed, unknown, revoked or wrong.
	ErrInvalid = errors.New("invalid API key")
	// ErrNotFound means no key has that id.
	ErrNotFound = errors.New("API key not found")
)

// Key is a stored key, without its secret.
type Key struct {
	ID              string     `json:"key_id"`
	AppID           string     `json:"app_id"`
	Name            string     `json:"name"`
	RateLimitPerMin *int       `json:"rate_limit_per_min,omitempty"`
	CreatedAt       time.Time  `json:"created_at"`
	RevokedAt       *time.Time `json:"revoked_at,omitempty"`
}

// Store keeps keys in the gateway's global database.
type Store struct{ db *pgxpool.Pool }

// NewStore returns a Store on db.
func NewStore(db *pgxpool.Pool) *Store { return &Store{db: db} }

var appRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{1,62}$`)

// ValidAppID reports whether id can name an app.
func ValidAppID(id string) bool { return appRE.MatchString(id) }

func hash(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// Create makes a key for app (creating the app if new) and returns the plaintext once.
func (s *Store) Create(ctx context.Context, appID, name string, ratePerMin *int) (plaintext string, k Key, err error) {
	if !ValidAppID(appID) {
		return "", Key{}, fmt.Errorf("app id %q: must match %s", appID, appRE)
	}
	if ratePerMin != nil && *ratePerMin <= 0 {
		return "", Key{}, fmt.Errorf("rate limit must be positive")
	}
	idBytes := make([]byte, 6)
	secretBytes := make([]byte, 32)
	if _, err := rand.Read(idBytes); err != nil {
		return "", Key{}, err
	}
	if _, err := rand.Read(secretBytes); err != nil {
		return "", Key{}, err
	}
	k = Key{ID: hex.EncodeToString(idBytes), AppID: appID, Name: name, RateLimitPerMin: ratePerMin}
	plaintext = "hk_" + k.ID + "_" + base64.RawURLEncoding.EncodeToString(secretBytes)
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO apps (app_id, name) VALUES ($1, $1) ON CONFLICT DO NOTHING`, appID); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `INSERT INTO api_keys (key_id, app_id, name, secret_hash, rate_limit_per_min)
			VALUES ($1, $2, $3, $4, $5) RETURNING created_at`, k.ID, appID, name, hash(plaintext), ratePerMin).Scan(&k.CreatedAt)
	})
	if err != nil {
		return "", Key{}, fmt.Errorf("creating API key: %w", err)
	}
	return plaintext, k, nil
}

// List returns the keys of app (every app when appID is empty), newest first.
func (s *Store) List(ctx context.Context, appID string) ([]Key, error) {
	rows, err := s.db.Query(ctx, `SELECT key_id, app_id, name, rate_limit_per_min, created_at, revoked_at
		FROM api_keys WHERE $1 = '' OR app_id = $1 ORDER BY created_at DESC, key_id`, appID)
	if err != nil {
		return nil, fmt.Errorf("listing API keys: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Key, error) {
		var k Key
		err := r.Scan(&k.ID, &k.AppID, &k.Name, &k.RateLimitPerMin, &k.CreatedAt, &k.RevokedAt)
		return k, err
	})
}

// Revoke marks a key revoked; it stops working at once. Revoking twice is not an error.
func (s *Store) Revoke(ctx context.Context, keyID string) error {
	tag, err := s.db.Exec(ctx, `UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE key_id = $1`, keyID)
	if err != nil {
		return fmt.Errorf("revoking API key: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// Verify returns the key a plaintext belongs to, or ErrInvalid.
func (s *Store) Verify(ctx context.Context, plaintext string) (Key, error) {
	rest, ok := strings.CutPrefix(plaintext, "hk_")
	if !ok {
		return Key{}, ErrInvalid
	}
	id, _, ok := strings.Cut(rest, "_")
	if !ok || len(id) != 12 {
		return Key{}, ErrInvalid
	}
	var k Key
	var stored []byte
	err := s.db.QueryRow(ctx, `SELECT key_id, app_id, name, rate_limit_per_min, created_at, revoked_at, secret_hash
		FROM api_keys WHERE key_id = $1`, id).Scan(&k.ID, &k.AppID, &k.Name, &k.RateLimitPerMin, &k.CreatedAt, &k.RevokedAt, &stored)
	if errors.Is(err, pgx.ErrNoRows) {
		return Key{}, ErrInvalid
	}
	if err != nil {
		return Key{}, fmt.Errorf("verifying API key: %w", err)
	}
	if subtle.ConstantTimeCompare(stored, hash(plaintext)) != 1 || k.RevokedAt != nil {
		return Key{}, ErrInvalid
	}
	return k, nil
}

// ErrNoTokenSecret means the app has no user-token secret (client tokens are refused).
var ErrNoTokenSecret = errors.New("app has no user-token secret")

// RotateTokenSecret gives app a new secret for signing its clients' user tokens and returns it
// once; tokens signed with the old one stop working.
func (s *Store) RotateTokenSecret(ctx context.Context, appID string) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	secret := "hts_" + base64.RawURLEncoding.EncodeToString(b)
	tag, err := s.db.Exec(ctx, `UPDATE apps SET user_token_secret = $2 WHERE app_id = $1`, appID, []byte(secret))
	if err != nil {
		return "", fmt.Errorf("storing the user-token secret: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return "", fmt.Errorf("app %q: %w (create a key for it first)", appID, ErrNotFound)
	}
	return secret, nil
}

// TokenSecret returns the app's user-token secret, or ErrNoTokenSecret.
func (s *Store) TokenSecret(ctx context.Context, appID string) ([]byte, error) {
	var b []byte
	err := s.db.QueryRow(ctx, `SELECT user_token_secret FROM apps WHERE app_id = $1`, appID).Scan(&b)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && b == nil) {
		return nil, ErrNoTokenSecret
	}
	if err != nil {
		return nil, fmt.Errorf("reading the user-token secret: %w", err)
	}
	return b, nil
}
