// Package sealtoken makes and opens a region's sealed tokens: the region's name, a dot, and a
// claim sealed under a key only that region holds (AES-256-GCM, with the region's name and the
// token's purpose as additional data). A token names no one in clear, cannot be forged or
// changed, opens only in the region that minted it and only for the purpose it was minted for.
// A gateway routes a token to the region its prefix names without reading it.
//
// One-click unsubscribe links (region/unsubscribe) and provider status callbacks
// (region/receipts) carry them.
package sealtoken

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

	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrInvalid means a token that this region did not mint for this purpose, or that was changed.
var ErrInvalid = errors.New("invalid token")

// MaxTokenBytes bounds a token: a region name, a dot and a sealed claim of bounded ids.
const MaxTokenBytes = 1024

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

// Keyring mints and opens one region's tokens of one purpose.
type Keyring struct {
	region string
	ad     []byte
	aead   cipher.AEAD
}

// NewKeyring returns the keyring of region's tokens for purpose, with its 32-byte key.
func NewKeyring(region, purpose string, key []byte) (*Keyring, error) {
	if !regionRE.MatchString(region) {
		return nil, fmt.Errorf("sealtoken: region name %q", region)
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("sealtoken: %s key of %d bytes, want 32", purpose, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("sealtoken: %s key: %w", purpose, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	ad := []byte(region)
	if purpose != "unsubscribe" { // unsubscribe tokens minted before purposes stay valid
		ad = []byte(region + "\x00" + purpose)
	}
	return &Keyring{region: region, ad: ad, aead: aead}, nil
}

// Region is the name of the region whose tokens k mints.
func (k *Keyring) Region() string { return k.region }

// Seal returns the token of claim (encoded as JSON).
func (k *Keyring) Seal(claim any) (string, error) {
	raw, err := json.Marshal(claim)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(raw)+k.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	sealed := k.aead.Seal(nonce, nonce, raw, k.ad)
	return k.region + "." + base64.RawURLEncoding.EncodeToString(sealed), nil
}

// Open decodes into claim the token's claim, when this keyring minted the token; ErrInvalid
// for anything else.
func (k *Keyring) Open(token string, claim any) error {
	region, ok := RegionOf(token)
	if !ok || region != k.region {
		return ErrInvalid
	}
	sealed, err := base64.RawURLEncoding.DecodeString(token[len(region)+1:])
	if err != nil || len(sealed) < k.aead.NonceSize()+k.aead.Overhead() {
		return ErrInvalid
	}
	raw, err := k.aead.Open(nil, sealed[:k.aead.NonceSize()], sealed[k.aead.NonceSize():], k.ad)
	if err != nil {
		return ErrInvalid
	}
	if err := json.Unmarshal(raw, claim); err != nil {
		return ErrInvalid
	}
	return nil
}

// LoadKey returns the region's key named name from its database (region_secrets), making it
// on first use; concurrent first uses all get the one that was stored.
//
// The insert and the read are two statements on purpose: in one statement (a CTE) the read
// would use the snapshot taken before a concurrent first use committed its key, and find
// neither row. Here the losing insert waits for the winner's commit, does nothing, and the
// read that follows sees the winner's key.
func LoadKey(ctx context.Context, db *pgxpool.Pool, name string) ([]byte, error) {
	fresh := make([]byte, 32)
	if _, err := rand.Read(fresh); err != nil {
		return nil, err
	}
	if _, err := db.Exec(ctx, `INSERT INTO region_secrets (name, secret) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, name, fresh); err != nil {
		return nil, fmt.Errorf("storing the %s key: %w", name, err)
	}
	var key []byte
	if err := db.QueryRow(ctx, `SELECT secret FROM region_secrets WHERE name = $1`, name).Scan(&key); err != nil {
		return nil, fmt.Errorf("reading the %s key: %w", name, err)
	}
	return key, nil
}
