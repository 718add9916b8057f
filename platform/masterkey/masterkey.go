// Package masterkey wraps data keys at rest under a master key (a key-encryption key, KEK)
// that never lives in the database holding them: envelope encryption of the keys themselves.
//
// A master key is 32 random bytes (AES-256) named by an id; a Keyring holds every master key a
// process may meet, one of them current. Wrap seals a data key under the current master key
// with AES-256-GCM, binding additional data that names the row the wrapped key belongs to, so
// a wrapped key copied into another row does not open there. Unwrap opens it under the master
// key whose id the row records, current or older (rotation).
//
// A master key file holds the key in standard base64 (44 characters; surrounding whitespace,
// a trailing newline included, is ignored): text, so it passes unchanged through a secrets
// manager, an environment variable and a file.
package masterkey

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Size is the size of a master key: AES-256.
const Size = 32

// Overhead is what wrapping adds to a key: the GCM nonce and tag. A wrapped 32-byte data key is
// 60 bytes.
const Overhead = 12 + 16

var (
	// ErrUnknownKey means a wrapped key names a master key id the keyring does not hold.
	ErrUnknownKey = errors.New("master key not in the keyring")
	// ErrOpen means a wrapped key does not open under the master key of its id: another master
	// key by the same id, a wrapped key moved from another row, or an altered one.
	ErrOpen = errors.New("wrapped key does not open under its master key")
	// ErrMalformed means a wrapped key is too short to be one.
	ErrMalformed = errors.New("malformed wrapped key")
)

var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidID reports whether id can name a master key: 1-64 letters, digits, '.', '_' or '-',
// starting with a letter or digit.
func ValidID(id string) bool { return idRE.MatchString(id) }

// Parse decodes the content of a master key file: standard base64 of exactly Size bytes,
// surrounding whitespace ignored. A key of only zero bytes is refused (an unfilled secret).
func Parse(raw []byte) ([]byte, error) {
	text := bytes.TrimSpace(raw)
	if len(text) == 0 {
		return nil, errors.New("empty: want the base64 of 32 random bytes")
	}
	if bytes.ContainsAny(text, " \t\r\n") {
		return nil, errors.New("holds whitespace inside: want the base64 of 32 random bytes on one line")
	}
	key := make([]byte, base64.StdEncoding.DecodedLen(len(text)))
	n, err := base64.StdEncoding.Strict().Decode(key, text)
	if err != nil {
		return nil, fmt.Errorf("not standard base64 (want the base64 of 32 random bytes): %w", err)
	}
	key = key[:n]
	if len(key) != Size {
		return nil, fmt.Errorf("decodes to %d bytes, want %d", len(key), Size)
	}
	if !slices.ContainsFunc(key, func(b byte) bool { return b != 0 }) {
		return nil, errors.New("is all zero bytes: not a random key")
	}
	return key, nil
}

// ReadFile reads and parses a master key file.
func ReadFile(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, err := Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

// Encode is the file form of key: its base64 and a newline.
func Encode(key []byte) []byte {
	return []byte(base64.StdEncoding.EncodeToString(key) + "\n")
}

// CreateFile writes a new random master key to path (mode 0600, its directory made 0700 if
// missing), never over an existing file: it reports created false, and checks that the file
// there is a master key, when path exists.
func CreateFile(path string) (created bool, err error) {
	if _, err := os.Stat(path); err == nil {
		if _, err := ReadFile(path); err != nil {
			return false, fmt.Errorf("existing master key file: %w", err)
		}
		return false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	key := make([]byte, Size)
	if _, err := rand.Read(key); err != nil {
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return false, err // another creator won the race: its key stays
	}
	if _, err := f.Write(Encode(key)); err != nil {
		f.Close()
		os.Remove(path)
		return false, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return false, err
	}
	return true, f.Close()
}

// Keyring holds master keys by id, one of them current (the one Wrap uses).
type Keyring struct {
	current string
	aeads   map[string]cipher.AEAD
}

// NewKeyring returns the keyring of keys (id -> Size bytes) whose current key is current.
func NewKeyring(current string, keys map[string][]byte) (*Keyring, error) {
	r := &Keyring{current: current, aeads: make(map[string]cipher.AEAD, len(keys))}
	for id, key := range keys {
		if !ValidID(id) {
			return nil, fmt.Errorf("master key id %q: want 1-64 letters, digits, '.', '_' or '-'", id)
		}
		if len(key) != Size {
			return nil, fmt.Errorf("master key %q: %d bytes, want %d", id, len(key), Size)
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("master key %q: %w", id, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("master key %q: %w", id, err)
		}
		r.aeads[id] = aead
	}
	if _, ok := r.aeads[current]; !ok {
		return nil, fmt.Errorf("current master key %q: %w (holds %s)", current, ErrUnknownKey, strings.Join(r.IDs(), ", "))
	}
	return r, nil
}

// Current is the id of the master key Wrap uses.
func (r *Keyring) Current() string { return r.current }

// IDs are the ids of the keyring's master keys, sorted.
func (r *Keyring) IDs() []string {
	ids := make([]string, 0, len(r.aeads))
	for id := range r.aeads {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Has reports whether the keyring holds the master key id.
func (r *Keyring) Has(id string) bool { _, ok := r.aeads[id]; return ok }

// Wrap seals key under the current master key with additional data aad (what names the row
// it is stored in); it returns nonce || ciphertext || tag and the master key's id.
func (r *Keyring) Wrap(key, aad []byte) (wrapped []byte, id string, err error) {
	wrapped, err = r.WrapWith(r.current, key, aad)
	return wrapped, r.current, err
}

// WrapWith is Wrap under the master key id, current or not (a check value per key).
func (r *Keyring) WrapWith(id string, key, aad []byte) ([]byte, error) {
	aead, ok := r.aeads[id]
	if !ok {
		return nil, fmt.Errorf("master key %q: %w (holds %s)", id, ErrUnknownKey, strings.Join(r.IDs(), ", "))
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(key)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return aead.Seal(nonce, nonce, key, aad), nil
}

// Unwrap opens wrapped under the master key id with the additional data it was wrapped with.
func (r *Keyring) Unwrap(id string, wrapped, aad []byte) ([]byte, error) {
	aead, ok := r.aeads[id]
	if !ok {
		return nil, fmt.Errorf("master key %q: %w (holds %s)", id, ErrUnknownKey, strings.Join(r.IDs(), ", "))
	}
	if len(wrapped) < aead.NonceSize()+aead.Overhead() {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformed, len(wrapped))
	}
	n := aead.NonceSize()
	key, err := aead.Open(nil, wrapped[:n], wrapped[n:], aad)
	if err != nil {
		return nil, fmt.Errorf("master key %q: %w", id, ErrOpen)
	}
	return key, nil
}
