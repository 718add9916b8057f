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
	"errors"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-notify/herald/region/sealtoken"
)

// ErrInvalid means a token that this region did not mint, or that was changed.
var ErrInvalid = errors.New("invalid unsubscribe token")

// MaxTokenBytes bounds a token: a region name, a dot and a sealed claim of bounded ids.
const MaxTokenBytes = sealtoken.MaxTokenBytes

// Claim is what a token turns off: category on channel, for one user of one app.
type Claim struct {
	App      string    `json:"a"`
	User     string    `json:"u"`
	Category string    `json:"c"`
	Channel  string    `json:"ch"`
	IssuedAt time.Time `json:"iat"`
}

// RegionOf returns the name of the region that minted token, without opening it.
func RegionOf(token string) (string, bool) { return sealtoken.RegionOf(token) }

// Keyring mints and opens one region's tokens.
type Keyring struct{ k *sealtoken.Keyring }

// NewKeyring returns the keyring of region with its 32-byte key.
func NewKeyring(region string, key []byte) (*Keyring, error) {
	k, err := sealtoken.NewKeyring(region, "unsubscribe", key)
	if err != nil {
		return nil, err
	}
	return &Keyring{k: k}, nil
}

// Mint returns the token of c.
func (k *Keyring) Mint(c Claim) (string, error) { return k.k.Seal(c) }

// Open returns the claim of a token this region minted; ErrInvalid for anything else.
func (k *Keyring) Open(token string) (Claim, error) {
	var c Claim
	if err := k.k.Open(token, &c); err != nil || c.App == "" || c.User == "" || c.Category == "" || c.Channel == "" {
		return Claim{}, ErrInvalid
	}
	return c, nil
}

// LoadKey returns the region's unsubscribe key from its database (region_secrets), making it
// on first use; concurrent first uses all get the one that was stored.
func LoadKey(ctx context.Context, db *pgxpool.Pool) ([]byte, error) {
	return sealtoken.LoadKey(ctx, db, "unsubscribe")
}
