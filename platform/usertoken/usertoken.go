// Package usertoken verifies the short-lived tokens with which an app's mobile and web clients
// read one user's inbox: the app's server signs {app, user, expiry} with the app's secret
// (HMAC-SHA256), and a token for user A never opens user B's inbox.
//
// Format: base64url(JSON claims) "." base64url(HMAC-SHA256(secret, first part)).
package usertoken

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/herald-notify/herald/platform/wire"
)

// Errors a verification can end with. Callers answer 401 for all of them.
var (
	ErrMalformed = errors.New("malformed user token")
	ErrSignature = errors.New("user token signature does not match")
	ErrExpired   = errors.New("user token expired")
	ErrFuture    = errors.New("user token issued in the future")
	ErrWrongUser = errors.New("user token is for another user or app")
)

// MaxLifetime caps how long a token may live, whatever its issuer asked for.
const MaxLifetime = 24 * time.Hour

// MaxSkew is how far ahead of this server's clock a token's issue time may be.
const MaxSkew = time.Minute

// Claims are what a token asserts.
type Claims struct {
	App     string `json:"app"`
	User    string `json:"sub"`
	Expires int64  `json:"exp"` // Unix seconds
	Issued  int64  `json:"iat"`
}

// Sign makes a token for user of app, valid for ttl (at most MaxLifetime).
func Sign(secret []byte, app, user string, ttl time.Duration, now time.Time) (string, error) {
	if len(secret) < 32 {
		return "", errors.New("user token secret must be at least 32 bytes")
	}
	ttl = min(ttl, MaxLifetime)
	raw, err := json.Marshal(Claims{App: app, User: user, Issued: now.Unix(), Expires: now.Add(ttl).Unix()})
	if err != nil {
		return "", err
	}
	payload := base64.RawURLEncoding.EncodeToString(raw)
	return payload + "." + base64.RawURLEncoding.EncodeToString(mac(secret, payload)), nil
}

func mac(secret []byte, payload string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// Verify checks token for reading user's inbox in app at now.
func Verify(secret []byte, token, app, user string, now time.Time) (Claims, error) {
	payload, sig, ok := strings.Cut(token, ".")
	if !ok || payload == "" || sig == "" || len(token) > 4096 {
		return Claims{}, ErrMalformed
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return Claims{}, ErrMalformed
	}
	// The signature is checked before the claims are even decoded.
	if !hmac.Equal(got, mac(secret, payload)) {
		return Claims{}, ErrSignature
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return Claims{}, ErrMalformed
	}
	var c Claims
	if wire.Decode(raw, &c) != nil || c.Expires == 0 || c.Issued == 0 {
		return Claims{}, ErrMalformed
	}
	if c.Issued > now.Add(MaxSkew).Unix() {
		return Claims{}, ErrFuture
	}
	lifetime := int64(MaxLifetime / time.Second)
	if now.Unix() >= c.Expires || c.Expires-c.Issued > lifetime || now.Unix()-c.Issued > lifetime {
		return Claims{}, ErrExpired
	}
	if c.App != app || c.User != user {
		return Claims{}, ErrWrongUser
	}
	return c, nil
}

// Peek reads the claims of a token without trusting them: they only say whose secret to verify
// the token with and for which user (Verify then checks the signature, the expiry, the app and
// the user).
func Peek(token string) (Claims, error) {
	payload, _, ok := strings.Cut(token, ".")
	if !ok || payload == "" || len(token) > 4096 {
		return Claims{}, ErrMalformed
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return Claims{}, ErrMalformed
	}
	var c Claims
	if err := json.Unmarshal(raw, &c); err != nil || c.App == "" || c.User == "" {
		return Claims{}, ErrMalformed
	}
	return c, nil
}
