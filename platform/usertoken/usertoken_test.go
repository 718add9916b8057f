package usertoken

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	secret = []byte("0123456789abcdef0123456789abcdef")
	now    = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
)

func TestVerifyAcceptsOnlyTheUserAppAndLifetimeItWasSignedFor(t *testing.T) {
	tok, err := Sign(secret, "app-1", "ada", 15*time.Minute, now)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := Verify(secret, tok, "app-1", "ada", now.Add(time.Minute)); err != nil || c.User != "ada" {
		t.Fatalf("valid token refused: %v", err)
	}
	tests := []struct {
		name  string
		token string
		app   string
		user  string
		at    time.Time
		want  error
	}{
		{"another user's inbox", tok, "app-1", "bob", now, ErrWrongUser},
		{"another app", tok, "app-2", "ada", now, ErrWrongUser},
		{"expired", tok, "app-1", "ada", now.Add(16 * time.Minute), ErrExpired},
		{"claims changed to another user", forge(tok, "bob"), "app-1", "bob", now, ErrSignature},
		{"no signature", strings.Split(tok, ".")[0], "app-1", "ada", now, ErrMalformed},
		{"garbage", "not a token", "app-1", "ada", now, ErrMalformed},
		{"issued in the future", signClaims(secret, `{"app":"app-1","sub":"ada","exp":`+unix(now.Add(48*time.Hour))+`,"iat":`+unix(now.Add(47*time.Hour))+`}`), "app-1", "ada", now, ErrFuture},
		{"issued a little ahead (clock skew)", signClaims(secret, `{"app":"app-1","sub":"ada","exp":`+unix(now.Add(time.Hour))+`,"iat":`+unix(now.Add(30*time.Second))+`}`), "app-1", "ada", now, nil},
		{"older than its lifetime", signClaims(secret, `{"app":"app-1","sub":"ada","exp":`+unix(now.Add(time.Hour))+`,"iat":`+unix(now.Add(-25*time.Hour))+`}`), "app-1", "ada", now, ErrExpired},
		{"no issue time", signClaims(secret, `{"app":"app-1","sub":"ada","exp":`+unix(now.Add(time.Hour))+`}`), "app-1", "ada", now, ErrMalformed},
		{"claim in another case", signClaims(secret, `{"app":"app-1","SUB":"bob","sub":"ada","exp":`+unix(now.Add(time.Hour))+`,"iat":`+unix(now)+`}`), "app-1", "ada", now, ErrMalformed},
		{"claim twice", signClaims(secret, `{"app":"app-1","sub":"bob","sub":"ada","exp":`+unix(now.Add(time.Hour))+`,"iat":`+unix(now)+`}`), "app-1", "ada", now, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Verify(secret, tt.token, tt.app, tt.user, tt.at)
			if tt.want == nil && err != nil || !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	// Signed with another secret.
	other, _ := Sign([]byte("another secret of 32 bytes or more!!"), "app-1", "ada", time.Minute, now)
	if _, err := Verify(secret, other, "app-1", "ada", now); !errors.Is(err, ErrSignature) {
		t.Fatalf("foreign signature: %v", err)
	}
	// Lifetimes are capped.
	long, _ := Sign(secret, "app-1", "ada", 30*24*time.Hour, now)
	if _, err := Verify(secret, long, "app-1", "ada", now.Add(25*time.Hour)); !errors.Is(err, ErrExpired) {
		t.Fatalf("lifetime not capped: %v", err)
	}
	if _, err := Sign([]byte("short"), "a", "u", time.Minute, now); err == nil {
		t.Fatal("a short secret was accepted")
	}
}

// forge rewrites the token's subject and keeps the original signature.
func forge(tok, user string) string {
	payload, sig, _ := strings.Cut(tok, ".")
	raw, _ := base64.RawURLEncoding.DecodeString(payload)
	var c Claims
	_ = json.Unmarshal(raw, &c)
	c.User = user
	raw, _ = json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(raw) + "." + sig
}

func FuzzVerifyNeverAcceptsAnUnsignedToken(f *testing.F) {
	tok, _ := Sign(secret, "app-1", "ada", time.Minute, now)
	f.Add(tok)
	f.Add("a.b")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Verify(secret, s, "app-1", "ada", now)
		if err == nil && s != tok {
			// Only tokens whose signature matches may pass; re-signing the claims must give s.
			resigned, _ := Sign(secret, c.App, c.User, time.Unix(c.Expires, 0).Sub(time.Unix(c.Issued, 0)), time.Unix(c.Issued, 0))
			if resigned != s {
				t.Fatalf("verified a token that is not our signature: %q", s)
			}
		}
	})
}

// signClaims signs raw claims as an app's server would, for claims Sign cannot make.
func signClaims(secret []byte, claims string) string {
	payload := base64.RawURLEncoding.EncodeToString([]byte(claims))
	return payload + "." + base64.RawURLEncoding.EncodeToString(mac(secret, payload))
}

func unix(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }
