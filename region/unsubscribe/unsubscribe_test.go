package unsubscribe

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func keyring(t testing.TB, region string, fill byte) *Keyring {
	t.Helper()
	k, err := NewKeyring(region, bytes.Repeat([]byte{fill}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var claim = Claim{App: "acme", User: "ada", Category: "promo", Channel: "email", IssuedAt: time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)}

func TestATokenOpensOnlyInTheRegionThatMintedItAndOnlyUnchanged(t *testing.T) {
	eu := keyring(t, "eu-west-1", 1)
	token, err := eu.Mint(claim)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := eu.Open(token); err != nil || got != claim {
		t.Fatalf("open: %+v %v", got, err)
	}
	if r, ok := RegionOf(token); !ok || r != "eu-west-1" {
		t.Fatalf("RegionOf: %q %v", r, ok)
	}
	for _, s := range []string{"ada", "acme", "promo"} {
		if strings.Contains(token, s) {
			t.Fatalf("the token names %q in clear: %s", s, token)
		}
	}
	if again, _ := eu.Mint(claim); again == token {
		t.Fatal("two tokens of one claim are equal: the nonce is not fresh")
	}
	_, sealed, _ := strings.Cut(token, ".")
	flipped := []byte(token)
	flipped[len(flipped)-2] ^= 0x01
	for name, bad := range map[string]string{
		"another region's key, same name": mustMint(t, keyring(t, "eu-west-1", 2)),
		"renamed to another region":       "eu-central-1." + sealed,
		"minted by another region":        mustMint(t, keyring(t, "eu-central-1", 1)),
		"one bit changed":                 string(flipped),
		"truncated":                       token[:len(token)-4],
		"empty":                           "",
		"no region":                       "." + sealed,
		"no dot":                          "eu-west-1" + sealed,
		"upper-case region":               "EU-WEST-1." + sealed,
		"NUL":                             token + "\x00",
		"huge":                            "eu-west-1." + strings.Repeat("A", 5000),
		"not base64":                      "eu-west-1.!!!!",
	} {
		if _, err := eu.Open(bad); err != ErrInvalid {
			t.Errorf("%s: opened (%v)", name, err)
		}
	}
}

func mustMint(t *testing.T, k *Keyring) string {
	t.Helper()
	token, err := k.Mint(claim)
	if err != nil {
		t.Fatal(err)
	}
	return token
}

func TestAClaimMissingAFieldDoesNotOpen(t *testing.T) {
	eu := keyring(t, "eu-west-1", 1)
	for _, c := range []Claim{{User: "u", Category: "c", Channel: "email"}, {App: "a", Category: "c", Channel: "email"},
		{App: "a", User: "u", Channel: "email"}, {App: "a", User: "u", Category: "c"}} {
		token, err := eu.Mint(c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := eu.Open(token); err != ErrInvalid {
			t.Errorf("%+v opened", c)
		}
	}
}

func TestKeyringRefusesBadKeysAndNames(t *testing.T) {
	if _, err := NewKeyring("eu-west-1", make([]byte, 16)); err == nil {
		t.Error("a 16-byte key was accepted")
	}
	if _, err := NewKeyring("EU.west", make([]byte, 32)); err == nil {
		t.Error("a region name with a dot was accepted")
	}
}

// FuzzOpen: no input panics, and nothing opens but a token of the one claim ever minted under
// this key (each fuzz worker mints its own seed, so the claim is what identifies a mint).
func FuzzOpen(f *testing.F) {
	eu := keyring(f, "eu-west-1", 1)
	token, _ := eu.Mint(claim)
	f.Add(token)
	f.Add("eu-west-1.")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := eu.Open(s)
		if err == nil && c != claim {
			t.Fatalf("opened a token it did not mint: %q -> %+v", s, c)
		}
		if err != nil && err != ErrInvalid {
			t.Fatalf("error %v is not ErrInvalid", err)
		}
		_, _ = RegionOf(s)
	})
}
