package masterkey

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func randomKey(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, Size)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func ring(t testing.TB, current string, keys map[string][]byte) *Keyring {
	t.Helper()
	r, err := NewKeyring(current, keys)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestUnwrapOpensOnlyWhatWrapSealedForTheSameRow(t *testing.T) {
	k1, k2, other := randomKey(t), randomKey(t), randomKey(t)
	old := ring(t, "k1", map[string][]byte{"k1": k1})
	rotated := ring(t, "k2", map[string][]byte{"k1": k1, "k2": k2})
	impostor := ring(t, "k1", map[string][]byte{"k1": other}) // another key by the same id
	data := randomKey(t)
	aad := []byte("app\x00user\x00key-1")
	wrapped, id, err := old.Wrap(data, aad)
	if err != nil {
		t.Fatal(err)
	}
	if id != "k1" || len(wrapped) != Size+Overhead {
		t.Fatalf("wrapped %d bytes under %q, want %d under k1", len(wrapped), id, Size+Overhead)
	}
	if bytes.Contains(wrapped, data) {
		t.Fatal("the wrapped key holds the data key in clear")
	}
	flip := func(i int) []byte {
		w := bytes.Clone(wrapped)
		w[i] ^= 1
		return w
	}
	for _, tc := range []struct {
		name    string
		ring    *Keyring
		id      string
		wrapped []byte
		aad     []byte
		want    error // nil: opens to data
	}{
		{"same row", old, "k1", wrapped, aad, nil},
		{"older key of a rotated keyring", rotated, "k1", wrapped, aad, nil},
		{"another row's additional data", old, "k1", wrapped, []byte("app\x00user\x00key-2"), ErrOpen},
		{"no additional data", old, "k1", wrapped, nil, ErrOpen},
		{"wrong master key under the same id", impostor, "k1", wrapped, aad, ErrOpen},
		{"recorded under the other id", rotated, "k2", wrapped, aad, ErrOpen},
		{"tampered nonce", old, "k1", flip(0), aad, ErrOpen},
		{"tampered ciphertext", old, "k1", flip(20), aad, ErrOpen},
		{"tampered tag", old, "k1", flip(len(wrapped) - 1), aad, ErrOpen},
		{"unknown master key id", old, "k2", wrapped, aad, ErrUnknownKey},
		{"empty id", old, "", wrapped, aad, ErrUnknownKey},
		{"truncated to the tag", old, "k1", wrapped[:len(wrapped)-Size], aad, ErrOpen},
		{"truncated below nonce and tag", old, "k1", wrapped[:Overhead-1], aad, ErrMalformed},
		{"missing", old, "k1", nil, aad, ErrMalformed},
		{"extended", old, "k1", append(bytes.Clone(wrapped), 0), aad, ErrOpen},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.ring.Unwrap(tc.id, tc.wrapped, tc.aad)
			if tc.want == nil {
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("got %x, %v; want the data key", got, err)
				}
				return
			}
			if !errors.Is(err, tc.want) || got != nil {
				t.Fatalf("got %x, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestWrapUsesTheCurrentKeyAndFreshNonces(t *testing.T) {
	r := ring(t, "k2", map[string][]byte{"k1": randomKey(t), "k2": randomKey(t)})
	data := randomKey(t)
	a, id, err := r.Wrap(data, []byte("row"))
	if err != nil || id != "k2" {
		t.Fatalf("wrapped under %q (%v), want k2", id, err)
	}
	b, _, _ := r.Wrap(data, []byte("row"))
	if bytes.Equal(a, b) {
		t.Fatal("two wraps of one key are equal: the nonce is not fresh")
	}
	if _, err := r.Unwrap("k1", a, []byte("row")); !errors.Is(err, ErrOpen) {
		t.Fatalf("opened under the older key: %v", err)
	}
}

func TestNewKeyringRefusesWhatCannotWork(t *testing.T) {
	good := randomKey(t)
	for _, tc := range []struct {
		name, current string
		keys          map[string][]byte
		want          string
	}{
		{"current id unknown", "k2", map[string][]byte{"k1": good}, `current master key "k2"`},
		{"no keys", "k1", nil, `current master key "k1"`},
		{"short key", "k1", map[string][]byte{"k1": good[:16]}, "16 bytes, want 32"},
		{"bad id", "a b", map[string][]byte{"a b": good}, `master key id "a b"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewKeyring(tc.current, tc.keys)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestParse(t *testing.T) {
	key := randomKey(t)
	b64 := base64.StdEncoding.EncodeToString(key)
	for _, tc := range []struct {
		name string
		raw  string
		want string // "" accepts key
	}{
		{"base64", b64, ""},
		{"base64 and newline", b64 + "\n", ""},
		{"surrounding blanks", " \t" + b64 + "\r\n", ""},
		{"raw bytes", string(key), "base64"},
		{"empty", "", "empty"},
		{"blank", " \n", "empty"},
		{"16 bytes", base64.StdEncoding.EncodeToString(key[:16]), "16 bytes, want 32"},
		{"33 bytes", base64.StdEncoding.EncodeToString(append(bytes.Clone(key), 1)), "33 bytes, want 32"},
		{"unpadded", base64.RawStdEncoding.EncodeToString(key), "base64"},
		{"URL alphabet", base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xff}, Size)), "base64"},
		{"inner newline", b64[:20] + "\n" + b64[20:], "whitespace inside"},
		{"zeros", base64.StdEncoding.EncodeToString(make([]byte, Size)), "all zero"},
		{"hex", strings.Repeat("ab", 32), "48 bytes, want 32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse([]byte(tc.raw))
			if tc.want == "" {
				if err != nil || !bytes.Equal(got, key) {
					t.Fatalf("got %x, %v; want the key", got, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, Size)) + "\n"))
	f.Add([]byte(""))
	f.Add([]byte("====\n"))
	f.Add(bytes.Repeat([]byte{0xff}, Size))
	f.Add([]byte(base64.StdEncoding.EncodeToString(make([]byte, Size))))
	f.Fuzz(func(t *testing.T, raw []byte) {
		key, err := Parse(raw)
		if err != nil {
			if key != nil {
				t.Fatalf("a refused file gave a key %x", key)
			}
			return
		}
		if len(key) != Size {
			t.Fatalf("accepted a %d-byte key", len(key))
		}
		// What is accepted is what Encode writes for that key, give or take whitespace.
		if got := string(bytes.TrimSpace(raw)); got != strings.TrimSpace(string(Encode(key))) {
			t.Fatalf("accepted %q for the key whose file is %q", got, Encode(key))
		}
		again, err := Parse(Encode(key))
		if err != nil || !bytes.Equal(again, key) {
			t.Fatalf("the key's own file does not parse back: %v", err)
		}
	})
}

func TestCreateFileMakesAKeyOnceAndNeverOverwrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "eu.key")
	created, err := CreateFile(path)
	if err != nil || !created {
		t.Fatalf("created %v, %v", created, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	first, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	created, err = CreateFile(path)
	if err != nil || created {
		t.Fatalf("second call: created %v, %v; want kept", created, err)
	}
	if again, _ := ReadFile(path); !bytes.Equal(again, first) {
		t.Fatal("the key file was overwritten")
	}
	bad := filepath.Join(t.TempDir(), "bad.key")
	if err := os.WriteFile(bad, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := CreateFile(bad); err == nil {
		t.Fatal("an existing file that is no key was accepted")
	}
	if raw, _ := os.ReadFile(bad); string(raw) != "not a key" {
		t.Fatal("an existing file was overwritten")
	}
}
