// Package unsubscribe makes and opens the tokens of one-click unsubscribe links (RFC 8058).
//
// A region's marketing and social email carries List-Unsubscribe with an HTTPS link to its
// jurisdiction's gateway, /v1/unsubscribe/{token}. The token is the minting region's name and,
// sealed under that region's own key (AES-256-GCM, the region name as additional data), the
// app, the user, the category and the channel it turns off: the link names no one in clear,
// cannot be forged or pointed at another user, and only the region that minted it can open
// it. The gateway forwards a token to the region it names without reading it.
package unsubscribe

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrInvalid means a token that this region did not mint, or that was changed.
var ErrInvalid = errors.New("invalid unsubscribe token")

// MaxTokenBytes bounds a token: a region name, a dot and a sealed claim of bounded ids.
const MaxTokenBytes = 1024

// Claim is what a token turns off: category on channel, for one user of one app.
type Claim struct {
	App      string    `json:"a"`
	User     string    `json:"u"`
	Category string    `json:"c"`
	Channel  string    `json:"ch"`
	IssuedAt time.Time `json:"iat"`
}

// regionRE is what a region name (the token's prefix) matches.
var regionRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// RegionOf returns the name of the region that minted token, without opening it.
func RegionOf(token string) (string, bool) {
	if len(token) > MaxTokenBytes {
		return "", false
	}
	region, sealed, ok := strings.Cut(token, ".")
	if !ok || sealed == "" || !regionRE.MatchString(region) {
		return "", false
	}
	return region, true
}

// Keyring mints and opens one region's tokens.
type Keyring struct {
	region string
	aead   cipher.AEAD
}

// NewKeyring returns the keyring of region with its 32-byte key.
func NewKeyring(region string, key []byte) (*Keyring, error) {
	if !regionRE.MatchString(region) {
		return nil, fmt.Errorf("unsubscribe: region name %q", region)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("unsubscribe key: %w", err)
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("unsubscribe key: %d bytes, want 32", len(key))
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Keyring{region: region, aead: aead}, nil
}

// Mint returns the token of c.
func (k *Keyring) Mint(c Claim) (string, error) {
	raw, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(raw)+k.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	sealed := k.aead.Seal(nonce, nonce, raw, []byte(k.region))
	return k.region + "." + base64.RawURLEncoding.EncodeToString(sealed), nil
}

// Open returns the claim of a token this region minted; ErrInvalid for anything else.
func (k *Keyring) Open(token string) (Claim, error) {
	region, ok := RegionOf(token)
	if !ok || region != k.region {
		return Claim{}, ErrInvalid
	}
	sealed, err := base64.RawURLEncoding.DecodeString(token[len(region)+1:])
	if err != nil || len(sealed) < k.aead.NonceSize()+k.aead.Overhead() {
		return Claim{}, ErrInvalid
	}
	raw, err := k.aead.Open(nil, sealed[:k.aead.NonceSize()], sealed[k.aead.NonceSize():], []byte(k.region))
	if err != nil {
		return Claim{}, ErrInvalid
	}
	var c Claim
	if err := json.Unmarshal(raw, &c); err != nil || c.App == "" || c.User == "" || c.Category == "" || c.Channel == "" {
		return Claim{}, ErrInvalid
	}
	return c, nil
}

// LoadKey returns the region's unsubscribe key from its database (region_secrets), making it
// on first use; concurrent first uses all get the one that was stored.
//
// The insert and the read are two statements on purpose: in one statement (a CTE) the read
// would use the snapshot taken before a concurrent first use committed its key, and find
// neither row. Here the losing insert waits for the winner's commit, does nothing, and the
// read that follows sees the winner's key.
func LoadKey(ctx context.Context, db *pgxpool.Pool) ([]byte, error) {
	fresh := make([]byte, 32)
	if _, err := rand.Read(fresh); err != nil {
		return nil, err
	}
	if _, err := db.Exec(ctx, `INSERT INTO region_secrets (name, secret) VALUES ('unsubscribe', $1) ON CONFLICT (name) DO NOTHING`, fresh); err != nil {
		return nil, fmt.Errorf("storing the unsubscribe key: %w", err)
	}
	var key []byte
	if err := db.QueryRow(ctx, `SELECT secret FROM region_secrets WHERE name = 'unsubscribe'`).Scan(&key); err != nil {
		return nil, fmt.Errorf("reading the unsubscribe key: %w", err)
	}
	return key, nil
}
